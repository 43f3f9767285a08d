//! Serving without the macro: endpoints whose names are known only at run
//! time (gateways, language bindings, generated configurations) given as
//! handlers, typed or raw, on the run-time handles.
//!
//! ```no_run
//! # async fn demo(rt: rotor_runtime::Runtime) -> Result<(), rotor_runtime::Error> {
//! use rotor_runtime::{Context, Handler};
//!
//! let upper = Handler::unary(|_ctx: Context, text: String| async move {
//!     Ok::<_, String>(text.to_uppercase())
//! });
//! let served = rt.namespace("tools")?.component("text")?.service().endpoint("upper", upper)?.serve().await?;
//! # drop(served);
//! # Ok(())
//! # }
//! ```
//!
//! A component served this way is a component like any other: it registers
//! in discovery, is a NATS micro service, has its metrics, drains on
//! shutdown and keeps its callers' deadlines, because it is served by the
//! same code as a `#[component]` (whose generated `handle` is the typed form
//! below, called by endpoint number).

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use futures::future::BoxFuture;

use crate::__private_0_1 as support;
use crate::component::Request;
use crate::exchange::sink::Outcome;
use crate::serve::{EndpointModel, Model};
use crate::wire::{ErrorKind, Message};
use crate::{Context, Error, Runtime, ServeHandle, Serving};
use rotor_names::{validate_endpoint, validate_label};

/// Handlers speak JSON, as the typed calls of [`ClientCore`](crate::ClientCore) do.
const JSON: crate::codec::Format = crate::codec::Format::Json;

/// Runs one request of one endpoint.
type Run = Arc<dyn Fn(Request) -> BoxFuture<'static, Outcome> + Send + Sync>;

/// An endpoint's own figures for `$SRV.STATS`.
type Stats = Arc<dyn Fn() -> Option<serde_json::Value> + Send + Sync>;

/// One endpoint's handler, for [`ServiceBuilder::endpoint`] and
/// [`Endpoint::serve`](crate::names::Endpoint::serve).
#[derive(Clone)]
pub struct Handler {
    run: Run,
    stats: Option<Stats>,
    /// JSON Schemas of the request, response and error types, if given.
    schemas: crate::describe::EndpointSchemas,
    error: &'static str,
    streaming: bool,
    request: &'static str,
    response: &'static str,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("request", &self.request)
            .field("response", &self.response)
            .field("streaming", &self.streaming)
            .field("stats", &self.stats.is_some())
            .finish()
    }
}

impl Handler {
    /// A typed unary handler: the request is decoded into `Req`, and the
    /// result is encoded as an `#[endpoint]` method's would be, so that a
    /// typed client ([`ClientCore::unary`](crate::ClientCore::unary)) reads
    /// `Resp` or the application error `E`.
    pub fn unary<Req, Resp, E, F, Fut>(handler: F) -> Handler
    where
        Req: support::WireRequest,
        Resp: support::WireResponse,
        E: support::WireError,
        F: Fn(Context, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, E>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let run: Run = Arc::new(move |request| {
            let handler = handler.clone();
            let codecs =
                (support::request_codec(JSON), support::response_codec(JSON), support::error_codec());
            support::unary(request, codecs, move |ctx, req| handler(ctx, req))
        });
        let (request, response, error) = (type_name::<Req>(), type_name::<Resp>(), type_name::<E>());
        Handler { run, stats: None, schemas: Default::default(), streaming: false, request, response, error }
    }

    /// A typed streaming handler: it answers with a stream of items (or an
    /// error before any item), sent with the same credit, heartbeats and
    /// cancellation as a streaming `#[endpoint]`'s, to a streaming client
    /// ([`ClientCore::stream`](crate::ClientCore::stream)).
    pub fn stream<Req, T, E, F, Fut, S>(handler: F) -> Handler
    where
        Req: support::WireRequest,
        T: support::WireResponse,
        E: support::WireError,
        F: Fn(Context, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S, E>> + Send + 'static,
        S: Stream<Item = Result<T, E>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let run: Run = Arc::new(move |request| {
            let handler = handler.clone();
            let codecs =
                (support::request_codec(JSON), support::response_codec(JSON), support::error_codec());
            support::streaming(request, codecs, move |ctx, req, sink| async move {
                match handler(ctx, req).await {
                    Ok(stream) => sink.send(stream).await,
                    Err(error) => sink.early_error(error),
                }
            })
        });
        let (request, response, error) = (type_name::<Req>(), type_name::<T>(), type_name::<E>());
        Handler { run, stats: None, schemas: Default::default(), streaming: true, request, response, error }
    }

    /// A raw handler: bytes in, bytes out, for gateways and bindings that
    /// encode payloads themselves. `Err` is the failure reply to send, made
    /// with [`Message::error`] or [`Message::app_error`]; callers read it as
    /// they read any other failure.
    pub fn raw<F, Fut>(handler: F) -> Handler
    where
        F: Fn(Context, Bytes) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, Message>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let run: Run = Arc::new(move |request: Request| {
            let handler = handler.clone();
            let Request { ctx, payload, .. } = request;
            Box::pin(async move {
                let reply = match handler(ctx, payload).await {
                    Ok(payload) => Message::ok(payload),
                    Err(failure) if failure.error_kind().is_some() => failure,
                    // A failure without a kind would read as a success.
                    Err(_) => Message::error(
                        ErrorKind::Internal,
                        "the raw handler failed with a reply that is not a failure (make it with Message::error)",
                    ),
                };
                Outcome::Reply(reply)
            })
        });
        Handler {
            run,
            stats: None,
            schemas: Default::default(),
            streaming: false,
            request: "bytes",
            response: "bytes",
            error: "bytes",
        }
    }

    /// The same handler, publishing these JSON Schemas of its request,
    /// response and error types in the component's description (for
    /// example `serde_json::to_value(schemars::schema_for!(Req))`).
    pub fn with_schemas(
        mut self,
        request: Option<serde_json::Value>,
        response: Option<serde_json::Value>,
        error: Option<serde_json::Value>,
    ) -> Handler {
        self.schemas = [request, response, error];
        self
    }

    /// The same handler, with figures of its own for the `data` of this
    /// endpoint in `$SRV.STATS` (a cache's size, a model's load), read each
    /// time the statistics are asked for.
    pub fn with_stats<T, F>(mut self, stats: F) -> Handler
    where
        T: serde::Serialize,
        F: Fn() -> T + Send + Sync + 'static,
    {
        self.stats = Some(Arc::new(move || support::stats_value(&stats())));
        self
    }
}

fn type_name<T>() -> &'static str {
    std::any::type_name::<T>()
}

/// A component to serve from [`Handler`]s: made by
/// [`Component::service`](crate::names::Component::service), served by
/// [`serve`](Self::serve).
#[derive(Debug)]
#[must_use = "nothing is served until `serve` is called"]
pub struct ServiceBuilder {
    rt: Runtime,
    namespace: String,
    component: String,
    endpoints: Vec<(String, Handler)>,
    labels: Vec<(String, String)>,
    version: String,
    is_static: bool,
    capabilities: Option<serde_json::Value>,
}

/// The endpoints a [`ServiceBuilder`] served: what its
/// [`ServeHandle::service`] holds.
#[derive(Debug)]
pub struct Handlers {
    endpoints: Vec<(String, Handler)>,
}

impl Handlers {
    /// The endpoints' wire names, in the order they were added.
    pub fn endpoints(&self) -> impl Iterator<Item = &str> {
        self.endpoints.iter().map(|(name, _)| name.as_str())
    }
}

impl ServiceBuilder {
    pub(crate) fn new(rt: Runtime, namespace: &str, component: &str, labels: Vec<(String, String)>) -> Self {
        ServiceBuilder {
            rt,
            namespace: namespace.into(),
            component: component.into(),
            labels,
            endpoints: Vec::new(),
            version: "0.0.0".into(),
            is_static: false,
            capabilities: None,
        }
    }

    /// Adds an endpoint. Fails when `name` breaks the name rules or is
    /// already an endpoint of this component.
    pub fn endpoint(mut self, name: &str, handler: Handler) -> Result<Self, Error> {
        validate_endpoint(name)?;
        if self.endpoints.iter().any(|(n, _)| n == name) {
            return Err(Error::DuplicateEndpoint {
                component: format!("{}/{}", self.namespace, self.component),
                endpoint: name.into(),
            });
        }
        self.endpoints.push((name.into(), handler));
        Ok(self)
    }

    /// A constant metric label on every server-side series of the
    /// component, as `#[component(labels(..))]` gives.
    pub fn label(mut self, key: &str, value: &str) -> Result<Self, Error> {
        validate_label(key)?;
        self.labels.retain(|(k, _)| k != key);
        self.labels.push((key.into(), value.into()));
        Ok(self)
    }

    /// The version `$SRV.INFO` reports (semantic versioning); `0.0.0` unless set.
    pub fn version(mut self, version: &str) -> Self {
        self.version = version.into();
        self
    }

    /// What the component says it can do or was configured with, published
    /// in its description (`$SRV.INFO`) for callers to read.
    pub fn capabilities<T: serde::Serialize>(mut self, capabilities: &T) -> Result<Self, Error> {
        self.capabilities = Some(crate::describe::capabilities_json(capabilities)?);
        Ok(self)
    }

    /// A static component: no discovery registration, reached through the
    /// queue group alone, as `#[component(static)]`.
    pub fn unregistered(mut self) -> Self {
        self.is_static = true;
        self
    }

    /// Serves the endpoints until the handle is shut down or dropped, under
    /// the runtime's instance id, as [`Runtime::serve`](crate::Runtime::serve)
    /// serves a `#[component]`.
    pub async fn serve(self) -> Result<ServeHandle<Handlers>, Error> {
        let ServiceBuilder { rt, namespace, component, endpoints, labels, version, is_static, capabilities } =
            self;
        let typed = |name: &str, schema: &Option<serde_json::Value>| crate::describe::TypeDescription {
            name: name.into(),
            schema: schema.clone(),
        };
        let description = crate::describe::Description {
            namespace: namespace.clone(),
            component: component.clone(),
            version: version.clone(),
            codec: "json".into(),
            labels: labels.iter().cloned().collect(),
            endpoints: endpoints
                .iter()
                .map(|(name, h)| crate::describe::EndpointDescription {
                    name: name.clone(),
                    kind: if h.streaming { "stream" } else { "unary" }.into(),
                    idempotent: true,
                    request: typed(h.request, &h.schemas[0]),
                    response: typed(h.response, &h.schemas[1]),
                    error: typed(h.error, &h.schemas[2]),
                })
                .collect(),
            capabilities,
        };
        let model = Model {
            description,
            service: rotor_names::service_name(&namespace, &component),
            namespace,
            name: component,
            version,
            labels,
            is_static,
            endpoints: endpoints
                .iter()
                .map(|(name, h)| EndpointModel {
                    name: name.clone(),
                    request: h.request.into(),
                    response: h.response.into(),
                    streaming: h.streaming,
                    max_request: None,
                })
                .collect(),
        };
        let runs: Vec<Run> = endpoints.iter().map(|(_, h)| h.run.clone()).collect();
        let stats: Vec<Option<Stats>> = endpoints.iter().map(|(_, h)| h.stats.clone()).collect();
        let handle: crate::serve::Handle = Arc::new(move |number, request| match runs.get(number) {
            Some(run) => run(request),
            None => support::unknown_endpoint(&request),
        });
        let extra: crate::serve::ExtraStats = Arc::new(move |number| stats.get(number)?.as_ref()?());
        let handlers = Arc::new(Handlers { endpoints });
        rt.serve_model(handlers, model, handle, extra).await
    }
}

impl Serving {
    /// Serves one more component, from handlers given at run time.
    pub async fn serve_handlers(self, service: ServiceBuilder) -> Result<Self, Error> {
        Ok(self.with(service.serve().await?))
    }
}
