//! Streams over the transport alone: no second connection, no port on the
//! caller.
//!
//! The caller subscribes to an inbox and sends the request with the inbox,
//! a credit window and a heartbeat interval in headers. The server accepts by
//! replying with a control subject, then publishes items to the inbox, each
//! numbered, and finally an end marker (or a typed error, which ends the
//! stream). It sends at most a window of items and of bytes beyond what the
//! caller has granted, so a slow consumer bounds what is in flight. The
//! caller grants credit, sends keep-alives, and on drop a cancel, to the
//! control subject. Both sides send something at least every heartbeat
//! interval; silence for three intervals means the other side is gone.
//!
//! This module holds the protocol's framing and its arithmetic; `server`
//! sends a handler's stream, `client` receives it as a [`ResponseStream`].

mod client;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod fuzz;
mod server;

use std::time::Duration;

use bytes::Bytes;

pub use client::ResponseStream;
pub(crate) use client::{Opened, accepted, open_headers};
pub(crate) use server::{ItemCodecs, Served, StreamSetup, serve};

use crate::engine::transport::message::{Headers, Message, header};

use crate::engine::config::DEFAULT_STREAM_HEARTBEAT as DEFAULT_HEARTBEAT;
/// Silence for this many intervals ends a stream.
const MISSED_BEATS: u32 = 3;

/// The values of the `Rotor-Stream` header: what a stream message is.
mod kind {
    /// Server to caller: the last message, with the number of items sent.
    pub const END: &str = "end";
    /// Server to caller: still there.
    pub const HEARTBEAT: &str = "heartbeat";
    /// Caller to server: more items and bytes may be sent.
    pub const CREDIT: &str = "credit";
    /// Caller to server: still there.
    pub const KEEPALIVE: &str = "keepalive";
    /// Caller to server: stop.
    pub const CANCEL: &str = "cancel";
}

/// A control message of kind `kind` with no payload.
fn control(kind: &'static str) -> Message {
    Message { headers: Headers::one(header::STREAM, kind), payload: Bytes::new() }
}

/// `message` as the end of a stream after `seq` items.
fn end(seq: u64, mut message: Message) -> Message {
    message.headers.insert(header::STREAM, format!("{} {seq}", kind::END));
    message
}

/// A failure reply turned into the last message of a stream; it carries no
/// sequence number, since the stream was cut wherever it stood.
pub(crate) fn terminal(mut error: Message) -> Message {
    error.headers.insert(header::STREAM, kind::END);
    error
}

/// The kind of a stream message, without its sequence number.
fn kind_of(message: &Message) -> Option<&str> {
    message.headers.get(header::STREAM).map(|v| v.split_once(' ').map_or(v, |(kind, _)| kind))
}

/// The sequence number of a stream end.
fn seq_of(message: &Message) -> Option<u64> {
    message.headers.get(header::STREAM)?.split_once(' ')?.1.parse().ok()
}

/// Where every caller's inboxes live (NATS's default, and the in-process
/// transport's).
pub(super) const INBOX_PREFIX: &str = "_INBOX.";

/// A subject a stream's messages may be sent to, either way: an inbox,
/// never another endpoint or `$SRV.*`, so that neither side can turn the
/// other into a publisher on subjects it may not publish to itself.
pub(super) fn is_inbox(subject: &str) -> bool {
    subject.len() > INBOX_PREFIX.len()
        && subject.starts_with(INBOX_PREFIX)
        && !subject.contains(['*', '>', ' ', '\t', '\r', '\n'])
        && !subject.split('.').any(str::is_empty)
}

/// Applies a control message from the caller to what the server may still
/// send; `true` for a cancel. A credit without a readable grant grants
/// nothing; a message of another kind (a keep-alive) changes nothing.
fn on_control(credit: &mut Credit, message: &Message) -> bool {
    match kind_of(message) {
        Some(kind::CREDIT) => {
            let (items, bytes) =
                message.headers.get(header::STREAM_CREDIT).and_then(parse_pair).unwrap_or((0, 0));
            credit.grant(items, bytes);
            false
        }
        Some(kind::CANCEL) => true,
        _ => false,
    }
}

/// `"<items> <bytes>"`, as in the window and credit headers.
pub(crate) fn parse_pair(value: &str) -> Option<(u64, u64)> {
    let (items, bytes) = value.split_once(' ')?;
    Some((items.parse().ok()?, bytes.parse().ok()?))
}

/// Heartbeat intervals are kept between 10 ms (a tighter one would have a
/// stream fail between two beats) and 60 s (a looser one would let a dead
/// peer's work run for ever).
pub(crate) fn clamp_heartbeat(interval: Duration) -> Duration {
    interval.clamp(Duration::from_millis(10), Duration::from_secs(60))
}

/// The sequence number that starts an item message.
const BATCH_HEADER: usize = 8;
/// The length that starts each item in an item message.
const ENTRY_HEADER: usize = 4;
/// Items ready together are sent together, up to this many bytes a message.
const MAX_BATCH: usize = 64 * 1024;

/// An item message: no header; the sequence number of its first item
/// (8 bytes, big endian), then each item as its length (4 bytes, big
/// endian) and its encoding.
struct Batch(Vec<u8>);

impl Batch {
    fn new(first: u64) -> Self {
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(&first.to_be_bytes());
        Batch(bytes)
    }

    fn push(&mut self, item: &[u8]) {
        self.0.extend_from_slice(&(item.len() as u32).to_be_bytes());
        self.0.extend_from_slice(item);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.len() == BATCH_HEADER
    }

    fn into_message(self) -> Message {
        Message { headers: Headers::new(), payload: self.0.into() }
    }
}

/// An item message read back: the number of its first item, then its items.
struct Items<'a> {
    rest: &'a [u8],
}

/// Why an item message could not be read.
#[derive(Debug, PartialEq, Eq)]
enum Malformed {
    NoSequence,
    CutLength,
    CutItem,
}

impl Malformed {
    fn what(&self) -> &'static str {
        match self {
            Malformed::NoSequence => "no sequence number",
            Malformed::CutLength => "a cut item length",
            Malformed::CutItem => "a cut item",
        }
    }
}

impl<'a> Items<'a> {
    fn parse(payload: &'a [u8]) -> Result<(u64, Items<'a>), Malformed> {
        let (first, rest) = payload.split_first_chunk::<BATCH_HEADER>().ok_or(Malformed::NoSequence)?;
        Ok((u64::from_be_bytes(*first), Items { rest }))
    }
}

impl<'a> Iterator for Items<'a> {
    type Item = Result<&'a [u8], Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let Some((len, tail)) = self.rest.split_first_chunk::<ENTRY_HEADER>() else {
            self.rest = &[];
            return Some(Err(Malformed::CutLength));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if tail.len() < len {
            self.rest = &[];
            return Some(Err(Malformed::CutItem));
        }
        let (item, tail) = tail.split_at(len);
        self.rest = tail;
        Some(Ok(item))
    }
}

/// What a server may still send: items and bytes. Bytes may go below zero:
/// an item larger than what is left is still sent whole, and the overshoot
/// is paid back before the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Credit {
    items: u64,
    bytes: i64,
}

impl Credit {
    fn new(items: u64, bytes: u64) -> Self {
        Credit { items, bytes: bytes.min(i64::MAX as u64) as i64 }
    }

    fn can_send(&self) -> bool {
        self.items > 0 && self.bytes > 0
    }

    fn spend(&mut self, entry: usize) {
        self.items = self.items.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(entry as i64);
    }

    fn grant(&mut self, items: u64, bytes: u64) {
        self.items = self.items.saturating_add(items);
        self.bytes = self.bytes.saturating_add(bytes.min(i64::MAX as u64) as i64);
    }
}

/// What a caller has consumed and not yet granted back. Credit follows
/// what the caller takes out of the stream, not what arrived, and goes back
/// at a quarter of the window, which keeps three quarters of it in flight
/// while the credit travels.
#[derive(Clone, Copy, Debug)]
struct Grants {
    window: (u64, u64),
    ungranted: (u64, u64),
}

impl Grants {
    fn new(window: (u64, u64)) -> Self {
        Grants { window, ungranted: (0, 0) }
    }

    /// Counts one item of `size` bytes taken; the credit to send, if due.
    fn taken(&mut self, size: u64) -> Option<(u64, u64)> {
        self.ungranted.0 += 1;
        self.ungranted.1 += size;
        let due =
            self.ungranted.0 >= (self.window.0 / 4).max(1) || self.ungranted.1 >= (self.window.1 / 4).max(1);
        due.then(|| std::mem::take(&mut self.ungranted))
    }
}

/// The caller's count of heartbeat intervals without a message from the
/// server; [`MISSED_BEATS`] of them mean the server is gone.
#[derive(Clone, Copy, Debug, Default)]
struct Silence {
    heard: bool,
    intervals: u32,
}

impl Silence {
    fn heard(&mut self) {
        self.heard = true;
    }

    /// One interval has passed; `true` when the server is gone.
    fn tick(&mut self) -> bool {
        self.intervals = if std::mem::take(&mut self.heard) { 0 } else { self.intervals + 1 };
        self.intervals >= MISSED_BEATS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reads_back_item_by_item() {
        let mut batch = Batch::new(41);
        for item in [&b"a"[..], b"", b"xyz"] {
            batch.push(item);
        }
        let message = batch.into_message();
        let (first, items) = Items::parse(&message.payload).unwrap();
        assert_eq!(first, 41);
        let items: Vec<&[u8]> = items.map(Result::unwrap).collect();
        assert_eq!(items, [&b"a"[..], b"", b"xyz"]);
    }

    #[test]
    fn a_cut_batch_is_malformed_not_a_panic() {
        assert_eq!(Items::parse(&[0; 7]).err(), Some(Malformed::NoSequence));
        let mut payload = 0u64.to_be_bytes().to_vec();
        payload.extend_from_slice(&[0, 0]);
        assert_eq!(Items::parse(&payload).unwrap().1.next(), Some(Err(Malformed::CutLength)));
        let mut payload = 0u64.to_be_bytes().to_vec();
        payload.extend_from_slice(&9u32.to_be_bytes());
        payload.extend_from_slice(b"short");
        let mut items = Items::parse(&payload).unwrap().1;
        assert_eq!(items.next(), Some(Err(Malformed::CutItem)));
        assert_eq!(items.next(), None);
    }

    #[test]
    fn credit_stops_at_either_window_and_pays_back_an_overshoot() {
        let mut credit = Credit::new(2, 100);
        assert!(credit.can_send());
        credit.spend(30);
        credit.spend(30);
        assert!(!credit.can_send(), "the item window is spent");
        credit.grant(5, 0);
        assert!(credit.can_send());
        credit.spend(500);
        assert_eq!(credit, Credit { items: 4, bytes: -460 });
        assert!(!credit.can_send(), "the overshoot is paid back first");
        credit.grant(0, 460);
        assert!(!credit.can_send(), "zero bytes left is no credit");
        credit.grant(0, 1);
        assert!(credit.can_send());
    }

    #[test]
    fn credit_saturates_instead_of_wrapping() {
        let mut credit = Credit::new(u64::MAX, u64::MAX);
        credit.grant(u64::MAX, u64::MAX);
        assert_eq!(credit, Credit { items: u64::MAX, bytes: i64::MAX });
    }

    #[test]
    fn grants_go_back_at_a_quarter_of_either_window() {
        let mut grants = Grants::new((8, 1000));
        assert_eq!(grants.taken(10), None);
        assert_eq!(grants.taken(10), Some((2, 20)), "a quarter of 8 items");
        assert_eq!(grants.taken(300), Some((1, 300)), "a quarter of 1000 bytes");
        let mut tiny = Grants::new((1, 1));
        assert_eq!(tiny.taken(0), Some((1, 0)), "a window of one grants every item");
    }

    #[test]
    fn three_silent_intervals_mean_the_server_is_gone() {
        let mut silence = Silence::default();
        assert!(!silence.tick());
        assert!(!silence.tick());
        silence.heard();
        assert!(!silence.tick(), "a message resets the count");
        assert!(!silence.tick());
        assert!(!silence.tick());
        assert!(silence.tick());
    }

    #[test]
    fn heartbeats_are_clamped_and_pairs_parse() {
        assert_eq!(clamp_heartbeat(Duration::ZERO), Duration::from_millis(10));
        assert_eq!(clamp_heartbeat(Duration::from_secs(3600)), Duration::from_secs(60));
        assert_eq!(parse_pair("3 400"), Some((3, 400)));
        assert_eq!(parse_pair("3"), None);
        assert_eq!(parse_pair("-1 2"), None);
    }
}
