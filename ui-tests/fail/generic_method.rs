use rotor::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("failed")]
struct Failed;

struct Service;

#[component(namespace = "llm")]
impl Service {
    #[endpoint]
    async fn echo<T>(&self, x: T) -> Result<T, Failed> {
        Ok(x)
    }
}

fn main() {}
