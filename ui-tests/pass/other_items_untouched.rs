//! Methods without `#[endpoint]`, constants and other attributes stay as
//! they were; a default component name comes from the type name.

use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("failed")]
struct Failed;

struct HTTPGateway {
    hits: AtomicU32,
}

#[rotor::component(namespace = "edge")]
impl HTTPGateway {
    const LIMIT: u32 = 10;

    fn new() -> Self {
        HTTPGateway { hits: AtomicU32::new(0) }
    }

    #[inline]
    fn bump(&self) -> u32 {
        self.hits.fetch_add(1, Ordering::Relaxed) + 1
    }

    #[endpoint]
    #[allow(clippy::unused_async)]
    async fn hit(&self) -> Result<u32, Failed> {
        let n = self.bump();
        if n > Self::LIMIT { Err(Failed) } else { Ok(n) }
    }

    async fn not_an_endpoint(&self) -> u32 {
        0
    }
}

#[tokio::main]
async fn main() {
    assert_eq!(HTTPGateway::COMPONENT, "http_gateway");
    let g = HTTPGateway::new();
    assert_eq!(g.not_an_endpoint().await, 0);
    assert_eq!(g.hit().await.unwrap(), 1);
}
