//! Rotor in one file: a component with two endpoints, two instances of it,
//! and a typed client whose calls are spread over both.
//!
//! `cargo run --example quickstart` — no server needed: with no server
//! address configured, Rotor runs embedded, in this process.

// ANCHOR: component
use std::sync::atomic::{AtomicU64, Ordering};

use rotor::prelude::*;
use serde::{Deserialize, Serialize};

/// The component: plain Rust state.
struct Greeter {
    greeting: String,
    served: AtomicU64,
}

#[derive(Debug, Serialize, Deserialize)]
struct HelloRequest {
    name: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Greeting {
    text: String,
    served_by: InstanceId,
}

/// The application error: typed on both sides of the wire.
#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
enum GreetError {
    #[error("a name is required")]
    EmptyName,
}

#[rotor::component(namespace = "demo")]
impl Greeter {
    /// Greets someone by name.
    #[endpoint]
    async fn hello(&self, ctx: Context, req: HelloRequest) -> Result<Greeting, GreetError> {
        if req.name.is_empty() {
            return Err(GreetError::EmptyName);
        }
        self.served.fetch_add(1, Ordering::Relaxed);
        Ok(Greeting { text: format!("{}, {}!", self.greeting, req.name), served_by: ctx.instance_id() })
    }

    /// How many greetings this instance has served.
    #[endpoint]
    async fn count(&self) -> Result<u64, GreetError> {
        Ok(self.served.load(Ordering::Relaxed))
    }
}
// ANCHOR_END: component

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Logs as RUST_LOG says (warnings by default).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    // ANCHOR: serve
    // One runtime is one instance (one lease). A second lease in the same
    // process stands in for a second worker process.
    let rt = Runtime::from_env().await?;
    let rt2 = rt.with_new_lease().await?;
    let a = rt.serve(Greeter { greeting: "Hello".into(), served: AtomicU64::new(0) }).await?;
    let b = rt2.serve(Greeter { greeting: "Bonjour".into(), served: AtomicU64::new(0) }).await?;
    println!("mode {:?}; instances {} and {}", rt.mode(), a.instance_id(), b.instance_id());
    // ANCHOR_END: serve

    // ANCHOR: call
    let client = Greeter::client(&rt).await?;
    client.core().wait_for_instances_within(std::time::Duration::from_secs(10)).await?;
    for name in ["Ada", "Grace", "Edsger", "Barbara"] {
        let g = client.hello(HelloRequest { name: name.into() }).await?;
        println!("{:<20} answered by instance {}", g.text, g.served_by);
    }
    let only_b = client.direct(b.instance_id());
    println!("instance {} served {} greetings", b.instance_id(), only_b.count().await?);

    match client.hello(HelloRequest { name: String::new() }).await {
        Err(CallError::App { error: GreetError::EmptyName, instance }) => {
            println!("typed error from instance {instance}: {}", GreetError::EmptyName)
        }
        other => return Err(format!("expected EmptyName, got {other:?}").into()),
    }
    // ANCHOR_END: call

    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}
