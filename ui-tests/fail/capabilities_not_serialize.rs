use rotor::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("failed")]
struct Failed;

/// Not `Serialize`.
struct Models(Vec<String>);

struct Service;

#[component(namespace = "llm", capabilities = "models")]
impl Service {
    fn models(&self) -> Models {
        Models(vec!["small".into()])
    }

    #[endpoint]
    async fn ping(&self) -> Result<(), Failed> {
        Ok(())
    }
}

fn main() {}
