//! The runtime: one instance identity (a lease) on a transport and a
//! discovery, configured from the environment or a builder.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::connections::Connections;
use crate::engine::config::{Config, EtcdConfig, NatsConfig};
use crate::engine::discovery::{Discovery, Lease, LeaseState, MemoryDiscovery};
use crate::engine::transport::{InProcess, Nats, Transport};
use crate::engines::Engines;
pub use crate::engines::Mode;
use crate::serve::{self, Host, ServeHandle};
use crate::{Endpoints, Error, Guard, InstanceId, registry};

/// A handle on Rotor: serves components and makes clients. Cheap to clone;
/// clones share one instance identity.
///
/// One `Runtime` is one instance: it holds one discovery lease, taken when
/// it first serves, and its id is the instance id of everything it serves,
/// as one process would. A runtime that only calls takes no lease. To host a
/// second instance of a component in the same process (tests, the
/// quickstart), take a [`with_new_lease`](Runtime::with_new_lease) runtime.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engines: Arc<Engines>,
    identity: Identity,
    serving: Mutex<HashSet<String>>,
}

/// Who this runtime is: a lease, or without discovery a fixed id.
enum Identity {
    Lease(LazyLease),
    Fixed(watch::Sender<LeaseState>),
}

/// A lease taken on first use, so that a runtime that only calls holds
/// none: no keep-alive stream, nothing left in etcd when it exits.
struct LazyLease {
    discovery: Arc<dyn Discovery>,
    lease: tokio::sync::OnceCell<Arc<dyn Lease>>,
    /// What [`Runtime::lease_changes`] shows: id 0 and not live until the
    /// lease is taken, then the lease's own state, forwarded.
    state: Arc<watch::Sender<LeaseState>>,
    /// Set by [`Runtime::shutdown`]: no lease is taken after it.
    shut: std::sync::atomic::AtomicBool,
}

impl LazyLease {
    fn new(discovery: Arc<dyn Discovery>) -> Self {
        let state = Arc::new(watch::channel(LeaseState { id: InstanceId(0), live: false }).0);
        LazyLease { discovery, lease: tokio::sync::OnceCell::new(), state, shut: Default::default() }
    }

    async fn get(&self) -> Result<&Arc<dyn Lease>, Error> {
        let revoked = || Error::LeaseRevoked { instance: InstanceId(0) };
        if self.shut.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(revoked());
        }
        let lease = self
            .lease
            .get_or_try_init(|| async {
                let lease = self.discovery.grant_lease().await?;
                let (mut changes, state) = (lease.changes(), Arc::downgrade(&self.state));
                tokio::spawn(async move {
                    loop {
                        let now = *changes.borrow_and_update();
                        let Some(state) = state.upgrade() else { return };
                        state.send_replace(now);
                        drop(state);
                        if changes.changed().await.is_err() {
                            return;
                        }
                    }
                });
                Ok::<_, Error>(lease)
            })
            .await?;
        // A shutdown that ran while the lease was being granted found none
        // to revoke: revoke it here rather than serve under it.
        if self.shut.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = lease.revoke().await;
            return Err(revoked());
        }
        Ok(lease)
    }
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

    /// A runtime configured from the `ROTOR_*` environment variables (see
    /// [`config`](crate::engine::config)): NATS and etcd when both are set, NATS alone
    /// for the static mode, neither for the embedded mode.
    pub async fn from_env() -> Result<Runtime, Error> {
        Runtime::builder().config(Config::from_env()?).build().await
    }

    /// A builder for a runtime with chosen engines and tunables.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// Another instance identity on the same engines: a new lease, taken
    /// now, and the same connections and watches. What two processes would
    /// be, in one.
    pub async fn with_new_lease(&self) -> Result<Runtime, Error> {
        let rt = Runtime::start(self.inner.engines.clone()).await?;
        if let Identity::Lease(lazy) = &rt.inner.identity {
            lazy.get().await?;
        }
        Ok(rt)
    }

    async fn start(engines: Arc<Engines>) -> Result<Runtime, Error> {
        let identity = match &engines.discovery {
            Some(d) => Identity::Lease(LazyLease::new(d.clone())),
            // Without discovery there is no lease; the id only tells
            // instances apart in subjects, logs and replies.
            None => {
                let id = InstanceId(fastrand::i64(1 << 32..i64::MAX));
                Identity::Fixed(watch::channel(LeaseState { id, live: true }).0)
            }
        };
        let rt = Runtime { inner: Arc::new(Inner { engines, identity, serving: Mutex::default() }) };
        tracing::debug!(instance = %rt.instance_id(), mode = ?rt.mode(), "rotor runtime started");
        Ok(rt)
    }

    /// This runtime's instance id: its lease id. It changes only when a lost
    /// lease is replaced. `InstanceId(0)` before the runtime serves
    /// anything: a runtime that only calls has no lease.
    pub fn instance_id(&self) -> InstanceId {
        match &self.inner.identity {
            Identity::Lease(lazy) => lazy.lease.get().map_or(InstanceId(0), |lease| lease.id()),
            Identity::Fixed(state) => state.borrow().id,
        }
    }

    /// The lease id and whether it is live, now and as they change: id 0
    /// and not live until the runtime first serves and takes its lease.
    pub fn lease_changes(&self) -> watch::Receiver<LeaseState> {
        match &self.inner.identity {
            Identity::Lease(lazy) => match lazy.lease.get() {
                Some(lease) => lease.changes(),
                None => lazy.state.subscribe(),
            },
            Identity::Fixed(state) => state.subscribe(),
        }
    }

    /// How this runtime reaches other instances.
    pub fn mode(&self) -> Mode {
        self.inner.engines.mode
    }

    /// The tunables.
    pub fn config(&self) -> &Config {
        &self.inner.engines.config
    }

    /// The transport, for tools that need it directly.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.inner.engines.transport
    }

    /// This process's metrics (shared by every lease of these engines).
    pub fn metrics(&self) -> &crate::engine::metrics::Metrics {
        &self.inner.engines.metrics
    }

    /// The health of every endpoint served by this process.
    pub fn health(&self) -> crate::status::HealthReport {
        self.inner.engines.health.report()
    }

    /// Where the status server listens, when `ROTOR_STATUS_ADDR` (or
    /// [`RuntimeBuilder::status_addr`]) started one.
    pub fn status_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner.engines.status.as_ref().map(|(addr, _)| *addr)
    }

    /// Where the direct plane listens, when `ROTOR_TCP_ADDR` (or
    /// [`RuntimeBuilder::direct`]) asked for it: the port, when it asked
    /// for port 0.
    pub fn direct_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner.engines.direct.as_ref().map(|d| d.local_addr())
    }

    /// The discovery, if this runtime has one.
    pub fn discovery(&self) -> Option<&Arc<dyn Discovery>> {
        self.inner.engines.discovery.as_ref()
    }

    /// Serves every endpoint of `service` until the returned handle is shut
    /// down or dropped.
    pub async fn serve<S: Endpoints>(&self, service: S) -> Result<ServeHandle<S>, Error> {
        self.serve_arc(Arc::new(service)).await
    }

    /// Like [`serve`](Runtime::serve), for a component shared with other code.
    pub async fn serve_arc<S: Endpoints>(&self, service: Arc<S>) -> Result<ServeHandle<S>, Error> {
        let (handle, extra_stats) = serve::generated(&service);
        let mut model = serve::Model::of(S::DESCRIPTOR, &S::schemas());
        model.description.capabilities = service.capabilities()?;
        self.serve_model(service, model, handle, extra_stats).await
    }

    /// Serves what `model` describes: the one way in for generated code and
    /// run-time handlers alike.
    pub(crate) async fn serve_model<S: Send + Sync + 'static>(
        &self,
        service: Arc<S>,
        model: serve::Model,
        handle: serve::Handle,
        extra_stats: serve::ExtraStats,
    ) -> Result<ServeHandle<S>, Error> {
        let claim = self.claim(&model.service)?;
        let lease = match &self.inner.identity {
            Identity::Lease(lazy) => Some(lazy.get().await?.clone()),
            Identity::Fixed(_) => None,
        };
        let host =
            Host { engines: self.inner.engines.clone(), lease, lease_changes: self.lease_changes(), claim };
        serve::serve(host, service, model, handle, extra_stats).await
    }

    /// For binaries: serves `service` until Ctrl-C or SIGTERM, then shuts
    /// down gracefully — stops taking requests, finishes those in flight (up
    /// to the drain timeout) and revokes the lease. For several components,
    /// see [`serving`](Runtime::serving).
    pub async fn serve_until_signal<S: Endpoints>(&self, service: S) -> Result<crate::ShutdownReport, Error> {
        self.serving().serve(service).await?.until_signal().await
    }

    /// Several components served together and shut down together:
    /// `rt.serving().serve(a).await?.serve(b).await?.until_signal().await?`.
    pub fn serving(&self) -> Serving {
        Serving { rt: self.clone(), handles: Vec::new() }
    }

    /// Revokes this runtime's lease now, which removes every registration
    /// made under it. Serve handles still alive stop being discoverable.
    pub async fn shutdown(&self) -> Result<(), Error> {
        match &self.inner.identity {
            Identity::Lease(lazy) => {
                lazy.shut.store(true, std::sync::atomic::Ordering::SeqCst);
                match lazy.lease.get() {
                    Some(lease) => lease.revoke().await,
                    None => Ok(()),
                }
            }
            Identity::Fixed(state) => {
                state.send_modify(|s| s.live = false);
                Ok(())
            }
        }
    }

    pub(crate) fn engines(&self) -> &Arc<Engines> {
        &self.inner.engines
    }

    /// Claims `service` for this instance; released by the returned guard.
    fn claim(&self, service: &str) -> Result<Guard, Error> {
        let mut serving = self.inner.serving.lock().unwrap_or_else(|p| p.into_inner());
        if !serving.insert(service.to_string()) {
            return Err(Error::AlreadyServing { service: service.to_string(), instance: self.instance_id() });
        }
        let (inner, service) = (Arc::downgrade(&self.inner), service.to_string());
        Ok(Guard::new(move || {
            if let Some(inner) = inner.upgrade() {
                inner.serving.lock().unwrap_or_else(|p| p.into_inner()).remove(&service);
            }
        }))
    }
}

/// Components served by one runtime, shut down together; made by
/// [`Runtime::serving`].
#[must_use = "the components stop serving when this is dropped"]
pub struct Serving {
    rt: Runtime,
    handles: Vec<Box<dyn Stop>>,
}

/// A served component of any type, as [`Serving`] holds it.
trait Stop: Send {
    fn stop(self: Box<Self>) -> futures::future::BoxFuture<'static, crate::ShutdownReport>;
}

impl<S: Send + Sync + 'static> Stop for ServeHandle<S> {
    fn stop(self: Box<Self>) -> futures::future::BoxFuture<'static, crate::ShutdownReport> {
        Box::pin((*self).shutdown())
    }
}

impl Serving {
    /// Serves one more component.
    pub async fn serve<S: Endpoints>(mut self, service: S) -> Result<Self, Error> {
        let handle = self.rt.serve(service).await?;
        self.handles.push(Box::new(handle));
        Ok(self)
    }

    /// Adds a component served already, to be shut down with the others.
    pub fn with<S: Send + Sync + 'static>(mut self, handle: ServeHandle<S>) -> Self {
        self.handles.push(Box::new(handle));
        self
    }

    /// How many components are served.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// `true` when none is.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Shuts every component down at once (so that the drain timeout bounds
    /// the whole), then revokes the lease. Drained when every one drained.
    pub async fn shutdown(self) -> Result<crate::ShutdownReport, Error> {
        let reports = futures::future::join_all(self.handles.into_iter().map(Stop::stop)).await;
        self.rt.shutdown().await?;
        Ok(crate::ShutdownReport { drained: reports.iter().all(|r| r.drained) })
    }

    /// Serves until Ctrl-C or SIGTERM, then [`shutdown`](Self::shutdown).
    /// It listens for them from its first poll; a program that announces
    /// that it serves before it calls this should listen first, with
    /// `serving.until(rotor::shutdown_signal())` called before the
    /// announcement, or the [`shutdown_signal`](crate::shutdown_signal)
    /// made before it.
    pub async fn until_signal(self) -> Result<crate::ShutdownReport, Error> {
        self.until(crate::signal::shutdown_signal()).await
    }

    /// Serves until `stop` completes (a signal, a message, a test's
    /// trigger), then [`shutdown`](Self::shutdown).
    pub async fn until(
        self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<crate::ShutdownReport, Error> {
        stop.await;
        tracing::info!(components = self.handles.len(), "stopping; draining");
        self.shutdown().await
    }
}

/// Builds a [`Runtime`]. With no server configured, the embedded engines are
/// used.
#[derive(Default)]
pub struct RuntimeBuilder {
    config: Config,
    transport: Option<Arc<dyn Transport>>,
    discovery: Option<Option<Arc<dyn Discovery>>>,
}

impl RuntimeBuilder {
    /// Starts from `config` (for instance [`Config::from_env`]).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Uses NATS as the transport, with the authentication (token, user and
    /// password, nkey, creds) and TLS (CA, client certificate) that `nats`
    /// names; see [`NatsConfig`].
    pub fn nats(mut self, nats: NatsConfig) -> Self {
        self.config.nats = Some(nats);
        self
    }

    /// Uses etcd for discovery, with the user and TLS (CA, client
    /// certificate) that `etcd` names; see [`EtcdConfig`].
    pub fn etcd(mut self, etcd: EtcdConfig) -> Self {
        self.config.etcd = Some(etcd);
        self
    }

    /// Uses `transport` to carry requests, instead of one from the config.
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Uses `discovery` to register and find instances, instead of one from
    /// the config.
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

    /// Serves `/metrics`, `/health` and `/live` on `addr` (port 0: any).
    pub fn status_addr(mut self, addr: std::net::SocketAddr) -> Self {
        self.config.status_addr = Some(addr);
        self
    }

    /// Listens on the direct plane as `direct` says, and advertises it in
    /// every instance record (like `ROTOR_TCP_ADDR`).
    pub fn direct(mut self, direct: crate::config::DirectConfig) -> Self {
        self.config.direct = Some(direct);
        self
    }

    /// Mutual TLS on the direct plane, for listening and calling (like
    /// `ROTOR_TCP_TLS_*`).
    pub fn direct_tls(mut self, tls: crate::config::DirectTls) -> Self {
        self.config.direct_tls = Some(tls);
        self
    }

    /// The largest request payload an endpoint this process serves takes,
    /// in bytes (like `ROTOR_MAX_REQUEST`; 32 MiB by default).
    pub fn max_request(mut self, bytes: usize) -> Self {
        self.config.max_request = bytes;
        self
    }

    /// The largest message this process takes over the direct plane (like
    /// `ROTOR_TCP_MAX_PAYLOAD`; 64 MiB by default).
    pub fn direct_max_payload(mut self, bytes: usize) -> Self {
        self.config.direct_max_payload = bytes;
        self
    }

    /// The plane calls go over (like `ROTOR_PLANE`).
    pub fn plane(mut self, plane: crate::config::Plane) -> Self {
        self.config.plane = plane;
        self
    }

    /// Scrapes `$SRV.STATS` of every served component into the
    /// `rotor_nats_service_*` gauges at this interval.
    pub fn stats_scrape_interval(mut self, interval: Duration) -> Self {
        self.config.stats_scrape_interval = Some(interval);
        self
    }

    /// How long start-up tries to reach each server.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Time-to-live of the discovery lease.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.config.lease_ttl = ttl;
        self
    }

    /// Stream items a server may send ahead of the caller's consumption.
    pub fn stream_window(mut self, items: u32) -> Self {
        self.config.stream_window = items.max(1);
        self
    }

    /// Stream bytes a server may send ahead of the caller's consumption.
    pub fn stream_window_bytes(mut self, bytes: u64) -> Self {
        self.config.stream_window_bytes = bytes.max(1);
        self
    }

    /// Interval of stream heartbeats and keep-alives.
    pub fn stream_heartbeat(mut self, interval: Duration) -> Self {
        self.config.stream_heartbeat = crate::exchange::stream::clamp_heartbeat(interval);
        self
    }

    /// How many times an idempotent call is retried on another instance.
    pub fn retries(mut self, retries: u32) -> Self {
        self.config.retries = retries;
        self
    }

    /// Checks the components linked into the binary, reaches the servers,
    /// and takes a lease.
    pub async fn build(self) -> Result<Runtime, Error> {
        registry::check()?;
        let config = self.config;
        #[cfg(not(feature = "etcd"))]
        if let (None, Some(etcd)) = (&self.discovery, &config.etcd) {
            return Err(Error::NotBuilt {
                what: format!("etcd discovery (asked for by {})", etcd.source),
                feature: "etcd",
            });
        }
        let nats_configured = config.nats.is_some() || self.transport.is_some();
        let connections = match (self.transport, self.discovery) {
            // Servers named by the config: shared with every runtime of
            // the process built for the same ones.
            (None, None) if config.nats.is_some() => Connections::shared(&config, connect(&config)).await?,
            (transport, discovery) => {
                let transport = match transport {
                    Some(t) => t,
                    None if config.nats.is_some() => connect_nats(&config).await?,
                    None => Arc::new(InProcess::new()),
                };
                let discovery = match discovery {
                    Some(d) => d,
                    None if config.etcd.is_some() => Some(connect_etcd(&config).await?),
                    None if config.nats.is_some() => None,
                    None => Some(Arc::new(MemoryDiscovery::new()) as Arc<dyn Discovery>),
                };
                Connections::own(transport, discovery)
            }
        };
        let mode = match (&connections.discovery, nats_configured) {
            (None, _) => Mode::Static,
            (Some(_), false) => Mode::Embedded,
            (Some(_), true) => Mode::Distributed,
        };
        crate::engine::config::check_secured(&config)?;
        let mut engines = Engines::new(connections, config, mode);
        if mode == Mode::Distributed {
            direct::start(&mut engines).await?;
        }
        if let Some(addr) = engines.config.status_addr {
            engines.status =
                Some(crate::status::start(addr, engines.metrics.clone(), engines.health.clone()).await?);
        }
        Runtime::start(Arc::new(engines)).await
    }
}

mod direct {
    use std::sync::Arc;

    use crate::Error;
    use crate::engine::config::Plane;
    use crate::engine::transport::direct::{Acceptor, Connector, DirectPool, DirectServer};
    use crate::engines::Engines;

    /// The direct plane's listener, when the config names one, and the
    /// pool of connections calls use, unless they go over NATS alone.
    pub(super) async fn start(engines: &mut Engines) -> Result<(), Error> {
        let config = &engines.config;
        let max = config.direct_max_payload;
        if let Some(direct) = &config.direct {
            let acceptor = config.direct_tls.as_ref().map(Acceptor::new).transpose()?;
            engines.direct =
                Some(DirectServer::start(direct.bind, direct.advertise.clone(), acceptor, max).await?);
        }
        if config.plane == Plane::Direct {
            let connector = config.direct_tls.as_ref().map(Connector::new).transpose()?;
            engines.pool = Some(Arc::new(DirectPool::new(connector, max, config.connect_timeout)));
        }
        Ok(())
    }
}

/// A NATS connection and, when the config names etcd, an etcd client.
async fn connect(config: &Config) -> Result<(Arc<dyn Transport>, Option<Arc<dyn Discovery>>), Error> {
    let transport = connect_nats(config).await?;
    let discovery = match &config.etcd {
        Some(_) => Some(connect_etcd(config).await?),
        None => None,
    };
    Ok((transport, discovery))
}

async fn connect_nats(config: &Config) -> Result<Arc<dyn Transport>, Error> {
    let nats = config.nats.as_ref().expect("asked for NATS only when configured");
    Ok(Arc::new(Nats::connect(nats, config.connect_timeout).await?))
}

#[cfg(feature = "etcd")]
async fn connect_etcd(config: &Config) -> Result<Arc<dyn Discovery>, Error> {
    let etcd = config.etcd.as_ref().expect("asked for etcd only when configured");
    let discovery =
        crate::engine::discovery::EtcdDiscovery::connect(etcd, config.connect_timeout, config.lease_ttl)
            .await?;
    Ok(Arc::new(discovery))
}

#[cfg(not(feature = "etcd"))]
async fn connect_etcd(_: &Config) -> Result<Arc<dyn Discovery>, Error> {
    unreachable!("refused in build")
}
