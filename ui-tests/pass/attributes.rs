//! Every component and endpoint argument at once.

use rotor::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("failed")]
struct Failed;

struct KvRouter;

#[component(
    namespace = "llm.prod-1",
    name = "kv_router",
    labels(model = "llama", region = "eu"),
    static
)]
impl KvRouter {
    #[endpoint(name = "route-v2")]
    async fn route(&self, key: u64) -> Result<u64, Failed> {
        Ok(key % 7)
    }
}

fn main() {
    assert_eq!(KvRouter::SERVICE, "llm_prod-1_kv_router");
    assert_eq!(KvRouter::ROUTE_SUBJECT, "llm_prod-1_kv_router.route-v2");
    let d = <KvRouter as rotor::Endpoints>::DESCRIPTOR;
    assert!(d.is_static);
    assert_eq!(d.labels, &[("model", "llama"), ("region", "eu")]);
    assert_eq!(d.endpoints[0].name, "route-v2");
    assert_eq!(d.endpoints[0].method, "route");
}
