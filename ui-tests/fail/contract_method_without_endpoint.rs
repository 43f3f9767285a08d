use rotor::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("failed")]
struct Failed;

#[component(namespace = "llm")]
pub trait Tokenizer {
    #[endpoint]
    async fn encode(&self, text: String) -> Result<Vec<u32>, Failed>;

    fn helper(&self) -> u32;
}

fn main() {}
