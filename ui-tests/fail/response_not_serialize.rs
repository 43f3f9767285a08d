use rotor::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("failed")]
struct Failed;

struct Service;

struct Plain {
    text: String,
}

#[component(namespace = "llm")]
impl Service {
    #[endpoint]
    async fn give(&self) -> Result<Plain, Failed> {
        Ok(Plain { text: String::new() })
    }
}

fn main() {}
