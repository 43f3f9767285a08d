//! The per-request context a handler may take as an argument, and the
//! trace context that travels from a handler to the calls it makes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::InstanceId;
use crate::metrics::EndpointMetrics;
use crate::transport::{Respond, Transport};
use crate::wire::{Headers, header};

/// What a handler knows about the request it is serving: which endpoint and
/// instance, the caller's deadline, a cancellation signal, the request id and
/// trace context, and the headers.
///
/// Declare it as an argument (`ctx: Context` or `ctx: &Context`) of an
/// `#[endpoint]` method, before or after the request. Cloning is cheap.
///
/// Calls a handler makes through a Rotor client carry its request id and
/// trace id on, so one id follows a request across services.
#[derive(Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

struct Inner {
    instance: InstanceId,
    names: [Arc<str>; 3],
    deadline: Option<Instant>,
    cancel: CancellationToken,
    headers: Headers,
    trace: Trace,
    stream: Option<StreamSetup>,
    metrics: EndpointMetrics,
    /// The reply channel, taken by a streaming endpoint to accept the stream
    /// before its first item.
    responder: Mutex<Option<Box<dyn Respond>>>,
}

/// What the dispatcher knows of a request when it makes its context.
pub(crate) struct Parts {
    pub instance: InstanceId,
    pub names: [Arc<str>; 3],
    pub deadline: Option<Instant>,
    pub cancel: CancellationToken,
    pub headers: Headers,
    pub stream: Option<StreamSetup>,
    pub metrics: EndpointMetrics,
}

/// Where a streaming endpoint sends its items.
#[derive(Clone)]
pub(crate) struct StreamSetup {
    pub inbox: String,
    pub window: u32,
    pub window_bytes: u64,
    pub heartbeat: Duration,
    pub transport: Arc<dyn Transport>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("instance", &self.inner.instance)
            .field("endpoint", &self.inner.names)
            .field("deadline", &self.inner.deadline)
            .field("request_id", &self.inner.trace.request_id)
            .finish()
    }
}

/// A request id and a W3C trace context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Trace {
    pub request_id: String,
    pub trace_id: String,
    /// This hop's span id.
    pub span_id: String,
}

/// `bytes` random bytes (8 or 16) in hex.
fn random_hex(bytes: usize) -> String {
    if bytes > 8 { format!("{:032x}", fastrand::u128(..)) } else { format!("{:016x}", fastrand::u64(..)) }
}

impl Trace {
    /// A new trace, for a call made outside any handler.
    pub fn root() -> Trace {
        let trace_id = random_hex(16);
        Trace { request_id: trace_id[..16].to_string(), trace_id, span_id: random_hex(8) }
    }

    /// The trace of an incoming request: its ids, with a span of our own.
    pub fn from_headers(headers: &Headers) -> Trace {
        let parsed = headers.get(header::TRACEPARENT).and_then(|tp| {
            let mut parts = tp.split('-');
            let (_version, trace, _parent) = (parts.next()?, parts.next()?, parts.next()?);
            (trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit())).then(|| trace.to_string())
        });
        let trace_id = parsed.unwrap_or_else(|| random_hex(16));
        let request_id =
            headers.get(header::REQUEST_ID).map(str::to_string).unwrap_or_else(|| trace_id[..16].to_string());
        Trace { request_id, trace_id, span_id: random_hex(8) }
    }

    /// The trace of a call made on behalf of this one: same request and
    /// trace ids, a new span.
    pub fn child(&self) -> Trace {
        Trace { span_id: random_hex(8), ..self.clone() }
    }

    /// The `traceparent` header value: version 00, sampled.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }

    pub fn write(&self, headers: &mut Headers) {
        if self.request_id != self.trace_id[..16] {
            headers.insert(header::REQUEST_ID, self.request_id.clone());
        }
        headers.insert(header::TRACEPARENT, self.traceparent());
    }
}

tokio::task_local! {
    /// The trace of the request whose handler is running in this task.
    static CURRENT: Trace;
}

/// The trace for an outgoing call: a child of the running handler's, or a
/// new one.
pub(crate) fn outgoing_trace() -> Trace {
    CURRENT.try_with(Trace::child).unwrap_or_else(|_| Trace::root())
}

/// Runs `fut` with `trace` as the current trace.
pub(crate) async fn with_trace<F: std::future::Future>(trace: Trace, fut: F) -> F::Output {
    CURRENT.scope(trace, fut).await
}

impl Context {
    pub(crate) fn new(parts: Parts, responder: Box<dyn Respond>) -> Self {
        let Parts { instance, names, deadline, cancel, headers, stream, metrics } = parts;
        let trace = Trace::from_headers(&headers);
        Context {
            inner: Arc::new(Inner {
                instance,
                names,
                deadline,
                cancel,
                headers,
                trace,
                stream,
                metrics,
                responder: Mutex::new(Some(responder)),
            }),
        }
    }

    /// The instance serving this request.
    pub fn instance_id(&self) -> InstanceId {
        self.inner.instance
    }

    /// The component's namespace.
    pub fn namespace(&self) -> &str {
        &self.inner.names[0]
    }

    /// The component's name.
    pub fn component(&self) -> &str {
        &self.inner.names[1]
    }

    /// The endpoint's wire name.
    pub fn endpoint(&self) -> &str {
        &self.inner.names[2]
    }

    /// When the caller stops waiting, if it said.
    pub fn deadline(&self) -> Option<Instant> {
        self.inner.deadline
    }

    /// Time left before the deadline; `None` when there is no deadline.
    pub fn time_left(&self) -> Option<Duration> {
        self.inner.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// `true` once the request is cancelled: its deadline passed, its caller
    /// dropped the stream, or the instance stopped waiting for it.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Completes when the request is cancelled; use it in `tokio::select!`
    /// to stop long work early.
    pub async fn cancelled(&self) {
        self.inner.cancel.cancelled().await
    }

    /// The request id: set by the first caller, kept by every call made on
    /// the request's behalf.
    pub fn request_id(&self) -> &str {
        &self.inner.trace.request_id
    }

    /// The W3C trace id (32 hex digits).
    pub fn trace_id(&self) -> &str {
        &self.inner.trace.trace_id
    }

    /// The W3C `traceparent` of this hop (this server's span).
    pub fn traceparent(&self) -> String {
        self.inner.trace.traceparent()
    }

    /// The request headers.
    pub fn headers(&self) -> &Headers {
        &self.inner.headers
    }

    pub(crate) fn cancel_token(&self) -> &CancellationToken {
        &self.inner.cancel
    }

    pub(crate) fn trace(&self) -> &Trace {
        &self.inner.trace
    }

    pub(crate) fn stream_setup(&self) -> Option<&StreamSetup> {
        self.inner.stream.as_ref()
    }

    pub(crate) fn metrics(&self) -> &EndpointMetrics {
        &self.inner.metrics
    }

    /// The reply channel, once; `None` after a streaming endpoint took it.
    pub(crate) fn take_responder(&self) -> Option<Box<dyn Respond>> {
        self.inner.responder.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}
