//! A 100,000-item stream of 64-byte items: Rotor's streaming endpoint
//! against raw NATS publishing to an inbox (the floor), in one run, on a
//! nats-server (and etcd) that the benchmark starts itself. Prints items/s
//! and the ratio; also the embedded mode for reference.
//!
//! `cargo bench --features etcd --bench streaming` (add `-- --quick` for fewer runs).

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "common/floor.rs"]
mod floor;

use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use rotor::prelude::*;
use support::Servers;

const ITEMS: usize = 100_000;

#[derive(Debug, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[error("never")]
struct Never;

struct Source;

#[rotor::component(namespace = "bench.stream")]
impl Source {
    #[endpoint]
    async fn items(&self, n: usize) -> impl Stream<Item = Result<String, Never>> {
        let item = "x".repeat(62); // 64 bytes as a JSON string
        futures::stream::iter((0..n).map(move |_| Ok(item.clone())))
    }
}

async fn rotor_stream(rt: &Runtime) -> Duration {
    let client = Source::client(rt).await.unwrap();
    client.core().wait_for_instances().await.unwrap();
    let start = Instant::now();
    let mut stream = client.items(ITEMS).await.unwrap();
    let mut n = 0;
    while let Some(item) = stream.next().await {
        assert_eq!(item.unwrap().len(), 62);
        n += 1;
    }
    assert_eq!(n, ITEMS);
    start.elapsed()
}

fn rate(d: Duration) -> f64 {
    ITEMS as f64 / d.as_secs_f64()
}

fn best(samples: &[Duration]) -> Duration {
    *samples.iter().min().unwrap()
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runs = if quick { 3 } else { 7 };
    let servers = Servers::start();
    let rt = servers.runtime().await;
    let _server = rt.serve(Source).await.unwrap();
    let embedded = Runtime::embedded().await.unwrap();
    let _embedded_server = embedded.serve(Source).await.unwrap();

    let (mut rotor, mut raw, mut local) = (Vec::new(), Vec::new(), Vec::new());
    // Interleaved, so that both see the same machine.
    for _ in 0..runs {
        rotor.push(rotor_stream(&rt).await);
        raw.push(floor::stream(&servers.nats.url(), ITEMS).await);
        local.push(rotor_stream(&embedded).await);
    }
    println!("stream of {ITEMS} items of 64 bytes, {runs} runs each, interleaved");
    println!("{:<36} {:>14} {:>14}", "", "median items/s", "best items/s");
    for (name, samples) in [
        ("rotor over NATS (default window)", &mut rotor),
        ("raw NATS publish to inbox (floor)", &mut raw),
        ("rotor embedded", &mut local),
    ] {
        println!("{name:<36} {:>14.0} {:>14.0}", rate(median(samples)), rate(best(samples)));
    }
    println!(
        "ratio rotor/raw: median {:.2}x, best {:.2}x",
        rate(median(&mut rotor)) / rate(median(&mut raw)),
        rate(best(&rotor)) / rate(best(&raw))
    );
}
