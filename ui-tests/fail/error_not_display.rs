use rotor::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct NoDisplay;

struct Service;

#[component(namespace = "llm")]
impl Service {
    #[endpoint]
    async fn ping(&self) -> Result<(), NoDisplay> {
        Ok(())
    }
}

fn main() {}
