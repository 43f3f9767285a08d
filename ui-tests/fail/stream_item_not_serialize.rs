use rotor::prelude::*;
use futures::Stream;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("failed")]
struct Failed;

struct Service;

struct Plain;

#[component(namespace = "llm")]
impl Service {
    #[endpoint]
    async fn plain(&self) -> impl Stream<Item = Result<Plain, Failed>> {
        futures::stream::iter([Ok(Plain)])
    }
}

fn main() {}
