//! Payload encoding: JSON through serde_json. The wire version header (see
//! [`wire`](crate::wire)) leaves room for another format later.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Encodes a value.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, serde_json::Error> {
    // `Bytes` takes a vector with spare capacity only by allocating a
    // shared header beside it; trimming it first (a shrink in place) does not.
    serde_json::to_vec(value).map(|v| Bytes::from(v.into_boxed_slice()))
}

/// Decodes a value. An empty payload decodes as JSON `null`, so `()` needs no bytes.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, serde_json::Error> {
    if payload.is_empty() { serde_json::from_slice(b"null") } else { serde_json::from_slice(payload) }
}
