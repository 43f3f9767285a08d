//! Prometheus metrics, in a hierarchy: the runtime's registry, then one per
//! served component (with `namespace`, `component` and the component's own
//! labels as constant labels) and one per called component, each family
//! labelled by `endpoint`. [`Metrics::render`] merges them into one
//! Prometheus text exposition.

pub mod names;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use serde::{Deserialize, Serialize};

/// Every metric of one process.
pub struct Metrics {
    root: Registry,
    scopes: Mutex<HashMap<Vec<(String, String)>, Scope>>,
    children: Mutex<Vec<Registry>>,
    servers: Mutex<HashMap<String, Arc<ServerMetrics>>>,
    clients: Mutex<HashMap<String, Arc<ClientMetrics>>>,
    pub(crate) nats_service: NatsServiceGauges,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    registry.register(Box::new(collector.clone())).expect("metric names are unique in their registry");
    collector
}

impl Default for Metrics {
    fn default() -> Self {
        let root = Registry::new();
        let nats_service = NatsServiceGauges::new(&root);
        Metrics {
            root,
            scopes: Mutex::default(),
            children: Mutex::default(),
            servers: Mutex::default(),
            clients: Mutex::default(),
            nats_service,
        }
    }
}

impl Metrics {
    /// The runtime-level registry: register your own metrics here to have
    /// them served on `/metrics` with Rotor's.
    pub fn registry(&self) -> &Registry {
        &self.root
    }

    /// Every family of every registry, families of the same name merged.
    pub fn gather(&self) -> Vec<MetricFamily> {
        let mut families: BTreeMap<String, MetricFamily> = BTreeMap::new();
        let registries = lock(&self.children).clone();
        for registry in std::iter::once(&self.root).chain(registries.iter()) {
            for mut family in registry.gather() {
                match families.get_mut(family.name()) {
                    Some(existing) => existing.mut_metric().extend(family.take_metric()),
                    None => {
                        families.insert(family.name().to_string(), family);
                    }
                }
            }
        }
        families.into_values().collect()
    }

    /// The Prometheus text exposition of [`gather`](Self::gather).
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.gather(), &mut out).expect("text encoding cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }

    /// A registry for the program's own metrics at one level of the
    /// hierarchy, whose metrics carry `labels` (such as `namespace` and
    /// `component`); made on first use, then shared.
    pub fn scope(&self, labels: &[(&str, &str)]) -> Scope {
        let key: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        lock(&self.scopes)
            .entry(key.clone())
            .or_insert_with(|| Scope { registry: self.child(key.into_iter().collect()) })
            .clone()
    }

    fn child(&self, labels: HashMap<String, String>) -> Registry {
        let registry = Registry::new_custom(None, Some(labels)).expect("valid constant labels");
        lock(&self.children).push(registry.clone());
        registry
    }

    /// The server-side metrics of the component served as `service`, made on
    /// first use, with its own constant `labels`.
    pub(crate) fn server(
        &self,
        service: &str,
        namespace: &str,
        component: &str,
        labels: &[(&str, &str)],
    ) -> Arc<ServerMetrics> {
        lock(&self.servers)
            .entry(service.to_string())
            .or_insert_with(|| {
                let mut labels: HashMap<String, String> =
                    labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                labels.insert(names::NAMESPACE.to_string(), namespace.to_string());
                labels.insert(names::COMPONENT.to_string(), component.to_string());
                Arc::new(ServerMetrics::new(&self.child(labels)))
            })
            .clone()
    }

    /// The client-side metrics of calls to a component, made on first use.
    pub(crate) fn client(&self, namespace: &str, component: &str) -> Arc<ClientMetrics> {
        lock(&self.clients)
            .entry(format!("{namespace}/{component}"))
            .or_insert_with(|| {
                let labels = HashMap::from([
                    (names::NAMESPACE.to_string(), namespace.to_string()),
                    (names::COMPONENT.to_string(), component.to_string()),
                ]);
                Arc::new(ClientMetrics::new(&self.child(labels)))
            })
            .clone()
    }
}

/// One level of the metrics hierarchy, for a program's own metrics: every
/// metric made here carries the level's labels and is served on `/metrics`.
#[derive(Clone)]
pub struct Scope {
    registry: Registry,
}

impl Scope {
    /// A counter.
    pub fn counter(&self, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
        let c = IntCounter::new(name, help)?;
        self.registry.register(Box::new(c.clone()))?;
        Ok(c)
    }

    /// A gauge.
    pub fn gauge(&self, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
        let g = IntGauge::new(name, help)?;
        self.registry.register(Box::new(g.clone()))?;
        Ok(g)
    }

    /// A histogram with Rotor's duration buckets (50 µs to 10 min).
    pub fn histogram(&self, name: &str, help: &str) -> Result<prometheus::Histogram, prometheus::Error> {
        let opts = HistogramOpts::new(name, help).buckets(names::DURATION_BUCKETS.to_vec());
        let h = prometheus::Histogram::with_opts(opts)?;
        self.registry.register(Box::new(h.clone()))?;
        Ok(h)
    }

    /// The registry itself, for any other collector.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// A family that is never registered: each endpoint's errors of every type
/// together, read for `$SRV.STATS` and [`ClientStats`](crate::ClientStats).
/// Summing the registered family's series would read prometheus's data
/// model, whose API changes with its `protobuf` feature, which any other
/// crate in a program may turn on.
fn unregistered_total(name: &str) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, "errors of every type"), &[names::ENDPOINT]).expect("valid metric")
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(registry, IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
}

fn histogram(registry: &Registry, name: &str, help: &str) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(names::DURATION_BUCKETS.to_vec());
    register(registry, HistogramVec::new(opts, &[names::ENDPOINT]).expect("valid metric"))
}

/// Server-side families of one component.
pub(crate) struct ServerMetrics {
    requests: IntCounterVec,
    errors: IntCounterVec,
    errors_total: IntCounterVec,
    duration: HistogramVec,
    inflight: IntGaugeVec,
    request_bytes: IntCounterVec,
    response_bytes: IntCounterVec,
    stream_items: IntCounterVec,
    cancellations: IntCounterVec,
}

impl ServerMetrics {
    fn new(r: &Registry) -> Self {
        let ep = &[names::ENDPOINT];
        ServerMetrics {
            requests: counter(r, names::REQUESTS_TOTAL, "Requests handled", ep),
            errors: counter(
                r,
                names::ERRORS_TOTAL,
                "Requests answered with an error, by type",
                &[names::ENDPOINT, names::ERROR_TYPE],
            ),
            errors_total: unregistered_total(names::ERRORS_TOTAL),
            duration: histogram(
                r,
                names::REQUEST_DURATION_SECONDS,
                "Time from a request to its reply or stream end",
            ),
            inflight: register(
                r,
                IntGaugeVec::new(Opts::new(names::INFLIGHT_REQUESTS, "Requests being handled"), ep)
                    .expect("valid"),
            ),
            request_bytes: counter(r, names::REQUEST_BYTES_TOTAL, "Request payload bytes received", ep),
            response_bytes: counter(
                r,
                names::RESPONSE_BYTES_TOTAL,
                "Response and stream item bytes sent",
                ep,
            ),
            stream_items: counter(r, names::STREAM_ITEMS_TOTAL, "Stream items sent", ep),
            cancellations: counter(
                r,
                names::CANCELLATIONS_TOTAL,
                "Requests cancelled before they finished",
                ep,
            ),
        }
    }

    /// The handles of one endpoint.
    pub(crate) fn endpoint(&self, endpoint: &str) -> EndpointMetrics {
        let l = &[endpoint];
        EndpointMetrics {
            endpoint: endpoint.into(),
            requests: self.requests.with_label_values(l),
            errors: self.errors.clone(),
            errors_total: self.errors_total.with_label_values(l),
            duration: self.duration.with_label_values(l),
            inflight: self.inflight.with_label_values(l),
            request_bytes: self.request_bytes.with_label_values(l),
            response_bytes: self.response_bytes.with_label_values(l),
            stream_items: self.stream_items.with_label_values(l),
            cancellations: self.cancellations.with_label_values(l),
        }
    }
}

/// The server-side handles of one endpoint.
#[derive(Clone)]
pub(crate) struct EndpointMetrics {
    endpoint: Arc<str>,
    pub requests: IntCounter,
    errors: IntCounterVec,
    errors_total: IntCounter,
    pub duration: prometheus::Histogram,
    pub inflight: IntGauge,
    pub request_bytes: IntCounter,
    pub response_bytes: IntCounter,
    pub stream_items: IntCounter,
    pub cancellations: IntCounter,
}

/// Rotor's figures for one endpoint, as carried in the `data` field of
/// `$SRV.STATS`: the same numbers as the Prometheus metrics of this process.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointData {
    /// `rotor_requests_total`.
    pub requests: u64,
    /// `rotor_errors_total`, every type together.
    pub errors: u64,
    /// `rotor_inflight_requests`.
    pub inflight: i64,
    /// `rotor_request_bytes_total`.
    pub request_bytes: u64,
    /// `rotor_response_bytes_total`.
    pub response_bytes: u64,
    /// `rotor_stream_items_total`.
    pub stream_items: u64,
    /// `rotor_cancellations_total`.
    pub cancellations: u64,
    /// Sum of `rotor_request_duration_seconds`.
    pub duration_seconds: f64,
    /// The component's own figures, from `#[component(stats = "method")]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Value>,
    /// The instance that answered, as it is now: after a lost lease is
    /// replaced, its id changes, while the subjects it listens on keep the
    /// first one. `None` for a static component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<crate::InstanceId>,
}

impl EndpointMetrics {
    pub(crate) fn error(&self, kind: &str) {
        self.errors.with_label_values(&[&self.endpoint, kind]).inc();
        self.errors_total.inc();
    }

    fn errors_total(&self) -> u64 {
        self.errors_total.get()
    }

    pub(crate) fn data(
        &self,
        extra: Option<serde_json::Value>,
        instance: Option<crate::InstanceId>,
    ) -> EndpointData {
        EndpointData {
            requests: self.requests.get(),
            errors: self.errors_total(),
            inflight: self.inflight.get(),
            request_bytes: self.request_bytes.get(),
            response_bytes: self.response_bytes.get(),
            stream_items: self.stream_items.get(),
            cancellations: self.cancellations.get(),
            duration_seconds: self.duration.get_sample_sum(),
            extra,
            instance,
        }
    }
}

/// Client-side families of calls to one component.
pub(crate) struct ClientMetrics {
    requests: IntCounterVec,
    errors: IntCounterVec,
    errors_total: IntCounterVec,
    retries: IntCounterVec,
    evictions: IntCounterVec,
    duration: HistogramVec,
}

impl ClientMetrics {
    fn new(r: &Registry) -> Self {
        let ep = &[names::ENDPOINT];
        ClientMetrics {
            requests: counter(r, names::CLIENT_REQUESTS_TOTAL, "Calls made", ep),
            errors: counter(
                r,
                names::CLIENT_ERRORS_TOTAL,
                "Calls that failed outside the handler, by kind",
                &[names::ENDPOINT, names::KIND],
            ),
            errors_total: unregistered_total(names::CLIENT_ERRORS_TOTAL),
            retries: counter(r, names::CLIENT_RETRIES_TOTAL, "Attempts repeated on another instance", ep),
            evictions: counter(r, names::CLIENT_EVICTIONS_TOTAL, "Instances taken out of rotation", ep),
            duration: histogram(r, names::CLIENT_REQUEST_DURATION_SECONDS, "Time from a call to its reply"),
        }
    }

    pub(crate) fn endpoint(&self, endpoint: &str) -> ClientEndpointMetrics {
        let l = &[endpoint];
        ClientEndpointMetrics {
            endpoint: endpoint.into(),
            requests: self.requests.with_label_values(l),
            errors: self.errors.clone(),
            errors_total: self.errors_total.with_label_values(l),
            retries: self.retries.with_label_values(l),
            evictions: self.evictions.with_label_values(l),
            duration: self.duration.with_label_values(l),
        }
    }
}

/// The client-side handles of one endpoint.
pub(crate) struct ClientEndpointMetrics {
    endpoint: Arc<str>,
    pub requests: IntCounter,
    errors: IntCounterVec,
    errors_total: IntCounter,
    pub retries: IntCounter,
    pub evictions: IntCounter,
    pub duration: prometheus::Histogram,
}

impl ClientEndpointMetrics {
    pub(crate) fn error(&self, kind: &str) {
        self.errors.with_label_values(&[&self.endpoint, kind]).inc();
        self.errors_total.inc();
    }

    pub(crate) fn errors_total(&self) -> u64 {
        self.errors_total.get()
    }
}

/// Gauges filled by the optional `$SRV.STATS` scrape.
pub(crate) struct NatsServiceGauges {
    pub requests: GaugeVec,
    pub errors: GaugeVec,
    pub average_seconds: GaugeVec,
    /// The `[service_id, endpoint]` label sets last recorded, by service, so
    /// that instances that are gone stop being reported.
    recorded: Mutex<HashMap<String, Vec<[String; 2]>>>,
}

impl NatsServiceGauges {
    fn new(r: &Registry) -> Self {
        let labels = &[names::SERVICE, names::SERVICE_ID, names::ENDPOINT];
        let gauge = |name: &str, help: &str| {
            register(r, GaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
        };
        NatsServiceGauges {
            requests: gauge(names::NATS_SERVICE_REQUESTS, "Requests, from $SRV.STATS"),
            errors: gauge(names::NATS_SERVICE_ERRORS, "Errors, from $SRV.STATS"),
            average_seconds: gauge(
                names::NATS_SERVICE_AVERAGE_PROCESSING_SECONDS,
                "Average processing time, from $SRV.STATS",
            ),
            recorded: Mutex::default(),
        }
    }

    /// Sets the gauges of `service` from one scrape, dropping the series of
    /// instances that no longer replied.
    pub(crate) fn record(&self, service: &str, stats: &[crate::ServiceStats]) {
        let mut now = Vec::new();
        for s in stats {
            for ep in &s.endpoints {
                let l = &[service, s.id.as_str(), ep.name.as_str()];
                self.requests.with_label_values(l).set(ep.num_requests as f64);
                self.errors.with_label_values(l).set(ep.num_errors as f64);
                self.average_seconds.with_label_values(l).set(ep.average_processing_time as f64 / 1e9);
                now.push([s.id.clone(), ep.name.clone()]);
            }
        }
        let mut recorded = lock(&self.recorded);
        for [id, endpoint] in recorded.insert(service.to_string(), now.clone()).unwrap_or_default() {
            if !now.contains(&[id.clone(), endpoint.clone()]) {
                let l = &[service, id.as_str(), endpoint.as_str()];
                for gauge in [&self.requests, &self.errors, &self.average_seconds] {
                    let _ = gauge.remove_label_values(l);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_rotor_sets_is_reserved_for_rotor() {
        let metrics = Metrics::default();
        let server = metrics.server("ns_c", "ns", "c", &[("model", "m")]);
        let endpoint = server.endpoint("e");
        endpoint.requests.inc();
        endpoint.error("decode");
        endpoint.inflight.inc();
        endpoint.request_bytes.inc();
        endpoint.response_bytes.inc();
        endpoint.stream_items.inc();
        endpoint.cancellations.inc();
        endpoint.duration.observe(0.1);
        let client = metrics.client("ns", "c").endpoint("e");
        client.requests.inc();
        client.error("timeout");
        client.retries.inc();
        client.evictions.inc();
        client.duration.observe(0.1);
        metrics.nats_service.record(
            "ns_c",
            &[crate::engine::micro::stats::ServiceStats {
                endpoints: vec![Default::default()],
                ..Default::default()
            }],
        );
        let families = metrics.gather();
        assert!(families.len() >= 16, "every family was made: {}", families.len());
        for family in &families {
            assert!(!family.get_metric().is_empty(), "{} has a series", family.name());
            for metric in family.get_metric() {
                for label in metric.get_label() {
                    let name = label.name();
                    assert!(
                        name == "model" || rotor_names::RESERVED_LABELS.contains(&name),
                        "{} carries label `{name}`, which a component could also define; add it to \
                         rotor_names::labels",
                        family.name()
                    );
                }
            }
        }
    }
}
