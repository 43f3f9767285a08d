use rotor::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("failed")]
struct Failed;

#[component(namespace = "LLM")]
pub trait Tokenizer {
    #[endpoint(name = "Encode")]
    async fn encode(&self, text: String) -> Result<Vec<u32>, Failed>;
}

fn main() {}
