//! Fan-out: one endpoint called on every instance, each answer as it comes,
//! and the statistics of every instance as each replies.
//!
//! `cargo run --example fan_out` (embedded: three instances in one process).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rotor::FanOut;
use rotor::prelude::*;

/// A cache that each instance holds for itself.
struct Cache {
    entries: AtomicU64,
}

#[rotor::component(namespace = "shop")]
impl Cache {
    /// Empties this instance's cache; answers how many entries went.
    #[endpoint]
    async fn flush(&self) -> Result<u64, String> {
        Ok(self.entries.swap(0, Ordering::Relaxed))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = Runtime::from_env().await?;
    let mut served = Vec::new();
    for entries in [10, 20, 30] {
        let instance = rt.with_new_lease().await?;
        served.push(instance.serve(Cache { entries: AtomicU64::new(entries) }).await?);
    }
    let client = Cache::client(&rt).await?;
    client.core().wait_for(|ids| ids.len() == 3).await?;

    // ANCHOR: fan_out
    let options = FanOut::new().within(Duration::from_secs(2)).concurrency(8);
    let mut answers = client.fan_out(options).flush()?;
    let mut flushed = 0;
    while let Some((instance, outcome)) = answers.next().await {
        match outcome {
            Ok(entries) => flushed += entries,
            Err(e) => eprintln!("{instance} did not flush: {e}"),
        }
    }
    println!("flushed {flushed} entries on {} instances", answers.asked());
    // ANCHOR_END: fan_out
    assert_eq!(flushed, 60);

    // ANCHOR: stats
    let component = rt.namespace("shop")?.component("cache")?;
    let mut replies = component.stats_stream(Duration::from_millis(500)).await?;
    while let Some(stats) = replies.next().await {
        let requests: u64 = stats.endpoints.iter().map(|e| e.num_requests).sum();
        let instance = stats.instance_id().map(|id| id.to_string()).unwrap_or(stats.id.clone());
        println!("instance {instance} has served {requests} requests");
    }
    // ANCHOR_END: stats

    for handle in served {
        handle.shutdown().await;
    }
    Ok(())
}
