//! Timeouts and retries, in one process: a call that takes too long ends
//! with the server's deadline error, a client can set its own timeout, and
//! an endpoint that must not run twice says so.
//!
//! `cargo run --example timeouts`

use std::time::Duration;

use rotor::prelude::*;

struct Jobs;

// ANCHOR: component
#[rotor::component(namespace = "jobs")]
impl Jobs {
    /// Waits `millis`, as a slow model would, then answers. It watches its
    /// context so that it stops when the caller's deadline passes.
    #[endpoint]
    async fn wait(&self, ctx: Context, millis: u64) -> Result<u64, String> {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(millis)) => Ok(millis),
            () = ctx.cancelled() => Err("cancelled".into()),
        }
    }

    /// Charges a card: never retried on another instance, since a repeat
    /// would charge twice.
    #[endpoint(idempotent = false)]
    async fn charge(&self, cents: u64) -> Result<u64, String> {
        Ok(cents)
    }
}
// ANCHOR_END: component

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = Runtime::builder()
        .request_timeout(Duration::from_secs(5)) // every client's default
        .retries(2) // idempotent calls whose instance is gone
        .build()
        .await?;
    let _server = rt.serve(Jobs).await?;
    let client = Jobs::client(&rt).await?;

    // ANCHOR: calls
    println!("fast call: {}", client.wait(10).await?);
    let impatient = client.with_timeout(Duration::from_millis(100));
    match impatient.wait(1_000).await {
        Err(CallError::Transport(e @ TransportError::DeadlineExceeded { .. })) => {
            println!("slow call: {e} (code {})", e.code())
        }
        other => return Err(format!("expected the deadline, got {other:?}").into()),
    }
    println!("charged once: {} cents", client.with_retries(0).charge(250).await?);
    // ANCHOR_END: calls
    Ok(())
}
