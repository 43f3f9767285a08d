//! The runtime: one instance identity (a lease) on a transport and a
//! discovery, configured from the environment or a builder.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::discovery::{Discovery, InstanceList, Lease, MemoryDiscovery};
use crate::names::Namespace;
use crate::serve::{self, ServeHandle};
use crate::transport::{InProcess, Transport};
use crate::{Error, Guard, InstanceId, Service, registry};

/// Environment variable naming the NATS server(s).
pub const ENV_NATS_URL: &str = "ROTOR_NATS_URL";
/// Environment variable naming the etcd endpoints, comma-separated.
pub const ENV_ETCD_ENDPOINTS: &str = "ROTOR_ETCD_ENDPOINTS";

/// How requests travel and how instances are found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// In-process transport and in-memory discovery: no servers.
    Embedded,
    /// A transport without discovery: every call goes to the queue group.
    Static,
    /// A transport and a discovery service.
    Distributed,
}

/// Tunables shared by everything a runtime does.
#[derive(Clone, Debug)]
pub struct Config {
    /// Timeout of a call when the client sets none.
    pub request_timeout: Duration,
    /// How long a graceful shutdown waits for requests in flight.
    pub drain_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config { request_timeout: Duration::from_secs(30), drain_timeout: Duration::from_secs(10) }
    }
}

/// A handle on Rotor: serves components and makes clients. Cheap to clone;
/// clones share one instance identity.
///
/// One `Runtime` is one instance: it holds one discovery lease, and its id is
/// the instance id of everything it serves, as one process would. To host a
/// second instance of a component in the same process (tests, the
/// quickstart), take a [`with_new_lease`](Runtime::with_new_lease) runtime.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engines: Arc<Engines>,
    instance: InstanceId,
    /// Revokes the lease when the last clone of this runtime goes.
    _lease: Option<Guard>,
    serving: Mutex<HashSet<&'static str>>,
}

/// What runtimes made by [`Runtime::with_new_lease`] share.
pub(crate) struct Engines {
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) discovery: Option<Arc<dyn Discovery>>,
    pub(crate) config: Config,
    mode: Mode,
    /// One watch per key prefix per process, shared by every client.
    watches: Mutex<HashMap<String, watch::Receiver<InstanceList>>>,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime").field("mode", &self.mode()).field("instance", &self.instance_id()).finish()
    }
}

impl Runtime {
    /// The embedded mode: an in-process transport and in-memory discovery,
    /// with the same semantics as NATS and etcd and no server.
    pub async fn embedded() -> Result<Runtime, Error> {
        Runtime::builder().build().await
    }

    /// A runtime configured from the environment: `ROTOR_NATS_URL` and
    /// `ROTOR_ETCD_ENDPOINTS`. With neither set, the embedded mode.
    pub async fn from_env() -> Result<Runtime, Error> {
        for var in [ENV_NATS_URL, ENV_ETCD_ENDPOINTS] {
            if let Ok(value) = std::env::var(var) {
                if !value.trim().is_empty() {
                    return Err(Error::Config(format!(
                        "{var}={value} asks for a server, but this build of Rotor has only the embedded \
                         mode; unset {var} to run embedded"
                    )));
                }
            }
        }
        Runtime::embedded().await
    }

    /// A builder for a runtime with chosen engines and tunables.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// Another instance identity on the same engines: a new lease, the same
    /// transport, discovery and watches. What two processes would be, in one.
    pub async fn with_new_lease(&self) -> Result<Runtime, Error> {
        Runtime::start(self.inner.engines.clone()).await
    }

    async fn start(engines: Arc<Engines>) -> Result<Runtime, Error> {
        let (instance, lease) = match &engines.discovery {
            Some(d) => {
                let Lease { id, guard } = d.grant_lease().await?;
                (id, Some(guard))
            }
            // Without discovery there is no lease; the id only tells
            // instances apart in logs and replies.
            None => (InstanceId(fastrand::i64(1 << 32..i64::MAX)), None),
        };
        tracing::debug!(instance = %instance, mode = ?engines.mode, "rotor runtime started");
        Ok(Runtime { inner: Arc::new(Inner { engines, instance, _lease: lease, serving: Mutex::default() }) })
    }

    /// This runtime's instance id: its lease id.
    pub fn instance_id(&self) -> InstanceId {
        self.inner.instance
    }

    /// How this runtime reaches other instances.
    pub fn mode(&self) -> Mode {
        self.inner.engines.mode
    }

    /// The tunables.
    pub fn config(&self) -> &Config {
        &self.inner.engines.config
    }

    /// Serves every endpoint of `service` until the returned handle is shut
    /// down or dropped.
    pub async fn serve<S: Service>(&self, service: S) -> Result<ServeHandle<S>, Error> {
        serve::serve(self, Arc::new(service)).await
    }

    /// Like [`serve`](Runtime::serve), for a component shared with other code.
    pub async fn serve_arc<S: Service>(&self, service: Arc<S>) -> Result<ServeHandle<S>, Error> {
        serve::serve(self, service).await
    }

    /// A namespace handle, for names built at run time. Fails with the rule
    /// when `name` breaks it.
    pub fn namespace(&self, name: &str) -> Result<Namespace, Error> {
        Namespace::new(self.clone(), name)
    }

    pub(crate) fn engines(&self) -> &Engines {
        &self.inner.engines
    }

    /// Claims `service` for this instance; released by the returned guard.
    pub(crate) fn claim(&self, service: &'static str) -> Result<Guard, Error> {
        let mut serving = self.inner.serving.lock().unwrap_or_else(|p| p.into_inner());
        if !serving.insert(service) {
            return Err(Error::AlreadyServing { service: service.to_string(), instance: self.instance_id() });
        }
        let inner = Arc::downgrade(&self.inner);
        Ok(Guard::new(move || {
            if let Some(inner) = inner.upgrade() {
                inner.serving.lock().unwrap_or_else(|p| p.into_inner()).remove(service);
            }
        }))
    }
}

impl Engines {
    /// The shared watch of a key prefix, started on first use.
    pub(crate) async fn watch(&self, prefix: &str) -> Result<Option<watch::Receiver<InstanceList>>, Error> {
        let Some(discovery) = &self.discovery else { return Ok(None) };
        if let Some(rx) = self.watches.lock().unwrap_or_else(|p| p.into_inner()).get(prefix) {
            return Ok(Some(rx.clone()));
        }
        let rx = discovery.watch(prefix.to_string()).await?;
        // Two first uses may race; keep whichever landed first.
        let mut watches = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        Ok(Some(watches.entry(prefix.to_string()).or_insert(rx).clone()))
    }
}

/// Builds a [`Runtime`]. Without a transport or discovery given, the
/// embedded engines are used.
#[derive(Default)]
pub struct RuntimeBuilder {
    transport: Option<Arc<dyn Transport>>,
    discovery: Option<Option<Arc<dyn Discovery>>>,
    config: Config,
}

impl RuntimeBuilder {
    /// Uses `transport` to carry requests.
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Uses `discovery` to register and find instances.
    pub fn discovery(mut self, discovery: Arc<dyn Discovery>) -> Self {
        self.discovery = Some(Some(discovery));
        self
    }

    /// No discovery: the static mode, where calls go to queue groups.
    pub fn without_discovery(mut self) -> Self {
        self.discovery = Some(None);
        self
    }

    /// Default timeout of a call.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// How long a graceful shutdown waits for requests in flight.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.config.drain_timeout = timeout;
        self
    }

    /// Checks the components linked into the binary, then starts.
    pub async fn build(self) -> Result<Runtime, Error> {
        registry::check()?;
        let embedded = self.transport.is_none();
        let transport = self.transport.unwrap_or_else(|| Arc::new(InProcess::new()));
        let discovery = match self.discovery {
            Some(d) => d,
            None => Some(Arc::new(MemoryDiscovery::new()) as Arc<dyn Discovery>),
        };
        let mode = match (&discovery, embedded) {
            (None, _) => Mode::Static,
            (Some(_), true) => Mode::Embedded,
            (Some(_), false) => Mode::Distributed,
        };
        let engines =
            Arc::new(Engines { transport, discovery, config: self.config, mode, watches: Mutex::default() });
        Runtime::start(engines).await
    }
}
