use rotor::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("failed")]
struct Failed;

struct Service;

struct Plain {
    text: String,
}

#[component(namespace = "llm")]
impl Service {
    #[endpoint]
    async fn take(&self, req: Plain) -> Result<(), Failed> {
        let _ = req.text;
        Ok(())
    }
}

fn main() {}
