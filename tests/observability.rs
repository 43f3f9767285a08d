//! Metrics, `$SRV.STATS` data, and the status server, on real etcd and
//! nats-server, read the way an operator would: over HTTP and NATS.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use rotor::metrics::EndpointData;
use rotor::prelude::*;
use rotor::status::EndpointState;
use serde::{Deserialize, Serialize};
use support::{Servers, http_get};

const WAIT: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.unwrap_or_else(|_| panic!("{what} did not happen within {WAIT:?}"))
}

#[derive(Debug, Serialize, Deserialize, PartialEq, thiserror::Error)]
enum ShopError {
    #[error("nothing to buy")]
    Nothing,
}

#[derive(Default)]
struct Shop {
    sold: AtomicU64,
    entered: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

#[rotor::component(namespace = "test.obs", labels(team = "checkout"), stats = "figures")]
impl Shop {
    #[endpoint]
    async fn buy(&self, item: String) -> Result<u64, ShopError> {
        if item == "nothing" {
            return Err(ShopError::Nothing);
        }
        Ok(self.sold.fetch_add(1, Ordering::Relaxed) + 1)
    }

    #[endpoint]
    async fn hold(&self) -> Result<(), ShopError> {
        self.entered.notify_one();
        self.release.notified().await;
        Ok(())
    }

    #[endpoint]
    async fn receipts(&self, n: u64) -> impl Stream<Item = Result<u64, ShopError>> {
        futures::stream::iter((0..n).map(Ok))
    }

    fn figures(&self) -> serde_json::Value {
        serde_json::json!({ "sold": self.sold.load(Ordering::Relaxed) })
    }
}

/// The value of the sample `name` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
        if metric != name {
            return None;
        }
        let matches = labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        matches.then(|| value.parse().ok()).flatten()
    })
}

/// `GET path` from a blocking thread, so that the status server, on this
/// test's runtime, can answer.
async fn get(addr: SocketAddr, path: &'static str) -> (u16, String) {
    tokio::task::spawn_blocking(move || http_get(addr.port(), path))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{path} answers"))
}

async fn metrics(addr: SocketAddr) -> String {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    body
}

async fn health(addr: SocketAddr) -> (u16, serde_json::Value) {
    let (status, body) = get(addr, "/health").await;
    (status, serde_json::from_str(&body).expect("/health is JSON"))
}

async fn runtime(servers: &Servers) -> Runtime {
    servers.builder().status_addr("127.0.0.1:0".parse().unwrap()).build().await.unwrap()
}

#[tokio::test]
async fn metrics_over_http_count_every_request_and_error() {
    let servers = Servers::start();
    let rt = runtime(&servers).await;
    let addr = rt.status_addr().expect("a status server");
    let _server = rt.serve(Shop::default()).await.unwrap();
    let client = Shop::client(&rt).await.unwrap();
    const N: usize = 25;
    for i in 0..N {
        client.buy(format!("item {i}")).await.unwrap();
    }
    for _ in 0..3 {
        assert!(client.buy("nothing".into()).await.unwrap_err().app().is_some());
    }
    let raw = rt.namespace("test.obs").unwrap().component("shop").unwrap().endpoint("buy").unwrap();
    raw.client().await.unwrap().call_raw("buy", Bytes::from_static(b"{not json")).await.unwrap();
    let missing = rt.namespace("test.obs").unwrap().component("absent").unwrap().endpoint("x").unwrap();
    assert!(missing.client().await.unwrap().call_raw("x", Bytes::new()).await.is_err());

    let text = metrics(addr).await;
    let buy = [("namespace", "test.obs"), ("component", "shop"), ("endpoint", "buy"), ("team", "checkout")];
    let total = (N + 3 + 1) as f64;
    assert_eq!(sample(&text, "rotor_requests_total", &buy), Some(total), "{text}");
    assert_eq!(sample(&text, "rotor_request_duration_seconds_count", &buy), Some(total));
    assert_eq!(
        sample(&text, "rotor_request_duration_seconds_bucket", &[("endpoint", "buy"), ("le", "+Inf")]),
        Some(total)
    );
    assert_eq!(
        sample(&text, "rotor_errors_total", &[("endpoint", "buy"), ("error_type", "application")]),
        Some(3.0)
    );
    assert_eq!(
        sample(&text, "rotor_errors_total", &[("endpoint", "buy"), ("error_type", "decode")]),
        Some(1.0)
    );
    assert_eq!(sample(&text, "rotor_inflight_requests", &buy), Some(0.0));
    assert!(sample(&text, "rotor_request_bytes_total", &buy).unwrap() > 0.0);
    assert!(sample(&text, "rotor_response_bytes_total", &buy).unwrap() > 0.0);

    let client_buy = [("component", "shop"), ("endpoint", "buy")];
    assert_eq!(sample(&text, "rotor_client_requests_total", &client_buy), Some(total));
    assert_eq!(sample(&text, "rotor_client_request_duration_seconds_count", &client_buy), Some(total));
    assert_eq!(
        sample(&text, "rotor_client_errors_total", &[("component", "absent"), ("kind", "no_instances")]),
        Some(1.0)
    );
    // The program's own metrics, at each level of the hierarchy.
    let ns = rt.namespace("test.obs").unwrap();
    ns.metrics().counter("shop_visits_total", "Visits").unwrap().inc_by(2);
    let endpoint = ns.component("shop").unwrap().endpoint("buy").unwrap();
    endpoint.metrics().gauge("shop_queue_length", "Queue").unwrap().set(5);
    rt.metrics().scope(&[]).counter("process_starts_total", "Starts").unwrap().inc();
    let text = metrics(addr).await;
    assert_eq!(sample(&text, "shop_visits_total", &[("namespace", "test.obs")]), Some(2.0));
    assert_eq!(
        sample(
            &text,
            "shop_queue_length",
            &[("namespace", "test.obs"), ("component", "shop"), ("endpoint", "buy")]
        ),
        Some(5.0)
    );
    assert_eq!(sample(&text, "process_starts_total", &[]), Some(1.0));

    let (status, live) = get(addr, "/live").await;
    assert_eq!((status, live.as_str()), (200, "live"));
}

#[tokio::test]
async fn stream_items_and_cancellations_are_counted() {
    let servers = Servers::start();
    let rt = runtime(&servers).await;
    let addr = rt.status_addr().unwrap();
    let _server = rt.serve(Shop::default()).await.unwrap();
    let client = Shop::client(&rt).await.unwrap();
    let items: Vec<u64> = client.receipts(40).await.unwrap().map(Result::unwrap).collect().await;
    assert_eq!(items.len(), 40);
    let text = metrics(addr).await;
    assert_eq!(sample(&text, "rotor_stream_items_total", &[("endpoint", "receipts")]), Some(40.0));
    assert_eq!(sample(&text, "rotor_requests_total", &[("endpoint", "receipts")]), Some(1.0));
}

#[tokio::test]
async fn srv_stats_data_carries_the_same_numbers_as_prometheus() {
    let servers = Servers::start();
    let rt = runtime(&servers).await;
    let addr = rt.status_addr().unwrap();
    let server = rt.serve(Shop::default()).await.unwrap();
    let client = Shop::client(&rt).await.unwrap();
    for i in 0..7 {
        client.buy(format!("{i}")).await.unwrap();
    }
    client.buy("nothing".into()).await.unwrap_err();

    let component = rt.namespace("test.obs").unwrap().component("shop").unwrap();
    let set = component.scrape_stats(Duration::from_millis(500)).await.unwrap();
    let entry = set.services[0]
        .endpoints
        .iter()
        .find(|e| e.subject == format!("test_obs_shop.buy-{:x}", server.instance_id()))
        .unwrap();
    let data: EndpointData = entry.rotor().expect("Rotor's figures in data");
    let text = metrics(addr).await;
    assert_eq!(data.requests as f64, sample(&text, "rotor_requests_total", &[("endpoint", "buy")]).unwrap());
    assert_eq!(data.requests, 8);
    assert_eq!(data.errors, 1);
    assert_eq!(data.extra, Some(serde_json::json!({ "sold": 7 })), "the component's own figures");
}

#[tokio::test]
async fn the_stats_scrape_fills_the_nats_service_gauges() {
    let servers = Servers::start();
    let rt = servers
        .builder()
        .status_addr("127.0.0.1:0".parse().unwrap())
        .stats_scrape_interval(Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    let addr = rt.status_addr().unwrap();
    let server = rt.serve(Shop::default()).await.unwrap();
    let client = Shop::client(&rt).await.unwrap();
    for i in 0..5 {
        client.buy(format!("{i}")).await.unwrap();
    }
    let endpoint = format!("buy-{:x}", server.instance_id());
    let labels = [("service", "test_obs_shop"), ("endpoint", endpoint.as_str())];
    within("the scrape to see 5 requests", async {
        while sample(&metrics(addr).await, "rotor_nats_service_requests", &labels) != Some(5.0) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn health_is_503_while_draining_and_while_the_lease_is_lost() {
    let mut servers = Servers::start();
    let rt = runtime(&servers).await;
    let addr = rt.status_addr().unwrap();
    let server = rt.serve(Shop::default()).await.unwrap();
    let (status, body) = health(addr).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["endpoints"].as_array().unwrap().len(), 3);
    assert!(body["endpoints"].as_array().unwrap().iter().all(|e| e["state"] == "serving"));

    // Lease lost: etcd down for longer than the TTL.
    servers.etcd.kill();
    let mut lease = rt.lease_changes();
    within("the lease to be lost", lease.wait_for(|s| !s.live)).await.unwrap();
    let (status, body) = health(addr).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["endpoints"].as_array().unwrap().iter().all(|e| e["state"] == "lease_lost"), "{body}");
    assert_eq!(rt.health().endpoints[0].state, EndpointState::LeaseLost);

    // Back, without its data: re-registered under a new lease.
    servers.etcd.restart_wiped();
    within("re-registration", lease.wait_for(|s| s.live)).await.unwrap();
    assert_eq!(health(addr).await.0, 200);

    // Draining: a request in flight keeps the shutdown open.
    let service = server.service().clone();
    let client = Shop::client(&rt).await.unwrap();
    let held = tokio::spawn(async move { client.hold().await });
    within("the held call", service.entered.notified()).await;
    let shutdown = tokio::spawn(server.shutdown());
    within("draining to show", async {
        while health(addr).await.0 != 503 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let (_, body) = health(addr).await;
    assert!(body["endpoints"].as_array().unwrap().iter().all(|e| e["state"] == "draining"), "{body}");
    service.release.notify_one();
    held.await.unwrap().unwrap();
    assert!(shutdown.await.unwrap().drained);
    let (status, body) = health(addr).await;
    assert_eq!(
        (status, body["endpoints"].as_array().unwrap().len()),
        (200, 0),
        "nothing served, nothing unhealthy"
    );
}

#[tokio::test]
async fn after_a_lost_lease_srv_stats_names_the_instance_by_its_new_id() {
    let mut servers = Servers::start();
    let rt = runtime(&servers).await;
    let server = rt.serve(Shop::default()).await.unwrap();
    let old = server.instance_id();
    let component = rt.namespace("test.obs").unwrap().component("shop").unwrap();
    let before = component.scrape_stats(Duration::from_millis(500)).await.unwrap();
    assert_eq!(before.services.iter().map(|s| s.instance_id()).collect::<Vec<_>>(), [Some(old)]);

    let mut lease = rt.lease_changes();
    servers.etcd.restart_wiped();
    let new =
        within("a new lease", async { lease.wait_for(|s| s.live && s.id != old).await.unwrap().id }).await;
    let after = component.scrape_stats(Duration::from_millis(500)).await.unwrap();
    assert_eq!(after.services.iter().map(|s| s.instance_id()).collect::<Vec<_>>(), [Some(new)]);
    // The record discovery holds says where the instance listens, and under
    // which id.
    let records = component.list_instances().await.unwrap();
    assert!(!records.is_empty() && records.iter().all(|r| r.instance_id == new), "{records:?}");
}
