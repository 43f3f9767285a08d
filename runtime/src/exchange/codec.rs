//! Payload encoding. A [`Codec`] turns request, response, item and error
//! values into bytes and back; JSON ([`Json`]) is the default and, for now,
//! the only one, so that standard tools can read every payload. Generated
//! code reaches a codec only through the function types below, so another
//! codec changes no signature.

use std::fmt;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How values of type `T` become bytes.
pub type Encode<T> = fn(&T) -> Result<Bytes, CodecError>;
/// How bytes become a value of type `T`.
pub type Decode<T> = fn(&[u8]) -> Result<T, CodecError>;

/// A value that did not encode or bytes that did not decode, with the
/// codec's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodecError {
    message: String,
}

impl CodecError {
    /// An error with the codec's message.
    pub fn new(message: impl fmt::Display) -> Self {
        CodecError { message: message.to_string() }
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CodecError {}

/// A payload format.
pub trait Codec: Send + Sync + 'static {
    /// Its name, as published in service metadata (`json`).
    const NAME: &'static str;

    /// Encodes a value.
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, CodecError>;

    /// Decodes a value.
    fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError>;
}

/// JSON through serde_json: the default codec.
#[derive(Clone, Copy, Debug, Default)]
pub struct Json;

impl Codec for Json {
    const NAME: &'static str = "json";

    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, CodecError> {
        json_encode(value).map_err(CodecError::new)
    }

    /// An empty payload decodes as JSON `null`, so `()` needs no bytes.
    fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
        let payload = if payload.is_empty() { b"null".as_slice() } else { payload };
        serde_json::from_slice(payload).map_err(CodecError::new)
    }
}

/// Encodes a value with the default codec.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, CodecError> {
    Json::encode(value)
}

/// Decodes a value with the default codec. An empty payload decodes as JSON
/// `null`, so `()` needs no bytes.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    Json::decode(payload)
}

fn json_encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, serde_json::Error> {
    // Small values are written into a per-thread buffer and copied out at
    // their exact size: one allocation, where a fresh vector would take
    // two (`Bytes` takes a vector with spare capacity only by allocating a
    // header beside it). Large ones keep their vector, trimmed in place.
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    const SMALL: usize = 4096;
    let fresh = || serde_json::to_vec(value).map(|v| Bytes::from(v.into_boxed_slice()));
    let scratch = SCRATCH.try_with(|scratch| {
        // A `Serialize` impl that encodes with Rotor inside finds it taken.
        let Ok(mut buf) = scratch.try_borrow_mut() else {
            return fresh();
        };
        buf.clear();
        let written = serde_json::to_writer(&mut *buf, value);
        if buf.len() > SMALL {
            // Large, or failed part-way: the thread keeps no large buffer.
            let large = std::mem::take(&mut *buf);
            return written.map(|()| Bytes::from(large.into_boxed_slice()));
        }
        written.map(|()| Bytes::copy_from_slice(&buf))
    });
    // While the thread's locals are torn down, there is no scratch.
    scratch.unwrap_or_else(|_| fresh())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_values_encode_alike_and_in_turn() {
        let large = "y".repeat(10_000);
        for text in ["hi".to_string(), large.clone(), "after".to_string(), large] {
            let bytes = encode(&text).unwrap();
            assert_eq!(bytes, serde_json::to_vec(&text).unwrap(), "{} bytes", text.len());
            assert_eq!(decode::<String>(&bytes).unwrap(), text);
        }
    }

    #[test]
    fn a_value_that_encodes_with_rotor_inside_its_serialize_still_encodes() {
        struct Nested;
        impl Serialize for Nested {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let inner = encode(&[1, 2, 3]).map_err(serde::ser::Error::custom)?;
                s.serialize_str(std::str::from_utf8(&inner).unwrap())
            }
        }
        assert_eq!(&encode(&Nested).unwrap()[..], br#""[1,2,3]""#);
    }

    #[test]
    fn an_empty_payload_is_unit_and_bad_bytes_say_why() {
        decode::<()>(b"").unwrap();
        let e = decode::<u32>(b"\"x\"").unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
    }
}
