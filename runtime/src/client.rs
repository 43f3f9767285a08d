//! Clients: the instance cache fed by discovery, routing, and the round trip
//! under every typed client method.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::discovery::InstanceList;
use crate::wire::{ErrorKind, Message, header};
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
}

/// The untyped client beneath every generated `{Type}Client`: one route per
/// endpoint, each fed by a shared discovery watch. Cheap to clone.
#[derive(Clone)]
pub struct ClientCore {
    shared: Arc<Shared>,
    target: Option<InstanceId>,
    router: Router,
    timeout: Option<Duration>,
}

struct Shared {
    rt: Runtime,
    routes: Box<[Route]>,
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
}

/// An endpoint to route to, as the client is built.
pub(crate) struct RouteSpec<'a> {
    pub namespace: &'a str,
    pub component: &'a str,
    pub endpoint: &'a str,
    pub is_static: bool,
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
            });
        }
        Ok(ClientCore {
            shared: Arc::new(Shared { rt: rt.clone(), routes: routes.into() }),
            target: None,
            router: Router::default(),
            timeout: None,
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
        loop {
            let ids = self.instances();
            if !ids.is_empty() || self.shared.routes.iter().all(|r| r.instances.is_none()) {
                return Ok(ids);
            }
            // Wait for any route to change, then look again.
            let mut receivers: Vec<_> =
                self.shared.routes.iter().filter_map(|r| r.instances.clone()).collect();
            let changes = receivers.iter_mut().map(|rx| Box::pin(rx.changed()));
            if futures::future::select_all(changes).await.0.is_err() {
                return Err(Error::Config("discovery stopped".into()));
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
        let (reply, instance) = self.round_trip(route, payload).await?;
        decode_reply(route, reply, instance, decode_ok, decode_err)
    }

    /// Sends an encoded request to endpoint number `endpoint` and returns the
    /// raw reply, success or failure, with the instance that answered.
    pub async fn call_raw(
        &self,
        endpoint: usize,
        payload: Bytes,
    ) -> Result<(Message, Option<InstanceId>), TransportError> {
        let route = self.route(endpoint)?;
        self.round_trip(route, payload).await
    }

    fn route(&self, endpoint: usize) -> Result<&Route, TransportError> {
        self.shared.routes.get(endpoint).ok_or_else(|| TransportError::Remote {
            kind: ErrorKind::UnknownEndpoint,
            code: ErrorKind::UnknownEndpoint.code(),
            message: format!("this client has no endpoint number {endpoint}"),
            instance: None,
        })
    }

    async fn round_trip(
        &self,
        route: &Route,
        payload: Bytes,
    ) -> Result<(Message, Option<InstanceId>), TransportError> {
        let timeout = self.timeout.unwrap_or(self.shared.rt.config().request_timeout);
        let (subject, instance) = self.pick(route)?;
        let message = Message::request(payload, Some(timeout));
        let transport = &self.shared.rt.engines().transport;
        match transport.request(subject, message, timeout).await {
            Ok(reply) => {
                let answered = reply
                    .headers
                    .get(header::INSTANCE)
                    .and_then(|h| i64::from_str_radix(h, 16).ok())
                    .map(InstanceId)
                    .or(instance);
                Ok((reply, answered))
            }
            Err(e) => Err(match instance {
                Some(id) => e.at(id),
                None => e,
            }),
        }
    }

    /// The subject for the next call, and the instance behind it when known.
    fn pick(&self, route: &Route) -> Result<(String, Option<InstanceId>), TransportError> {
        let Some(instances) = &route.instances else {
            return Ok(match self.target {
                Some(id) => (names::instance_subject(&route.service, &route.endpoint, id.0), Some(id)),
                None => (route.queue_subject.clone(), None),
            });
        };
        let list = instances.borrow();
        if let Some(id) = self.target {
            return match list.iter().find(|r| r.instance_id == id) {
                Some(r) => Ok((r.transport.subject().to_string(), Some(id))),
                None => Err(TransportError::UnknownInstance { endpoint: route.label.clone(), instance: id }),
            };
        }
        if list.is_empty() {
            return Err(TransportError::NoInstances { endpoint: route.label.clone() });
        }
        let index = match self.router {
            Router::RoundRobin => route.next.fetch_add(1, Ordering::Relaxed) % list.len(),
            Router::Random => fastrand::usize(..list.len()),
        };
        let record = &list[index];
        Ok((record.transport.subject().to_string(), Some(record.instance_id)))
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
            let error = decode_err(&reply.payload)
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
