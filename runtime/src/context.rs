//! The per-request context a handler may take as an argument.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::InstanceId;
use crate::engine::metrics::EndpointMetrics;
use crate::engine::transport::message::Headers;
use crate::exchange::trace::Trace;

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
    /// `true` for a streaming endpoint.
    pub streaming: bool,
    /// The largest request payload it takes, in bytes.
    pub max_request: usize,
}

/// What the dispatcher knows of a request when it makes its context.
pub(crate) struct Parts {
    pub instance: InstanceId,
    pub endpoint: Arc<ServedEndpoint>,
    pub deadline: Option<Instant>,
    pub headers: Headers,
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

impl Context {
    pub(crate) fn new(parts: Parts) -> Self {
        let Parts { instance, endpoint, deadline, headers } = parts;
        let trace = Trace::from_headers(&headers);
        Context {
            inner: Arc::new(Inner { instance, endpoint, deadline, cancel: OnceLock::new(), headers, trace }),
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

    pub(crate) fn metrics(&self) -> &EndpointMetrics {
        &self.inner.endpoint.metrics
    }

    /// `namespace/component/endpoint`, for logs.
    pub(crate) fn label(&self) -> String {
        format!("{}/{}/{}", self.namespace(), self.component(), self.endpoint())
    }
}
