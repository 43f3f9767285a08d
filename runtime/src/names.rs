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
    /// Set with [`Component::with_label`]; empty means "the linked
    /// `#[component]`'s, if any".
    labels: Arc<[(String, String)]>,
}

/// An endpoint of a component.
#[derive(Clone, Debug)]
pub struct Endpoint {
    component: Component,
    name: String,
}

impl Runtime {
    /// A namespace handle, for names built at run time. Fails with the rule
    /// when `name` breaks it.
    pub fn namespace(&self, name: &str) -> Result<Namespace, Error> {
        Namespace::new(self.clone(), name)
    }
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

    /// The namespace this one is a child of: `llm` for `llm.prod`; `None`
    /// for a top-level namespace.
    pub fn parent(&self) -> Option<Namespace> {
        let (parent, _) = self.name.rsplit_once('.')?;
        Some(Namespace { rt: self.rt.clone(), name: parent.to_string() })
    }

    /// A child namespace: `llm` then `prod` gives `llm.prod`.
    pub fn namespace(&self, child: &str) -> Result<Namespace, Error> {
        Namespace::new(self.rt.clone(), &format!("{}.{child}", self.name))
    }

    /// A component of this namespace.
    pub fn component(&self, name: &str) -> Result<Component, Error> {
        validate_component(name)?;
        Ok(Component { namespace: self.clone(), name: name.to_string(), labels: Arc::new([]) })
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

    /// `namespace/component`, as logs and errors name it.
    pub fn path(&self) -> String {
        format!("{}/{}", self.namespace.name, self.name)
    }

    /// Where its instances are registered in etcd (and in the embedded
    /// discovery): the prefix of every instance key of its endpoints.
    pub fn etcd_path(&self) -> String {
        component_key_prefix(&self.namespace.name, &self.name)
    }

    /// The same component with a constant metric label, which a component
    /// served from it ([`service`](Self::service)) carries on its server
    /// series. Fails when `key` is not a valid label name or one Rotor sets.
    pub fn with_label(&self, key: &str, value: &str) -> Result<Component, Error> {
        validate_label(key)?;
        let mut labels: Vec<(String, String)> = self.labels().into_iter().filter(|(k, _)| k != key).collect();
        labels.push((key.to_string(), value.to_string()));
        Ok(Component { labels: labels.into(), ..self.clone() })
    }

    /// Its constant metric labels: those set with
    /// [`with_label`](Self::with_label), or else those of the
    /// `#[component]` of these names linked into this binary.
    pub fn labels(&self) -> Vec<(String, String)> {
        if !self.labels.is_empty() {
            return self.labels.to_vec();
        }
        self.linked().map_or_else(Vec::new, |desc| {
            desc.labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        })
    }

    /// The `#[component]` of these names linked into this binary, if any.
    fn linked(&self) -> Option<&'static crate::ComponentDescriptor> {
        crate::registry::components()
            .into_iter()
            .find(|c| c.namespace == self.namespace.name && c.name == self.name)
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
        ServiceBuilder::new(self.namespace.rt.clone(), &self.namespace.name, &self.name, self.labels())
    }

    /// Asks every instance of this component for its NATS micro statistics
    /// (`$SRV.STATS`) and yields each reply as it arrives, until `timeout`
    /// has passed: a dashboard or a load-aware router reads the first
    /// instances without waiting for the slowest.
    pub async fn stats_stream(
        &self,
        timeout: Duration,
    ) -> Result<futures::stream::BoxStream<'static, crate::ServiceStats>, Error> {
        self.namespace.engines().transport.stats_stream(self.service_name(), timeout).await
    }

    /// The state key `key` of this component (`/`-separated name
    /// segments, such as `models/active`), holding a `T`: anyone may write
    /// it, and anyone may watch it. Fails when `key` breaks the rule, or
    /// without discovery (a static runtime has nowhere to keep it).
    pub fn state<T>(&self, key: &str) -> Result<crate::state::State<T>, Error>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        rotor_names::validate_state_key(key)?;
        let Some(discovery) = &self.namespace.engines().discovery else {
            return Err(Error::Config(format!(
                "{}'s state lives in discovery, and this runtime has none (a static runtime): \
                 configure etcd (ROTOR_ETCD_ENDPOINTS), or use the embedded mode",
                self.path()
            )));
        };
        let full = rotor_names::state_key(&self.namespace.name, &self.name, key);
        Ok(crate::state::State::new(discovery.clone(), full))
    }

    /// An endpoint of this component.
    pub fn endpoint(&self, name: &str) -> Result<Endpoint, Error> {
        validate_endpoint(name)?;
        Ok(Endpoint { component: self.clone(), name: name.to_string() })
    }
}

/// Which endpoint, by its three names; written `namespace/component/endpoint`
/// (the form [`Display`](std::fmt::Display) gives and
/// [`FromStr`](std::str::FromStr) reads, by the name rules).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointId {
    /// The namespace, dots included.
    pub namespace: String,
    /// The component name.
    pub component: String,
    /// The endpoint name.
    pub endpoint: String,
}

impl std::fmt::Display for EndpointId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.component, self.endpoint)
    }
}

impl std::str::FromStr for EndpointId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let mut parts = s.split('/');
        let (Some(namespace), Some(component), Some(endpoint), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::Config(format!(
                "`{s}` is not an endpoint id: write it as namespace/component/endpoint"
            )));
        };
        validate_namespace(namespace)?;
        validate_component(component)?;
        validate_endpoint(endpoint)?;
        Ok(EndpointId { namespace: namespace.into(), component: component.into(), endpoint: endpoint.into() })
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

    /// Its three names.
    pub fn id(&self) -> EndpointId {
        EndpointId {
            namespace: self.component.namespace.name.clone(),
            component: self.component.name.clone(),
            endpoint: self.name.clone(),
        }
    }

    /// `namespace/component/endpoint`.
    pub fn path(&self) -> String {
        self.id().to_string()
    }

    /// Where its instances are registered: the prefix of their keys, as
    /// [`key_prefix`](Self::key_prefix).
    pub fn etcd_path(&self) -> String {
        self.key_prefix()
    }

    /// Its component's constant metric labels ([`Component::labels`]).
    pub fn labels(&self) -> Vec<(String, String)> {
        self.component.labels()
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
    ///
    /// It routes to the instances discovery lists, unless the runtime has
    /// no discovery or a `#[component(static)]` of these names is linked
    /// into this binary: then to the queue group. Its typed calls use the
    /// linked component's codec, JSON otherwise
    /// ([`with_codec`](ClientCore::with_codec) chooses). For a static component
    /// that is not linked in, use [`static_client`](Self::static_client).
    pub async fn client(&self) -> Result<ClientCore, Error> {
        let linked = self.component.linked();
        let is_static = linked.is_some_and(|desc| desc.is_static);
        let idempotent = linked
            .and_then(|desc| desc.endpoints.iter().find(|ep| ep.name == self.name))
            .is_none_or(|ep| ep.idempotent);
        // A component linked into this binary says which codec it speaks.
        let format = linked.map(|desc| desc.codec).unwrap_or_default();
        Ok(self.client_with(is_static, idempotent).await?.with_codec(format))
    }

    /// An untyped client of a static component's endpoint: it sends every
    /// call to the queue group, which any instance answers, and never waits
    /// on discovery (a static component registers nothing).
    pub async fn static_client(&self) -> Result<ClientCore, Error> {
        self.client_with(true, true).await
    }

    async fn client_with(&self, is_static: bool, idempotent: bool) -> Result<ClientCore, Error> {
        let spec = RouteSpec {
            namespace: &self.component.namespace.name,
            component: &self.component.name,
            endpoint: &self.name,
            is_static,
            idempotent,
        };
        ClientCore::new(self.component.namespace.engines(), &[spec]).await
    }
}
