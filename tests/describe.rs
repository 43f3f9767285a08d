//! What instances publish about themselves (`$SRV.INFO`, `rotor.descriptor`):
//! kinds, types with their JSON Schemas, capabilities; and a client built
//! for another version of a request type told which endpoint differs.

use std::time::Duration;

use rotor::Handler;
use rotor::discovery::etcd_client::GetOptions;
use rotor::prelude::*;
use rotor::schemars::{self, JsonSchema};
use serde::{Deserialize, Serialize};

const WAIT: Duration = Duration::from_secs(20);

mod v1 {
    use super::*;
    /// The request as the server was built.
    #[derive(Serialize, Deserialize, JsonSchema)]
    #[schemars(crate = "rotor::schemars")]
    pub struct Say {
        pub text: String,
    }
}

/// The request as the client was built: one field more.
#[derive(Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "rotor::schemars")]
pub struct Say {
    pub text: String,
    pub loud: bool,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema, thiserror::Error)]
#[schemars(crate = "rotor::schemars")]
#[error("refused")]
pub struct Refused;

/// Only its client is used: the server of these names is served from
/// handlers, built for `v1::Say`.
pub struct Echo;

#[rotor::component(namespace = "test.describe", name = "echo")]
impl Echo {
    #[endpoint]
    async fn say(&self, req: Say) -> Result<String, Refused> {
        Ok(req.text)
    }
}

/// Types without a schema still compile, and publish none.
#[derive(Serialize, Deserialize)]
pub struct Plain(u32);

pub struct Counter;

#[rotor::component(namespace = "test.describe", capabilities = "capabilities")]
impl Counter {
    fn capabilities(&self) -> Capabilities {
        Capabilities { models: vec!["counting"] }
    }

    #[endpoint(idempotent = false)]
    async fn add(&self, n: Plain) -> Result<u32, Refused> {
        Ok(n.0)
    }
}

#[derive(Serialize)]
struct Capabilities {
    models: Vec<&'static str>,
}

#[tokio::test]
async fn a_client_built_for_another_request_type_is_told_which_endpoint_differs_and_how() {
    let log = log::Log::capture();
    let rt = Runtime::embedded().await.unwrap();
    let say = Handler::unary(|_ctx: Context, req: v1::Say| async move { Ok::<_, Refused>(req.text) })
        .with_schemas(
            serde_json::to_value(schemars::schema_for!(v1::Say)).ok(),
            serde_json::to_value(schemars::schema_for!(String)).ok(),
            serde_json::to_value(schemars::schema_for!(Refused)).ok(),
        );
    let component = rt.namespace("test.describe").unwrap().component("echo").unwrap();
    let capabilities = Capabilities { models: vec!["small", "large"] };
    let served = component.service().endpoint("say", say).unwrap().capabilities(&capabilities).unwrap();
    let _server = served.serve().await.unwrap();

    let client = Echo::client(&rt).await.unwrap();
    tokio::time::timeout(WAIT, client.core().wait_for_instances()).await.unwrap().unwrap();
    let described = client.core().describe(Duration::from_millis(500)).await.unwrap();
    assert_eq!(described.len(), 1);
    let (instance, description) = &described[0];
    assert_eq!(*instance, Some(rt.instance_id()));
    assert_eq!(description.capabilities, Some(serde_json::json!({"models": ["small", "large"]})));
    let ep = &description.endpoints[0];
    assert_eq!((ep.name.as_str(), ep.kind.as_str()), ("say", "unary"));
    assert!(ep.request.schema.as_ref().unwrap()["properties"]["text"].is_object());

    let err = client.core().verify_contract(Duration::from_millis(500)).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::ContractMismatch { .. }), "{err:?}");
    assert!(text.contains("endpoint `say`") && text.contains("the request type differs"), "{text}");
    assert!(text.contains("loud"), "the difference shows the field: {text}");

    // Also read from discovery, where the client found it without asking.
    let published = client.core().published().await.unwrap();
    assert_eq!(published, [(rt.instance_id(), description.clone())]);
    // And warned of unasked, as soon as it found the instance.
    const UNASKED: &str = "an instance serves a contract that differs";
    let warned = |log: &log::Log| log.warnings(UNASKED).len();
    let mut lines = log.lines();
    tokio::time::timeout(WAIT, lines.wait_for(|_| warned(&log) > 0)).await.unwrap().unwrap();
    let warning = log.warnings(UNASKED).remove(0);
    assert!(warning.contains("endpoint `say`") && warning.contains("loud"), "{warning}");
    assert!(warning.contains(&rt.instance_id().to_string()), "it names the instance: {warning}");
}

#[tokio::test]
async fn a_component_publishes_its_endpoints_schemas_and_a_matching_client_verifies() {
    let servers = support::Servers::start();
    let rt = servers.runtime().await;
    let _server = rt.serve(Counter).await.unwrap();
    let client = Counter::client(&rt).await.unwrap();
    tokio::time::timeout(WAIT, client.core().wait_for_instances()).await.unwrap().unwrap();
    client.core().verify_contract(Duration::from_millis(500)).await.unwrap();
    let described = client.core().describe(Duration::from_millis(500)).await.unwrap();
    let ep = &described[0].1.endpoints[0];
    assert_eq!((ep.name.as_str(), ep.idempotent), ("add", false));
    assert_eq!(ep.request.name, "Plain");
    assert!(ep.request.schema.is_none(), "Plain has no JsonSchema");
    assert!(ep.response.schema.is_some() && ep.error.schema.is_some(), "u32 and Refused have schemas");
    assert_eq!(described[0].1.version, env!("CARGO_PKG_VERSION"));

    // The description is for INFO; every PING stays small.
    let nats = async_nats::connect(servers.nats.url()).await.unwrap();
    let ping = nats.request("$SRV.PING.test_describe_counter", Default::default()).await.unwrap();
    let ping: serde_json::Value = serde_json::from_slice(&ping.payload).unwrap();
    assert_eq!(ping["metadata"]["rotor.component"], "counter");
    assert!(ping["metadata"].get("rotor.descriptor").is_none(), "{ping}");
}

#[tokio::test]
async fn the_descriptor_is_kept_in_etcd_under_the_lease_written_again_under_a_new_one_and_gone_at_shutdown() {
    let mut servers = support::Servers::start();
    let rt = servers.runtime().await;
    let server = rt.serve(Counter).await.unwrap();
    let old = server.instance_id();
    let mut etcd = servers.etcd.client().await;
    let read = |id: InstanceId| format!("components/test.describe/counter/descriptor/{id:x}");
    let stored = etcd.get(read(old), None).await.unwrap();
    let kv = stored.kvs().first().expect("the descriptor is in etcd");
    assert_eq!(kv.lease(), old.get(), "under the instance's lease");
    let description: rotor::describe::Description = serde_json::from_slice(kv.value()).unwrap();
    assert_eq!(description.capabilities, Some(serde_json::json!({"models": ["counting"]})));
    assert_eq!((description.endpoints[0].name.as_str(), description.endpoints[0].idempotent), ("add", false));

    let client = Counter::client(&rt).await.unwrap();
    tokio::time::timeout(WAIT, client.core().wait_for_instances()).await.unwrap().unwrap();
    assert_eq!(client.core().published().await.unwrap(), [(old, description.clone())]);

    // etcd loses everything: the new lease carries the descriptor again.
    let mut lease = rt.lease_changes();
    servers.etcd.restart_wiped();
    let new =
        tokio::time::timeout(WAIT, lease.wait_for(|s| s.live && s.id != old)).await.unwrap().unwrap().id;
    let mut etcd = servers.etcd.client().await;
    let stored = etcd.get(read(new), None).await.unwrap();
    let kv = stored.kvs().first().expect("written again under the new lease");
    assert_eq!(kv.lease(), new.get());
    assert_eq!(serde_json::from_slice::<rotor::describe::Description>(kv.value()).unwrap(), description);

    assert!(server.shutdown().await.drained);
    rt.shutdown().await.unwrap();
    let left =
        etcd.get("components/test.describe/counter/descriptor/", Some(GetOptions::new().with_prefix()));
    assert!(left.await.unwrap().kvs().is_empty(), "shutdown took the descriptor with the lease");
}

/// Not in `support`: the other crates that build the harness lack tracing-subscriber.
#[path = "support/log.rs"]
mod log;
mod support;
