use rotor::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("failed")]
struct Failed;

struct Service;

#[component(namespace = "llm")]
impl Service {
    #[endpoint]
    async fn show(&self, x: impl serde::Serialize) -> Result<(), Failed> {
        let _ = x;
        Ok(())
    }
}

fn main() {}
