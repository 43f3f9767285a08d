use rotor::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("failed")]
struct Failed;

struct Größe;

#[component(namespace = "llm")]
impl Größe {
    #[endpoint]
    async fn ping(&self) -> Result<(), Failed> {
        Ok(())
    }
}

fn main() {}
