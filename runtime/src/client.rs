//! Clients: the instance cache fed by discovery, routing, and the round trip
//! under every typed client method.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::discovery::InstanceList;
use crate::wire::{ErrorKind, Message, header};
use tracing::Instrument;

use crate::context::{Trace, inherited_trace};
use crate::metrics::ClientEndpointMetrics;
use crate::stream::{Opened, ResponseStream};
use crate::wire::Headers;
use crate::{CallError, Error, InstanceId, Runtime, TransportError, codec, names};

/// How a client picks an instance for each call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Router {
    /// Each instance in turn (the default).
    #[default]
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
    target: Option<InstanceId>,
    router: Router,
    timeout: Option<Duration>,
    retries: Option<u32>,
}

struct Shared {
    rt: Runtime,
    routes: Box<[Route]>,
}

/// What a client knows beyond discovery about one route's instances.
#[derive(Default)]
struct Health {
    /// Instances that answered "no responders", and since when. They leave
    /// rotation at once, before their lease lapses, and come back only if
    /// discovery still lists them two lease TTLs later.
    evicted: HashMap<InstanceId, Instant>,
    /// Calls in flight from this client, for [`Router::PowerOfTwo`].
    in_flight: HashMap<InstanceId, usize>,
}

/// Where one endpoint's calls go.
pub(crate) struct Route {
    /// `namespace/component/endpoint`, for messages.
    label: String,
    service: String,
    endpoint: String,
    queue_subject: String,
    /// `None` for static components and runtimes without discovery.
    instances: Option<watch::Receiver<InstanceList>>,
    next: AtomicUsize,
    /// `true` while `health.evicted` is not empty, so that routing can skip
    /// the lock otherwise.
    any_evicted: AtomicBool,
    idempotent: bool,
    health: Mutex<Health>,
    metrics: ClientEndpointMetrics,
}

/// What the clients of this process have done for one endpoint: the
/// `rotor_client_*` metrics of that endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Calls made.
    pub calls: u64,
    /// Calls that ended in a transport error (application errors are answers).
    pub failures: u64,
    /// Attempts repeated on another instance after "no responders".
    pub retries: u64,
    /// Instances taken out of rotation after "no responders".
    pub evictions: u64,
}

impl Route {
    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An endpoint to route to, as the client is built.
pub(crate) struct RouteSpec<'a> {
    pub namespace: &'a str,
    pub component: &'a str,
    pub endpoint: &'a str,
    pub is_static: bool,
    pub idempotent: bool,
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

impl ClientCore {
    pub(crate) async fn new(rt: &Runtime, specs: &[RouteSpec<'_>]) -> Result<ClientCore, Error> {
        let mut routes = Vec::with_capacity(specs.len());
        for s in specs {
            let service = names::service_name(s.namespace, s.component);
            let instances = if s.is_static {
                None
            } else {
                rt.engines().watch(&names::endpoint_key_prefix(s.namespace, s.component, s.endpoint)).await?
            };
            routes.push(Route {
                label: format!("{}/{}/{}", s.namespace, s.component, s.endpoint),
                queue_subject: names::endpoint_subject(&service, s.endpoint),
                service,
                endpoint: s.endpoint.to_string(),
                instances,
                next: AtomicUsize::new(0),
                any_evicted: AtomicBool::new(false),
                idempotent: s.idempotent,
                health: Mutex::default(),
                metrics: rt.engines().metrics.client(s.namespace, s.component).endpoint(s.endpoint),
            });
        }
        Ok(ClientCore {
            shared: Arc::new(Shared { rt: rt.clone(), routes: routes.into() }),
            target: None,
            router: Router::default(),
            timeout: None,
            retries: None,
        })
    }

    /// The same client, sending every call to `instance`.
    pub fn direct(&self, instance: InstanceId) -> Self {
        ClientCore { target: Some(instance), ..self.clone() }
    }

    /// The same client, choosing instances with `router`.
    pub fn with_router(&self, router: Router) -> Self {
        ClientCore { router, target: None, ..self.clone() }
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

    /// What this client (and its clones) did for endpoint number `endpoint`.
    pub fn stats(&self, endpoint: usize) -> ClientStats {
        let Some(route) = self.shared.routes.get(endpoint) else { return ClientStats::default() };
        let m = &route.metrics;
        ClientStats {
            calls: m.requests.get(),
            failures: m.errors_total(),
            retries: m.retries.get(),
            evictions: m.evictions.get(),
        }
    }

    /// The instances serving every endpoint of the component, as discovery
    /// sees them now, sorted. Empty without discovery.
    pub fn instances(&self) -> Vec<InstanceId> {
        let mut lists = self.shared.routes.iter().filter_map(|r| r.instances.as_ref());
        let Some(first) = lists.next() else { return Vec::new() };
        let mut ids: Vec<InstanceId> = first.borrow().iter().map(|r| r.instance_id).collect();
        for list in lists {
            let list = list.borrow();
            ids.retain(|id| list.iter().any(|r| r.instance_id == *id));
        }
        ids
    }

    /// Waits until at least one instance serves every endpoint, and returns
    /// them. Returns at once, empty, without discovery. Bound the wait with
    /// `tokio::time::timeout`.
    pub async fn wait_for_instances(&self) -> Result<Vec<InstanceId>, Error> {
        self.wait_for(|ids| !ids.is_empty()).await
    }

    /// Waits until the instances serving every endpoint satisfy `done`, and
    /// returns them. Returns at once without discovery.
    pub async fn wait_for(
        &self,
        mut done: impl FnMut(&[InstanceId]) -> bool,
    ) -> Result<Vec<InstanceId>, Error> {
        let mut receivers: Vec<_> = self.shared.routes.iter().filter_map(|r| r.instances.clone()).collect();
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

    /// Calls endpoint number `endpoint` with a typed request, expecting a
    /// typed response or the endpoint's typed error.
    pub async fn unary<Req, Resp, E>(&self, endpoint: usize, request: &Req) -> Result<Resp, CallError<E>>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
        E: DeserializeOwned,
    {
        self.unary_with(endpoint, codec::encode(request), codec::decode::<Resp>, codec::decode::<E>).await
    }

    /// [`unary`](Self::unary) with the codec chosen by the caller; the
    /// generated clients pass theirs so that a type error in a wire type is
    /// reported once, on the user's type.
    pub(crate) async fn unary_with<Resp, E>(
        &self,
        endpoint: usize,
        payload: Result<Bytes, serde_json::Error>,
        decode_ok: fn(&[u8]) -> Result<Resp, serde_json::Error>,
        decode_err: fn(&[u8]) -> Result<E, serde_json::Error>,
    ) -> Result<Resp, CallError<E>> {
        let route = self.route(endpoint)?;
        let payload = payload.map_err(|e| TransportError::Encode {
            what: format!("request of {}", route.label),
            detail: e.to_string(),
        })?;
        let (reply, instance) = self.round_trip(route, payload, None).await?;
        decode_reply(route, reply, instance, decode_ok, decode_err)
    }

    /// Opens a stream from endpoint number `endpoint`: the items arrive on
    /// the returned stream; an error before the first item is returned here.
    pub(crate) async fn stream_with<T, E>(
        &self,
        endpoint: usize,
        payload: Result<Bytes, serde_json::Error>,
        decode_ok: fn(&[u8]) -> Result<T, serde_json::Error>,
        decode_err: fn(&[u8]) -> Result<E, serde_json::Error>,
    ) -> Result<ResponseStream<T, E>, CallError<E>> {
        let route = self.route(endpoint)?;
        let payload = payload.map_err(|e| TransportError::Encode {
            what: format!("request of {}", route.label),
            detail: e.to_string(),
        })?;
        let config = self.shared.rt.config();
        let transport = self.shared.rt.engines().transport.clone();
        let inbox = transport.inbox();
        // Subscribed before the request goes out, so no item can be missed.
        let messages = transport.subscribe(inbox.clone()).await?;
        let mut open = Headers::new();
        open.insert(header::STREAM_INBOX, inbox);
        open.insert(
            header::STREAM_WINDOW,
            format!("{} {}", config.stream_window, config.stream_window_bytes),
        );
        open.insert(header::STREAM_HEARTBEAT_MS, config.stream_heartbeat.as_millis().to_string());
        let (reply, instance) = self.round_trip(route, payload, Some(&open)).await?;
        if reply.error_kind().is_some() {
            return Err(
                decode_reply(route, reply, instance, |_| Ok(()), decode_err).expect_err("an error reply")
            );
        }
        let Some(control) = reply.headers.get(header::STREAM_CONTROL) else {
            return Err(CallError::Transport(TransportError::Decode {
                what: format!("stream acceptance of {}", route.label),
                detail: "no control subject: is the server's endpoint streaming?".into(),
                instance,
            }));
        };
        let opened = Opened {
            messages,
            control: control.to_string(),
            transport,
            instance,
            label: route.label.clone(),
            window: (u64::from(config.stream_window), config.stream_window_bytes),
            heartbeat: config.stream_heartbeat,
        };
        Ok(ResponseStream::new(opened, decode_ok, decode_err))
    }

    /// Sends an encoded request to endpoint number `endpoint` and returns the
    /// raw reply, success or failure, with the instance that answered.
    pub async fn call_raw(
        &self,
        endpoint: usize,
        payload: Bytes,
    ) -> Result<(Message, Option<InstanceId>), TransportError> {
        let route = self.route(endpoint)?;
        self.round_trip(route, payload, None).await
    }

    fn route(&self, endpoint: usize) -> Result<&Route, TransportError> {
        self.shared.routes.get(endpoint).ok_or_else(|| TransportError::Remote {
            kind: ErrorKind::UnknownEndpoint,
            code: ErrorKind::UnknownEndpoint.code(),
            message: format!("this client has no endpoint number {endpoint}"),
            instance: None,
        })
    }

    /// Sends a request, with retries, and returns the reply. `stream` holds
    /// the headers that open a stream; a stream's deadline is only the one
    /// the caller set, since the default timeout bounds the reply, not the
    /// stream.
    async fn round_trip(
        &self,
        route: &Route,
        payload: Bytes,
        stream: Option<&Headers>,
    ) -> Result<(Message, Option<InstanceId>), TransportError> {
        let config = self.shared.rt.config();
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
        let call = Call { payload, timeout, retries, trace, stream };
        let result = self.attempts(route, call).instrument(span).await;
        route.metrics.duration.observe(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            route.metrics.error(e.kind());
        }
        result
    }

    async fn attempts(
        &self,
        route: &Route,
        call: Call<'_>,
    ) -> Result<(Message, Option<InstanceId>), TransportError> {
        let Call { mut payload, timeout, retries, trace, stream } = call;
        let started = Instant::now();
        let transport = &self.shared.rt.engines().transport;
        let mut attempt = 0;
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            let (subject, instance) = self.pick(route)?;
            // The server gives up a little before the caller does, so that
            // its deadline error arrives rather than a bare timeout.
            let server_time = match stream {
                None => Some(left.saturating_sub((left / 20).min(Duration::from_millis(100)))),
                Some(_) => self.timeout.map(|t| t.saturating_sub(started.elapsed())),
            };
            // With a deadline the request is a copy in its envelope, so the
            // payload stays for a retry without being shared (sharing a
            // payload allocates); without one, the last attempt takes it.
            let mut message = match server_time {
                Some(time) => Message::enveloped(&payload, time),
                None if attempt < retries => Message::request(payload.clone(), None),
                None => Message::request(std::mem::take(&mut payload), None),
            };
            if let Some(trace) = trace {
                trace.write(&mut message.headers);
            }
            for (name, value) in stream.iter().flat_map(|h| h.iter()) {
                message.headers.insert(name.to_string(), value);
            }
            let _in_flight = (self.router == Router::PowerOfTwo).then(|| InFlight::start(route, instance));
            let result = transport.request(subject.as_str(), message, left).await;
            match (result, instance) {
                (Ok(reply), _) => {
                    let answered = reply
                        .headers
                        .get(header::INSTANCE)
                        .and_then(|h| i64::from_str_radix(h, 16).ok())
                        .map(InstanceId)
                        .or(instance);
                    return Ok((reply, answered));
                }
                (Err(e @ TransportError::NoResponders { .. }), Some(id)) => {
                    // Gone before its lease lapsed: out of rotation now.
                    let newly = {
                        let mut health = route.health();
                        // Set under the lock, as routing clears it under the lock.
                        route.any_evicted.store(true, Ordering::Relaxed);
                        health.evicted.insert(id, Instant::now()).is_none()
                    };
                    if newly {
                        route.metrics.evictions.inc();
                    }
                    tracing::debug!(endpoint = %route.label, instance = %id, "no responders; evicted");
                    if attempt >= retries {
                        return Err(e.at(id));
                    }
                    attempt += 1;
                    route.metrics.retries.inc();
                }
                (Err(e), Some(id)) => return Err(e.at(id)),
                (Err(e), None) => return Err(e),
            }
        }
    }

    /// The subject for the next call, and the instance behind it when known.
    fn pick<'r>(&self, route: &'r Route) -> Result<(CallSubject<'r>, Option<InstanceId>), TransportError> {
        let Some(instances) = &route.instances else {
            return Ok(match self.target {
                Some(id) => (
                    CallSubject::Made(names::instance_subject(&route.service, &route.endpoint, id.0)),
                    Some(id),
                ),
                None => (CallSubject::Route(&route.queue_subject), None),
            });
        };
        // The list itself, not the watch's guard, which must not be held
        // across the call: the subject is then borrowed, not copied.
        let list = instances.borrow().clone();
        if let Some(id) = self.target {
            return match list.iter().position(|r| r.instance_id == id) {
                Some(at) => Ok((CallSubject::Listed(list, at), Some(id))),
                None => Err(TransportError::UnknownInstance { endpoint: route.label.clone(), instance: id }),
            };
        }
        // The common case, nothing evicted and no load to compare, takes
        // no lock and allocates nothing.
        if !route.any_evicted.load(Ordering::Relaxed) && self.router != Router::PowerOfTwo {
            if list.is_empty() {
                return Err(TransportError::NoInstances { endpoint: route.label.clone() });
            }
            let at = match self.router {
                Router::Random => fastrand::usize(..list.len()),
                _ => route.next.fetch_add(1, Ordering::Relaxed) % list.len(),
            };
            let instance = list[at].instance_id;
            return Ok((CallSubject::Listed(list, at), Some(instance)));
        }
        let mut health = route.health();
        if !health.evicted.is_empty() {
            // Past twice the TTL the lease of a dead instance has surely
            // lapsed; one still listed then is alive after all.
            let readmit_after = self.shared.rt.config().lease_ttl * 2;
            health.evicted.retain(|id, since| {
                since.elapsed() < readmit_after && list.iter().any(|r| r.instance_id == *id)
            });
            route.any_evicted.store(!health.evicted.is_empty(), Ordering::Relaxed);
        }
        let live = || (0..list.len()).filter(|&at| !health.evicted.contains_key(&list[at].instance_id));
        let count = live().count();
        if count == 0 {
            return Err(TransportError::NoInstances { endpoint: route.label.clone() });
        }
        let nth = |n: usize| live().nth(n).expect("fewer than `count` live instances");
        let at = match self.router {
            Router::RoundRobin => nth(route.next.fetch_add(1, Ordering::Relaxed) % count),
            Router::Random => nth(fastrand::usize(..count)),
            Router::PowerOfTwo => {
                let (a, b) = (nth(fastrand::usize(..count)), nth(fastrand::usize(..count)));
                let load = |at: usize| health.in_flight.get(&list[at].instance_id).copied().unwrap_or(0);
                if load(b) < load(a) { b } else { a }
            }
        };
        let instance = list[at].instance_id;
        drop(health);
        Ok((CallSubject::Listed(list, at), Some(instance)))
    }
}

/// Where one attempt goes: a subject borrowed from the instance list it was
/// picked from or from the route, or one made for it.
enum CallSubject<'r> {
    Listed(InstanceList, usize),
    Route(&'r str),
    Made(String),
}

impl CallSubject<'_> {
    fn as_str(&self) -> &str {
        match self {
            CallSubject::Listed(list, at) => list[*at].transport.subject(),
            CallSubject::Route(subject) => subject,
            CallSubject::Made(subject) => subject,
        }
    }
}

/// One call's settings, across its attempts.
struct Call<'a> {
    payload: Bytes,
    timeout: Duration,
    retries: u32,
    /// The trace to send along, if any.
    trace: Option<&'a Trace>,
    stream: Option<&'a Headers>,
}

/// Counts a call in flight to one instance while it lives.
struct InFlight<'a> {
    route: &'a Route,
    instance: Option<InstanceId>,
}

impl<'a> InFlight<'a> {
    fn start(route: &'a Route, instance: Option<InstanceId>) -> Self {
        if let Some(id) = instance {
            *route.health().in_flight.entry(id).or_default() += 1;
        }
        InFlight { route, instance }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.instance {
            let mut health = self.route.health();
            if let Some(n) = health.in_flight.get_mut(&id) {
                *n -= 1;
                if *n == 0 {
                    health.in_flight.remove(&id);
                }
            }
        }
    }
}

/// A reply as the endpoint's response, its typed error, or a transport error.
fn decode_reply<Resp, E>(
    route: &Route,
    reply: Message,
    instance: Option<InstanceId>,
    decode_ok: fn(&[u8]) -> Result<Resp, serde_json::Error>,
    decode_err: fn(&[u8]) -> Result<E, serde_json::Error>,
) -> Result<Resp, CallError<E>> {
    let failure =
        |what: String, e: serde_json::Error| TransportError::Decode { what, detail: e.to_string(), instance };
    let Some(kind) = reply.error_kind() else {
        return decode_ok(&reply.payload)
            .map_err(|e| failure(format!("response of {}", route.label), e).into());
    };
    let message = reply.headers.get(header::SERVICE_ERROR).unwrap_or("").to_string();
    let err = match kind {
        ErrorKind::Application => {
            let body = reply.headers.get(header::ERROR_BODY).unwrap_or("");
            let error = decode_err(body.as_bytes())
                .map_err(|e| failure(format!("application error of {}", route.label), e))?;
            return Err(CallError::App { error, instance: instance.unwrap_or(InstanceId(0)) });
        }
        ErrorKind::Decode => TransportError::Decode {
            what: format!("request of {} (at the server)", route.label),
            detail: message,
            instance,
        },
        ErrorKind::Deadline => TransportError::DeadlineExceeded { message, instance },
        other => {
            let code = reply.headers.get(header::SERVICE_ERROR_CODE).and_then(|c| c.parse().ok());
            TransportError::Remote { kind: other, code: code.unwrap_or(other.code()), message, instance }
        }
    };
    Err(err.into())
}
