//! Clients: the instance cache fed by discovery, routing, and the round trip
//! under every typed client method.

mod attempt;
mod describe;
mod fan_out;
mod health;
mod plane;
mod route;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::engine::transport::message::Message;
use crate::engines::Engines;
use crate::exchange::codec::{self, CodecError, Decode};
use crate::exchange::outcome;
use crate::exchange::stream::{self, Opened, ResponseStream};
use crate::exchange::trace::{Trace, inherited_trace};
use crate::{CallError, Error, ErrorKind, InstanceId, TransportError};
use attempt::Call;
pub use fan_out::{Answers, FanOut};
use rotor_names as names;
use route::Route;

/// How a client picks an instance for each call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Router {
    /// Each instance in turn, unless this client has more calls in flight
    /// to it than to another drawn at random: then that one (the default).
    /// With equal loads it is round-robin; an instance that hangs or slows
    /// down holds calls, and so gets fewer new ones.
    #[default]
    LeastOutstanding,
    /// Each instance in turn.
    RoundRobin,
    /// An instance chosen uniformly at random.
    Random,
    /// Two instances at random, then the one with fewer calls in flight from
    /// this client ("power of two choices").
    PowerOfTwo,
}

/// The untyped client beneath every generated `{Type}Client`: one route per
/// endpoint, each fed by a shared discovery watch. Cheap to clone.
#[derive(Clone)]
pub struct ClientCore {
    shared: Arc<Shared>,
    /// What the client was built for, when a component's types made it.
    expected: Option<Arc<crate::describe::Description>>,
    target: Option<InstanceId>,
    router: Router,
    timeout: Option<Duration>,
    retries: Option<u32>,
    /// Stops the check of what instances publish when the last clone goes.
    checker: Option<Arc<tokio_util::sync::DropGuard>>,
    /// The codec of the typed calls by wire name ([`unary`](Self::unary),
    /// [`stream`](Self::stream), [`fan_out`](Self::fan_out)).
    format: codec::Format,
}

struct Shared {
    engines: Arc<Engines>,
    routes: Box<[Route]>,
    /// Which instances are out of rotation, for every route.
    health: Arc<health::Health>,
}

/// What the clients of this process have done for one endpoint: the
/// `rotor_client_*` metrics of that endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Calls made.
    pub calls: u64,
    /// Calls that ended in a transport error (application errors are answers).
    pub failures: u64,
    /// Attempts sent again: on another instance after "no responders", or
    /// after the instance a call was in flight to was lost.
    pub retries: u64,
    /// Instances taken out of rotation, after "no responders" or
    /// consecutive timeouts.
    pub evictions: u64,
}

/// An endpoint to route to, as the client is built.
pub(crate) struct RouteSpec<'a> {
    pub namespace: &'a str,
    pub component: &'a str,
    pub endpoint: &'a str,
    pub is_static: bool,
    pub idempotent: bool,
}

/// What a call is: one reply, or the reply that opens a stream.
#[derive(Clone, Copy)]
enum CallMode<'a> {
    Unary,
    /// With the inbox each attempt asks the stream to go to.
    Stream(&'a plane::Opening),
}

impl fmt::Debug for ClientCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoints: Vec<&str> = self.shared.routes.iter().map(|r| r.label.as_str()).collect();
        f.debug_struct("ClientCore")
            .field("endpoints", &endpoints)
            .field("target", &self.target)
            .field("router", &self.router)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The time a server has for a request when the caller waits `left`: a
/// little less, so that its deadline error arrives rather than a bare
/// timeout (5%, at most 100 ms).
fn server_time(left: Duration) -> Duration {
    left.saturating_sub((left / 20).min(Duration::from_millis(100)))
}

impl ClientCore {
    pub(crate) async fn new(engines: &Arc<Engines>, specs: &[RouteSpec<'_>]) -> Result<ClientCore, Error> {
        let mut routes = Vec::with_capacity(specs.len());
        let health = Arc::new(health::Health::default());
        for s in specs {
            let instances = if s.is_static {
                None
            } else {
                engines.watch(&names::endpoint_key_prefix(s.namespace, s.component, s.endpoint)).await?
            };
            routes.push(Route::new(
                format!("{}/{}/{}", s.namespace, s.component, s.endpoint),
                names::service_name(s.namespace, s.component),
                s.endpoint.to_string(),
                instances,
                s.idempotent,
                health.clone(),
                engines.metrics.client(s.namespace, s.component).endpoint(s.endpoint),
            ));
        }
        Ok(ClientCore {
            shared: Arc::new(Shared { engines: engines.clone(), routes: routes.into(), health }),
            expected: None,
            target: None,
            router: Router::default(),
            timeout: None,
            retries: None,
            checker: None,
            format: codec::Format::Json,
        })
    }

    /// The same client, encoding the typed calls by wire name with
    /// `format`: the codec the component was declared with (its
    /// description and instance records say which). Generated clients need
    /// nothing of the kind; they encode with their component's codec.
    pub fn with_codec(&self, format: codec::Format) -> Self {
        ClientCore { format, ..self.clone() }
    }

    /// The same client, sending every call to `instance`.
    pub fn direct(&self, instance: InstanceId) -> Self {
        ClientCore { target: Some(instance), ..self.clone() }
    }

    /// The same client, choosing instances with `router`. A client sent to
    /// one instance ([`direct`](Self::direct)) stays with it.
    pub fn with_router(&self, router: Router) -> Self {
        ClientCore { router, ..self.clone() }
    }

    /// The same client, with `timeout` for every call.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        ClientCore { timeout: Some(timeout), ..self.clone() }
    }

    /// The same client, retrying an idempotent call on another instance up
    /// to `retries` times when its instance is gone.
    pub fn with_retries(&self, retries: u32) -> Self {
        ClientCore { retries: Some(retries), ..self.clone() }
    }

    /// What the clients of this process did for `endpoint` (its wire name);
    /// `None` when this client has no endpoint of that name.
    pub fn stats(&self, endpoint: &str) -> Option<ClientStats> {
        let route = self.shared.routes.iter().find(|r| r.endpoint == endpoint)?;
        let m = &route.metrics;
        Some(ClientStats {
            calls: m.requests.get(),
            failures: m.errors_total(),
            retries: m.retries.get(),
            evictions: m.evictions.get(),
        })
    }

    /// The instances serving every endpoint of the component, as discovery
    /// sees them now, sorted. Empty without discovery.
    pub fn instances(&self) -> Vec<InstanceId> {
        let mut lists = self.shared.routes.iter().filter_map(|r| r.instances.as_ref());
        let Some(first) = lists.next() else { return Vec::new() };
        let mut ids = Vec::new();
        first.borrow().ids_into(&mut ids);
        ids.dedup();
        // Every list is sorted by instance id: one merge walk per list, not
        // a search per id, since a wait reads this at every watch event.
        for list in lists {
            let list = list.borrow();
            let mut listed = list.ids().peekable();
            ids.retain(|id| {
                while listed.next_if(|l| l < id).is_some() {}
                listed.peek() == Some(id)
            });
        }
        ids
    }

    /// Waits until at least one instance serves every endpoint, and returns
    /// them. Returns at once, empty, without discovery.
    ///
    /// The wait has no bound of its own: with no server it lasts for ever.
    /// Bound it with [`wait_for_instances_within`](Self::wait_for_instances_within)
    /// or `tokio::time::timeout`.
    pub async fn wait_for_instances(&self) -> Result<Vec<InstanceId>, Error> {
        self.wait_for(|ids| !ids.is_empty()).await
    }

    /// Waits at most `within` until at least one instance serves every
    /// endpoint, and returns them; past it, an error that names the
    /// component and says what to check.
    pub async fn wait_for_instances_within(&self, within: Duration) -> Result<Vec<InstanceId>, Error> {
        match tokio::time::timeout(within, self.wait_for_instances()).await {
            Ok(found) => found,
            Err(_) => {
                let label = self.shared.routes.first().map(|r| r.label.as_str()).unwrap_or("this client");
                Err(Error::NoInstancesWithin { endpoint: label.to_string(), after: within })
            }
        }
    }

    /// Waits until the instances serving every endpoint satisfy `done`, and
    /// returns them. Returns at once without discovery. Like
    /// [`wait_for_instances`](Self::wait_for_instances), it has no bound of
    /// its own: wrap it in `tokio::time::timeout`.
    pub async fn wait_for(
        &self,
        mut done: impl FnMut(&[InstanceId]) -> bool,
    ) -> Result<Vec<InstanceId>, Error> {
        let mut receivers: Vec<_> =
            self.shared.routes.iter().filter_map(|r| r.instances.as_deref().cloned()).collect();
        loop {
            for rx in &mut receivers {
                rx.borrow_and_update();
            }
            let ids = self.instances();
            if receivers.is_empty() || done(&ids) {
                return Ok(ids);
            }
            let changes = receivers.iter_mut().map(|rx| Box::pin(rx.changed()));
            if futures::future::select_all(changes).await.0.is_err() {
                return Err(Error::Discovery("the discovery watch stopped".into()));
            }
        }
    }

    /// Calls `endpoint` (its wire name) with a typed request, expecting a
    /// typed response or the endpoint's typed error.
    pub async fn unary<Req, Resp, E>(&self, endpoint: &str, request: &Req) -> Result<Resp, CallError<E>>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
        E: DeserializeOwned,
    {
        let number = self.number(endpoint)?;
        let (payload, ok, err) = self.typed(request);
        self.unary_with(number, payload, ok, err).await
    }

    /// Opens a stream from `endpoint` (its wire name) with a typed request;
    /// the items arrive typed on the returned stream, an error before the
    /// first item is returned here.
    pub async fn stream<Req, T, E>(
        &self,
        endpoint: &str,
        request: &Req,
    ) -> Result<ResponseStream<T, E>, CallError<E>>
    where
        Req: Serialize + ?Sized,
        T: DeserializeOwned,
        E: DeserializeOwned,
    {
        let number = self.number(endpoint)?;
        let (payload, ok, err) = self.typed(request);
        self.stream_with(number, payload, ok, err).await
    }

    /// A typed call by wire name: its request encoded with this client's
    /// codec, the decoder of its answers, and that of its errors (JSON).
    fn typed<Req, T, E>(&self, request: &Req) -> (Result<Bytes, CodecError>, Decode<T>, Decode<E>)
    where
        Req: Serialize + ?Sized,
        T: DeserializeOwned,
        E: DeserializeOwned,
    {
        (self.format.encode(request), self.format.decoder(), codec::Format::ERRORS.decoder())
    }

    /// [`unary`](Self::unary) with the codec chosen by the caller; the
    /// generated clients pass theirs so that a type error in a wire type is
    /// reported once, on the user's type.
    pub(crate) async fn unary_with<Resp, E>(
        &self,
        endpoint: usize,
        payload: Result<Bytes, CodecError>,
        decode_ok: Decode<Resp>,
        decode_err: Decode<E>,
    ) -> Result<Resp, CallError<E>> {
        let route = self.route(endpoint)?;
        let payload = encoded(route, payload)?;
        let (reply, instance) = self.round_trip(endpoint, route, payload, CallMode::Unary).await?;
        outcome::decode_reply(&reply, &route.label, instance, decode_ok, decode_err)
    }

    /// Opens a stream from endpoint number `endpoint`: the items arrive on
    /// the returned stream; an error before the first item is returned here.
    pub(crate) async fn stream_with<T, E>(
        &self,
        endpoint: usize,
        payload: Result<Bytes, CodecError>,
        decode_ok: Decode<T>,
        decode_err: Decode<E>,
    ) -> Result<ResponseStream<T, E>, CallError<E>> {
        let route = self.route(endpoint)?;
        let payload = encoded(route, payload)?;
        let config = &self.shared.engines.config;
        let window = (config.stream_window, config.stream_window_bytes);
        let open = plane::Opening::new(window, config.stream_heartbeat);
        let (reply, instance) = self.round_trip(endpoint, route, payload, CallMode::Stream(&open)).await?;
        let subscribed = open.take().ok_or_else(|| TransportError::Protocol {
            detail: "a stream answered before it was asked for".into(),
            instance,
        })?;
        let opened = |control| Opened {
            messages: subscribed.messages,
            control,
            transport: subscribed.transport,
            instance,
            label: route.label.clone(),
            window: (u64::from(window.0), window.1),
            heartbeat: config.stream_heartbeat,
        };
        stream::accepted(reply, opened, &route.label, instance, decode_ok, decode_err)
    }

    /// Sends an encoded request to `endpoint` (its wire name) and returns the
    /// raw reply, success or failure, with the instance that answered.
    pub async fn call_raw(
        &self,
        endpoint: &str,
        payload: Bytes,
    ) -> Result<(Message, Option<InstanceId>), TransportError> {
        let number = self.number(endpoint)?;
        let route = self.route(number)?;
        self.round_trip(number, route, payload, CallMode::Unary).await
    }

    /// The wire names of this client's endpoints, in the order of the
    /// component's descriptor.
    pub fn endpoints(&self) -> impl Iterator<Item = &str> {
        self.shared.routes.iter().map(|r| r.endpoint.as_str())
    }

    /// The number of the endpoint called `endpoint`.
    fn number(&self, endpoint: &str) -> Result<usize, TransportError> {
        self.shared.routes.iter().position(|r| r.endpoint == endpoint).ok_or_else(|| unknown(endpoint))
    }

    fn route(&self, number: usize) -> Result<&Route, TransportError> {
        self.shared.routes.get(number).ok_or_else(|| unknown(&format!("number {number}")))
    }

    /// Sends a request, with retries, and returns the reply.
    async fn round_trip(
        &self,
        number: usize,
        route: &Route,
        payload: Bytes,
        mode: CallMode<'_>,
    ) -> Result<(Message, Option<InstanceId>), TransportError> {
        let config = &self.shared.engines.config;
        let timeout = self.timeout.unwrap_or(config.request_timeout);
        let retries = if route.idempotent && self.target.is_none() {
            self.retries.unwrap_or(config.retries)
        } else {
            0
        };
        route.metrics.requests.inc();
        let started = Instant::now();
        let inherited = inherited_trace();
        let propagate = inherited.is_some();
        let trace = inherited.unwrap_or_else(Trace::root);
        let span = tracing::debug_span!(
            "rotor.call",
            endpoint = %route.label,
            request_id = %trace.request_id(),
            trace_id = %trace.trace_id(),
        );
        // A trace goes on the wire only where someone can follow it: from
        // inside a handler, or when this call's span is recorded. Otherwise
        // the server starts the trace, and the call costs two headers less.
        let trace = (propagate || !span.is_disabled()).then_some(&trace);
        let call = Call { payload, timeout, retries, trace, mode };
        let result = self.attempts(number, route, call).instrument(span).await;
        route.metrics.duration.observe(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            route.metrics.error(e.kind());
        }
        result
    }
}

fn unknown(endpoint: &str) -> TransportError {
    TransportError::Remote {
        kind: ErrorKind::UnknownEndpoint,
        code: ErrorKind::UnknownEndpoint.code(),
        message: format!("this client has no endpoint {endpoint}"),
        instance: None,
    }
}

/// The encoded request, or the error that says it did not encode.
fn encoded(route: &Route, payload: Result<Bytes, CodecError>) -> Result<Bytes, TransportError> {
    payload.map_err(|e| TransportError::Encode {
        what: format!("request of {}", route.label),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_gets_a_little_less_time_than_the_caller_waits() {
        assert_eq!(server_time(Duration::from_secs(1)), Duration::from_millis(950));
        assert_eq!(
            server_time(Duration::from_secs(30)),
            Duration::from_millis(29_900),
            "at most 100 ms less"
        );
        assert_eq!(server_time(Duration::from_millis(20)), Duration::from_millis(19));
        assert_eq!(server_time(Duration::ZERO), Duration::ZERO);
    }
}
