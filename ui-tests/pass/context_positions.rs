use rotor::Context;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("failed")]
struct Failed;

struct Jobs;

#[rotor::component(namespace = "jobs")]
impl Jobs {
    /// Context first, by value.
    #[rotor::endpoint]
    async fn first(&self, ctx: Context, n: u32) -> Result<u32, Failed> {
        let _ = ctx.deadline();
        Ok(n)
    }

    /// Context last, by reference, fully qualified.
    #[rotor::endpoint]
    async fn last(&self, n: u32, ctx: &rotor::Context) -> Result<u32, Failed> {
        let _ = ctx.instance_id();
        Ok(n + 1)
    }

    /// Context only: the request is `()`.
    #[rotor::endpoint]
    async fn only(&self, ctx: Context) -> Result<String, Failed> {
        Ok(ctx.endpoint().to_string())
    }
}

#[tokio::main]
async fn main() {
    let rt = rotor::Runtime::embedded().await.unwrap();
    let _server = rt.serve(Jobs).await.unwrap();
    let client = Jobs::client(&rt).await.unwrap();
    assert_eq!(client.first(1).await.unwrap(), 1);
    assert_eq!(client.last(1).await.unwrap(), 2);
    assert_eq!(client.only().await.unwrap(), "only");
}
