//! Transport: carries requests to instances and replies back.
//!
//! Two implementations: NATS for real deployments, and [`InProcess`] for the
//! embedded mode. Both give queue-group delivery (one subscriber of a subject
//! gets each request), a "no responders" answer when nobody listens, and the
//! same payload limit semantics. Beside NATS, the [`direct`] plane carries
//! calls to an instance over a connection of its own; each such connection
//! is a transport too, for the streams that run over it.

mod chunked;
pub mod direct;
mod inproc;
mod listeners;
pub mod message;
mod nats;
mod verbs;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tokio::sync::watch;

pub use crate::engine::micro::{Counters, EndpointSpec, ServiceSpec, StatsData};
/// What undoes a binding or a registration when dropped.
pub use crate::guard::Guard;
pub use inproc::InProcess;
pub use message::{Headers, Message};
pub use nats::Nats;

use crate::engine::micro::stats::ServiceStats;
use crate::{Error, TransportError};

/// A request delivered to a served component.
pub struct Incoming {
    /// Index of the endpoint in the [`ServiceSpec`].
    pub endpoint: usize,
    /// `true` when it came on a subject of this instance alone (not the
    /// queue group): the caller then knows who answers.
    pub addressed: bool,
    /// The request.
    pub message: Message,
    /// Sends the reply.
    pub responder: Box<dyn Respond>,
    /// Where the request's stream goes, and the size limit of its reply,
    /// when not the bound transport's: the direct connection it came on.
    pub peer: Option<Arc<dyn Transport>>,
}

/// Sends one reply to one request.
pub trait Respond: Send + 'static {
    /// Sends `reply`.
    fn respond(self: Box<Self>, reply: Message) -> BoxFuture<'static, Result<(), TransportError>>;
}

/// Takes each request as the transport receives it, and starts the work of
/// answering it where the transport says. With [`Start::OnTask`] it returns
/// at once (it is called on the transport's own task); with
/// [`Start::HereFirst`] it returns after the handler's first poll. The
/// transport drops it when it stops listening.
pub type Dispatch = Arc<dyn Fn(Incoming, Start) + Send + Sync>;

/// Where the work of answering a request starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// On a task of its own: the transport's task must go on receiving.
    OnTask,
    /// Polled once where the request is dispatched, the caller's own task,
    /// and on a task of its own only if it is not done then: a handler that
    /// answers at once costs no task and no wake-up. For a transport whose
    /// caller waits in the task that dispatches (in-process). Unary
    /// requests only, and not nested deeper than a few calls; the rest
    /// start on a task.
    HereFirst,
}

/// `Err(Oversize)` when `message` is larger than `limit`; both transports
/// refuse on the side that sends.
fn within_limit(what: &str, message: &Message, limit: usize) -> Result<(), TransportError> {
    let size = message.size();
    if size > limit {
        return Err(TransportError::Oversize { what: what.into(), size, limit });
    }
    Ok(())
}

/// The largest request or reply a network transport carries by default:
/// 64 MiB, in chunks over NATS, in one frame over the direct plane.
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// What a request over an endpoint's limit is told, on every plane.
pub(crate) fn too_large(size: usize, limit: usize) -> String {
    format!(
        "the request is {size} bytes, over the endpoint's limit of {limit} bytes (max_request); send less, \
         or raise ROTOR_MAX_REQUEST on the server"
    )
}

/// Moves requests and replies.
pub trait Transport: Send + Sync + 'static {
    /// Starts listening for a service's requests, handing each to
    /// `dispatch`, until the returned guard is dropped; the transport drops
    /// `dispatch` once nothing can call it any more.
    fn bind(&self, spec: ServiceSpec, dispatch: Dispatch) -> BoxFuture<'_, Result<Guard, Error>>;

    /// Sends a request to `subject` and waits up to `timeout` for the reply.
    fn request<'a>(
        &'a self,
        subject: &'a str,
        message: Message,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Message, TransportError>>;

    /// The largest message the transport carries in one piece, in bytes:
    /// a stream item, say.
    fn max_payload(&self) -> usize;

    /// The largest request or reply the transport carries, in bytes, in
    /// pieces where one message would be too large for it.
    fn max_message(&self) -> usize {
        self.max_payload()
    }

    /// A fresh subject that only its subscriber will use (an inbox).
    fn inbox(&self) -> String;

    /// How many times the connection was lost, as it changes. A request in
    /// flight at a loss may have lost its request or its reply, so the
    /// client does not wait for it until its timeout.
    fn connection_losses(&self) -> watch::Receiver<u64>;

    /// How many times the connection was lost so far: what
    /// [`connection_losses`](Self::connection_losses) holds, read without a
    /// receiver.
    fn connection_loss_count(&self) -> u64;

    /// Every message published to `subject` from now on, until the stream is
    /// dropped. Not a queue group: each subscriber gets every message.
    fn subscribe(
        &self,
        subject: String,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Message>, TransportError>>;

    /// Publishes `message` to `subject`; with no subscriber it goes nowhere,
    /// as on NATS.
    fn publish(&self, subject: String, message: Message) -> BoxFuture<'_, Result<(), TransportError>>;

    /// Asks every instance of `service` for its statistics and yields each
    /// reply as it arrives, until `timeout` has passed.
    fn stats_stream(
        &self,
        service: String,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<BoxStream<'static, ServiceStats>, Error>>;

    /// Asks every instance of `service` for its `$SRV.INFO` and yields each
    /// answer, undecoded, as it arrives, until `timeout` has passed.
    fn info_stream(
        &self,
        service: String,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<BoxStream<'static, bytes::Bytes>, Error>>;

    /// Asks every instance of `service` for its statistics and collects the
    /// replies that arrive within `timeout`, sorted by service id.
    fn scrape_stats(
        &self,
        service: String,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Vec<ServiceStats>, Error>> {
        Box::pin(async move {
            use futures::StreamExt;
            let mut stats: Vec<ServiceStats> = self.stats_stream(service, timeout).await?.collect().await;
            stats.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(stats)
        })
    }
}
