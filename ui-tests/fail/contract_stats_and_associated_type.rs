use rotor::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("failed")]
struct Failed;

#[component(namespace = "llm", stats = "figures")]
pub trait Tokenizer {
    type Model;

    #[endpoint]
    async fn encode(&self, text: String) -> Result<Vec<u32>, Failed>;
}

fn main() {}
