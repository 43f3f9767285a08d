//! The Rotor side: the same components as the benchmarks in `benches/`.

use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use rotor::prelude::*;

use crate::support;

#[derive(Debug, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[error("never")]
pub struct Never;

pub struct Echo;

#[rotor::component(namespace = "peer.unary")]
impl Echo {
    #[endpoint]
    async fn echo(&self, data: String) -> Result<String, Never> {
        Ok(data)
    }
}

pub struct Source;

#[rotor::component(namespace = "peer.stream")]
impl Source {
    #[endpoint]
    async fn items(&self, n: usize) -> impl Stream<Item = Result<String, Never>> {
        let item = "x".repeat(62); // 64 bytes as a JSON string
        futures::stream::iter((0..n).map(move |_| Ok(item.clone())))
    }
}

pub struct Probe;

#[rotor::component(namespace = "peer.discovery")]
impl Probe {
    #[endpoint]
    async fn ping(&self, ctx: Context) -> Result<InstanceId, Never> {
        Ok(ctx.instance_id())
    }
}

/// A stream of `n` items, counted as they arrive.
pub async fn stream(client: &SourceClient, n: usize) -> Duration {
    let start = Instant::now();
    let mut stream = client.items(n).await.unwrap();
    let mut seen = 0;
    while let Some(item) = stream.next().await {
        assert_eq!(item.unwrap().len(), 62);
        seen += 1;
    }
    assert_eq!(seen, n);
    start.elapsed()
}

/// Serve a fresh instance, then call until a call is answered by it. The
/// lease is taken before the clock starts; serving (NATS service, etcd
/// registration) is inside it. As `benches/discovery.rs` does.
pub async fn registration_to_first_call(servers: &support::Servers, rounds: usize) -> Vec<Duration> {
    let client_rt = servers.runtime().await;
    let client = Probe::client(&client_rt).await.unwrap();
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let rt = client_rt.with_new_lease().await.unwrap();
        let start = Instant::now();
        let server = rt.serve(Probe).await.unwrap();
        let id = server.instance_id();
        loop {
            assert!(start.elapsed() < Duration::from_secs(10), "instance never reached");
            if let Ok(answered) = client.ping().await {
                if answered == id {
                    break;
                }
            }
        }
        samples.push(start.elapsed());
        server.shutdown().await;
        rt.shutdown().await.unwrap();
        // Wait until the client no longer sees it, so the next round starts clean.
        client.core().wait_for(|ids| ids.is_empty()).await.unwrap();
    }
    client_rt.shutdown().await.unwrap();
    samples
}
