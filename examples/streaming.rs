//! A token generator served and consumed: items arrive in order, an error
//! mid-stream arrives typed, and dropping the stream stops the generator.
//!
//! ```console
//! cargo run --example streaming              # serve and consume in one process
//! cargo run --features etcd --example streaming -- serve     # only serve (with ROTOR_* set: on real servers)
//! cargo run --features etcd --example streaming -- consume   # only consume
//! ```

#[path = "streaming/tokens.rs"]
mod tokens;

use futures::StreamExt;
use rotor::prelude::*;
use tokens::{GenerateError, Generator, Prompt};

// ANCHOR: consume
async fn consume(rt: &Runtime) -> Result<(), Box<dyn std::error::Error>> {
    let client = Generator::client(rt).await?;
    client.core().wait_for_instances_within(std::time::Duration::from_secs(10)).await?;

    let prompt = Prompt { text: "the quick brown fox".into(), repeat: 2, pause_ms: 0 };
    let mut tokens = client.generate(prompt).await?;
    let mut text = Vec::new();
    while let Some(token) = tokens.next().await {
        text.push(token?.text);
    }
    println!("{} tokens from instance {}: {}", text.len(), tokens.instance().unwrap(), text.join(" "));

    // An error mid-stream arrives typed, then the stream ends.
    let prompt = Prompt { text: "this is forbidden".into(), repeat: 1, pause_ms: 0 };
    let mut tokens = client.generate(prompt).await?;
    while let Some(item) = tokens.next().await {
        match item {
            Ok(token) => println!("token {}: {}", token.index, token.text),
            Err(CallError::App { error: GenerateError::Forbidden(at), .. }) => {
                println!("stopped: token {at} is forbidden")
            }
            Err(other) => return Err(other.into()),
        }
    }

    // An error before the first item is the call's own error.
    let empty = Prompt { text: String::new(), repeat: 1, pause_ms: 0 };
    match client.generate(empty).await {
        Err(CallError::App { error: GenerateError::EmptyPrompt, .. }) => {
            println!("refused: the prompt is empty")
        }
        other => return Err(format!("expected EmptyPrompt, got {other:?}").into()),
    }

    // Take three tokens of an endless stream; dropping it stops the generator.
    let endless = Prompt { text: "and on".into(), repeat: 0, pause_ms: 1 };
    let mut stream = client.generate(endless).await?;
    let mut first = Vec::new();
    while first.len() < 3 {
        first.push(stream.next().await.ok_or("the stream ended early")??.text);
    }
    drop(stream);
    println!("first three of an endless stream: {}", first.join(" "));
    Ok(())
}
// ANCHOR_END: consume

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Logs as RUST_LOG says (warnings by default).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let rt = Runtime::from_env().await?;
    match std::env::args().nth(1).as_deref() {
        Some("serve") => {
            let server = rt.serve(Generator).await?;
            let stop = rotor::shutdown_signal();
            println!("serving {} as instance {}", Generator::SERVICE, server.instance_id());
            stop.await;
            server.shutdown().await;
            rt.shutdown().await?;
        }
        Some("consume") => consume(&rt).await?,
        _ => {
            let _server = rt.serve(Generator).await?;
            consume(&rt).await?;
        }
    }
    Ok(())
}
