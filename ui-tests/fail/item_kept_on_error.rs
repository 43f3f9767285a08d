use rotor::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("failed")]
struct Failed;

struct Service;

// The namespace is invalid, yet the impl block is still emitted: `main` type-checks
// against it and only the namespace error is reported.
#[component(namespace = "Not Valid")]
impl Service {
    #[endpoint]
    async fn ping(&self) -> Result<u32, Failed> {
        Ok(self.helper())
    }

    fn helper(&self) -> u32 {
        7
    }
}

fn main() {
    let _: u32 = Service.helper();
    let _ = Service.ping();
}
