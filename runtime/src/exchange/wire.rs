//! The request envelope and the wire format's version: what the exchange
//! adds to a transport's [`Message`].
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

use crate::engine::transport::message::ENVELOPE_LEN;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub use crate::engine::transport::message::{Headers, Message, header};
pub use crate::error::ErrorKind;

/// Version of the wire format this build speaks.
pub const WIRE_VERSION: &str = "1";

/// The first byte of a request envelope.
pub const ENVELOPE: u8 = 0;

/// The envelope version this build writes and reads.
const ENVELOPE_VERSION: u8 = 1;

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

    /// A liveness probe: a client sends it to one instance's subject to learn
    /// whether that instance listens and answers, without running a
    /// handler. Any reply means yes.
    pub fn probe() -> Self {
        Message { headers: Headers::one(header::PROBE, "1"), payload: Bytes::new() }
    }

    /// `true` for a [`probe`](Self::probe).
    pub fn is_probe(&self) -> bool {
        self.headers.get(header::PROBE).is_some()
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
