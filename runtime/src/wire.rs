//! What crosses the wire: messages, headers, and the stable error codes.
//!
//! The format is versioned: a message without `Rotor-Wire` is version 1, and
//! a later format will say its version there (a server refuses versions it
//! does not speak). Version 1 leaves the header out, since every header costs
//! on both sides and in the NATS server. Failures are replies with the NATS micro error headers
//! (`Nats-Service-Error`, `Nats-Service-Error-Code`) plus `Rotor-Error`, the
//! machine-readable kind.
//!
//! A request's deadline travels in front of its payload, in a six-byte
//! envelope: [`ENVELOPE`], the envelope version (1), then the milliseconds the
//! server has, as a big-endian `u32`. A payload never starts with that byte
//! otherwise (JSON text cannot), so a request without it, from `nats req`
//! say, is the encoded value alone. The envelope rather than a header,
//! because a message with any header costs async-nats a header map on each
//! side: with one header, a unary call took twice the instructions of a raw
//! request. Callers other than Rotor's may send `Rotor-Timeout-Ms` instead.

use std::borrow::Cow;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};

use bytes::Bytes;

/// Version of the wire format this build speaks.
pub const WIRE_VERSION: &str = "1";

/// The first byte of a request envelope.
pub const ENVELOPE: u8 = 0;

/// The envelope version this build writes and reads.
const ENVELOPE_VERSION: u8 = 1;

/// Envelope length: marker, version, milliseconds.
const ENVELOPE_LEN: usize = 6;

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
        ]
        .into_iter()
        .find(|known| *known == name)
    }
}

/// Why a server answered with an error instead of a response. The codes are
/// stable: tools and dashboards may rely on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The handler returned `Err(e)`; the body is `e` encoded.
    Application,
    /// The request payload did not decode as the endpoint's request type.
    Decode,
    /// No endpoint of that name on the service.
    UnknownEndpoint,
    /// A message exceeded the transport's payload limit.
    Oversize,
    /// The handler panicked; the server keeps serving.
    Internal,
    /// The instance is shutting down.
    Unavailable,
    /// The request's deadline passed before the handler finished.
    Deadline,
}

impl ErrorKind {
    /// The `Nats-Service-Error-Code` value.
    pub fn code(self) -> u16 {
        match self {
            ErrorKind::Decode => 400,
            ErrorKind::UnknownEndpoint => 404,
            ErrorKind::Oversize => 413,
            ErrorKind::Application => 422,
            ErrorKind::Internal => 500,
            ErrorKind::Unavailable => 503,
            ErrorKind::Deadline => 504,
        }
    }

    /// The `Rotor-Error` value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Application => "application",
            ErrorKind::Decode => "decode",
            ErrorKind::UnknownEndpoint => "unknown-endpoint",
            ErrorKind::Oversize => "oversize",
            ErrorKind::Internal => "internal",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Deadline => "deadline",
        }
    }

    /// The kind named by a `Rotor-Error` value.
    pub fn parse(s: &str) -> Option<Self> {
        [
            ErrorKind::Application,
            ErrorKind::Decode,
            ErrorKind::UnknownEndpoint,
            ErrorKind::Oversize,
            ErrorKind::Internal,
            ErrorKind::Unavailable,
            ErrorKind::Deadline,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
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
    /// A request carrying `payload`, with the time the server has before the
    /// caller stops waiting.
    pub fn request(payload: Bytes, timeout: Option<Duration>) -> Self {
        match timeout {
            Some(timeout) => Message::enveloped(&payload, timeout),
            None => Message { headers: Headers::new(), payload },
        }
    }

    /// A request with the time the server has, in an envelope in front of a
    /// copy of `payload`.
    pub fn enveloped(payload: &[u8], timeout: Duration) -> Self {
        let millis = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX).max(1);
        let mut enveloped = BytesMut::with_capacity(ENVELOPE_LEN + payload.len());
        enveloped.put_u8(ENVELOPE);
        enveloped.put_u8(ENVELOPE_VERSION);
        enveloped.put_u32(millis);
        enveloped.put_slice(payload);
        Message { headers: Headers::new(), payload: enveloped.freeze() }
    }

    /// Takes the envelope off a request: the caller's remaining time, from
    /// the envelope or else from `Rotor-Timeout-Ms`; `Err` with the version
    /// of an envelope this build cannot read.
    pub fn open_envelope(&mut self) -> Result<Option<Duration>, String> {
        if self.payload.first() != Some(&ENVELOPE) {
            let header = self.headers.get(header::TIMEOUT_MS).and_then(|t| t.parse().ok());
            return Ok(header.map(Duration::from_millis));
        }
        match self.payload.get(1) {
            Some(&ENVELOPE_VERSION) if self.payload.len() >= ENVELOPE_LEN => {
                self.payload.advance(2);
                let millis = self.payload.get_u32();
                Ok(Some(Duration::from_millis(millis.into())))
            }
            Some(&ENVELOPE_VERSION) => Err("1 (cut short)".into()),
            Some(version) => Err(format!("{version} (envelope)")),
            None => Err("unknown (a lone envelope byte)".into()),
        }
    }

    /// A successful reply.
    pub fn ok(payload: Bytes) -> Self {
        Message { headers: Headers::new(), payload }
    }

    /// A failure reply: `message` for people, `kind` and its code for programs.
    pub fn error(kind: ErrorKind, message: &str) -> Self {
        let mut headers = Headers::new();
        headers.insert(header::SERVICE_ERROR, one_line(message));
        headers.insert(header::SERVICE_ERROR_CODE, kind.code().to_string());
        headers.insert(header::ERROR_KIND, kind.as_str());
        Message { headers, payload: Bytes::new() }
    }

    /// The reply for a handler's `Err(e)`: `message` is `e` displayed, `body`
    /// is `e` encoded.
    pub fn app_error(message: &str, body: &[u8]) -> Self {
        let mut reply = Message::error(ErrorKind::Application, message);
        reply.headers.insert(header::ERROR_BODY, String::from_utf8_lossy(body).into_owned());
        reply
    }

    /// The error kind of a failure reply; `None` for a success.
    pub fn error_kind(&self) -> Option<ErrorKind> {
        self.headers.get(header::ERROR_KIND).and_then(ErrorKind::parse).or_else(|| {
            // A NATS micro error from a non-Rotor responder still counts.
            self.headers.get(header::SERVICE_ERROR_CODE).map(|_| ErrorKind::Internal)
        })
    }

    /// `Err` with the version when the message says it is of a wire format
    /// this build does not speak.
    pub fn check_version(&self) -> Result<(), String> {
        match self.headers.get(header::WIRE) {
            None => Ok(()),
            Some(v) if v == WIRE_VERSION => Ok(()),
            Some(v) => Err(v.to_string()),
        }
    }

    /// The kind of a stream message (`item`, `end`, ..), without its
    /// sequence number.
    pub fn stream_kind(&self) -> Option<&str> {
        self.headers.get(header::STREAM).map(|v| v.split_once(' ').map_or(v, |(kind, _)| kind))
    }

    /// The sequence number of a stream item or end.
    pub fn stream_seq(&self) -> Option<u64> {
        self.headers.get(header::STREAM)?.split_once(' ')?.1.parse().ok()
    }

    /// Size on the wire, for limits: payload plus headers.
    pub fn size(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
        // `NATS/1.0\r\n` before the headers and `\r\n` after them.
        let framing = if self.headers.is_empty() { 0 } else { 12 };
        self.payload.len() + headers + framing
    }
}

/// Header values are single lines; keep the first line of long messages.
/// Header values are single lines without control characters (a `\r` in a
/// header would break the NATS framing, and error texts can echo user
/// input): the first line, control characters as spaces, at most 1024
/// characters.
fn one_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    line.chars().take(1024).map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_carries_the_timeout_and_comes_off_whole() {
        let mut request = Message::request(Bytes::from_static(b"\"hi\""), Some(Duration::from_millis(1500)));
        assert!(request.headers.is_empty(), "the deadline needs no header");
        assert_eq!(request.payload.len(), 4 + ENVELOPE_LEN);
        assert_eq!(request.open_envelope(), Ok(Some(Duration::from_millis(1500))));
        assert_eq!(&request.payload[..], b"\"hi\"");
    }

    #[test]
    fn a_request_without_envelope_is_the_value_alone_and_may_use_the_header() {
        let mut plain = Message::request(Bytes::from_static(b"{}"), None);
        assert_eq!(plain.open_envelope(), Ok(None));
        assert_eq!(&plain.payload[..], b"{}");
        let mut other = Message { headers: Headers::one(header::TIMEOUT_MS, "250"), payload: Bytes::new() };
        assert_eq!(other.open_envelope(), Ok(Some(Duration::from_millis(250))));
    }

    #[test]
    fn an_envelope_of_another_version_or_cut_short_is_refused() {
        let mut newer =
            Message { headers: Headers::new(), payload: Bytes::from_static(&[ENVELOPE, 2, 0, 0]) };
        assert_eq!(newer.open_envelope(), Err("2 (envelope)".to_string()));
        let mut short = Message { headers: Headers::new(), payload: Bytes::from_static(&[ENVELOPE, 1, 0]) };
        assert!(short.open_envelope().is_err());
    }
}
