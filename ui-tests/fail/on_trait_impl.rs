use rotor::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("failed")]
struct Failed;

struct Service;

#[component(namespace = "llm")]
impl Default for Service {
    fn default() -> Self {
        Service
    }
}

fn main() {}
