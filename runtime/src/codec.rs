//! Payload encoding: JSON through serde_json. The wire version header (see
//! [`wire`](crate::wire)) leaves room for another format later.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Encodes a value.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, serde_json::Error> {
    // Small values are written into a per-thread buffer and copied out at
    // their exact size: one allocation, where a fresh vector would take
    // two (`Bytes` takes a vector with spare capacity only by allocating a
    // header beside it). Large ones keep their vector, trimmed in place.
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    const SMALL: usize = 4096;
    SCRATCH.with(|scratch| {
        // A `Serialize` impl that encodes with Rotor inside finds it taken.
        let Ok(mut buf) = scratch.try_borrow_mut() else {
            return serde_json::to_vec(value).map(|v| Bytes::from(v.into_boxed_slice()));
        };
        buf.clear();
        serde_json::to_writer(&mut *buf, value)?;
        if buf.len() <= SMALL {
            Ok(Bytes::copy_from_slice(&buf))
        } else {
            Ok(Bytes::from(std::mem::take(&mut *buf).into_boxed_slice()))
        }
    })
}

/// Decodes a value. An empty payload decodes as JSON `null`, so `()` needs no bytes.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, serde_json::Error> {
    if payload.is_empty() { serde_json::from_slice(b"null") } else { serde_json::from_slice(payload) }
}
