//! Serves the `hello/greeter` component on real servers until Ctrl-C or
//! SIGTERM, then drains and revokes its lease.
//!
//! ```console
//! scripts/dev-servers.sh &                     # etcd and nats-server on loopback
//! export ROTOR_NATS_URL=nats://127.0.0.1:4222 ROTOR_ETCD_ENDPOINTS=http://127.0.0.1:2379
//! cargo run --features etcd --example hello_server   # run it twice for two instances
//! cargo run --features etcd --example hello_client
//! ```

#[path = "hello/greeter.rs"]
mod greeter;

use std::sync::atomic::AtomicU64;

use greeter::Greeter;
use rotor::Runtime;
use tracing_subscriber::EnvFilter;

// ANCHOR: main
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let rt = Runtime::from_env().await?;
    let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".into());
    let server = rt.serve(Greeter { greeting, greeted: AtomicU64::new(0) }).await?;
    // Listening for Ctrl-C and SIGTERM before the line that says it serves,
    // so that a signal sent on that line drains rather than kills.
    let stop = rotor::shutdown_signal();
    // A line for scripts and tests that wait for the server to be up.
    println!("serving {} as instance {} ({:?} mode)", Greeter::SERVICE, server.instance_id(), rt.mode());
    stop.await;
    let report = server.shutdown().await;
    rt.shutdown().await?;
    println!("stopped; drained: {}", report.drained);
    Ok(())
}
// ANCHOR_END: main
