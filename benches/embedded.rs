//! Embedded-mode unary call, against the floor of the same round trip done
//! by hand with tokio channels (a request through an mpsc queue, a spawned
//! handler task, a oneshot reply) and against the handler awaited in place
//! with the same JSON encoding, in one run. Prints p50, p99 and calls/s for
//! each and the ratios.
//!
//! `cargo bench --bench embedded` (add `-- --quick` for a short run).

#[path = "common/measure.rs"]
mod measure;

use rotor::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

struct Echo;

#[derive(Serialize, Deserialize)]
struct Payload {
    data: String,
}

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("never")]
struct Never;

#[rotor::component(namespace = "bench")]
impl Echo {
    #[endpoint]
    async fn echo(&self, req: Payload) -> Result<Payload, Never> {
        Ok(req)
    }
}

type Job = (Payload, oneshot::Sender<Payload>);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let quick = std::env::args().any(|a| a == "--quick");
    let calls = if quick { 5_000 } else { 50_000 };
    let data = "x".repeat(64);

    let rt = Runtime::embedded().await?;
    let _server = rt.serve(Echo).await?;
    let client = Echo::client(&rt).await?;
    let rotor = measure::sequential(calls, || {
        let client = client.clone();
        let data = data.clone();
        async move {
            client.echo(Payload { data }).await.expect("echo");
        }
    })
    .await;

    let (tx, mut rx) = mpsc::channel::<Job>(1024);
    tokio::spawn(async move {
        while let Some((req, reply)) = rx.recv().await {
            tokio::spawn(async move {
                let _ = reply.send(req);
            });
        }
    });
    let floor = measure::sequential(calls, || {
        let tx = tx.clone();
        let data = data.clone();
        async move {
            let (reply_tx, reply_rx) = oneshot::channel();
            tx.send((Payload { data }, reply_tx)).await.expect("send");
            reply_rx.await.expect("reply");
        }
    })
    .await;

    // The lowest floor: the handler awaited in place, its request and
    // response encoded and decoded as a call's are.
    let echo = Echo;
    let direct = measure::sequential(calls, || {
        let (echo, data) = (&echo, data.clone());
        async move {
            let request = rotor::codec::encode(&Payload { data }).expect("encode");
            let request: Payload = rotor::codec::decode(&request).expect("decode");
            let response = echo.echo(request).await.expect("echo");
            let response = rotor::codec::encode(&response).expect("encode");
            let _: Payload = rotor::codec::decode(&response).expect("decode");
        }
    })
    .await;

    println!("embedded unary, 64-byte payload, sequential, {calls} calls");
    println!("{:<36} {:>10} {:>10} {:>12}", "", "p50", "p99", "calls/s");
    for (name, s) in [
        ("rotor typed client", &rotor),
        ("tokio channels (floor)", &floor),
        ("handler awaited in place, with JSON", &direct),
    ] {
        println!("{name:<36} {:>10.1?} {:>10.1?} {:>12.0}", s.p50, s.p99, s.per_sec);
    }
    println!(
        "ratio rotor/floor: p50 {:.2}x, p99 {:.2}x, calls/s {:.2}x",
        rotor.p50.as_secs_f64() / floor.p50.as_secs_f64(),
        rotor.p99.as_secs_f64() / floor.p99.as_secs_f64(),
        rotor.per_sec / floor.per_sec
    );
    println!(
        "ratio rotor/handler in place: p50 {:.2}x, calls/s {:.2}x",
        rotor.p50.as_secs_f64() / direct.p50.as_secs_f64(),
        rotor.per_sec / direct.per_sec
    );
    Ok(())
}
