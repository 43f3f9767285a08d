use rotor::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("failed")]
struct Failed;

struct Service<T>(T);

#[component(namespace = "llm")]
impl<T: Send + Sync + 'static> Service<T> {
    #[endpoint]
    async fn ping(&self) -> Result<(), Failed> {
        Ok(())
    }
}

fn main() {}
