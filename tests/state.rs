//! Component state: typed keys under a component's path, written by anyone,
//! watched in order across etcd restarts, compared and set by revision, and
//! read by handlers without a round trip; on real etcd and embedded.

mod support;

use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use rotor::prelude::*;
use rotor::state::{Change, State};
use serde::{Deserialize, Serialize};
use support::Servers;

/// Bounds every wait in this file: a hang fails the test instead.
const WAIT: Duration = Duration::from_secs(20);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct ModelConfig {
    model: String,
    batch: u32,
}

fn config(model: &str, batch: u32) -> ModelConfig {
    ModelConfig { model: model.into(), batch }
}

fn state(rt: &Runtime) -> State<ModelConfig> {
    rt.namespace("test.state").unwrap().component("llm").unwrap().state("models/active").unwrap()
}

async fn next(
    changes: &mut BoxStream<'static, Result<Change<ModelConfig>, rotor::Error>>,
) -> Change<ModelConfig> {
    tokio::time::timeout(WAIT, changes.next())
        .await
        .expect("a change within the bound")
        .expect("open")
        .unwrap()
}

fn put_of(change: Change<ModelConfig>) -> (ModelConfig, i64) {
    match change {
        Change::Put(v) => (v.value, v.revision),
        other => panic!("expected a put, got {other:?}"),
    }
}

#[tokio::test]
async fn a_watcher_sees_two_writes_with_an_etcd_restart_between_them_in_order_and_once() {
    let mut servers = Servers::start();
    let rt = servers.runtime().await;
    let writer = servers.runtime().await;
    let key = state(&rt);
    assert_eq!(key.key(), "components/test.state/llm/state/models/active");
    let mut changes = key.watch().await.unwrap();

    let first = state(&writer).put(&config("small", 8)).await.unwrap();
    assert_eq!(put_of(next(&mut changes).await), (config("small", 8), first));

    // etcd goes down and comes back with its data; the watch breaks.
    servers.etcd.restart();
    let second = state(&writer).put(&config("large", 2)).await.unwrap();
    assert!(second > first);
    assert_eq!(put_of(next(&mut changes).await), (config("large", 2), second), "the write after the restart");

    // Nothing was repeated: the next change is the third write.
    let third = state(&writer).put(&config("large", 4)).await.unwrap();
    assert_eq!(put_of(next(&mut changes).await), (config("large", 4), third));

    // The raw key holds JSON, as etcdctl shows it.
    let mut etcd = servers.etcd.client().await;
    let raw = etcd.get(key.key(), None).await.unwrap();
    let value: serde_json::Value = serde_json::from_slice(raw.kvs()[0].value()).unwrap();
    assert_eq!(value, serde_json::json!({"model": "large", "batch": 4}));
}

/// The same operations, checked on any runtime.
async fn put_get_delete_and_compare_and_set(rt: &Runtime, other: &Runtime) {
    let key = state(rt);
    let theirs = state(other);
    assert_eq!(key.get().await.unwrap(), None);
    assert_eq!(
        key.compare_and_set(Some(1), &config("x", 1)).await.unwrap(),
        Err(None),
        "absent: no revision matches"
    );
    let created = key.compare_and_set(None, &config("a", 1)).await.unwrap().expect("absent, so created");
    assert_eq!(
        theirs.compare_and_set(None, &config("b", 1)).await.unwrap(),
        Err(Some(created)),
        "it exists now"
    );

    let got = theirs.get().await.unwrap().unwrap();
    assert_eq!((got.value, got.revision), (config("a", 1), created));
    // Two writers race from the same read: one wins, the other is told.
    let won = key.compare_and_set(Some(created), &config("a", 2)).await.unwrap().expect("first");
    assert_eq!(theirs.compare_and_set(Some(created), &config("b", 2)).await.unwrap(), Err(Some(won)));
    assert_eq!(theirs.get().await.unwrap().unwrap().value, config("a", 2));

    let mut changes = key.watch().await.unwrap();
    assert_eq!(put_of(next(&mut changes).await), (config("a", 2), won), "a watch starts with the value now");
    let deleted = theirs.delete().await.unwrap().expect("it held a value");
    assert_eq!(next(&mut changes).await, Change::Deleted { revision: deleted });
    assert_eq!(key.delete().await.unwrap(), None, "nothing left to delete");
    assert_eq!(key.get().await.unwrap(), None);

    // A value another program wrote that is not a `ModelConfig` is an
    // error of that change; the watch goes on.
    let wrong: State<String> =
        other.namespace("test.state").unwrap().component("llm").unwrap().state("models/active").unwrap();
    wrong.put(&"not a config".to_string()).await.unwrap();
    let err = tokio::time::timeout(WAIT, changes.next()).await.unwrap().unwrap().unwrap_err();
    assert!(err.to_string().contains("does not decode as"), "{err}");
    let last = key.put(&config("c", 3)).await.unwrap();
    assert_eq!(put_of(next(&mut changes).await), (config("c", 3), last));
}

#[tokio::test]
async fn state_is_put_got_deleted_and_compared_and_set_by_revision_on_etcd() {
    let servers = Servers::start();
    put_get_delete_and_compare_and_set(&servers.runtime().await, &servers.runtime().await).await;
}

#[tokio::test]
async fn state_works_the_same_in_the_embedded_mode() {
    let rt = Runtime::embedded().await.unwrap();
    let other = rt.with_new_lease().await.unwrap();
    put_get_delete_and_compare_and_set(&rt, &other).await;
}

/// A component whose handler reads its followed configuration at every
/// request, without a round trip.
struct Llm {
    config: rotor::state::Followed<ModelConfig>,
}

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("not configured")]
struct NotConfigured;

#[rotor::component(namespace = "test.state")]
impl Llm {
    #[endpoint]
    async fn model(&self) -> Result<String, NotConfigured> {
        let config = self.config.current().ok_or(NotConfigured)?;
        Ok(config.value.model.clone())
    }
}

#[tokio::test]
async fn a_handler_reads_the_followed_value_and_sees_another_writer_change_it() {
    let servers = Servers::start();
    let rt = servers.runtime().await;
    let operator = servers.runtime().await;
    state(&operator).put(&config("small", 8)).await.unwrap();

    let mut followed = state(&rt).follow().await.unwrap();
    assert_eq!(followed.current().unwrap().value, config("small", 8), "current before follow returns");
    let _server = rt.serve(Llm { config: followed.clone() }).await.unwrap();
    let client = Llm::client(&rt).await.unwrap();
    client.core().wait_for_instances_within(WAIT).await.unwrap();
    assert_eq!(client.model().await.unwrap(), "small");

    let written = state(&operator).put(&config("large", 2)).await.unwrap();
    let seen = tokio::time::timeout(WAIT, followed.changed()).await.unwrap().unwrap();
    assert_eq!(seen.revision, written);
    assert_eq!(client.model().await.unwrap(), "large");

    state(&operator).delete().await.unwrap();
    assert!(tokio::time::timeout(WAIT, followed.changed()).await.unwrap().is_none());
    assert!(client.model().await.unwrap_err().into_app().is_ok(), "deleted: not configured");
}

#[tokio::test]
async fn a_bad_state_key_or_a_runtime_without_discovery_is_refused_saying_why() {
    let rt = Runtime::embedded().await.unwrap();
    let component = rt.namespace("test.state").unwrap().component("llm").unwrap();
    let err = component.state::<u32>("models//active").unwrap_err();
    assert!(err.to_string().contains("empty segment"), "{err}");
    let err = component.state::<u32>("Models").unwrap_err();
    assert!(err.to_string().contains("state key"), "{err}");

    let servers = Servers::start();
    let static_rt = Runtime::builder().nats(servers.nats.config()).build().await.unwrap();
    let err =
        static_rt.namespace("test.state").unwrap().component("llm").unwrap().state::<u32>("x").unwrap_err();
    assert!(err.to_string().contains("ROTOR_ETCD_ENDPOINTS"), "{err}");
}
