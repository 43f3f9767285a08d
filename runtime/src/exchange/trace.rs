//! The trace context that travels with a request: a request id and a W3C
//! `traceparent`, and the trace of the handler running in this task, which
//! the calls it makes carry on.

use crate::engine::transport::message::{Headers, header};

/// A request id and a W3C trace context. Kept compact and free of heap
/// allocations (unless a caller names its own request id): a trace is made
/// for every call and every request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Trace {
    /// 32 hex digits (ASCII).
    trace_id: [u8; 32],
    /// Only when it is not the first 16 hex digits of the trace id, as
    /// Rotor's own request ids are.
    request_id: Option<String>,
    /// This hop's span id.
    span_id: u64,
}

/// `value` as 32 lowercase hex digits.
fn hex_id(value: u128) -> [u8; 32] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    std::array::from_fn(|i| DIGITS[(value >> (124 - 4 * i) & 0xf) as usize])
}

impl Trace {
    /// A new trace, for a call made outside any handler.
    pub fn root() -> Trace {
        Trace { trace_id: hex_id(fastrand::u128(..)), request_id: None, span_id: fastrand::u64(..) }
    }

    /// The trace of an incoming request: its ids, with a span of our own.
    pub fn from_headers(headers: &Headers) -> Trace {
        let parsed = headers.get(header::TRACEPARENT).and_then(|tp| {
            let mut parts = tp.split('-');
            let (_version, trace, _parent) = (parts.next()?, parts.next()?, parts.next()?);
            let trace: [u8; 32] = trace.as_bytes().try_into().ok()?;
            trace.iter().all(u8::is_ascii_hexdigit).then_some(trace)
        });
        let mut trace = match parsed {
            Some(trace_id) => Trace { trace_id, request_id: None, span_id: fastrand::u64(..) },
            None => Trace::root(),
        };
        trace.request_id =
            headers.get(header::REQUEST_ID).filter(|id| *id != &trace.trace_id()[..16]).map(str::to_string);
        trace
    }

    /// The trace of a call made on behalf of this one: same request and
    /// trace ids, a new span.
    pub fn child(&self) -> Trace {
        Trace { span_id: fastrand::u64(..), ..self.clone() }
    }

    pub fn request_id(&self) -> &str {
        self.request_id.as_deref().unwrap_or(&self.trace_id()[..16])
    }

    pub fn trace_id(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(&self.trace_id).expect("hex digits")
    }

    /// The `traceparent` header value: version 00, sampled.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{:016x}-01", self.trace_id(), self.span_id)
    }

    /// Writes the ids into outgoing headers.
    pub fn write(&self, headers: &mut Headers) {
        if let Some(id) = &self.request_id {
            headers.insert(header::REQUEST_ID, id.clone());
        }
        headers.insert(header::TRACEPARENT, self.traceparent());
    }
}

tokio::task_local! {
    /// The trace of the request whose handler is running in this task.
    static CURRENT: Trace;
}

/// The trace for an outgoing call: a child of the running handler's, or,
/// outside any handler, `None`.
pub(crate) fn inherited_trace() -> Option<Trace> {
    CURRENT.try_with(Trace::child).ok()
}

/// Runs `fut` with `trace` as the current trace.
pub(crate) async fn with_trace<F: std::future::Future>(trace: Trace, fut: F) -> F::Output {
    CURRENT.scope(trace, fut).await
}
