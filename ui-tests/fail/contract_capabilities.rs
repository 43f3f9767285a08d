use rotor::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("failed")]
struct Failed;

#[component(namespace = "llm", capabilities = "models")]
pub trait Tokenizer {
    #[endpoint]
    async fn encode(&self, text: String) -> Result<Vec<u32>, Failed>;
}

fn main() {}
