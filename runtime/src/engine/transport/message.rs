//! What a transport carries: a message of headers and a payload, and the
//! names of every header Rotor's messages may carry.
//!
//! The names are kept here, beside the message, so that a transport can
//! refer to them without copying them for every message; what they mean is
//! the exchange's business ([`wire`](crate::wire)) and, for the NATS micro
//! error headers, the micro model's.

use std::borrow::Cow;

use bytes::Bytes;

/// Bytes a request's envelope (its kind, version and deadline, written by
/// the exchange) adds before its payload: a transport that checks a
/// request's size against an endpoint's limit before it has the whole
/// request allows for them.
pub const ENVELOPE_LEN: usize = 6;

/// Header names.
pub mod header {
    /// Wire format version; absent means version 1.
    pub const WIRE: &str = "Rotor-Wire";
    /// Error message (NATS micro convention).
    pub const SERVICE_ERROR: &str = "Nats-Service-Error";
    /// Error code (NATS micro convention); see [`ErrorKind::code`](super::ErrorKind::code).
    pub const SERVICE_ERROR_CODE: &str = "Nats-Service-Error-Code";
    /// Error kind, one of [`ErrorKind::as_str`](super::ErrorKind::as_str).
    pub const ERROR_KIND: &str = "Rotor-Error";
    /// Time the caller still waits, in milliseconds; the server cancels the
    /// handler when it passes.
    pub const TIMEOUT_MS: &str = "Rotor-Timeout-Ms";
    /// The instance that produced a reply.
    pub const INSTANCE: &str = "Rotor-Instance";
    /// Request: the caller's inbox for stream messages.
    pub const STREAM_INBOX: &str = "Rotor-Stream-Inbox";
    /// Request: how many items and bytes (`"<items> <bytes>"`) the server
    /// may send before more credit.
    pub const STREAM_WINDOW: &str = "Rotor-Stream-Window";
    /// Request: the interval of heartbeats and keep-alives, in milliseconds.
    pub const STREAM_HEARTBEAT_MS: &str = "Rotor-Stream-Heartbeat-Ms";
    /// Reply accepting a stream: the server's subject for credit, keep-alives
    /// and cancellation.
    pub const STREAM_CONTROL: &str = "Rotor-Stream-Control";
    /// What a stream message is, with its sequence number where it has one:
    /// `end 10`, `heartbeat` (server to caller); `credit`, `keepalive`,
    /// `cancel` (caller to server). Items, the bulk of a stream, carry no
    /// header at all: their payload is the sequence number (8 bytes, big
    /// endian) followed by the encoded item.
    pub const STREAM: &str = "Rotor-Stream";
    /// Items and bytes (`"<items> <bytes>"`) granted by a `credit` message.
    pub const STREAM_CREDIT: &str = "Rotor-Credit";
    /// Identifies a request and the requests made on its behalf; sent only
    /// when it is not the first 16 hex digits of the trace id, as Rotor's own
    /// request ids are.
    pub const REQUEST_ID: &str = "Rotor-Request-Id";
    /// W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";
    /// The typed application error of a failure reply, encoded (JSON is one
    /// line, so it fits a header). Error replies carry no payload: NATS micro
    /// sends none with an error.
    pub const ERROR_BODY: &str = "Rotor-Error-Body";
    /// Request: a liveness probe, answered by the instance's dispatcher at
    /// once and empty, without running a handler.
    pub const PROBE: &str = "Rotor-Probe";
    /// Request over NATS, larger than one NATS message: its payload's size
    /// in bytes. It carries the headers alone; the payload follows in
    /// chunks to the inbox the answer names in [`UPLOAD_TO`].
    pub const UPLOAD: &str = "Rotor-Upload";
    /// Answer to an [`UPLOAD`] head: the instance's inbox for the chunks.
    pub const UPLOAD_TO: &str = "Rotor-Upload-To";
    /// Reply over NATS, larger than one NATS message: its payload's size in
    /// bytes. It carries the headers alone; the caller asks for the chunks
    /// at the inbox in [`DOWNLOAD_FROM`].
    pub const DOWNLOAD: &str = "Rotor-Download";
    /// Reply with [`DOWNLOAD`]: the instance's inbox that hands out the
    /// chunks, one per request.
    pub const DOWNLOAD_FROM: &str = "Rotor-Download-From";

    /// The constant for `name` when it is one of the names above.
    pub(crate) fn known(name: &str) -> Option<&'static str> {
        [
            TIMEOUT_MS,
            TRACEPARENT,
            REQUEST_ID,
            INSTANCE,
            SERVICE_ERROR,
            SERVICE_ERROR_CODE,
            ERROR_KIND,
            ERROR_BODY,
            WIRE,
            STREAM,
            STREAM_INBOX,
            STREAM_WINDOW,
            STREAM_HEARTBEAT_MS,
            STREAM_CONTROL,
            STREAM_CREDIT,
            PROBE,
            UPLOAD,
            UPLOAD_TO,
            DOWNLOAD,
            DOWNLOAD_FROM,
        ]
        .into_iter()
        .find(|known| *known == name)
    }
}

/// Message headers, in order. Small: a handful of entries per message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(Vec<(Cow<'static, str>, String)>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// One header.
    pub fn one(name: &'static str, value: impl Into<String>) -> Self {
        Headers(vec![(Cow::Borrowed(name), value.into())])
    }

    /// Sets `name` to `value`, replacing an earlier value.
    pub fn insert(&mut self, name: impl Into<Cow<'static, str>>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.0.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    /// The value of `name`, compared without regard to case.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Takes `name` out, with its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let at = self.0.iter().position(|(n, _)| n.eq_ignore_ascii_case(name))?;
        Some(self.0.remove(at).1)
    }

    /// `true` without any header.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every header, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_ref(), v.as_str()))
    }
}

impl IntoIterator for Headers {
    type Item = (Cow<'static, str>, String);
    type IntoIter = std::vec::IntoIter<Self::Item>;

    /// Every header, in insertion order, by value.
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// A request or a reply: headers and an encoded payload.
#[derive(Clone, Debug, Default)]
pub struct Message {
    /// The headers.
    pub headers: Headers,
    /// The payload, encoded by [`codec`](crate::codec).
    pub payload: Bytes,
}

impl Message {
    /// Size on the wire, for limits: payload plus headers.
    pub fn size(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
        // `NATS/1.0\r\n` before the headers and `\r\n` after them.
        let framing = if self.headers.is_empty() { 0 } else { 12 };
        self.payload.len() + headers + framing
    }
}
