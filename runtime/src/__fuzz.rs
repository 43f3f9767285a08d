//! The decoders that a stranger's bytes reach, with the invariants each must
//! keep, for the fuzz targets in `fuzz/` and the property tests. Not an
//! API: built only with the `fuzzing` feature (and for the crate's own
//! tests), and it may change in any release.
//!
//! Each family has a function per kind of input that runs the decoder as a
//! server or a caller runs it and panics when an invariant breaks: it never
//! panics itself, it reads within its input, a decoder's error is typed (a
//! value, never a panic), and whatever an encoder writes decodes back to
//! what was encoded.
//!
//! | family | what it reads |
//! | --- | --- |
//! | [`envelope`] | a request's envelope (its deadline) and its `Rotor-Wire` version |
//! | [`batch`] | a stream's item messages |
//! | [`stream_control`] | a stream request's headers, the caller's credit, the server's stream messages |
//! | [`headers`] | header maps, failure replies, the instance and trace headers |

pub mod batch;
pub mod envelope;
pub mod headers;
pub mod stream_control;

#[cfg(test)]
mod props;

use crate::engine::transport::message::{Headers, Message, header};

/// A message of `headers`, inserted in order, and `payload`.
pub fn message(headers: &[(String, String)], payload: &[u8]) -> Message {
    let mut map = Headers::new();
    for (name, value) in headers {
        map.insert(name.clone(), value.clone());
    }
    Message { headers: map, payload: bytes::Bytes::copy_from_slice(payload) }
}

/// Every header name Rotor reads, for inputs that aim at them.
pub const NAMES: &[&str] = &[
    header::WIRE,
    header::SERVICE_ERROR,
    header::SERVICE_ERROR_CODE,
    header::ERROR_KIND,
    header::TIMEOUT_MS,
    header::INSTANCE,
    header::STREAM_INBOX,
    header::STREAM_WINDOW,
    header::STREAM_HEARTBEAT_MS,
    header::STREAM_CONTROL,
    header::STREAM,
    header::STREAM_CREDIT,
    header::REQUEST_ID,
    header::TRACEPARENT,
    header::ERROR_BODY,
];
