//! Calls every endpoint of the `hello/greeter` component, prints which
//! instance answered, and exits non-zero on any failure. See `hello_server`.

#[path = "hello/greeter.rs"]
mod greeter;

use std::time::Duration;

use greeter::{Greeter, HelloError, HelloRequest};
use rotor::prelude::*;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")))
        .init();
    let rt = Runtime::from_env().await?;
    let client = Greeter::client(&rt).await?;
    let instances = client.core().wait_for_instances_within(Duration::from_secs(10)).await?;
    println!("{} instance(s) of {}: {:?}", instances.len(), Greeter::SERVICE, instances);

    for name in ["Ada", "Grace", "Edsger"] {
        let reply = client.hello(HelloRequest { name: name.into() }).await?;
        println!("hello:   {:<18} answered by instance {}", reply.text, reply.served_by);
    }
    let pinged = client.ping().await?;
    println!("ping:    answered by instance {pinged}");
    for id in &instances {
        let greeted = client.direct(*id).greeted().await?;
        println!("greeted: instance {id} has greeted {greeted}");
    }
    match client.hello(HelloRequest { name: String::new() }).await {
        Err(CallError::App { error: HelloError::EmptyName, instance }) => {
            println!("error:   instance {instance} said: {}", HelloError::EmptyName)
        }
        other => return Err(format!("expected EmptyName, got {other:?}").into()),
    }
    Ok(())
}
