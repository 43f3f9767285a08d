use rotor::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("failed")]
struct Failed;

struct Service;

#[component(namespace = "llm")]
impl Service {
    #[allow(non_snake_case)]
    #[endpoint]
    async fn pingV2(&self) -> Result<(), Failed> {
        Ok(())
    }
}

fn main() {}
