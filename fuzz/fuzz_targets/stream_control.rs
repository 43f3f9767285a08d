//! The stream protocol's control, on both sides: a stream request's
//! headers and the caller's credit, keep-alives and cancels as the server
//! reads them; the server's items, heartbeats and ends as the caller's
//! stream reads them; and the credit, grant and silence arithmetic.
#![no_main]

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use rotor_fuzz::{Header, Value, bounded, headers};
use rotor_runtime::__fuzz::{message, stream_control as check};
use rotor_runtime::transport::{Headers, Message};
use rotor_runtime::wire::header;

#[derive(Arbitrary, Debug)]
enum ServerEvent {
    Item(u32),
    Control(Vec<Header>),
    Kind(Value, Value),
}

#[derive(Arbitrary, Debug)]
enum ServerMessage {
    Items(Vec<u8>),
    Headers(Vec<Header>, Vec<u8>),
    Stream(Value),
}

#[derive(Arbitrary, Debug)]
enum Ending {
    Done,
    AppError(String),
    Cut(String),
    Gone,
}

#[derive(Arbitrary, Debug)]
enum Input {
    Request { headers: Vec<Header>, inbox: Option<String> },
    RequestRoundTrip { token: String, window: (u32, u64), millis: u64 },
    Credit { window: (u64, u64), events: Vec<ServerEvent> },
    Grants { window: (u64, u64), sizes: Vec<u32> },
    Silence(Vec<bool>),
    StreamHeader(Value),
    Messages { seq: u64, items: u64, bytes: u64, text: String },
    Caller { messages: Vec<ServerMessage>, window: (u64, u64) },
    CallerRoundTrip { batches: Vec<Vec<String>>, beats: Vec<bool>, ending: Ending, window: (u64, u64) },
}

fn stream_message(kind: String) -> Message {
    Message { headers: Headers::one(header::STREAM, kind), payload: Default::default() }
}

fuzz_target!(|data: &[u8]| {
    bounded(data.len(), || {
        check::stream_header(&String::from_utf8_lossy(data));
        let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else { return };
        match input {
            Input::Request { headers: h, inbox } => {
                let mut h = headers(&h);
                if let Some(inbox) = inbox {
                    h.push((header::STREAM_INBOX.to_string(), format!("_INBOX.{inbox}")));
                }
                check::stream_request(&h);
            }
            Input::RequestRoundTrip { token, window, millis } => {
                check::stream_request_round_trip(&token, window, Duration::from_millis(millis))
            }
            Input::Credit { window, events } => {
                let events: Vec<_> = events
                    .iter()
                    .map(|e| match e {
                        ServerEvent::Item(entry) => check::ServerEvent::Item(*entry),
                        ServerEvent::Control(h) => check::ServerEvent::Control(message(&headers(h), b"")),
                        ServerEvent::Kind(kind, grant) => {
                            let mut m = stream_message(kind.build());
                            m.headers.insert(header::STREAM_CREDIT, grant.build());
                            check::ServerEvent::Control(m)
                        }
                    })
                    .collect();
                check::credit(window, &events);
            }
            Input::Grants { window, sizes } => check::grants(window, &sizes),
            Input::Silence(events) => check::silence(&events),
            Input::StreamHeader(value) => check::stream_header(&value.build()),
            Input::Messages { seq, items, bytes, text } => {
                check::stream_messages_round_trip(seq, items, bytes, &text)
            }
            Input::Caller { messages, window } => {
                let messages = messages
                    .iter()
                    .map(|m| match m {
                        ServerMessage::Items(payload) => message(&[], payload),
                        ServerMessage::Headers(h, payload) => message(&headers(h), payload),
                        ServerMessage::Stream(kind) => stream_message(kind.build()),
                    })
                    .collect();
                check::caller(messages, window);
            }
            Input::CallerRoundTrip { batches, beats, ending, window } => {
                let ending = match ending {
                    Ending::Done => check::Ending::Done,
                    Ending::AppError(e) => check::Ending::AppError(e),
                    Ending::Cut(text) => check::Ending::Cut(text),
                    Ending::Gone => check::Ending::Gone,
                };
                check::caller_round_trip(&batches, &beats, &ending, window);
            }
        }
    });
});
