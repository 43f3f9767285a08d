//! Hosting: bind the transport, register in discovery, dispatch requests to
//! the component, and on shutdown undo it all in the opposite order while
//! the requests already accepted finish.

mod dispatch;
mod model;

pub(crate) use model::{EndpointModel, ExtraStats, Handle, Model, generated};

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use dispatch::{Dispatcher, Work};

use crate::codec::Format;
use crate::context::ServedEndpoint;
use crate::engine::discovery::{InstanceRecord, KeyFor, Lease, LeaseState, TransportAddress};
use crate::engine::metrics::EndpointMetrics;
use crate::engine::transport::{Dispatch, EndpointSpec, ServiceSpec, StatsData};
use crate::engines::Engines;
use crate::{Error, Guard, InstanceId};

/// What serving needs of a runtime: the engines, its lease, and its claim on
/// the component (one runtime serves a component once).
pub(crate) struct Host {
    pub engines: Arc<Engines>,
    /// `None` without discovery.
    pub lease: Option<Arc<dyn Lease>>,
    pub lease_changes: watch::Receiver<LeaseState>,
    pub claim: Guard,
}

/// A served component. It serves until [`shutdown`](ServeHandle::shutdown)
/// or until it is dropped.
///
/// Dropping it leaves discovery and stops taking requests at once; requests
/// already accepted still run to completion in the background. `shutdown`
/// does the same and then waits for them, up to the runtime's drain timeout.
#[must_use = "the component stops serving when the handle is dropped"]
pub struct ServeHandle<S> {
    service: Arc<S>,
    instance: InstanceId,
    registrations: Vec<Guard>,
    binding: Option<Guard>,
    _claim: Guard,
    _health: Guard,
    scraper: Option<JoinHandle<()>>,
    work: Work,
    cancel: CancellationToken,
    lease: watch::Receiver<LeaseState>,
    /// Keeps the lease alive while the component is served, also when the
    /// runtime that took it is gone.
    _lease: Option<Arc<dyn Lease>>,
    /// Keeps the engines (the status server, the discovery connection) for
    /// as long as the component is served.
    _engines: Arc<Engines>,
    drain: Duration,
    /// The NATS micro service name, for logs.
    service_name: Arc<str>,
}

/// What a graceful shutdown did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutdownReport {
    /// `true` when every accepted request finished within the drain timeout;
    /// `false` when the rest were cancelled.
    pub drained: bool,
}

impl<S> std::fmt::Debug for ServeHandle<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeHandle")
            .field("service", &self.service_name)
            .field("instance", &self.instance_id())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl<S> ServeHandle<S> {
    /// The instance id this component is served under: the runtime's lease
    /// id, which changes only when a lost lease is replaced.
    pub fn instance_id(&self) -> InstanceId {
        self.lease.borrow().id
    }

    /// The served value.
    pub fn service(&self) -> &Arc<S> {
        &self.service
    }

    /// Requests being handled right now.
    pub fn in_flight(&self) -> usize {
        self.work.in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Leaves discovery, refuses new requests (unrun, so that callers send
    /// them elsewhere), waits for the accepted ones up to the drain timeout
    /// (past it, cancels the rest), and only then stops listening: a request
    /// that reaches the instance meanwhile is answered, never dropped.
    pub async fn shutdown(mut self) -> ShutdownReport {
        self.work.draining.store(true, std::sync::atomic::Ordering::Relaxed);
        self.registrations.clear();
        let drain = self.drain;
        self.work.tracker.close();
        let drained = tokio::time::timeout(drain, self.work.tracker.wait()).await.is_ok();
        if !drained {
            tracing::warn!(service = &*self.service_name, instance = %self.instance, ?drain,
                remaining = self.work.tracker.len(), "drain timeout passed; cancelling the remaining requests");
            self.cancel.cancel();
            self.work.tracker.wait().await;
        }
        // What arrives from here on is refused unrun; the transport hands
        // over everything it received before it lets go of the dispatcher.
        self.binding.take();
        self.work.listening.close();
        self.work.listening.wait().await;
        self.work.tracker.wait().await;
        ShutdownReport { drained }
    }
}

impl<S> Drop for ServeHandle<S> {
    fn drop(&mut self) {
        // Order matters: leave routing before unsubscribing, so that no
        // client picks an instance that no longer listens.
        self.registrations.clear();
        self.binding.take();
        if let Some(scraper) = self.scraper.take() {
            scraper.abort();
        }
    }
}

/// Serves the component `model` describes, whose endpoints `handle` runs;
/// `service` is what the handle hands back.
pub(crate) async fn serve<S: Send + Sync + 'static>(
    host: Host,
    service: Arc<S>,
    model: Model,
    handle: Handle,
    extra_stats: ExtraStats,
) -> Result<ServeHandle<S>, Error> {
    let desc = &model;
    let Host { engines, lease, lease_changes, claim } = host;
    let instance = lease_changes.borrow().id;
    let registering = if desc.is_static { None } else { lease.clone() };
    let discovered = registering.is_some();
    let labels: Vec<(&str, &str)> = desc.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server_metrics = engines.metrics.server(&desc.service, &desc.namespace, &desc.name, &labels);
    let metrics: Arc<[EndpointMetrics]> =
        desc.endpoints.iter().map(|ep| server_metrics.endpoint(&ep.name)).collect();
    let stats: StatsData = {
        let metrics = metrics.clone();
        let lease = discovered.then(|| lease_changes.clone());
        Arc::new(move |number| {
            let extra = extra_stats(number);
            let instance = lease.as_ref().map(|l| l.borrow().id);
            metrics
                .get(number)
                .map(|m| serde_json::to_value(m.data(extra, instance)).unwrap_or_default())
                .unwrap_or_default()
        })
    };

    let description = serde_json::to_string(&desc.description).expect("a description encodes");
    let spec = ServiceSpec {
        name: desc.service.clone(),
        namespace: desc.namespace.clone(),
        component: desc.name.clone(),
        version: desc.version.clone(),
        instance,
        endpoints: desc
            .endpoints
            .iter()
            .map(|ep| EndpointSpec {
                name: ep.name.clone(),
                queue_subject: rotor_names::endpoint_subject(&desc.service, &ep.name),
                instance_subject: discovered
                    .then(|| rotor_names::instance_subject(&desc.service, &ep.name, instance.0)),
                request_type: ep.request.clone(),
                response_type: ep.response.clone(),
                counters: Arc::default(),
                max_request: ep.max_request.unwrap_or(engines.config.max_request),
            })
            .collect(),
        metadata: std::collections::HashMap::from([(
            "rotor.wire".to_string(),
            crate::exchange::wire::WIRE_VERSION.to_string(),
        )]),
        info_metadata: std::collections::HashMap::from([(
            crate::describe::METADATA_KEY.to_string(),
            description.clone(),
        )]),
        stats,
    };
    let work = Work::default();
    let cancel = CancellationToken::new();
    let served: Vec<Arc<ServedEndpoint>> = desc
        .endpoints
        .iter()
        .zip(metrics.iter())
        .map(|(ep, metrics)| {
            let names = [desc.namespace.as_str().into(), desc.name.as_str().into(), ep.name.as_str().into()];
            Arc::new(ServedEndpoint {
                names,
                metrics: metrics.clone(),
                shutdown: cancel.clone(),
                streaming: ep.streaming,
                max_request: ep.max_request.unwrap_or(engines.config.max_request),
            })
        })
        .collect();
    let dispatcher = Dispatcher::new(
        handle,
        lease_changes.clone(),
        served,
        &work,
        engines.transport.clone(),
        tracing::info_span!("serve", namespace = &desc.namespace, component = &desc.name, instance = %instance),
    );
    let dispatch: Dispatch = Arc::new(move |incoming, start| dispatcher.dispatch(incoming, start));

    // The service name is this pair's before anything listens on its
    // subjects: another process may hold it under another pair.
    if let (true, Some(discovery)) = (discovered, &engines.discovery) {
        let owner = format!("{}/{}", desc.namespace, desc.name);
        discovery.reserve_service(desc.service.clone(), owner).await?;
    }
    // Listen first, register second: a client must never find an instance
    // that cannot answer yet.
    let guard = engines.transport.bind(spec.clone(), dispatch.clone()).await?;
    // A static component is reached through its queue group alone.
    let direct = match (&engines.direct, discovered) {
        (Some(direct), true) => Some((direct.bind(&spec, &dispatch)?, direct.advertised().to_string())),
        _ => None,
    };
    let (direct_guard, direct_address) = direct.unzip();
    let guard = Guard::new(move || {
        drop(direct_guard);
        drop(guard);
    });

    let mut registrations = Vec::new();
    if let Some(lease) = &registering {
        let records = |descriptor: Option<String>| -> Vec<InstanceRecord> {
            let endpoints = desc.endpoints.iter().zip(&spec.endpoints);
            endpoints
                .map(|(ep, ep_spec)| InstanceRecord {
                    namespace: desc.namespace.clone(),
                    component: desc.name.clone(),
                    endpoint: ep.name.clone(),
                    instance_id: instance,
                    transport: TransportAddress::NatsTcp(
                        ep_spec.instance_subject.clone().expect("discovered endpoints have one"),
                    ),
                    descriptor: descriptor.clone(),
                    codec: (desc.description.codec != Format::Json.name())
                        .then(|| desc.description.codec.clone()),
                    direct: direct_address.clone(),
                })
                .collect()
        };
        // The descriptor with the records, in one write: a client that
        // finds a record finds it too.
        let (namespace, component) = (desc.namespace.clone(), desc.name.clone());
        let key: KeyFor = Arc::new(move |id| rotor_names::descriptor_key(&namespace, &component, id.0));
        let fingerprint = crate::describe::fingerprint(&description);
        registrations = match lease
            .register(Some((key, description.into())), records(Some(fingerprint)))
            .await
        {
            Ok(guards) => guards,
            // Serving needs no descriptor in etcd ($SRV.INFO has it too), and
            // a deployment whose etcd role predates it must keep serving.
            Err(e) if e.to_string().contains("permission denied") => {
                tracing::warn!(
                    namespace = &desc.namespace, component = &desc.name, error = %e,
                    "the descriptor is not published in etcd: grant the etcd role readwrite on the components/ \
                     prefix (`etcdctl role grant-permission ROLE --prefix=true readwrite components/`)"
                );
                lease.register(None, records(None)).await?
            }
            Err(e) => return Err(e),
        };
    }
    tracing::info!(namespace = &desc.namespace, component = &desc.name, instance = %instance,
        endpoints = desc.endpoints.len(), "serving");

    let endpoint_names: Vec<&str> = desc.endpoints.iter().map(|ep| ep.name.as_str()).collect();
    let health = engines.health.add(
        &desc.namespace,
        &desc.name,
        &endpoint_names,
        lease_changes.clone(),
        discovered,
        work.draining.clone(),
    );
    let scraper = engines.config.stats_scrape_interval.map(|interval| {
        let (engines, service) = (engines.clone(), desc.service.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                let wait = (interval / 2).min(Duration::from_secs(1));
                match engines.transport.scrape_stats(service.clone(), wait).await {
                    Ok(stats) => engines.metrics.nats_service.record(&service, &stats),
                    Err(e) => tracing::debug!(error = %e, "$SRV.STATS scrape failed"),
                }
            }
        })
    });

    Ok(ServeHandle {
        _health: health,
        scraper,
        service,
        instance,
        registrations,
        binding: Some(guard),
        _claim: claim,
        work,
        cancel,
        lease: lease_changes,
        _lease: lease,
        drain: engines.config.drain_timeout,
        service_name: desc.service.as_str().into(),
        _engines: engines,
    })
}
