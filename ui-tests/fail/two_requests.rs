use rotor::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("failed")]
struct Failed;

struct Service;

#[component(namespace = "llm")]
impl Service {
    #[endpoint]
    async fn add(&self, a: u32, b: u32) -> Result<u32, Failed> {
        Ok(a + b)
    }
}

fn main() {}
