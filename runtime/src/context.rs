//! The per-request context a handler may take as an argument, and the
//! trace context that travels from a handler to the calls it makes.

use std::sync::{Arc, Mutex, OnceLock};
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
    endpoint: Arc<ServedEndpoint>,
    deadline: Option<Instant>,
    /// Made on first use: most requests finish without anyone asking.
    cancel: OnceLock<CancellationToken>,
    headers: Headers,
    trace: Trace,
    stream: Option<StreamSetup>,
    /// The reply channel, taken by a streaming endpoint to accept the stream
    /// before its first item.
    responder: Mutex<Option<Box<dyn Respond>>>,
}

/// What every request to one served endpoint shares: one reference per
/// request rather than a copy of each name and metric handle, each of which
/// would be an atomic count shared by every core.
pub(crate) struct ServedEndpoint {
    /// Namespace, component, endpoint.
    pub names: [Arc<str>; 3],
    pub metrics: EndpointMetrics,
    /// Cancelled when the instance gives up on its accepted requests.
    pub shutdown: CancellationToken,
}

/// What the dispatcher knows of a request when it makes its context.
pub(crate) struct Parts {
    pub instance: InstanceId,
    pub endpoint: Arc<ServedEndpoint>,
    pub deadline: Option<Instant>,
    pub headers: Headers,
    pub stream: Option<StreamSetup>,
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
            .field("endpoint", &self.inner.endpoint.names)
            .field("deadline", &self.inner.deadline)
            .field("request_id", &self.inner.trace.request_id())
            .finish()
    }
}

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

impl Context {
    pub(crate) fn new(parts: Parts, responder: Box<dyn Respond>) -> Self {
        let Parts { instance, endpoint, deadline, headers, stream } = parts;
        let trace = Trace::from_headers(&headers);
        Context {
            inner: Arc::new(Inner {
                instance,
                endpoint,
                deadline,
                cancel: OnceLock::new(),
                headers,
                trace,
                stream,
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
        &self.inner.endpoint.names[0]
    }

    /// The component's name.
    pub fn component(&self) -> &str {
        &self.inner.endpoint.names[1]
    }

    /// The endpoint's wire name.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint.names[2]
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
        self.inner.cancel.get().is_some_and(CancellationToken::is_cancelled)
            || self.inner.endpoint.shutdown.is_cancelled()
    }

    /// Completes when the request is cancelled; use it in `tokio::select!`
    /// to stop long work early.
    pub async fn cancelled(&self) {
        self.cancel_token().cancelled().await
    }

    /// The request id: set by the first caller, kept by every call made on
    /// the request's behalf.
    pub fn request_id(&self) -> &str {
        self.inner.trace.request_id()
    }

    /// The W3C trace id (32 hex digits).
    pub fn trace_id(&self) -> &str {
        self.inner.trace.trace_id()
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
        self.inner.cancel.get_or_init(|| self.inner.endpoint.shutdown.child_token())
    }

    /// Completes when the instance gives up on its accepted requests.
    pub(crate) async fn shutdown(&self) {
        self.inner.endpoint.shutdown.cancelled().await
    }

    pub(crate) fn trace(&self) -> &Trace {
        &self.inner.trace
    }

    pub(crate) fn stream_setup(&self) -> Option<&StreamSetup> {
        self.inner.stream.as_ref()
    }

    pub(crate) fn metrics(&self) -> &EndpointMetrics {
        &self.inner.endpoint.metrics
    }

    /// The reply channel, once; `None` after a streaming endpoint took it.
    pub(crate) fn take_responder(&self) -> Option<Box<dyn Respond>> {
        self.inner.responder.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}
