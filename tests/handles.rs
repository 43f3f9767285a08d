//! The run-time handles (`Namespace`, `Component`, `Endpoint`) give what the
//! model's handles give: parents, paths, ids, labels, clients of static
//! components, and statistics per endpoint.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rotor::Handler;
use rotor::names::EndpointId;
use rotor::prelude::*;
use serde::{Deserialize, Serialize};
use support::Servers;

/// Bounds every wait: a client that waits on discovery for a static
/// component fails the test instead of hanging.
const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("never")]
struct Never;

struct Clock;

#[rotor::component(namespace = "test.handles", static)]
impl Clock {
    #[endpoint]
    async fn tick(&self, ctx: Context) -> Result<InstanceId, Never> {
        Ok(ctx.instance_id())
    }
}

#[derive(Serialize)]
struct CacheFigures {
    entries: u64,
}

struct Cache {
    entries: AtomicU64,
}

#[rotor::component(namespace = "test.handles", labels(tier = "hot"), stats = "component_figures")]
impl Cache {
    #[endpoint(stats = "cache_figures")]
    async fn put(&self, _key: String) -> Result<u64, Never> {
        Ok(self.entries.fetch_add(1, Ordering::Relaxed) + 1)
    }

    #[endpoint]
    async fn size(&self) -> Result<u64, Never> {
        Ok(self.entries.load(Ordering::Relaxed))
    }
}

impl Cache {
    fn cache_figures(&self) -> CacheFigures {
        CacheFigures { entries: self.entries.load(Ordering::Relaxed) }
    }

    fn component_figures(&self) -> &'static str {
        "the component's"
    }
}

#[tokio::test]
async fn a_client_of_a_static_component_through_run_time_names_routes_to_the_queue_group() {
    let servers = Servers::start();
    let rt = servers.runtime().await;
    // One static component from the macro, linked into this binary; one
    // served from a handler, which this binary knows only by name.
    let clock = rt.serve(Clock).await.unwrap();
    let other = rt.with_new_lease().await.unwrap();
    let echo = Handler::raw(|_ctx: Context, payload: Bytes| async move { Ok(payload) });
    let gateway = other.namespace("test.handles").unwrap().component("gateway").unwrap();
    let _gateway = gateway.service().endpoint("echo", echo).unwrap().unregistered().serve().await.unwrap();
    assert!(gateway.list_instances().await.unwrap().is_empty(), "a static component registers nothing");

    let caller = servers.runtime().await;
    let tick =
        caller.namespace("test.handles").unwrap().component("clock").unwrap().endpoint("tick").unwrap();
    // `client` finds the linked #[component(static)] and goes to the queue group.
    let client = tick.client().await.unwrap();
    let by: InstanceId =
        tokio::time::timeout(WAIT, client.unary::<_, _, Never>("tick", &())).await.unwrap().unwrap();
    assert_eq!(by, clock.instance_id());

    let echo =
        caller.namespace("test.handles").unwrap().component("gateway").unwrap().endpoint("echo").unwrap();
    let client = echo.static_client().await.unwrap();
    assert!(client.wait_for_instances().await.unwrap().is_empty(), "no discovery wait for a static client");
    let call = client.call_raw("echo", Bytes::from_static(b"hello"));
    let (reply, _) = tokio::time::timeout(WAIT, call).await.unwrap().unwrap();
    assert_eq!(&reply.payload[..], b"hello");
}

#[tokio::test]
async fn a_namespace_knows_its_parent_and_handles_give_paths_ids_and_labels() {
    let rt = Runtime::embedded().await.unwrap();
    let prod = rt.namespace("llm").unwrap().namespace("prod").unwrap();
    assert_eq!(prod.name(), "llm.prod");
    let parent = prod.parent().expect("llm.prod has a parent");
    assert_eq!(parent.name(), "llm");
    assert!(parent.parent().is_none(), "llm is top-level");

    let tokenizer = prod.component("tokenizer").unwrap();
    assert_eq!(tokenizer.path(), "llm.prod/tokenizer");
    assert_eq!(tokenizer.etcd_path(), "instances/llm.prod/tokenizer/");
    let encode = tokenizer.endpoint("encode").unwrap();
    assert_eq!(encode.path(), "llm.prod/tokenizer/encode");
    assert_eq!(encode.etcd_path(), "instances/llm.prod/tokenizer/encode:");
    let id = encode.id();
    assert_eq!(id.to_string(), "llm.prod/tokenizer/encode");
    assert_eq!("llm.prod/tokenizer/encode".parse::<EndpointId>().unwrap(), id);
    let err = "llm.prod/tokenizer".parse::<EndpointId>().unwrap_err();
    assert!(err.to_string().contains("namespace/component/endpoint"), "{err}");
    assert!("llm/Tokenizer/encode".parse::<EndpointId>().is_err(), "the name rules apply");

    // Labels: a linked #[component]'s, or set at run time.
    let cache = rt.namespace("test.handles").unwrap().component("cache").unwrap();
    assert_eq!(cache.labels(), [("tier".to_string(), "hot".to_string())]);
    assert!(tokenizer.labels().is_empty());
    let labelled = tokenizer.with_label("gpu", "a100").unwrap().with_label("gpu", "h100").unwrap();
    assert_eq!(labelled.endpoint("encode").unwrap().labels(), [("gpu".to_string(), "h100".to_string())]);
    assert!(tokenizer.with_label("endpoint", "x").is_err(), "a label Rotor sets is refused");

    // A component served from the labelled handle carries the label.
    let echo = Handler::raw(|_ctx: Context, payload: Bytes| async move { Ok(payload) });
    let _served = labelled.service().endpoint("encode", echo).unwrap().serve().await.unwrap();
    let client = labelled.endpoint("encode").unwrap().client().await.unwrap();
    client.wait_for_instances().await.unwrap();
    client.call_raw("encode", Bytes::from_static(b"1")).await.unwrap();
    let text = rt.metrics().render();
    let series = text
        .lines()
        .find(|l| l.starts_with("rotor_requests_total{") && l.contains("component=\"tokenizer\""));
    assert!(series.is_some_and(|s| s.contains("gpu=\"h100\"")), "{text}");
}

#[tokio::test]
async fn each_endpoint_can_report_its_own_figures_in_srv_stats() {
    let rt = Runtime::embedded().await.unwrap();
    let server = rt.serve(Cache { entries: AtomicU64::new(0) }).await.unwrap();
    let client = Cache::client(&rt).await.unwrap();
    client.core().wait_for_instances().await.unwrap();
    client.put("a".into()).await.unwrap();
    client.put("b".into()).await.unwrap();

    let queue = Handler::unary(|_ctx: Context, (): ()| async move { Ok::<_, Never>(()) }).with_stats(|| 7u32);
    let plain = Handler::unary(|_ctx: Context, (): ()| async move { Ok::<_, Never>(()) });
    let jobs = rt.namespace("test.handles").unwrap().component("jobs").unwrap();
    let _jobs =
        jobs.service().endpoint("queue", queue).unwrap().endpoint("plain", plain).unwrap().serve().await;

    let extra = |set: &rotor::ServiceSet, subject: &str| {
        let ep = set.services[0].endpoints.iter().find(|e| e.subject == subject).unwrap();
        ep.rotor().expect("rotor's figures").extra
    };
    let id = server.instance_id();
    let cache = rt.namespace("test.handles").unwrap().component("cache").unwrap();
    let set = cache.scrape_stats(Duration::from_secs(1)).await.unwrap();
    assert_eq!(
        extra(&set, &format!("test_handles_cache.put-{id:x}")),
        Some(serde_json::json!({"entries": 2}))
    );
    assert_eq!(
        extra(&set, &format!("test_handles_cache.size-{id:x}")),
        Some(serde_json::json!("the component's"))
    );

    let set = jobs.scrape_stats(Duration::from_secs(1)).await.unwrap();
    let id = rt.instance_id();
    assert_eq!(extra(&set, &format!("test_handles_jobs.queue-{id:x}")), Some(serde_json::json!(7)));
    assert_eq!(extra(&set, &format!("test_handles_jobs.plain-{id:x}")), None);
}
