use rotor::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("failed")]
struct Failed;

#[component(namespace = "llm")]
pub trait Tokenizer {
    #[endpoint]
    fn encode(&mut self, text: String) -> Vec<u32>;
}

fn main() {}
