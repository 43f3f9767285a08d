//! The floor: work written by hand with async-nats (and etcd-client for
//! discovery), which the benchmarks and the peer comparison measure Rotor
//! against. Each program uses part of it.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use rotor::discovery::etcd_client::{self, WatchOptions};

use crate::support;

pub const ECHO_SUBJECT: &str = "raw.echo";

/// Request/reply: a plain subscriber echoes the payload back.
pub async fn echo_responder(url: &str) {
    let client = async_nats::connect(url).await.unwrap();
    let mut sub = client.subscribe(ECHO_SUBJECT).await.unwrap();
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            let client = client.clone();
            tokio::spawn(async move {
                client.publish(m.reply.unwrap(), m.payload).await.unwrap();
            });
        }
    });
}

/// A responder that publishes every item to the caller's inbox, then an
/// empty end message; the caller counts.
pub async fn stream(url: &str, n: usize) -> Duration {
    let server = async_nats::connect(url).await.unwrap();
    let mut requests = server.subscribe("raw.items").await.unwrap();
    let responder = tokio::spawn(async move {
        let request = requests.next().await.unwrap();
        let inbox = request.reply.unwrap();
        let item = Bytes::from(vec![b'x'; 64]);
        for _ in 0..n {
            server.publish(inbox.clone(), item.clone()).await.unwrap();
        }
        server.publish(inbox, Bytes::new()).await.unwrap();
        server.flush().await.unwrap();
    });
    let client = async_nats::connect(url).await.unwrap();
    let inbox = client.new_inbox();
    let mut items = client.subscribe(inbox.clone()).await.unwrap();
    client.flush().await.unwrap();
    let start = Instant::now();
    client.publish_with_reply("raw.items", inbox, Bytes::new()).await.unwrap();
    let mut seen = 0;
    while let Some(m) = items.next().await {
        if m.payload.is_empty() {
            break;
        }
        seen += 1;
    }
    let elapsed = start.elapsed();
    responder.await.unwrap();
    assert_eq!(seen, n, "raw NATS lost items (slow consumer)");
    elapsed
}

/// Discovery by hand: subscribe on NATS, put a key in etcd, wait for a watch
/// to see it, then make one NATS request to the subscriber.
pub async fn subscribe_put_watch_request(servers: &support::Servers, rounds: usize) -> Vec<Duration> {
    let mut etcd = servers.etcd.client().await;
    let mut watch = etcd.watch("floor/", Some(WatchOptions::new().with_prefix())).await.unwrap();
    let nats = async_nats::connect(servers.nats.url()).await.unwrap();
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let (subject, key) = (format!("floor.{i}"), format!("floor/{i}"));
        let start = Instant::now();
        let mut sub = nats.subscribe(subject.clone()).await.unwrap();
        let responder = {
            let nats = nats.clone();
            tokio::spawn(async move {
                let msg = sub.next().await.unwrap();
                nats.publish(msg.reply.unwrap(), "pong".into()).await.unwrap();
            })
        };
        nats.flush().await.unwrap();
        etcd.put(key.as_str(), subject.as_str(), None).await.unwrap();
        loop {
            let resp = watch.message().await.unwrap().unwrap();
            if resp.events().iter().any(|e| e.kv().is_some_and(|kv| kv.key() == key.as_bytes())) {
                break;
            }
        }
        nats.request(subject, "ping".into()).await.unwrap();
        samples.push(start.elapsed());
        responder.await.unwrap();
    }
    etcd.delete("floor/", Some(etcd_client::DeleteOptions::new().with_prefix())).await.unwrap();
    samples
}
