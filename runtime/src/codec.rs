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

/// Decodes a value. An empty payload decodes as JSON `null`, so `()` needs no bytes.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, serde_json::Error> {
    if payload.is_empty() { serde_json::from_slice(b"null") } else { serde_json::from_slice(payload) }
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
}
