//! The per-request context a handler may take as an argument.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::InstanceId;
use crate::wire::Headers;

/// What a handler knows about the request it is serving: which endpoint and
/// instance, the caller's deadline, a cancellation signal, and the headers.
///
/// Declare it as an argument (`ctx: Context` or `ctx: &Context`) of an
/// `#[endpoint]` method, before or after the request. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct Context {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    instance: InstanceId,
    namespace: Arc<str>,
    component: Arc<str>,
    endpoint: Arc<str>,
    deadline: Option<Instant>,
    cancel: CancellationToken,
    headers: Headers,
}

impl Context {
    pub(crate) fn new(
        instance: InstanceId,
        names: [Arc<str>; 3],
        deadline: Option<Instant>,
        cancel: CancellationToken,
        headers: Headers,
    ) -> Self {
        let [namespace, component, endpoint] = names;
        Context {
            inner: Arc::new(Inner { instance, namespace, component, endpoint, deadline, cancel, headers }),
        }
    }

    /// The instance serving this request.
    pub fn instance_id(&self) -> InstanceId {
        self.inner.instance
    }

    /// The component's namespace.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The component's name.
    pub fn component(&self) -> &str {
        &self.inner.component
    }

    /// The endpoint's wire name.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// When the caller stops waiting, if it said.
    pub fn deadline(&self) -> Option<Instant> {
        self.inner.deadline
    }

    /// Time left before the deadline; `None` when there is no deadline.
    pub fn time_left(&self) -> Option<Duration> {
        self.inner.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// `true` once the request is cancelled (deadline passed, or the instance
    /// stopped waiting for it).
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Completes when the request is cancelled; use it in `tokio::select!`
    /// to stop long work early.
    pub async fn cancelled(&self) {
        self.inner.cancel.cancelled().await
    }

    /// The request headers.
    pub fn headers(&self) -> &Headers {
        &self.inner.headers
    }

    pub(crate) fn cancel_token(&self) -> &CancellationToken {
        &self.inner.cancel
    }
}
