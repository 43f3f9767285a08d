//! What instances publish about themselves (`$SRV.INFO`, `rotor.descriptor`):
//! kinds, types with their JSON Schemas, capabilities; and a client built
//! for another version of a request type told which endpoint differs.

use std::time::Duration;

use rotor::Handler;
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

#[rotor::component(namespace = "test.describe")]
impl Counter {
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

mod support;
