//! Component state: an operator writes a component's configuration under
//! its path in discovery, and the component's handlers read the new value
//! at their next request, without a round trip.
//!
//! `cargo run --example state` (embedded), or with `ROTOR_NATS_URL` and
//! `ROTOR_ETCD_ENDPOINTS` set, on real servers.

use futures::StreamExt;
use rotor::prelude::*;
use rotor::state::{Change, Followed};
use serde::{Deserialize, Serialize};

// ANCHOR: component
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Limits {
    max_tokens: u32,
}

/// Reads its limits from the state key `limits`, kept current by a watch.
struct Generator {
    limits: Followed<Limits>,
}

#[rotor::component(namespace = "llm")]
impl Generator {
    #[endpoint]
    async fn generate(&self, prompt: String) -> Result<String, String> {
        let max = self.limits.current().map_or(16, |l| l.value.max_tokens) as usize;
        Ok(prompt.chars().take(max).collect())
    }
}
// ANCHOR_END: component

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = Runtime::from_env().await?;
    // ANCHOR: serve
    let component = rt.namespace("llm")?.component("generator")?;
    let limits = component.state::<Limits>("limits")?;
    limits.put(&Limits { max_tokens: 5 }).await?;
    let followed = limits.follow().await?;
    let server = rt.serve(Generator { limits: followed.clone() }).await?;
    // ANCHOR_END: serve

    let client = Generator::client(&rt).await?;
    client.core().wait_for_instances().await?;
    let before = client.generate("hello, world".into()).await?;

    // ANCHOR: operator
    // Another program (an operator, a controller) raises the limit, if no
    // one changed it since it read it.
    let operator = rt.namespace("llm")?.component("generator")?.state::<Limits>("limits")?;
    let mut changes = operator.watch().await?;
    let now = operator.get().await?.expect("set above");
    match operator.compare_and_set(Some(now.revision), &Limits { max_tokens: 50 }).await? {
        Ok(revision) => println!("limits raised at revision {revision}"),
        Err(current) => println!("someone else wrote first (revision {current:?}); read and try again"),
    }
    while let Some(change) = changes.next().await {
        if let Change::Put(limits) = change? {
            if limits.value.max_tokens == 50 {
                break;
            }
        }
    }
    // ANCHOR_END: operator
    // The handler's copy has the new value once the watch delivered it.
    let mut followed = followed;
    while followed.current().is_none_or(|l| l.value.max_tokens != 50) {
        followed.changed().await;
    }
    let after = client.generate("hello, world".into()).await?;
    println!("{before:?} then {after:?}");
    assert_eq!((before.as_str(), after.as_str()), ("hello", "hello, world"));

    server.shutdown().await;
    Ok(())
}
