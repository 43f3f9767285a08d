//! Names built at run time: namespaces, components and endpoints, checked by
//! the same rules as the macros apply at compile time.

pub use rotor_names::{
    MAX_NAME_LEN, MAX_NAMESPACE_LEN, NAME_PATTERN, NameError, NameKind, Problem, component_key_prefix,
    endpoint_key_prefix, endpoint_subject, instance_key, instance_subject, service_name, validate_component,
    validate_endpoint, validate_label, validate_namespace,
};

use std::sync::Arc;
use std::time::Duration;

use crate::client::{ClientCore, RouteSpec};
use crate::engine::discovery::InstanceRecord;
use crate::engine::micro::stats::ServiceSet;
use crate::engines::Engines;
use crate::handler::{Handler, Handlers, ServiceBuilder};
use crate::{Error, InstanceId, Runtime, ServeHandle};

/// A namespace, such as `llm` or `llm.prod`.
#[derive(Clone)]
pub struct Namespace {
    rt: Runtime,
    name: String,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace").field("name", &self.name).finish()
    }
}

/// A component in a namespace.
#[derive(Clone, Debug)]
pub struct Component {
    namespace: Namespace,
    name: String,
}

/// An endpoint of a component.
#[derive(Clone, Debug)]
pub struct Endpoint {
    component: Component,
    name: String,
}

impl Namespace {
    pub(crate) fn new(rt: Runtime, name: &str) -> Result<Self, Error> {
        validate_namespace(name)?;
        Ok(Namespace { rt, name: name.to_string() })
    }

    fn engines(&self) -> &Arc<Engines> {
        self.rt.engines()
    }

    /// The namespace, dots included.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Metrics of this namespace: each carries the `namespace` label.
    pub fn metrics(&self) -> crate::engine::metrics::Scope {
        self.engines().metrics.scope(&[(crate::engine::metrics::names::NAMESPACE, &self.name)])
    }

    /// A child namespace: `llm` then `prod` gives `llm.prod`.
    pub fn namespace(&self, child: &str) -> Result<Namespace, Error> {
        Namespace::new(self.rt.clone(), &format!("{}.{child}", self.name))
    }

    /// A component of this namespace.
    pub fn component(&self, name: &str) -> Result<Component, Error> {
        validate_component(name)?;
        Ok(Component { namespace: self.clone(), name: name.to_string() })
    }
}

impl Component {
    /// The component name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// Its NATS micro service name.
    pub fn service_name(&self) -> String {
        service_name(&self.namespace.name, &self.name)
    }

    /// Metrics of this component: each carries `namespace` and `component`.
    pub fn metrics(&self) -> crate::engine::metrics::Scope {
        use crate::engine::metrics::names::{COMPONENT, NAMESPACE};
        self.namespace.engines().metrics.scope(&[(NAMESPACE, &self.namespace.name), (COMPONENT, &self.name)])
    }

    /// Every registered endpoint instance of this component, read from
    /// discovery now. Empty without discovery.
    pub async fn list_instances(&self) -> Result<Vec<InstanceRecord>, Error> {
        let Some(discovery) = &self.namespace.engines().discovery else { return Ok(Vec::new()) };
        discovery.list(component_key_prefix(&self.namespace.name, &self.name)).await
    }

    /// Asks every instance of this component for its NATS micro statistics
    /// (`$SRV.STATS`) and collects the replies that arrive within `timeout`.
    pub async fn scrape_stats(&self, timeout: Duration) -> Result<ServiceSet, Error> {
        let services = self.namespace.engines().transport.scrape_stats(self.service_name(), timeout).await?;
        Ok(ServiceSet { services })
    }

    /// Serves this component from handlers given at run time: add its
    /// endpoints, then [`serve`](ServiceBuilder::serve).
    pub fn service(&self) -> ServiceBuilder {
        ServiceBuilder::new(self.clone())
    }

    pub(crate) fn runtime(&self) -> &Runtime {
        &self.namespace.rt
    }

    /// An endpoint of this component.
    pub fn endpoint(&self, name: &str) -> Result<Endpoint, Error> {
        validate_endpoint(name)?;
        Ok(Endpoint { component: self.clone(), name: name.to_string() })
    }
}

impl Endpoint {
    /// The endpoint name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its component.
    pub fn component(&self) -> &Component {
        &self.component
    }

    /// Metrics of this endpoint: each carries `namespace`, `component` and
    /// `endpoint`.
    pub fn metrics(&self) -> crate::engine::metrics::Scope {
        use crate::engine::metrics::names::{COMPONENT, ENDPOINT, NAMESPACE};
        let c = &self.component;
        let labels = [
            (NAMESPACE, c.namespace.name.as_str()),
            (COMPONENT, c.name.as_str()),
            (ENDPOINT, self.name.as_str()),
        ];
        c.namespace.engines().metrics.scope(&labels)
    }

    /// The queue-group subject, answered by any instance.
    pub fn subject(&self) -> String {
        endpoint_subject(&self.component.service_name(), &self.name)
    }

    /// The subject of one instance, by the name rules. An instance keeps
    /// the subject of its first id when a lost lease is replaced; its
    /// discovery record ([`Component::list_instances`]) says where it
    /// listens under its current id.
    pub fn instance_subject(&self, instance: InstanceId) -> String {
        instance_subject(&self.component.service_name(), &self.name, instance.0)
    }

    /// The discovery key of one instance.
    pub fn instance_key(&self, instance: InstanceId) -> String {
        instance_key(&self.component.namespace.name, &self.component.name, &self.name, instance.0)
    }

    /// The discovery key prefix of every instance.
    pub fn key_prefix(&self) -> String {
        endpoint_key_prefix(&self.component.namespace.name, &self.component.name, &self.name)
    }

    /// Serves this endpoint alone as its component, running `handler`; for
    /// several endpoints, use [`Component::service`].
    pub async fn serve(&self, handler: Handler) -> Result<ServeHandle<Handlers>, Error> {
        self.component.service().endpoint(&self.name, handler)?.serve().await
    }

    /// An untyped client of this endpoint, for callers that have no
    /// generated client: gateways, tools. Call it by this endpoint's name.
    pub async fn client(&self) -> Result<ClientCore, Error> {
        let spec = RouteSpec {
            namespace: &self.component.namespace.name,
            component: &self.component.name,
            endpoint: &self.name,
            is_static: false,
            idempotent: true,
        };
        ClientCore::new(self.component.namespace.engines(), &[spec]).await
    }
}
