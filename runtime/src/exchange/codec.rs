//! Payload encoding. A [`Codec`] turns request, response, item and error
//! values into bytes and back. JSON ([`Json`]) is the default, so that
//! standard tools can read every payload; MessagePack ([`MessagePack`]) is
//! a component's choice (`#[component(codec = "msgpack")]`), for payloads
//! where JSON's encoding costs more than the trip. Generated code reaches a
//! codec only through the function types below, so the choice changes no
//! signature.

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

/// MessagePack through rmp-serde, structs as maps (`to_vec_named`): a field
/// added with `#[serde(default)]` is read by either side, as with JSON.
#[derive(Clone, Copy, Debug, Default)]
pub struct MessagePack;

impl Codec for MessagePack {
    const NAME: &'static str = "msgpack";

    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, CodecError> {
        rmp_serde::to_vec_named(value).map(Bytes::from).map_err(CodecError::new)
    }

    /// An empty payload decodes as MessagePack `nil`, so `()` needs no bytes.
    fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
        const NIL: &[u8] = &[0xc0];
        let payload = if payload.is_empty() { NIL } else { payload };
        // Decoding stops after the first value; bytes after it mean the
        // payload was something else (JSON's `{}` starts with a MessagePack
        // integer). Nesting is bounded as serde_json bounds it (128), not
        // at rmp-serde's 1,024.
        let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(payload));
        de.set_max_depth(128);
        let decoded = serde::Deserialize::deserialize(&mut de).map_err(|e| e.to_string());
        let rest = payload.len() as u64 - de.position();
        let failure = match decoded {
            Ok(value) if rest == 0 => return Ok(value),
            Ok(_) => format!("{rest} bytes after the value"),
            Err(e) => e,
        };
        let hint = match payload.first() {
            Some(b'{' | b'[' | b'"') => {
                "; the payload looks like JSON: the two sides use different codecs (`codec` of #[component])"
            }
            _ => "",
        };
        Err(CodecError::new(format!("not MessagePack: {failure}{hint}")))
    }
}

/// Which codec a component's payloads use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// [`Json`], the default.
    #[default]
    Json,
    /// [`MessagePack`].
    MessagePack,
}

impl Format {
    /// The codec of application errors, whatever the payload codec: they
    /// travel in the `Rotor-Error-Body` header, which holds text, and
    /// stay readable to any tool.
    pub const ERRORS: Format = Format::Json;

    /// Its name, as published in descriptions and records: `json`, `msgpack`.
    pub const fn name(self) -> &'static str {
        match self {
            Format::Json => Json::NAME,
            Format::MessagePack => MessagePack::NAME,
        }
    }

    /// The format of `name`, as [`name`](Self::name) spells it.
    pub fn from_name(name: &str) -> Option<Format> {
        match name {
            "json" => Some(Format::Json),
            "msgpack" => Some(Format::MessagePack),
            _ => None,
        }
    }

    /// Encodes `value`.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Bytes, CodecError> {
        match self {
            Format::Json => Json::encode(value),
            Format::MessagePack => MessagePack::encode(value),
        }
    }

    /// Its encoder for values of `T`.
    pub fn encoder<T: Serialize>(self) -> Encode<T> {
        match self {
            Format::Json => |v| Json::encode(v),
            Format::MessagePack => |v| MessagePack::encode(v),
        }
    }

    /// Its decoder for values of `T`.
    pub fn decoder<T: DeserializeOwned>(self) -> Decode<T> {
        match self {
            Format::Json => Json::decode::<T>,
            Format::MessagePack => MessagePack::decode::<T>,
        }
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
    fn message_pack_round_trips_structs_as_maps_and_reads_an_added_field() {
        #[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Old {
            text: String,
        }
        #[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
        struct New {
            text: String,
            #[serde(default)]
            loud: bool,
        }
        let old = Old { text: "hi".into() };
        let bytes = MessagePack::encode(&old).unwrap();
        assert_eq!(bytes[0], 0x81, "a map of one field");
        assert_eq!(MessagePack::decode::<Old>(&bytes).unwrap(), old);
        assert_eq!(MessagePack::decode::<New>(&bytes).unwrap(), New { text: "hi".into(), loud: false });
        let new = MessagePack::encode(&New { text: "hi".into(), loud: true }).unwrap();
        assert_eq!(MessagePack::decode::<Old>(&new).unwrap(), old, "the old side skips the new field");
        MessagePack::decode::<()>(b"").unwrap();
        assert!(MessagePack::decode::<u32>(b"{}").is_err());
        let err = MessagePack::decode::<Vec<u32>>(br#"[1, 2]"#).unwrap_err().to_string();
        assert!(err.contains("looks like JSON"), "{err}");
        // 200 nested one-element arrays: past the bound of 128.
        let mut deep = vec![0x91; 200];
        deep.push(0xc0);
        assert!(MessagePack::decode::<serde_json::Value>(&deep).is_err(), "nesting is bounded");
        assert!(MessagePack::decode::<serde_json::Value>(&deep[100..]).is_ok());
        assert_eq!(Format::from_name(Format::MessagePack.name()), Some(Format::MessagePack));
    }

    #[test]
    fn an_empty_payload_is_unit_and_bad_bytes_say_why() {
        decode::<()>(b"").unwrap();
        let e = decode::<u32>(b"\"x\"").unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
    }
}
