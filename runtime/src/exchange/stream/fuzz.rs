//! Thin wrappers over the stream protocol's private framing and arithmetic,
//! for the fuzz targets and the property tests (`crate::__fuzz`): built only
//! for tests and with the `fuzzing` feature. Each is the code the server or
//! the caller runs, not a copy of it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use super::{
    Batch, Credit, Grants, Items, Opened, ResponseStream, Silence, StreamSetup, control, end, kind, kind_of,
    on_control, parse_pair, seq_of, terminal,
};
use crate::engine::transport::message::{Headers, Message, header};
use crate::engine::transport::{InProcess, Transport};
use crate::exchange::codec::{self, CodecError};
use crate::exchange::outcome::app_error;
use crate::{CallError, ErrorKind, InstanceId};

/// An item message as the server builds it.
#[derive(Clone, Debug)]
pub struct EncodedBatch {
    /// The message's payload.
    pub payload: Bytes,
    /// Whether the message carries no header (items never do).
    pub headerless: bool,
    /// What the server counted as the batch's length while filling it.
    pub len: usize,
    /// Whether the server saw the batch as empty.
    pub is_empty: bool,
}

/// The item message of `items`, numbered from `first`.
pub fn encode_batch<'a>(first: u64, items: impl IntoIterator<Item = &'a [u8]>) -> EncodedBatch {
    let mut batch = Batch::new(first);
    for item in items {
        batch.push(item);
    }
    let (len, is_empty) = (batch.len(), batch.is_empty());
    let message = batch.into_message();
    EncodedBatch { payload: message.payload, headerless: message.headers.is_empty(), len, is_empty }
}

/// What the reader of an item message yields, in order: each item, or why
/// the rest could not be read.
pub type Entries<'a> = Vec<Result<&'a [u8], &'static str>>;

/// An item message read back as the caller reads it: the number of its
/// first item, then its entries; `Err` when the message has no sequence
/// number.
pub fn decode_batch(payload: &[u8]) -> Result<(u64, Entries<'_>), &'static str> {
    let (first, items) = Items::parse(payload).map_err(|e| e.what())?;
    Ok((first, items.map(|item| item.map_err(|e| e.what())).collect()))
}

/// The number of bytes in front of an item message's items.
pub const BATCH_HEADER: usize = super::BATCH_HEADER;
/// The number of bytes in front of each item.
pub const ENTRY_HEADER: usize = super::ENTRY_HEADER;

/// What a server may still send.
#[derive(Clone, Copy, Debug)]
pub struct ServerCredit(Credit);

impl ServerCredit {
    /// The credit of a stream opened with a window of `items` and `bytes`.
    pub fn new(items: u64, bytes: u64) -> Self {
        ServerCredit(Credit::new(items, bytes))
    }

    /// Items and bytes left (bytes may be below zero).
    pub fn left(&self) -> (u64, i64) {
        (self.0.items, self.0.bytes)
    }

    /// Whether the server may send an item now.
    pub fn can_send(&self) -> bool {
        self.0.can_send()
    }

    /// Counts one item sent, of `entry` bytes with its length.
    pub fn spend(&mut self, entry: usize) {
        self.0.spend(entry);
    }

    /// Applies a control message from the caller, as the server's pump
    /// does; `true` for a cancel.
    pub fn on_control(&mut self, message: &Message) -> bool {
        on_control(&mut self.0, message)
    }
}

/// What a caller has consumed and not yet granted back.
#[derive(Clone, Copy, Debug)]
pub struct CallerGrants(Grants);

impl CallerGrants {
    /// The grants of a stream opened with a window of `items` and `bytes`.
    pub fn new(items: u64, bytes: u64) -> Self {
        CallerGrants(Grants::new((items, bytes)))
    }

    /// Counts one item of `size` bytes taken; the credit to send, if due.
    pub fn taken(&mut self, size: u64) -> Option<(u64, u64)> {
        self.0.taken(size)
    }

    /// Items and bytes taken and not yet granted.
    pub fn ungranted(&self) -> (u64, u64) {
        self.0.ungranted
    }
}

/// The caller's count of silent heartbeat intervals.
#[derive(Clone, Copy, Debug, Default)]
pub struct CallerSilence(Silence);

impl CallerSilence {
    /// A message arrived.
    pub fn heard(&mut self) {
        self.0.heard();
    }

    /// One interval passed; `true` when the server is gone.
    pub fn tick(&mut self) -> bool {
        self.0.tick()
    }
}

/// The silent intervals after which the caller gives up.
pub const MISSED_BEATS: u32 = super::MISSED_BEATS;

/// The kind of a stream message, without its sequence number.
pub fn stream_kind(message: &Message) -> Option<&str> {
    kind_of(message)
}

/// The sequence number of a stream end.
pub fn stream_seq(message: &Message) -> Option<u64> {
    seq_of(message)
}

/// `"<items> <bytes>"`, as in the window and credit headers.
pub fn pair(value: &str) -> Option<(u64, u64)> {
    parse_pair(value)
}

/// The server's end of a stream after `seq` items.
pub fn end_ok(seq: u64) -> Message {
    end(seq, Message::ok(Bytes::new()))
}

/// The server's end of a stream after `seq` items with the application
/// error `error` (a string, JSON-encoded).
pub fn end_app_error(seq: u64, error: &str) -> Message {
    end(seq, app_error(&error.to_string(), String::clone, codec::encode::<String>))
}

/// A failure of the server's dispatcher that cuts a stream wherever it is.
pub fn cut(kind: ErrorKind, text: &str) -> Message {
    terminal(Message::error(kind, text))
}

/// The server's heartbeat.
pub fn server_heartbeat() -> Message {
    control(kind::HEARTBEAT)
}

/// The caller's control messages: a credit of `items` and `bytes`, a
/// keep-alive, a cancel.
pub fn caller_credit(items: u64, bytes: u64) -> Message {
    let mut m = control(kind::CREDIT);
    m.headers.insert(header::STREAM_CREDIT, format!("{items} {bytes}"));
    m
}

/// The caller's keep-alive.
pub fn caller_keepalive() -> Message {
    control(kind::KEEPALIVE)
}

/// The caller's cancel.
pub fn caller_cancel() -> Message {
    control(kind::CANCEL)
}

/// A stream request as the server reads its headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setup {
    /// Where the items go.
    pub inbox: String,
    /// The item window.
    pub window: u32,
    /// The byte window.
    pub window_bytes: u64,
    /// The heartbeat interval.
    pub heartbeat: Duration,
}

/// What a server makes of a request's stream headers: `None` when they ask
/// for no stream, `Err` with the reason for a refusal.
pub fn setup(headers: &Headers) -> Result<Option<Setup>, String> {
    let transport: Arc<dyn Transport> = Arc::new(InProcess::new());
    Ok(StreamSetup::from_headers(headers, &transport)?.map(|s| Setup {
        inbox: s.inbox,
        window: s.window,
        window_bytes: s.window_bytes,
        heartbeat: s.heartbeat,
    }))
}

/// The headers a caller sends to open a stream.
pub fn open(inbox: String, window: (u32, u64), heartbeat: Duration) -> Headers {
    super::open_headers(inbox, window, heartbeat)
}

/// What a caller's [`ResponseStream`] of strings yielded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// An item.
    Item(String),
    /// The application's error, decoded.
    AppError(String),
    /// Another failure, displayed.
    Failed(String),
    /// The end of the stream.
    End,
}

/// What a caller's stream made of the server's messages, in order.
#[derive(Clone, Debug)]
pub struct Session {
    /// What the stream yielded, up to and including its first end.
    pub events: Vec<Event>,
    /// The stream's count of items received.
    pub received: u64,
    /// Whether the stream, once it had ended, stayed ended.
    pub stayed_ended: bool,
}

fn decode_string(bytes: &[u8]) -> Result<String, CodecError> {
    codec::decode(bytes)
}

/// Feeds `messages`, as the server's messages on the inbox, to a caller's
/// stream of strings opened with `window`, and reads the stream to its end
/// (after the last message the subscription closes, which ends it too).
/// `None` if the stream does not end within one poll per item and message.
pub fn session(messages: Vec<Message>, window: (u64, u64)) -> Option<Session> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().ok()?;
    runtime.block_on(async move {
        // Enough polls for every item a message could hold, and the end.
        let bound = messages.iter().map(|m| m.payload.len() / ENTRY_HEADER + 1).sum::<usize>() + 2;
        let transport: Arc<dyn Transport> = Arc::new(InProcess::new());
        let opened = Opened {
            messages: futures::stream::iter(messages).boxed(),
            control: transport.inbox(),
            transport,
            instance: Some(InstanceId(1)),
            label: "fuzz/stream/items".into(),
            window,
            // Never reached: the messages are all there at once.
            heartbeat: Duration::from_secs(60),
        };
        let mut stream = ResponseStream::<String, String>::new(opened, decode_string, decode_string);
        let mut events = Vec::new();
        let mut ended = false;
        for _ in 0..bound {
            let event = match stream.next().await {
                None => Event::End,
                Some(Ok(item)) => Event::Item(item),
                Some(Err(CallError::App { error, .. })) => Event::AppError(error),
                Some(Err(e)) => Event::Failed(e.to_string()),
            };
            ended = !matches!(event, Event::Item(_));
            events.push(event);
            if ended {
                break;
            }
        }
        if !ended {
            return None;
        }
        let mut stayed_ended = true;
        for _ in 0..3 {
            stayed_ended &= stream.next().await.is_none();
        }
        Some(Session { events, received: stream.received(), stayed_ended })
    })
}
