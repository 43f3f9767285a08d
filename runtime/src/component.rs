//! The trait `#[component]` implements, and the request its `handle` takes.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::exchange::sink::{Outcome, StreamSlot};
use crate::{ComponentDescriptor, Context};

/// One request, as a component's `handle` receives it.
#[doc(hidden)]
pub struct Request {
    pub(crate) ctx: Context,
    pub(crate) payload: Bytes,
    /// For a streaming endpoint called by a streaming client: where the
    /// stream goes, once accepted.
    pub(crate) stream: Option<Arc<StreamSlot>>,
}

/// A type whose `#[endpoint]` methods Rotor serves: what
/// `#[rotor::component]` implements. Not meant to be implemented by hand.
pub trait Endpoints: Send + Sync + Sized + 'static {
    /// The generated typed client, `{Type}Client`.
    type Client;

    /// Names, endpoints and types, as the macro saw them.
    const DESCRIPTOR: &'static ComponentDescriptor;

    /// Runs endpoint number `endpoint` on an encoded request.
    #[doc(hidden)]
    fn handle(self: Arc<Self>, endpoint: usize, request: Request) -> BoxFuture<'static, Outcome>;

    /// The component's own figures for the `data` of `$SRV.STATS`, from
    /// `#[component(stats = "method")]`.
    fn extra_stats(&self) -> Option<serde_json::Value> {
        None
    }

    /// Endpoint number `endpoint`'s own figures for its `data` in
    /// `$SRV.STATS`, from `#[endpoint(stats = "method")]`, in place of
    /// [`extra_stats`](Self::extra_stats).
    fn endpoint_stats(&self, endpoint: usize) -> Option<serde_json::Value> {
        let _ = endpoint;
        None
    }

    /// What the component says it can do or was configured with, from
    /// `#[component(capabilities = "method")]`: published in its
    /// description (`$SRV.INFO` and discovery) when it is served. An error
    /// when the value does not encode, which stops the serve.
    fn capabilities(&self) -> Result<Option<serde_json::Value>, crate::Error> {
        Ok(None)
    }

    /// The JSON Schemas of each endpoint's types, where they implement
    /// `schemars::JsonSchema`.
    #[doc(hidden)]
    fn schemas() -> Vec<crate::describe::EndpointSchemas> {
        Vec::new()
    }

    /// Wraps an untyped client into the typed one.
    #[doc(hidden)]
    fn client(core: crate::ClientCore) -> Self::Client;
}
