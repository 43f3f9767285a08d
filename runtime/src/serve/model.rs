//! What serving needs to know of a component, whether the macro described
//! it at compile time or handlers were given at run time: its names and
//! endpoints, owned, and one function that runs endpoint number `n`.

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::component::Request;
use crate::exchange::sink::Outcome;
use crate::{ComponentDescriptor, Endpoints};

/// A component to serve, by its names.
#[derive(Clone, Debug)]
pub(crate) struct Model {
    pub namespace: String,
    pub name: String,
    /// The NATS micro service name.
    pub service: String,
    pub version: String,
    pub labels: Vec<(String, String)>,
    /// No discovery registration: reached through the queue group alone.
    pub is_static: bool,
    pub endpoints: Vec<EndpointModel>,
    /// What `$SRV.INFO` publishes of it (`rotor.descriptor`).
    pub description: crate::describe::Description,
}

/// An endpoint to serve.
#[derive(Clone, Debug)]
pub(crate) struct EndpointModel {
    pub name: String,
    /// The request and response types, as `$SRV.INFO` shows them.
    pub request: String,
    pub response: String,
    pub streaming: bool,
    /// The largest request payload; `None`: the runtime's.
    pub max_request: Option<usize>,
}

/// Runs endpoint number `n` of a component on one request.
pub(crate) type Handle = Arc<dyn Fn(usize, Request) -> BoxFuture<'static, Outcome> + Send + Sync>;

/// The component's own figures for the `data` of endpoint number `n` in
/// `$SRV.STATS`.
pub(crate) type ExtraStats = Arc<dyn Fn(usize) -> Option<serde_json::Value> + Send + Sync>;

impl Model {
    /// The model of a macro-made component whose types have `schemas`.
    pub(crate) fn of(desc: &ComponentDescriptor, schemas: &[crate::describe::EndpointSchemas]) -> Self {
        Model {
            description: crate::describe::Description::of(desc, schemas, None),
            namespace: desc.namespace.into(),
            name: desc.name.into(),
            service: desc.service.into(),
            version: desc.version.into(),
            labels: desc.labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            is_static: desc.is_static,
            endpoints: desc
                .endpoints
                .iter()
                .map(|ep| EndpointModel {
                    name: ep.name.into(),
                    request: ep.request.into(),
                    response: ep.response.into(),
                    streaming: ep.streaming,
                    max_request: ep.max_request,
                })
                .collect(),
        }
    }
}

/// The handle and statistics of a macro-made component.
pub(crate) fn generated<S: Endpoints>(service: &Arc<S>) -> (Handle, ExtraStats) {
    let handled = service.clone();
    let handle: Handle = Arc::new(move |n, request| S::handle(handled.clone(), n, request));
    // Weak: the statistics live in the transport, which must not keep the
    // component alive once its handle is gone.
    let stats = Arc::downgrade(service);
    let extra: ExtraStats = Arc::new(move |n| {
        let service = stats.upgrade()?;
        service.endpoint_stats(n).or_else(|| service.extra_stats())
    });
    (handle, extra)
}
