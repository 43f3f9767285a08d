//! Headers: the map itself, and what the exchange reads from it on a
//! reply or a request it did not write: the failure headers, the instance
//! that answered, the trace context.

use std::collections::HashMap;

use crate::engine::transport::message::{Headers, Message, header};
use crate::exchange::codec::{self, CodecError};
use crate::exchange::outcome;
use crate::exchange::trace::Trace;
use crate::{CallError, ErrorKind, InstanceId, TransportError};

/// One step on a header map.
#[derive(Clone, Debug)]
pub enum Op {
    /// Sets a header.
    Insert(String, String),
    /// Reads one.
    Get(String),
}

/// A header map under arbitrary steps: a name is one header whatever its
/// case, it keeps the place of its first insertion and the value of its
/// last, and the size counted for limits is the headers' size on the wire.
pub fn map(ops: &[Op]) {
    let mut headers = Headers::new();
    // By name in lower case: where it was first set, as spelled then, and
    // its value.
    let mut model: HashMap<String, (usize, String, String)> = HashMap::new();
    for op in ops {
        match op {
            Op::Insert(name, value) => {
                headers.insert(name.clone(), value.clone());
                let next = model.len();
                let slot = model
                    .entry(name.to_ascii_lowercase())
                    .or_insert_with(|| (next, name.clone(), String::new()));
                slot.2 = value.clone();
            }
            Op::Get(name) => {
                let expected = model.get(&name.to_ascii_lowercase()).map(|(_, _, v)| v.as_str());
                assert_eq!(headers.get(name), expected, "{name:?}");
            }
        }
    }
    let mut expected: Vec<_> = model.into_values().collect();
    expected.sort();
    let listed: Vec<(&str, &str)> = headers.iter().collect();
    let wanted: Vec<(&str, &str)> = expected.iter().map(|(_, n, v)| (n.as_str(), v.as_str())).collect();
    assert_eq!(listed, wanted);
    assert_eq!(headers.is_empty(), listed.is_empty());
    let message = Message { headers: headers.clone(), payload: bytes::Bytes::new() };
    let lines: usize = listed.iter().map(|(n, v)| n.len() + ": ".len() + v.len() + "\r\n".len()).sum();
    let framing = if listed.is_empty() { 0 } else { "NATS/1.0\r\n".len() + "\r\n".len() };
    assert_eq!(message.size(), lines + framing);
    assert_eq!(headers.clone().into_iter().count(), listed.len());
    for (name, _) in &listed {
        if let Some(known) = header::known(name) {
            assert_eq!(known, *name, "only a name Rotor spells so is its own");
        }
    }
}

fn decode_string(bytes: &[u8]) -> Result<String, CodecError> {
    codec::decode(bytes)
}

/// A reply of arbitrary headers and payload, read as a caller reads it:
/// its error kind, the failure it means, the instance that sent it, and
/// (as a request) its trace context. None of them panics, and each says
/// what its header says.
pub fn reply(headers: &[(String, String)], payload: &[u8]) {
    let message = super::message(headers, payload);
    let h = &message.headers;
    let kind = message.error_kind();
    let expected = match h.get(header::ERROR_KIND).and_then(ErrorKind::parse) {
        Some(kind) => Some(kind),
        None => h.get(header::SERVICE_ERROR_CODE).map(|_| ErrorKind::Internal),
    };
    assert_eq!(kind, expected);
    let label = "fuzz/reply/call";
    let instance = Some(InstanceId(7));
    let read = outcome::decode_reply(&message, label, instance, decode_string, decode_string);
    match (kind, read) {
        (None, Ok(value)) => assert_eq!(decode_string(payload).ok(), Some(value)),
        (None, Err(CallError::Transport(TransportError::Decode { .. }))) => {
            assert!(decode_string(payload).is_err())
        }
        (Some(ErrorKind::Application), Err(CallError::App { error, instance: InstanceId(7) })) => {
            assert_eq!(decode_string(h.get(header::ERROR_BODY).unwrap_or("").as_bytes()).ok(), Some(error))
        }
        (Some(ErrorKind::Application), Err(CallError::Transport(TransportError::Decode { .. }))) => {}
        (Some(kind), Err(CallError::Transport(e))) => {
            assert_ne!(kind, ErrorKind::Application);
            let message = h.get(header::SERVICE_ERROR).unwrap_or("");
            assert!(e.to_string().contains(message), "{e} says {message:?}");
            if let TransportError::Remote { code, .. } = e {
                let header = h.get(header::SERVICE_ERROR_CODE).and_then(|c| c.parse().ok());
                assert_eq!(code, header.unwrap_or(kind.code()));
            }
        }
        (kind, read) => panic!("a reply of kind {kind:?} read as {read:?}"),
    }
    let answered = outcome::answered_by(h);
    let hex = h.get(header::INSTANCE).and_then(|v| u64::from_str_radix(v, 16).ok());
    assert_eq!(answered, hex.map(|bits| InstanceId(bits as i64)), "{:?}", h.get(header::INSTANCE));
    trace(h);
}

/// The trace of a request of `headers`: 32 hex digits of trace id (the
/// caller's when its `traceparent` has one), a request id, and a
/// `traceparent` of its own that reads back as the same trace.
pub fn trace(headers: &Headers) {
    let trace = Trace::from_headers(headers);
    let id = trace.trace_id();
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id:?}");
    let given = headers.get(header::TRACEPARENT).and_then(|tp| tp.split('-').nth(1));
    if let Some(given) = given.filter(|g| g.len() == 32 && g.bytes().all(|b| b.is_ascii_hexdigit())) {
        let parts = headers.get(header::TRACEPARENT).map_or(0, |tp| tp.split('-').count());
        if parts >= 3 {
            assert_eq!(id, given, "the caller's trace is kept");
        }
    }
    match headers.get(header::REQUEST_ID) {
        Some(asked) => assert_eq!(trace.request_id(), asked),
        None => assert_eq!(trace.request_id(), &id[..16]),
    }
    let parent = trace.traceparent();
    assert_eq!(parent.len(), 55, "{parent}");
    let mut written = Headers::new();
    trace.write(&mut written);
    let read = Trace::from_headers(&written);
    assert_eq!((read.trace_id(), read.request_id()), (trace.trace_id(), trace.request_id()));
    assert_eq!(trace.child().trace_id(), id);
}

/// Every error kind, by index.
pub fn kind(index: u8) -> ErrorKind {
    const KINDS: [ErrorKind; 8] = [
        ErrorKind::Application,
        ErrorKind::Decode,
        ErrorKind::UnknownEndpoint,
        ErrorKind::Oversize,
        ErrorKind::Internal,
        ErrorKind::Panic,
        ErrorKind::Unavailable,
        ErrorKind::Deadline,
    ];
    KINDS[usize::from(index) % KINDS.len()]
}

/// A failure reply of any kind and text reads back as its kind, with the
/// first line of its text (control characters as spaces, at most 1024 of
/// them) in headers that NATS can frame; an application error also with
/// its body.
pub fn failure_round_trip(kind: ErrorKind, text: &str, error: &str) {
    assert_eq!(ErrorKind::parse(kind.as_str()), Some(kind));
    let line: String = text
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(1024)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let body = codec::encode(error).expect("a string encodes");
    let reply = match kind {
        ErrorKind::Application => Message::app_error(text, &body),
        kind => Message::error(kind, text),
    };
    for (name, value) in reply.headers.iter() {
        assert!(!value.contains(['\r', '\n']), "{name}: {value:?} breaks the framing");
    }
    assert_eq!(reply.error_kind(), Some(kind));
    assert_eq!(reply.headers.get(header::SERVICE_ERROR), Some(line.as_str()));
    assert_eq!(reply.headers.get(header::SERVICE_ERROR_CODE), Some(kind.code().to_string().as_str()));
    let read = outcome::decode_reply::<String, String>(&reply, "a/b/c", None, decode_string, decode_string);
    match (kind, read) {
        (ErrorKind::Application, Err(CallError::App { error: read, .. })) => assert_eq!(read, error),
        (_, Err(CallError::Transport(e))) => assert!(e.to_string().contains(&line), "{e} lost {line:?}"),
        (kind, read) => panic!("a failure of kind {kind:?} read as {read:?}"),
    }
}

/// The instance a reply names is the instance that sent it, whatever its
/// id.
pub fn instance_round_trip(id: i64) {
    let headers = Headers::one(header::INSTANCE, InstanceId(id).to_string());
    assert_eq!(outcome::answered_by(&headers), Some(InstanceId(id)));
}
