//! The direct plane against the NATS plane, raw async-nats request/reply
//! and a raw tokio TCP echo (one persistent length-delimited connection,
//! calls multiplexed by id: the direct plane's floor), side by side in one
//! run, on a nats-server and etcd the benchmark starts itself.
//!
//! Rows: sequential echoes of 64 B, 1 KiB, 64 KiB and 1,000,000 B (p50,
//! p99, calls/s); 64 KiB of token ids in MessagePack, and as many bytes in
//! one MessagePack value; 64 calls in flight
//! (calls/s, median of interleaved rounds); a 100,000-item stream.
//!
//! `cargo bench --features etcd --bench direct` (add `-- --quick` for fewer calls).
//!
//! `-- --only ROW N` makes N sequential 64-byte calls of one row (`direct`,
//! `nats-plane`, `raw-nats`, `raw-tcp`, `msgpack` for the token ids on the
//! direct plane, `msgpack-bytes` for as many bytes in one value) and nothing else: run under an instruction counter
//! with two values of N, the difference divided by the difference of N is
//! that row's cost per call, with the setup taken out.

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "common/floor.rs"]
mod floor;

#[path = "common/measure.rs"]
mod measure;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures::{SinkExt, Stream, StreamExt};
use rotor::config::{DirectConfig, Plane};
use support::Servers;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

#[derive(Debug, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[error("never")]
struct Never;

struct Echo;

#[rotor::component(namespace = "bench.direct")]
impl Echo {
    #[endpoint]
    async fn echo(&self, data: String) -> Result<String, Never> {
        Ok(data)
    }

    #[endpoint]
    async fn items(&self, n: usize) -> impl Stream<Item = Result<String, Never>> {
        let item = "x".repeat(62);
        futures::stream::iter((0..n).map(move |_| Ok(item.clone())))
    }
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Tokens {
    ids: Vec<u32>,
}

struct PackedIds;

/// Bytes that MessagePack carries as one `bin` value (a copy), where a
/// `Vec<u8>` would be an array of integers, as `serde_bytes` does.
#[derive(Clone)]
struct Blob(Vec<u8>);

impl serde::Serialize for Blob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Blob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Blob;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Blob, E> {
                Ok(Blob(v.to_vec()))
            }
        }
        d.deserialize_bytes(Visit)
    }
}

#[rotor::component(namespace = "bench.direct", codec = "msgpack")]
impl PackedIds {
    #[endpoint]
    async fn echo(&self, tokens: Tokens) -> Result<Tokens, Never> {
        Ok(tokens)
    }

    #[endpoint]
    async fn blob(&self, blob: Blob) -> Result<Blob, Never> {
        Ok(blob)
    }
}

/// The floor of the direct plane: a TCP echo of length-delimited frames,
/// each an 8-byte id and the payload, one task per connection.
async fn tcp_echo_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            socket.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let (read, write) = socket.into_split();
                let codec = || LengthDelimitedCodec::builder().max_frame_length(4 << 20).new_codec();
                let mut frames = FramedRead::new(read, codec());
                let mut sink = FramedWrite::new(write, codec());
                while let Some(Ok(frame)) = frames.next().await {
                    if sink.send(frame.freeze()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A client of the floor: calls multiplexed by id over one connection, one
/// writer task that flushes once per burst.
#[derive(Clone)]
struct TcpEcho {
    out: mpsc::Sender<Bytes>,
    waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<Bytes>>>>,
    next: Arc<AtomicU64>,
}

impl TcpEcho {
    async fn connect(addr: std::net::SocketAddr) -> TcpEcho {
        let socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        socket.set_nodelay(true).unwrap();
        let (read, write) = socket.into_split();
        let codec = || LengthDelimitedCodec::builder().max_frame_length(4 << 20).new_codec();
        let (out, mut queued) = mpsc::channel::<Bytes>(1024);
        let waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<Bytes>>>> = Arc::default();
        tokio::spawn(async move {
            let mut sink = FramedWrite::new(write, codec());
            while let Some(frame) = queued.recv().await {
                sink.feed(frame).await.unwrap();
                while let Ok(frame) = queued.try_recv() {
                    sink.feed(frame).await.unwrap();
                }
                SinkExt::<Bytes>::flush(&mut sink).await.unwrap();
            }
        });
        let replies = waiting.clone();
        tokio::spawn(async move {
            let mut frames = FramedRead::new(read, codec());
            while let Some(Ok(mut frame)) = frames.next().await {
                let id = u64::from_be_bytes(frame[..8].try_into().unwrap());
                let payload = frame.split_off(8).freeze();
                if let Some(w) = replies.lock().unwrap().remove(&id) {
                    let _ = w.send(payload);
                }
            }
        });
        TcpEcho { out, waiting, next: Arc::default() }
    }

    async fn call(&self, payload: &[u8]) -> Bytes {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap().insert(id, tx);
        let mut frame = BytesMut::with_capacity(8 + payload.len());
        frame.put_u64(id);
        frame.put_slice(payload);
        self.out.send(frame.freeze()).await.unwrap();
        rx.await.unwrap()
    }
}

fn row(name: &str, f: &measure::Figures) {
    println!("  {name:<28} {:>10.1?} {:>10.1?} {:>10.0}", f.p50, f.p99, f.per_sec);
}

/// A MessagePack row on both planes against raw NATS with the same bytes.
fn packed_rows(direct: &measure::Figures, over_nats: &measure::Figures, raw_nats: &measure::Figures) {
    row("rotor msgpack, direct plane", direct);
    row("rotor msgpack, NATS plane", over_nats);
    row("raw async-nats, same bytes", raw_nats);
    println!(
        "  ratio p50: direct/raw-nats {:.2}x, nats-plane/raw-nats {:.2}x",
        ratio(direct, raw_nats),
        ratio(over_nats, raw_nats)
    );
}

fn ratio(a: &measure::Figures, b: &measure::Figures) -> f64 {
    a.p50.as_secs_f64() / b.p50.as_secs_f64()
}

/// Calls/s of `calls` calls with 64 in flight.
async fn in_flight<F, Fut>(calls: usize, call: F) -> f64
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let start = Instant::now();
    futures::stream::iter(0..calls).for_each_concurrent(64, |_| call()).await;
    calls as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let calls = if quick { 2_000 } else { 10_000 };
    let servers = Servers::start();
    let url = servers.nats.url();
    let loopback = DirectConfig { bind: "127.0.0.1:0".parse().unwrap(), advertise: None };
    let server_rt = servers.builder().direct(loopback).build().await.unwrap();
    let _echo = server_rt.serve(Echo).await.unwrap();
    let _ids = server_rt.serve(PackedIds).await.unwrap();
    let direct_rt = servers.builder().plane(Plane::Direct).build().await.unwrap();
    let nats_rt = servers.builder().plane(Plane::Nats).build().await.unwrap();
    let direct = Echo::client(&direct_rt).await.unwrap();
    let over_nats = Echo::client(&nats_rt).await.unwrap();
    for c in [&direct, &over_nats] {
        c.core().wait_for_instances().await.unwrap();
    }
    floor::echo_responder(&url).await;
    let nats = async_nats::connect(&url).await.unwrap();
    nats.flush().await.unwrap();
    let tcp = TcpEcho::connect(tcp_echo_server().await).await;
    let packed = PackedIds::client(&direct_rt).await.unwrap();
    let packed_nats = PackedIds::client(&nats_rt).await.unwrap();
    for c in [&packed, &packed_nats] {
        c.core().wait_for_instances().await.unwrap();
    }
    let tokens = Tokens { ids: (0..64 * 1024 / 3).map(|i| 256 + (i * 7919) % 65_000).collect() };

    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--only") {
        let (what, n) = (args[at + 1].as_str(), args[at + 2].parse::<usize>().expect("--only ROW N"));
        let (text, raw) = ("x".repeat(62), Bytes::from(vec![b'x'; 64]));
        for _ in 0..n {
            match what {
                "direct" => drop(direct.echo(text.clone()).await.unwrap()),
                "nats-plane" => drop(over_nats.echo(text.clone()).await.unwrap()),
                "raw-nats" => drop(nats.request(floor::ECHO_SUBJECT, raw.clone()).await.unwrap()),
                "raw-tcp" => drop(tcp.call(&raw).await),
                "msgpack" => drop(packed.echo(tokens.clone()).await.unwrap()),
                "msgpack-bytes" => drop(packed.blob(Blob(vec![b'x'; 65_538])).await.unwrap()),
                other => panic!("--only {other}: not a row"),
            }
        }
        println!("{n} calls of {what}");
        return;
    }

    for size in [64usize, 1024, 64 * 1024, 1_000_000] {
        let text = "x".repeat(size - 2);
        let raw = Bytes::from(vec![b'x'; size]);
        let n = if size > 100_000 {
            calls / 20
        } else if size > 4096 {
            calls / 4
        } else {
            calls
        };
        let call = |client: &EchoClient| {
            let (client, text) = (client.clone(), text.clone());
            async move {
                client.echo(text).await.unwrap();
            }
        };
        let d = measure::sequential(n, || call(&direct)).await;
        // A 1,000,000-byte JSON string with its envelope and headers is over
        // NATS's 1 MiB: on the NATS plane it goes in chunks.
        let over = measure::sequential(n, || call(&over_nats)).await;
        let raw_nats = measure::sequential(n, || {
            let (nats, raw) = (nats.clone(), raw.clone());
            async move {
                nats.request(floor::ECHO_SUBJECT, raw).await.unwrap();
            }
        })
        .await;
        let floor_tcp = measure::sequential(n, || {
            let (tcp, raw) = (tcp.clone(), raw.clone());
            async move {
                tcp.call(&raw).await;
            }
        })
        .await;
        println!("unary, {size}-byte payload, sequential, {n} calls:        p50        p99    calls/s");
        row("rotor, direct plane", &d);
        row("rotor, NATS plane", &over);
        row("raw async-nats request", &raw_nats);
        row("raw tokio TCP echo", &floor_tcp);
        println!(
            "  ratio p50: direct/raw-nats {:.2}x, direct/raw-tcp {:.2}x, nats-plane/raw-nats {:.2}x",
            ratio(&d, &raw_nats),
            ratio(&d, &floor_tcp),
            ratio(&over, &raw_nats)
        );
    }

    let size = rotor::codec::Format::MessagePack.encode(&tokens).unwrap().len();
    let raw = Bytes::from(vec![b'x'; size]);
    let n = calls / 4;
    let raw_nats = measure::sequential(n, || {
        let (nats, raw) = (nats.clone(), raw.clone());
        async move {
            nats.request(floor::ECHO_SUBJECT, raw).await.unwrap();
        }
    })
    .await;
    let ids = |c: &PackedIdsClient| {
        let (c, t) = (c.clone(), tokens.clone());
        async move {
            c.echo(t).await.unwrap();
        }
    };
    let (d, over) =
        (measure::sequential(n, || ids(&packed)).await, measure::sequential(n, || ids(&packed_nats)).await);
    println!("unary, {} token ids in MessagePack ({size} B), sequential, {n} calls:", tokens.ids.len());
    packed_rows(&d, &over, &raw_nats);

    // The same size in one value: what the planes cost without the codec's
    // work per integer.
    let blob = Blob(vec![b'x'; size - 5]);
    let bytes = |c: &PackedIdsClient| {
        let (c, blob) = (c.clone(), blob.clone());
        async move {
            c.blob(blob).await.unwrap();
        }
    };
    let (d, over) = (
        measure::sequential(n, || bytes(&packed)).await,
        measure::sequential(n, || bytes(&packed_nats)).await,
    );
    println!("unary, {size} B of bytes in MessagePack (one bin value), sequential, {n} calls:");
    packed_rows(&d, &over, &raw_nats);

    let text = "x".repeat(62);
    let raw = Bytes::from(vec![b'x'; 64]);
    let n = calls * 4;
    let rounds = if quick { 3 } else { 5 };
    let mut rates: [Vec<f64>; 4] = Default::default();
    for _ in 0..rounds {
        let call = |client: &EchoClient| {
            let (client, text) = (client.clone(), text.clone());
            async move {
                client.echo(text).await.unwrap();
            }
        };
        rates[0].push(in_flight(n, || call(&direct)).await);
        rates[1].push(in_flight(n, || call(&over_nats)).await);
        rates[2].push(
            in_flight(n, || {
                let (nats, raw) = (nats.clone(), raw.clone());
                async move {
                    nats.request(floor::ECHO_SUBJECT, raw).await.unwrap();
                }
            })
            .await,
        );
        rates[3].push(
            in_flight(n, || {
                let (tcp, raw) = (tcp.clone(), raw.clone());
                async move {
                    tcp.call(&raw).await;
                }
            })
            .await,
        );
    }
    let medians: Vec<f64> = rates
        .iter_mut()
        .map(|r| {
            r.sort_by(f64::total_cmp);
            r[r.len() / 2]
        })
        .collect();
    println!("unary, 64-byte payload, 64 in flight, {n} calls, median of {rounds} rounds:   calls/s");
    for (name, rate) in
        ["rotor, direct plane", "rotor, NATS plane", "raw async-nats request", "raw tokio TCP echo"]
            .iter()
            .zip(&medians)
    {
        println!("  {name:<28} {rate:>10.0}");
    }
    println!(
        "  ratio calls/s: direct/raw-nats {:.2}x, direct/raw-tcp {:.2}x, nats-plane/raw-nats {:.2}x",
        medians[0] / medians[2],
        medians[0] / medians[3],
        medians[1] / medians[2]
    );

    let items = 100_000;
    let mut stream_rates = Vec::new();
    for client in [&direct, &over_nats] {
        let start = Instant::now();
        let got = client.items(items).await.unwrap().count().await;
        assert_eq!(got, items);
        stream_rates.push(items as f64 / start.elapsed().as_secs_f64());
    }
    let raw_stream: Duration = floor::stream(&url, items).await;
    let raw_rate = items as f64 / raw_stream.as_secs_f64();
    println!("stream of {items} 64-byte items:   items/s");
    println!("  {:<28} {:>10.0}", "rotor, direct plane", stream_rates[0]);
    println!("  {:<28} {:>10.0}", "rotor, NATS plane", stream_rates[1]);
    println!("  {:<28} {:>10.0}", "raw NATS publish to inbox", raw_rate);
    println!(
        "  ratio: direct/raw-nats {:.2}x, nats-plane/raw-nats {:.2}x",
        stream_rates[0] / raw_rate,
        stream_rates[1] / raw_rate
    );
}
