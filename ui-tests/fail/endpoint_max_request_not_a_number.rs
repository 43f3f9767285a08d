use rotor::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("failed")]
struct Failed;

struct Service;

#[component(namespace = "llm")]
impl Service {
    #[endpoint(max_request = "1MiB")]
    async fn ping(&self) -> Result<(), Failed> {
        Ok(())
    }
}

fn main() {}
