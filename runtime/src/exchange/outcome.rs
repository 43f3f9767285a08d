//! Every outcome of a call, encoded by the server and decoded by the caller
//! in one place: a success, the application's typed error, or a failure of
//! a [`ErrorKind`]. Unary replies and stream ends go through the same
//! mapping, so a caller sees the same [`CallError`] for the same failure
//! whichever way it arrived.

use bytes::Bytes;

use crate::engine::transport::message::{Headers, Message, header};
use crate::exchange::codec::{CodecError, Decode, Encode};
use crate::{CallError, ErrorKind, InstanceId, TransportError};

impl Message {
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
}

/// Header values are single lines without control characters (a `\r` in a
/// header would break the NATS framing, and error texts can echo user
/// input): the first line, control characters as spaces, at most 1024
/// characters.
fn one_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    line.chars().take(1024).map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// The reply for a handler's `Err(error)`: the error displayed for people
/// and encoded for the caller's typed client.
pub(crate) fn app_error<E>(error: &E, describe: fn(&E) -> String, encode: Encode<E>) -> Message {
    let text = describe(error);
    match encode(error) {
        Ok(body) => Message::app_error(&text, &body),
        Err(e) => internal(&format!("could not encode the error `{text}`: {e}")),
    }
}

/// The reply for a failure of the server itself.
pub(crate) fn internal(text: &str) -> Message {
    Message::error(ErrorKind::Internal, text)
}

/// The reply to a request that does not decode as the endpoint's request
/// type `what`.
pub(crate) fn undecodable(endpoint: &str, what: &str, e: CodecError) -> Message {
    let text = format!("the request to {endpoint} does not decode as {what}: {e}");
    Message::error(ErrorKind::Decode, &text)
}

/// A reply as the caller's value, or the failure it carries.
pub(crate) fn decode_reply<T, E>(
    reply: &Message,
    label: &str,
    instance: Option<InstanceId>,
    decode_ok: Decode<T>,
    decode_err: Decode<E>,
) -> Result<T, CallError<E>> {
    match reply.error_kind() {
        None => decode_ok(&reply.payload).map_err(|e| {
            TransportError::Decode { what: format!("response of {label}"), detail: e.to_string(), instance }
                .into()
        }),
        Some(kind) => Err(failure(reply, kind, label, instance, decode_err)),
    }
}

/// What a failure reply of `kind` means to the caller: the application's
/// typed error, or a transport error with the server's message. The one
/// mapping from replies to [`CallError`], for unary replies and stream ends.
pub(crate) fn failure<E>(
    reply: &Message,
    kind: ErrorKind,
    label: &str,
    instance: Option<InstanceId>,
    decode_err: Decode<E>,
) -> CallError<E> {
    let message = reply.headers.get(header::SERVICE_ERROR).unwrap_or("").to_string();
    let error = match kind {
        ErrorKind::Application => {
            let body = reply.headers.get(header::ERROR_BODY).unwrap_or("");
            return match decode_err(body.as_bytes()) {
                // An error reply always names its instance; a caller of a
                // server that does not cannot say who answered.
                Ok(error) => CallError::App { error, instance: instance.unwrap_or(InstanceId(0)) },
                Err(e) => TransportError::Decode {
                    what: format!("application error of {label}"),
                    detail: e.to_string(),
                    instance,
                }
                .into(),
            };
        }
        ErrorKind::Decode => {
            TransportError::BadRequest { endpoint: label.to_string(), detail: message, instance }
        }
        ErrorKind::Panic => TransportError::Panicked { message, instance },
        ErrorKind::Deadline => TransportError::DeadlineExceeded { message, instance },
        other => {
            let code = reply.headers.get(header::SERVICE_ERROR_CODE).and_then(|c| c.parse().ok());
            TransportError::Remote { kind: other, code: code.unwrap_or(other.code()), message, instance }
        }
    };
    error.into()
}

/// Headers of a reply, read for the instance that sent it: its id in hex,
/// as [`InstanceId`] prints it (a negative id as the bits of its two's
/// complement, as the id's own JSON form reads it back).
pub(crate) fn answered_by(headers: &Headers) -> Option<InstanceId> {
    headers.get(header::INSTANCE).and_then(InstanceId::from_hex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::codec;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Oops(u8);

    fn decode_oops(b: &[u8]) -> Result<Oops, CodecError> {
        codec::decode(b)
    }

    #[test]
    fn an_application_error_comes_back_typed_with_its_instance() {
        let reply = app_error(&Oops(7), |o| format!("oops {}", o.0), codec::encode);
        let err = decode_reply::<(), Oops>(&reply, "a/b/c", Some(InstanceId(5)), codec::decode, decode_oops)
            .unwrap_err();
        assert!(matches!(err, CallError::App { error: Oops(7), instance: InstanceId(5) }), "{err:?}");
    }

    #[test]
    fn each_kind_maps_to_one_call_error_and_the_code_header_is_kept() {
        let decode = Message::error(ErrorKind::Decode, "bad");
        let err = decode_reply::<(), Oops>(&decode, "a/b/c", None, codec::decode, decode_oops).unwrap_err();
        assert!(
            matches!(err.transport(), Some(TransportError::BadRequest { endpoint, .. }) if endpoint == "a/b/c")
        );
        let panic = Message::error(ErrorKind::Panic, "boom");
        let err = decode_reply::<(), Oops>(&panic, "a/b/c", None, codec::decode, decode_oops).unwrap_err();
        assert!(
            matches!(err.transport(), Some(TransportError::Panicked { message, .. }) if message == "boom")
        );
        let late = Message::error(ErrorKind::Deadline, "late");
        let err = decode_reply::<(), Oops>(&late, "a/b/c", None, codec::decode, decode_oops).unwrap_err();
        assert!(matches!(err.transport(), Some(TransportError::DeadlineExceeded { .. })));
        let mut odd = Message::error(ErrorKind::Internal, "odd");
        odd.headers.insert(header::SERVICE_ERROR_CODE, "599");
        let err = decode_reply::<(), Oops>(&odd, "a/b/c", None, codec::decode, decode_oops).unwrap_err();
        assert!(matches!(err.transport(), Some(TransportError::Remote { code: 599, .. })), "{err:?}");
    }

    #[test]
    fn a_reply_names_the_instance_that_sent_it_even_one_of_a_negative_id() {
        for id in [0, 1, 0x2040_a233_cd2b_2006, i64::MAX, -1, i64::MIN] {
            let headers = Headers::one(header::INSTANCE, InstanceId(id).to_string());
            assert_eq!(answered_by(&headers), Some(InstanceId(id)), "{}", InstanceId(id));
        }
        for bad in ["", "-1", "x", "1 2", "10000000000000000"] {
            assert_eq!(answered_by(&Headers::one(header::INSTANCE, bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn a_response_that_does_not_decode_names_the_endpoint() {
        let reply = Message::ok(Bytes::from_static(b"\"text\""));
        let err = decode_reply::<u32, Oops>(&reply, "a/b/c", None, codec::decode, decode_oops).unwrap_err();
        assert!(
            matches!(err.transport(), Some(TransportError::Decode { what, .. }) if what == "response of a/b/c")
        );
    }
}
