//! The request envelope and the wire version: what a server reads first of
//! every request, before any handler runs.

use std::time::{Duration, Instant};

use crate::engine::transport::message::{Message, header};
use crate::exchange::wire::{ENVELOPE, WIRE_VERSION};

/// The envelope's length: marker, version, milliseconds.
const LEN: usize = 6;

/// Arbitrary bytes as a request's payload, and as the values of its timeout
/// and version headers.
pub fn bytes(data: &[u8]) {
    request(&[], data);
    let text = String::from_utf8_lossy(data).into_owned();
    request(&[(header::TIMEOUT_MS.into(), text.clone()), (header::WIRE.into(), text)], b"{}");
}

/// A request of `headers` and `payload`, read as the dispatcher reads it:
/// its version, then its envelope.
pub fn request(headers: &[(String, String)], payload: &[u8]) {
    let mut message = super::message(headers, payload);
    let wire = message.headers.get(header::WIRE).map(str::to_string);
    match message.check_version() {
        Ok(()) => assert!(wire.is_none() || wire.as_deref() == Some(WIRE_VERSION), "{wire:?} accepted"),
        Err(version) => assert_eq!(Some(version), wire, "a refusal names the version it refuses"),
    }
    let timeout_header = message.headers.get(header::TIMEOUT_MS).map(str::to_string);
    let opened = message.open_envelope();
    if let Ok(Some(timeout)) = opened {
        // What the dispatcher does with it: its deadline.
        assert!(Instant::now().checked_add(timeout).is_some(), "{timeout:?} has no deadline");
    }
    match payload {
        [ENVELOPE, 1, m0, m1, m2, m3, rest @ ..] => {
            let millis = u32::from_be_bytes([*m0, *m1, *m2, *m3]);
            assert_eq!(opened, Ok(Some(Duration::from_millis(millis.into()))));
            assert_eq!(&message.payload[..], rest, "the envelope comes off, the value stays");
        }
        [ENVELOPE, ..] => {
            let Err(version) = opened else { panic!("{payload:?} opened as {opened:?}") };
            assert!(!version.is_empty());
            assert_eq!(&message.payload[..], payload, "a refused envelope is left as it came");
        }
        _ => {
            let expected = timeout_header.and_then(|t| t.parse::<u64>().ok()).map(Duration::from_millis);
            assert_eq!(opened, Ok(expected), "without an envelope the header says the time");
            assert_eq!(&message.payload[..], payload, "a payload without envelope is left whole");
        }
    }
}

/// A request written with `timeout` comes back with its time, clamped to
/// what the envelope holds, and its payload whole.
pub fn round_trip(payload: &[u8], timeout: Duration) {
    let millis = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX).max(1);
    let expected = Duration::from_millis(millis.into());
    for mut message in [
        Message::enveloped(payload, timeout),
        Message::request(bytes::Bytes::copy_from_slice(payload), Some(timeout)),
    ] {
        assert!(message.headers.is_empty(), "the deadline needs no header");
        assert_eq!(message.payload.len(), LEN + payload.len());
        assert_eq!(message.check_version(), Ok(()));
        assert_eq!(message.open_envelope(), Ok(Some(expected)));
        assert_eq!(&message.payload[..], payload);
    }
    // Without a deadline the payload is the value alone, which never starts
    // with the envelope's byte (JSON text cannot).
    if payload.first() != Some(&ENVELOPE) {
        let mut plain = Message::request(bytes::Bytes::copy_from_slice(payload), None);
        assert_eq!(plain.open_envelope(), Ok(None));
        assert_eq!(&plain.payload[..], payload);
    }
}
