use rotor::prelude::*;
use futures::Stream;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("failed")]
struct Failed;

struct Service;

#[component(namespace = "llm")]
impl Service {
    #[endpoint]
    async fn numbers(&self) -> impl Stream {
        futures::stream::iter(0..3)
    }
}

fn main() {}
