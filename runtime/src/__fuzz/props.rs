//! Property tests of the decoders a stranger's bytes reach, through the same
//! invariants as the fuzz targets: arbitrary input never panics and gives a
//! typed error, and what an encoder writes decodes back. Case counts keep
//! the suite to a few seconds; the fuzz targets run longer (`scripts/fuzz.sh`).

use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::Config;

use super::{NAMES, batch, envelope, headers, stream_control};
use crate::engine::transport::message::{Headers, Message, header};

fn config(cases: u32) -> Config {
    // No regression files in the source tree: a failure prints its input.
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// A header name: one Rotor reads, in any case, or any other.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (proptest::sample::select(NAMES), any::<u64>()).prop_map(|(name, case)| {
            name.chars()
                .enumerate()
                .map(|(i, c)| if case >> (i % 64) & 1 == 1 { c.to_ascii_lowercase() } else { c })
                .collect()
        }),
        1 => "[ -~]{0,12}",
        1 => any::<String>(),
    ]
}

/// A header value: a number, a pair, a word Rotor writes, or anything.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| format!("{n:x}")),
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| format!("{a} {b}")),
        proptest::sample::select(vec![
            "1",
            "2",
            "0",
            "",
            " ",
            "end",
            "end 3",
            "heartbeat",
            "credit",
            "cancel",
            "keepalive",
            "application",
            "decode",
            "deadline",
            "_INBOX.a",
            "_INBOX.a.>",
            "_INBOX..a",
            "\"oops\"",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ])
        .prop_map(str::to_string),
        "[0-9a-fA-F-]{0,60}",
        any::<String>(),
    ]
}

fn headers_of(max: usize) -> impl Strategy<Value = Vec<(String, String)>> {
    vec((name(), value()), 0..max)
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..64),
        // Shaped like an envelope or an item message, with the rest arbitrary.
        (0u8..3, vec(any::<u8>(), 0..64)).prop_map(|(version, rest)| [vec![0, version], rest].concat()),
        (any::<u64>(), vec((0u32..40, vec(any::<u8>(), 0..40)), 0..6)).prop_map(|(first, items)| {
            let mut bytes = first.to_be_bytes().to_vec();
            for (len, item) in items {
                bytes.extend_from_slice(&len.to_be_bytes());
                bytes.extend_from_slice(&item);
            }
            bytes
        }),
    ]
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn arbitrary_bytes_as_a_request_never_panic_and_an_unreadable_envelope_is_refused(data in payload()) {
        envelope::bytes(&data);
    }

    #[test]
    fn arbitrary_request_headers_give_a_deadline_only_as_the_envelope_or_header_says(
        headers in headers_of(6),
        payload in payload(),
    ) {
        envelope::request(&headers, &payload);
    }

    #[test]
    fn an_enveloped_request_reads_back_its_time_and_its_payload(
        payload in vec(any::<u8>(), 0..64),
        millis in prop_oneof![0u64..10_000, any::<u64>()],
        nanos in 0u32..1_000_000_000,
    ) {
        envelope::round_trip(&payload, Duration::new(millis / 1000, nanos));
        envelope::round_trip(&payload, Duration::from_millis(millis));
    }

    #[test]
    fn arbitrary_bytes_as_an_item_message_are_read_within_bounds_or_refused(data in payload()) {
        batch::decode(&data);
    }

    #[test]
    fn items_written_into_a_message_read_back_in_order(
        first in any::<u64>(),
        items in vec(vec(any::<u8>(), 0..48), 0..12),
    ) {
        batch::round_trip(first, &items);
    }

    #[test]
    fn arbitrary_stream_request_headers_give_a_bounded_stream_or_a_refusal(
        mut headers in headers_of(5),
        inbox in prop_oneof![
            Just(None),
            "_INBOX\\.[a-zA-Z0-9.*> ]{0,12}".prop_map(Some),
            any::<String>().prop_map(Some),
        ],
    ) {
        if let Some(inbox) = inbox {
            headers.push((header::STREAM_INBOX.to_string(), inbox));
        }
        stream_control::stream_request(&headers);
    }

    #[test]
    fn a_stream_request_reads_back_as_the_caller_asked(
        token in "[a-zA-Z0-9]{0,12}",
        window in (any::<u32>(), any::<u64>()),
        millis in prop_oneof![0u64..100_000, any::<u64>()],
    ) {
        stream_control::stream_request_round_trip(&token, window, Duration::from_millis(millis));
    }

    #[test]
    fn a_server_never_sends_beyond_the_credit_arbitrary_control_messages_grant(
        window in (prop_oneof![0u64..8, any::<u64>()], prop_oneof![0u64..4096, any::<u64>()]),
        events in vec(prop_oneof![
            (0u32..2048).prop_map(stream_control::ServerEvent::Item),
            headers_of(3).prop_map(|h| stream_control::ServerEvent::Control(super::message(&h, b""))),
            (value(), value()).prop_map(|(kind, grant)| {
                let mut headers = Headers::one(header::STREAM, kind);
                headers.insert(header::STREAM_CREDIT, grant);
                stream_control::ServerEvent::Control(Message { headers, payload: bytes::Bytes::new() })
            }),
            (any::<u64>(), any::<u64>()).prop_map(|(items, bytes)| {
                stream_control::ServerEvent::Control(crate::exchange::stream::fuzz::caller_credit(items, bytes))
            }),
        ], 0..40),
    ) {
        stream_control::credit(window, &events);
    }

    #[test]
    fn a_caller_grants_back_all_it_takes_and_never_holds_a_quarter_window(
        window in (prop_oneof![0u64..16, any::<u64>()], prop_oneof![0u64..4096, any::<u64>()]),
        sizes in vec(prop_oneof![0u32..512, any::<u32>()], 0..64),
    ) {
        stream_control::grants(window, &sizes);
    }

    #[test]
    fn a_caller_gives_up_after_three_silent_intervals_and_not_before(events in vec(any::<bool>(), 0..32)) {
        stream_control::silence(&events);
    }

    #[test]
    fn a_stream_header_reads_as_its_kind_and_sequence_number(value in value()) {
        stream_control::stream_header(&value);
    }

    #[test]
    fn stream_ends_and_credit_read_back_as_written(
        seq in any::<u64>(),
        grant in (any::<u64>(), any::<u64>()),
        text in any::<String>(),
    ) {
        stream_control::stream_messages_round_trip(seq, grant.0, grant.1, &text);
    }

    #[test]
    fn a_header_map_keeps_one_value_per_name_whatever_its_case(
        ops in vec(prop_oneof![
            (name(), value()).prop_map(|(n, v)| headers::Op::Insert(n, v)),
            name().prop_map(headers::Op::Get),
        ], 0..24),
    ) {
        headers::map(&ops);
    }

    #[test]
    fn an_arbitrary_reply_reads_as_one_failure_or_a_value_and_names_its_instance(
        headers in headers_of(8),
        payload in prop_oneof![payload(), Just(b"\"ok\"".to_vec())],
    ) {
        headers::reply(&headers, &payload);
    }

    #[test]
    fn a_failure_reply_reads_back_as_its_kind_text_and_error(
        kind in any::<u8>(),
        text in prop_oneof![any::<String>(), "[a-z\r\n\t ]{0,40}", ".{1000,1100}"],
        error in any::<String>(),
    ) {
        headers::failure_round_trip(headers::kind(kind), &text, &error);
    }

    #[test]
    fn a_reply_names_the_instance_that_sent_it_whatever_its_id(id in any::<i64>()) {
        headers::instance_round_trip(id);
    }
}

proptest! {
    // Each case runs a caller's stream on a runtime of its own.
    #![proptest_config(config(256))]

    #[test]
    fn a_caller_stream_under_arbitrary_server_messages_ends_once_and_never_panics(
        messages in vec(prop_oneof![
            3 => payload().prop_map(|p| Message { headers: Headers::new(), payload: p.into() }),
            1 => (headers_of(4), payload()).prop_map(|(h, p)| super::message(&h, &p)),
            1 => value().prop_map(|v| Message { headers: Headers::one(header::STREAM, v), payload: Default::default() }),
        ], 0..6),
        window in (0u64..64, 0u64..4096),
    ) {
        stream_control::caller(messages, window);
    }

    #[test]
    fn items_a_server_sends_reach_the_caller_in_order_then_its_end(
        batches in vec(vec(any::<String>(), 0..5), 0..5),
        beats in vec(any::<bool>(), 0..5),
        ending in prop_oneof![
            Just(stream_control::Ending::Done),
            any::<String>().prop_map(stream_control::Ending::AppError),
            any::<String>().prop_map(stream_control::Ending::Cut),
            Just(stream_control::Ending::Gone),
        ],
        window in (1u64..64, 1u64..4096),
    ) {
        stream_control::caller_round_trip(&batches, &beats, &ending, window);
    }
}
