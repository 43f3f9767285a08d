//! Unary round trips on a nats-server (and etcd) that the benchmark starts
//! itself: Rotor's typed client against raw async-nats request/reply and
//! the async-nats service API, side by side in one run, interleaved.
//!
//! Rows: sequential calls with 64-byte, 1 KiB and 64 KiB payloads (p50,
//! p99, calls/s); 64 KiB of token ids through a JSON and a MessagePack
//! component; and 64 calls in flight (calls/s). Ratios are Rotor/raw.
//!
//! `cargo bench --features etcd --bench unary` (add `-- --quick` for fewer calls,
//! `-- --in-flight-only` for the last row alone, `-- --profile rotor` or
//! `-- --profile raw` for one side of it alone).

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "common/floor.rs"]
mod floor;

#[path = "common/measure.rs"]
mod measure;

#[path = "common/cpu.rs"]
mod cpu;

#[path = "common/allocs.rs"]
mod allocs;

#[global_allocator]
static ALLOCATOR: allocs::Counting = allocs::Counting;

use std::time::{Duration, Instant};

use async_nats::service::ServiceExt;
use bytes::Bytes;
use futures::StreamExt;
use support::Servers;

#[derive(Debug, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[error("never")]
struct Never;

struct Echo;

#[rotor::component(namespace = "bench.unary")]
impl Echo {
    #[endpoint]
    async fn echo(&self, data: String) -> Result<String, Never> {
        Ok(data)
    }
}

/// Token ids, the structured payload of the codec rows.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Tokens {
    ids: Vec<u32>,
}

struct Ids;

#[rotor::component(namespace = "bench.unary")]
impl Ids {
    #[endpoint]
    async fn echo(&self, tokens: Tokens) -> Result<Tokens, Never> {
        Ok(tokens)
    }
}

struct PackedIds;

#[rotor::component(namespace = "bench.unary", codec = "msgpack")]
impl PackedIds {
    #[endpoint]
    async fn echo(&self, tokens: Tokens) -> Result<Tokens, Never> {
        Ok(tokens)
    }
}

/// What a run of calls in flight measured.
struct InFlight {
    per_sec: f64,
    /// CPU time per call of this process (client and server), then of nats-server.
    cpu: Vec<Duration>,
    /// Allocations per call in this process.
    allocations: f64,
}

/// Calls `call` `calls` times with `window` calls in flight.
async fn in_flight<F, Fut>(calls: usize, window: usize, pids: &[u32], call: F) -> InFlight
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let cpu = cpu::CpuMeter::start(pids);
    let allocations = allocs::count();
    let start = Instant::now();
    futures::stream::iter(0..calls).for_each_concurrent(window, |_| call()).await;
    InFlight {
        per_sec: calls as f64 / start.elapsed().as_secs_f64(),
        cpu: cpu.per(calls),
        allocations: (allocs::count() - allocations) as f64 / calls as f64,
    }
}

/// The async-nats service API: an endpoint that echoes.
async fn service_responder(url: &str) {
    let client = async_nats::connect(url).await.unwrap();
    let service = client.service_builder().start("svc_echo", "1.0.0").await.unwrap();
    let mut endpoint = service.endpoint("echo").await.unwrap();
    tokio::spawn(async move {
        let _service = service;
        while let Some(request) = endpoint.next().await {
            tokio::spawn(async move {
                let payload = request.message.payload.clone();
                request.respond(Ok(payload)).await.unwrap();
            });
        }
    });
}

fn row(name: &str, f: &measure::Figures) {
    println!("  {name:<28} {:>10.1?} {:>10.1?} {:>10.0}", f.p50, f.p99, f.per_sec);
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // For profiling the in-flight row on its own.
    let in_flight_only = std::env::args().any(|a| a == "--in-flight-only");
    let calls = if quick { 2_000 } else { 20_000 };
    let servers = Servers::start();
    let url = servers.nats.url();
    let rt = servers.runtime().await;
    let _server = rt.serve(Echo).await.unwrap();
    let client = Echo::client(&rt).await.unwrap();
    client.core().wait_for_instances().await.unwrap();
    floor::echo_responder(&url).await;
    service_responder(&url).await;
    let nats = async_nats::connect(&url).await.unwrap();
    nats.flush().await.unwrap();

    let sizes: &[usize] = if in_flight_only { &[] } else { &[64, 1024, 64 * 1024] };
    for &size in sizes {
        // A JSON string of `size` bytes, and the same bytes raw.
        let text = "x".repeat(size - 2);
        let raw = Bytes::from(vec![b'x'; size]);
        let n = if size > 4096 { calls / 4 } else { calls };
        let rotor = measure::sequential(n, || {
            let (client, text) = (client.clone(), text.clone());
            async move {
                client.echo(text).await.unwrap();
            }
        })
        .await;
        let raw_f = measure::sequential(n, || {
            let (nats, raw) = (nats.clone(), raw.clone());
            async move {
                nats.request(floor::ECHO_SUBJECT, raw).await.unwrap();
            }
        })
        .await;
        let svc = measure::sequential(n, || {
            let (nats, raw) = (nats.clone(), raw.clone());
            async move {
                nats.request("echo", raw).await.unwrap();
            }
        })
        .await;
        println!("unary, {size}-byte payload, sequential, {n} calls:      p50        p99    calls/s");
        row("rotor typed client", &rotor);
        row("raw async-nats request", &raw_f);
        row("async-nats service API", &svc);
        println!(
            "  ratio rotor/raw: p50 {:.2}x, p99 {:.2}x, calls/s {:.2}x",
            rotor.p50.as_secs_f64() / raw_f.p50.as_secs_f64(),
            rotor.p99.as_secs_f64() / raw_f.p99.as_secs_f64(),
            rotor.per_sec / raw_f.per_sec
        );
        // What JSON alone costs a call: the request and the response are
        // each encoded once and decoded once.
        let rounds = 200;
        let start = Instant::now();
        for _ in 0..rounds {
            let bytes = rotor::codec::encode(&text).unwrap();
            let back: String = rotor::codec::decode(&bytes).unwrap();
            assert_eq!(back.len(), text.len());
        }
        let json = start.elapsed() * 2 / rounds;
        println!("  JSON encode + decode of request and response, in one thread: {json:.1?} per call");
    }

    if !in_flight_only {
        codec_rows(&rt, &nats, calls / 4).await;
    }

    let text = "x".repeat(62);
    let raw = Bytes::from(vec![b'x'; 64]);
    let n = calls * 2;
    let pids = [std::process::id(), servers.nats.pid().expect("nats-server runs")];
    let rotor_call = || {
        let (client, text) = (client.clone(), text.clone());
        async move {
            client.echo(text).await.unwrap();
        }
    };
    let raw_call = || {
        let (nats, raw) = (nats.clone(), raw.clone());
        async move {
            nats.request(floor::ECHO_SUBJECT, raw).await.unwrap();
        }
    };
    // One side's calls alone, for a profiler (e.g. callgrind) to count.
    if let Some(side) = std::env::args().skip_while(|a| a != "--profile").nth(1) {
        let run = match side.as_str() {
            "rotor" => in_flight(n, 64, &pids, rotor_call).await,
            _ => in_flight(n, 64, &pids, raw_call).await,
        };
        println!(
            "{side} alone, 64 in flight: {:.0} calls/s, {:.1} allocations/call",
            run.per_sec, run.allocations
        );
        return;
    }
    let rounds = if quick { 3 } else { 7 };
    let (mut rotor, mut raw_f, mut svc) = (Vec::new(), Vec::new(), Vec::new());
    // Interleaved rounds, so that a disturbance hits all three alike.
    for _ in 0..rounds {
        rotor.push(in_flight(n, 64, &pids, rotor_call).await);
        raw_f.push(in_flight(n, 64, &pids, raw_call).await);
        svc.push(
            in_flight(n, 64, &pids, || {
                let (nats, raw) = (nats.clone(), raw.clone());
                async move {
                    nats.request("echo", raw).await.unwrap();
                }
            })
            .await,
        );
    }
    // Each Rotor round against the raw round that followed it: a ratio of
    // neighbours, so that the machine's drift over the run cancels out.
    let mut paired: Vec<f64> = rotor.iter().zip(&raw_f).map(|(r, w)| r.per_sec / w.per_sec).collect();
    paired.sort_by(f64::total_cmp);
    let paired = (paired[0], paired[paired.len() / 2], paired[paired.len() - 1]);
    let (rotor, raw_f, svc) = (median(rotor), median(raw_f), median(svc));
    println!(
        "unary, 64-byte payload, 64 in flight, {n} calls, median of {rounds} rounds:\n  {:<28} {:>10} {:>18} {:>18} {:>12}",
        "", "calls/s", "CPU/call (bench)", "CPU/call (nats)", "allocs/call"
    );
    for (name, run) in
        [("rotor typed client", &rotor), ("raw async-nats request", &raw_f), ("async-nats service API", &svc)]
    {
        println!(
            "  {name:<28} {:>10.0} {:>18.1?} {:>18.1?} {:>12.1}",
            run.per_sec, run.cpu[0], run.cpu[1], run.allocations
        );
    }
    println!(
        "  ratio rotor/raw: calls/s {:.2}x of the medians; {:.2}x median of neighbouring rounds \
         (lowest {:.2}x, highest {:.2}x); service API/raw {:.2}x",
        rotor.per_sec / raw_f.per_sec,
        paired.1,
        paired.0,
        paired.2,
        svc.per_sec / raw_f.per_sec
    );
}

/// The same 64 KiB of token ids echoed by a JSON and a MessagePack
/// component, beside raw async-nats carrying the MessagePack bytes.
async fn codec_rows(rt: &rotor::Runtime, nats: &async_nats::Client, n: usize) {
    use rotor::codec::Format;
    let _json = rt.serve(Ids).await.unwrap();
    let _packed = rt.serve(PackedIds).await.unwrap();
    let json = Ids::client(rt).await.unwrap();
    let packed = PackedIds::client(rt).await.unwrap();
    json.core().wait_for_instances().await.unwrap();
    packed.core().wait_for_instances().await.unwrap();
    // Ids of 256..65,536 take 3 bytes each in MessagePack: 64 KiB in all.
    let tokens = Tokens { ids: (0..64 * 1024 / 3).map(|i| 256 + (i * 7919) % 65_000).collect() };
    let sizes = [Format::Json, Format::MessagePack].map(|f| f.encode(&tokens).unwrap().len());
    let raw = Bytes::from(vec![b'x'; sizes[1]]);
    let figures = [
        measure::sequential(n, || {
            let (client, tokens) = (json.clone(), tokens.clone());
            async move {
                client.echo(tokens).await.unwrap();
            }
        })
        .await,
        measure::sequential(n, || {
            let (client, tokens) = (packed.clone(), tokens.clone());
            async move {
                client.echo(tokens).await.unwrap();
            }
        })
        .await,
    ];
    let raw_f = measure::sequential(n, || {
        let (nats, raw) = (nats.clone(), raw.clone());
        async move {
            nats.request(floor::ECHO_SUBJECT, raw).await.unwrap();
        }
    })
    .await;
    println!(
        "unary, {} token ids (JSON {} B, MessagePack {} B), sequential, {n} calls:      p50        p99    calls/s",
        tokens.ids.len(),
        sizes[0],
        sizes[1]
    );
    row("rotor, codec json", &figures[0]);
    row("rotor, codec msgpack", &figures[1]);
    row("raw async-nats, same bytes", &raw_f);
    let ratio = |f: &measure::Figures| f.p50.as_secs_f64() / raw_f.p50.as_secs_f64();
    println!(
        "  ratio p50 to raw: json {:.2}x, msgpack {:.2}x; msgpack/json {:.2}x",
        ratio(&figures[0]),
        ratio(&figures[1]),
        figures[1].p50.as_secs_f64() / figures[0].p50.as_secs_f64()
    );
    for format in [Format::Json, Format::MessagePack] {
        let rounds = 200;
        let start = Instant::now();
        for _ in 0..rounds {
            let bytes = format.encode(&tokens).unwrap();
            let back: Tokens = format.decoder()(&bytes).unwrap();
            assert_eq!(back.ids.len(), tokens.ids.len());
        }
        let cost = start.elapsed() * 2 / rounds;
        println!(
            "  {} encode + decode of request and response, in one thread: {cost:.1?} per call",
            format.name()
        );
    }
}

/// The round with the median rate.
fn median(mut v: Vec<InFlight>) -> InFlight {
    v.sort_by(|a, b| a.per_sec.total_cmp(&b.per_sec));
    v.swap_remove(v.len() / 2)
}
