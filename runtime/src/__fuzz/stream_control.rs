//! The stream protocol's control: a stream request's headers (read by the
//! server), the caller's credit, keep-alives and cancels (read by the
//! server), and the server's items, heartbeats and ends (read by the
//! caller), with the arithmetic each side keeps.

use std::time::Duration;

use crate::engine::transport::message::{Headers, Message, header};
use crate::exchange::stream::fuzz::{
    CallerGrants, CallerSilence, MISSED_BEATS, ServerCredit, caller_cancel, caller_credit, caller_keepalive,
    cut, encode_batch, end_app_error, end_ok, open, pair, server_heartbeat, session, setup, stream_kind,
    stream_seq,
};
pub use crate::exchange::stream::fuzz::{Event, Session, Setup};
use crate::{ErrorKind, codec};

/// The shortest and longest heartbeat intervals either side keeps.
const HEARTBEATS: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(60));

/// Whether `subject` may receive a stream: under `_INBOX.`, tokens not
/// empty, no wildcard and no white space.
fn is_inbox(subject: &str) -> bool {
    subject.strip_prefix("_INBOX.").is_some_and(|rest| {
        rest.split('.').all(|token| !token.is_empty() && !token.contains(['*', '>', ' ', '\t', '\r', '\n']))
    })
}

/// The server's reading of a stream request's headers: no inbox, no
/// stream; an inbox that is not one, a refusal; else a window of at least
/// one item and one byte and a heartbeat within bounds, as asked where the
/// headers say it.
pub fn stream_request(headers: &[(String, String)]) {
    let message = super::message(headers, b"");
    let read = setup(&message.headers);
    let Some(inbox) = message.headers.get(header::STREAM_INBOX) else {
        assert_eq!(read, Ok(None), "no inbox, no stream");
        return;
    };
    let setup = match read {
        Ok(Some(setup)) => setup,
        Ok(None) => panic!("an inbox {inbox:?} and no stream"),
        Err(text) => {
            assert!(!is_inbox(inbox), "{inbox:?} refused: {text}");
            assert!(text.contains(header::STREAM_INBOX), "a refusal names the header: {text}");
            return;
        }
    };
    assert!(is_inbox(&setup.inbox), "{:?} accepted", setup.inbox);
    assert_eq!(setup.inbox, inbox);
    assert!(setup.window >= 1 && setup.window_bytes >= 1, "{setup:?}");
    assert!((HEARTBEATS.0..=HEARTBEATS.1).contains(&setup.heartbeat), "{setup:?}");
    if let Some((items, bytes)) = message.headers.get(header::STREAM_WINDOW).and_then(pair) {
        assert_eq!(u64::from(setup.window), items.clamp(1, u32::MAX.into()));
        assert_eq!(setup.window_bytes, bytes.max(1));
    }
    if let Some(ms) = message.headers.get(header::STREAM_HEARTBEAT_MS).and_then(|h| h.parse().ok()) {
        assert_eq!(setup.heartbeat, Duration::from_millis(ms).clamp(HEARTBEATS.0, HEARTBEATS.1));
    }
}

/// What a caller asks for, the server reads: the inbox, the window (at
/// least one item and one byte), the heartbeat to the millisecond, within
/// bounds.
pub fn stream_request_round_trip(token: &str, window: (u32, u64), beat: Duration) {
    let token: String = token.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let inbox = format!("_INBOX.{}", if token.is_empty() { "x" } else { &token });
    let read = setup(&open(inbox.clone(), window, beat)).expect("an inbox").expect("a stream");
    let millis = Duration::from_millis(beat.as_millis().try_into().unwrap_or(u64::MAX));
    let expected = Setup {
        inbox,
        window: window.0.max(1),
        window_bytes: window.1.max(1),
        heartbeat: millis.clamp(HEARTBEATS.0, HEARTBEATS.1),
    };
    assert_eq!(read, expected);
}

/// What happens at the server in turn: a message from the caller arrives,
/// or an item of so many bytes is ready.
#[derive(Clone, Debug)]
pub enum ServerEvent {
    /// A message on the control subject.
    Control(Message),
    /// An item of this many bytes, with its length, is ready.
    Item(u32),
}

/// The server's credit under arbitrary control messages: a credit grants
/// what its header says (nothing when it is unreadable), saturating; a
/// cancel stops; anything else changes nothing; and the server never sends
/// an item beyond the items granted, nor starts one once the bytes granted
/// are spent.
pub fn credit(window: (u64, u64), events: &[ServerEvent]) {
    let mut credit = ServerCredit::new(window.0, window.1);
    let mut granted = (u128::from(window.0), u128::from(window.1.min(i64::MAX as u64)));
    let mut sent = (0u128, 0u128);
    for event in events {
        let (items, bytes) = credit.left();
        assert_eq!(credit.can_send(), items > 0 && bytes > 0);
        match event {
            ServerEvent::Control(message) => {
                let kind = stream_kind(message).map(str::to_string);
                let cancel = credit.on_control(message);
                assert_eq!(cancel, kind.as_deref() == Some("cancel"));
                let grant = match kind.as_deref() {
                    Some("credit") => {
                        message.headers.get(header::STREAM_CREDIT).and_then(pair).unwrap_or((0, 0))
                    }
                    _ => (0, 0),
                };
                let grant_bytes = grant.1.min(i64::MAX as u64);
                assert_eq!(
                    credit.left(),
                    (items.saturating_add(grant.0), bytes.saturating_add(grant_bytes as i64)),
                    "a grant of {grant:?}"
                );
                granted.0 += u128::from(grant.0);
                granted.1 += u128::from(grant_bytes);
                if cancel {
                    return;
                }
            }
            ServerEvent::Item(entry) => {
                if credit.can_send() {
                    assert!(sent.0 < granted.0, "item {} sent on {} granted", sent.0, granted.0);
                    assert!(sent.1 < granted.1, "an item started after {} of {} bytes", sent.1, granted.1);
                    credit.spend(*entry as usize);
                    sent.0 += 1;
                    sent.1 += u128::from(*entry);
                }
            }
        }
    }
}

/// The caller's grants: every byte and item taken is granted back once,
/// and never more than a quarter of either window waits ungranted.
pub fn grants(window: (u64, u64), sizes: &[u32]) {
    let mut grants = CallerGrants::new(window.0, window.1);
    let due = ((window.0 / 4).max(1), (window.1 / 4).max(1));
    let (mut taken, mut granted) = ((0u64, 0u64), (0u64, 0u64));
    for &size in sizes {
        taken.0 += 1;
        taken.1 += u64::from(size);
        if let Some((items, bytes)) = grants.taken(size.into()) {
            assert!(items >= due.0 || bytes >= due.1, "{items} items and {bytes} bytes granted early");
            assert_eq!(grants.ungranted(), (0, 0));
            granted.0 += items;
            granted.1 += bytes;
        }
        let (items, bytes) = grants.ungranted();
        assert_eq!((granted.0 + items, granted.1 + bytes), taken, "taken, granted once");
        assert!(items < due.0 && bytes < due.1, "{items} items and {bytes} bytes wait ungranted");
    }
}

/// The caller's silence: the server is gone after [`MISSED_BEATS`] ticks
/// in a row with nothing heard, and not before. `true` is a message heard,
/// `false` an interval passed.
pub fn silence(events: &[bool]) {
    let mut silence = CallerSilence::default();
    let (mut heard, mut silent) = (false, 0u32);
    for &event in events {
        if event {
            silence.heard();
            heard = true;
            continue;
        }
        silent = if std::mem::take(&mut heard) { 0 } else { silent + 1 };
        assert_eq!(silence.tick(), silent >= MISSED_BEATS, "after {silent} silent intervals");
        if silent >= MISSED_BEATS {
            return;
        }
    }
}

/// A `Rotor-Stream` value: its kind is what comes before the first space,
/// its sequence number what comes after, when it is one.
pub fn stream_header(value: &str) {
    let message = Message { headers: Headers::one(header::STREAM, value), payload: bytes::Bytes::new() };
    let (kind, seq) = value.split_once(' ').map_or((value, None), |(kind, seq)| (kind, seq.parse().ok()));
    assert_eq!(stream_kind(&message), Some(kind));
    assert_eq!(stream_seq(&message), seq);
}

/// The messages either side writes read back as what they are: an end with
/// its count, a cut without one, and the caller's credit with its grant.
pub fn stream_messages_round_trip(seq: u64, items: u64, bytes: u64, text: &str) {
    for (message, kind, error) in [
        (end_ok(seq), "end", None),
        (end_app_error(seq, text), "end", Some(ErrorKind::Application)),
        (server_heartbeat(), "heartbeat", None),
    ] {
        assert_eq!(stream_kind(&message), Some(kind));
        assert_eq!(stream_seq(&message), (kind == "end").then_some(seq));
        assert_eq!(message.error_kind(), error);
    }
    let cut = cut(ErrorKind::Deadline, text);
    assert_eq!((stream_kind(&cut), stream_seq(&cut)), (Some("end"), None));
    assert_eq!(cut.error_kind(), Some(ErrorKind::Deadline));
    let mut credit = ServerCredit::new(0, 0);
    assert!(!credit.on_control(&caller_credit(items, bytes)));
    assert_eq!(credit.left(), (items, bytes.min(i64::MAX as u64) as i64));
    assert!(!credit.on_control(&caller_keepalive()));
    assert_eq!(credit.left(), (items, bytes.min(i64::MAX as u64) as i64));
    assert!(credit.on_control(&caller_cancel()));
}

/// The caller's stream under arbitrary messages from the server: it never
/// panics, ends exactly once (with `None` ever after), and yields no more
/// items than the messages hold.
pub fn caller(messages: Vec<Message>, window: (u64, u64)) -> Session {
    let room: u64 =
        messages.iter().filter(|m| m.headers.is_empty()).map(|m| (m.payload.len() / 4) as u64).sum();
    let session = session(messages, window).expect("the stream ends");
    assert!(session.stayed_ended, "an ended stream yields nothing more");
    let (last, items) = session.events.split_last().expect("an end");
    assert!(!matches!(last, Event::Item(_)), "the stream ends");
    assert!(items.iter().all(|e| matches!(e, Event::Item(_))), "one end, at the end: {:?}", session.events);
    assert!(items.len() as u64 <= session.received, "{} items yielded of {}", items.len(), session.received);
    assert!(session.received <= room, "{} items received in room for {room}", session.received);
    session
}

/// How a stream a server sends ends.
#[derive(Clone, Debug)]
pub enum Ending {
    /// Its end, after every item.
    Done,
    /// The application's error.
    AppError(String),
    /// A failure of the server's dispatcher (its deadline passed).
    Cut(String),
    /// Nothing: the subscription closes.
    Gone,
}

/// Items the server sends, in batches as they were ready, with heartbeats
/// between them, reach the caller in order, then the end as the server
/// meant it.
pub fn caller_round_trip(batches: &[Vec<String>], beats: &[bool], ending: &Ending, window: (u64, u64)) {
    let mut messages = Vec::new();
    let mut seq = 0u64;
    for (at, batch) in batches.iter().enumerate() {
        let encoded: Vec<_> =
            batch.iter().map(|item| codec::encode(item).expect("a string encodes")).collect();
        let payload = encode_batch(seq, encoded.iter().map(|b| &b[..])).payload;
        messages.push(Message { headers: Headers::new(), payload });
        seq += batch.len() as u64;
        if beats.get(at).copied().unwrap_or(false) {
            messages.push(server_heartbeat());
        }
    }
    match ending {
        Ending::Done => messages.push(end_ok(seq)),
        Ending::AppError(e) => messages.push(end_app_error(seq, e)),
        Ending::Cut(text) => messages.push(cut(ErrorKind::Deadline, text)),
        Ending::Gone => {}
    }
    let session = caller(messages, window);
    let expected: Vec<Event> = batches.iter().flatten().cloned().map(Event::Item).collect();
    let (last, items) = session.events.split_last().expect("an end");
    assert_eq!(items, expected.as_slice());
    assert_eq!(session.received, seq);
    match (ending, last) {
        (Ending::Done, Event::End) => {}
        (Ending::AppError(sent), Event::AppError(read)) => assert_eq!(sent, read),
        (Ending::Cut(_), Event::Failed(text)) => assert!(text.contains("deadline"), "{text}"),
        (Ending::Gone, Event::Failed(text)) => assert!(text.contains("closed"), "{text}"),
        (ending, last) => panic!("{ending:?} read as {last:?}"),
    }
}
