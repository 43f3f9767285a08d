//! Rotor, raw async-nats and NVIDIA's dynamo-runtime 1.6.1 side by side, in
//! one run, on one etcd and one nats-server that this program starts itself
//! on loopback (with the test harness of the main crate).
//!
//! Rows: unary echo round trips (64 B, 1 KiB and 64 KiB sequential; 64 B
//! with 64 in flight), a 100,000-item stream of 64-byte items, and the time
//! from serving a new instance to the first call answered by it.
//!
//! `cargo run --release` (add `-- --quick` for fewer calls and rounds).

#[path = "../../../tests/support/mod.rs"]
mod support;

#[allow(dead_code)] // the figures helper has more than this program uses
#[path = "../../../benches/common/measure.rs"]
mod measure;

mod dynamo;
#[path = "../../../benches/common/floor.rs"]
mod raw;
mod rotor_side;

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dynamo::Plane;
use rotor::config::DirectConfig;
use futures::StreamExt;
use measure::Figures;
use rotor_side::{Echo, Source};

const ITEMS: usize = 100_000;
const WINDOW: usize = 64;

fn main() {
    // SAFETY: no other thread exists yet.
    // A failing call should neither pay for nor print a backtrace. dynamo's
    // request-plane listener, and the one its workers dial back to with
    // responses, would otherwise bind the machine's first non-loopback
    // address; every byte of this benchmark stays on loopback.
    unsafe {
        std::env::set_var("RUST_BACKTRACE", "0");
        std::env::set_var("DYN_TCP_RPC_HOST", "127.0.0.1");
        std::env::set_var("DYN_TCP_RESPONSE_STREAM_HOST", "127.0.0.1");
    }
    let quick = std::env::args().any(|a| a == "--quick");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(run(quick));
}

/// One line of the closing summary.
struct Summary {
    what: String,
    rotor: String,
    direct: String,
    raw: String,
    nats: String,
    tcp: String,
    rotor_raw: f64,
    nats_raw: f64,
    /// How many times faster Rotor is than dynamo with the NATS plane.
    rotor_vs_nats: f64,
    /// How many times faster Rotor's direct plane is than dynamo's TCP plane.
    direct_vs_tcp: f64,
}

/// "2.00x faster" or "2.00x slower", from how many times faster Rotor is.
fn faster(times: f64) -> String {
    if times >= 1.0 { format!("{times:.2}x faster") } else { format!("{:.2}x slower", 1.0 / times) }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn figures_row(name: &str, f: &Figures) {
    println!("  {name:<32} {:>11.1?} {:>11.1?} {:>11.0}", f.p50, f.p99, f.per_sec);
}

fn figures_ratio(name: &str, a: &Figures, b: &Figures) {
    println!(
        "  {name:<32} p50 {:.2}x, p99 {:.2}x, calls/s {:.2}x",
        secs(a.p50) / secs(b.p50),
        secs(a.p99) / secs(b.p99),
        a.per_sec / b.per_sec
    );
}

fn versus(name: &str, rotor: f64, dynamo: f64) {
    println!("  {name:<32} {}", faster(rotor / dynamo));
}

/// User and system CPU time of this process (clients, servers and dynamo's
/// own runtimes; not etcd's or nats-server's), from `/proc/self/stat`.
#[derive(Clone, Copy, Default)]
struct Cpu {
    user: Duration,
    sys: Duration,
}

impl Cpu {
    fn now() -> Cpu {
        let read = || -> Option<Cpu> {
            let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
            // Fields after the command name, which is in parentheses and may hold spaces.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            // In USER_HZ, 100 on every Linux this runs on.
            let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok().map(|t| Duration::from_millis(t * 10));
            Some(Cpu { user: ticks(11)?, sys: ticks(12)? })
        };
        read().unwrap_or_default()
    }

    fn since(self, start: Cpu) -> Cpu {
        Cpu { user: self.user.saturating_sub(start.user), sys: self.sys.saturating_sub(start.sys) }
    }

    fn add(&mut self, other: Cpu) {
        self.user += other.user;
        self.sys += other.sys;
    }

    /// "user 12.3 µs, sys 4.5 µs" per one of `n`.
    fn per(self, n: usize) -> String {
        let us = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
        format!("user {:>6.2} µs, sys {:>6.2} µs", us(self.user), us(self.sys))
    }
}

/// Calls per second with `WINDOW` calls in flight, and the CPU they took.
async fn in_flight<F, Fut>(calls: usize, call: F) -> (f64, Cpu)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let (start, cpu) = (Instant::now(), Cpu::now());
    futures::stream::iter(0..calls).for_each_concurrent(WINDOW, |_| call()).await;
    (calls as f64 / start.elapsed().as_secs_f64(), Cpu::now().since(cpu))
}

/// Times `run` and adds the CPU it took to `cpu`.
async fn metered(cpu: &mut Cpu, run: impl Future<Output = Duration>) -> Duration {
    let start = Cpu::now();
    let elapsed = run.await;
    cpu.add(Cpu::now().since(start));
    elapsed
}

fn percentile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * q).round() as usize]
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn rate(d: Duration) -> f64 {
    ITEMS as f64 / d.as_secs_f64()
}

async fn run(quick: bool) {
    let calls = if quick { 2_000 } else { 20_000 };
    let (runs, rounds) = if quick { (3, 20) } else { (7, 100) };
    let servers = support::Servers::start();
    let url = servers.nats.url();
    let target = dynamo::Servers { etcd: servers.etcd.endpoint(), nats: url.clone() };

    println!("Rotor vs raw async-nats vs dynamo-runtime 1.6.1: one etcd and one nats-server on loopback");
    println!("  rotor: NATS micro service per component, etcd discovery (lease TTL 3 s)");
    println!("    calls over NATS (the NATS plane) or over one persistent TCP connection (the direct plane)");
    println!("  dynamo: etcd discovery (lease TTL 3 s), responses over a TCP connection that the worker");
    println!("    dials back to the caller per request (its default response plane), msgpack payloads;");
    println!("    requests over NATS (the comparison) or over TCP (its 1.6.1 default, for reference)");
    println!();

    // One serving runtime listens on both planes; one client runtime calls
    // over NATS, the other over the direct plane, to the same instances.
    let loopback = DirectConfig { bind: "127.0.0.1:0".parse().unwrap(), advertise: None };
    let rt = servers.builder().direct(loopback).plane(rotor::config::Plane::Nats).build().await.unwrap();
    let _rotor_servers = (rt.serve(Echo).await.unwrap(), rt.serve(Source).await.unwrap());
    let echo = Echo::client(&rt).await.unwrap();
    echo.core().wait_for_instances().await.unwrap();
    let source = Source::client(&rt).await.unwrap();
    source.core().wait_for_instances().await.unwrap();
    let direct_rt = servers.builder().plane(rotor::config::Plane::Direct).build().await.unwrap();
    let direct_echo = Echo::client(&direct_rt).await.unwrap();
    direct_echo.core().wait_for_instances().await.unwrap();
    let direct_source = Source::client(&direct_rt).await.unwrap();
    direct_source.core().wait_for_instances().await.unwrap();
    raw::echo_responder(&url).await;
    let nats = async_nats::connect(&url).await.unwrap();
    nats.flush().await.unwrap();
    let dyn_nats_rt = dynamo::runtime(&target, Plane::Nats).await;
    let (nats_echo, nats_items) = dynamo::serve_and_connect(&dyn_nats_rt, Plane::Nats).await;
    let dyn_tcp_rt = dynamo::runtime(&target, Plane::Tcp).await;
    let (tcp_echo, tcp_items) = dynamo::serve_and_connect(&dyn_tcp_rt, Plane::Tcp).await;

    let mut summary = Vec::new();
    for size in [64usize, 1024, 64 * 1024] {
        // A JSON string of `size` bytes, and the same bytes raw.
        let text = "x".repeat(size - 2);
        let bytes = Bytes::from(vec![b'x'; size]);
        let n = if size > 4096 { calls / 4 } else { calls };
        let rotor = measure::sequential(n, || {
            let (echo, text) = (echo.clone(), text.clone());
            async move {
                echo.echo(text).await.unwrap();
            }
        })
        .await;
        let direct = measure::sequential(n, || {
            let (echo, text) = (direct_echo.clone(), text.clone());
            async move {
                echo.echo(text).await.unwrap();
            }
        })
        .await;
        let raw = measure::sequential(n, || {
            let (nats, bytes) = (nats.clone(), bytes.clone());
            async move {
                nats.request(raw::ECHO_SUBJECT, bytes).await.unwrap();
            }
        })
        .await;
        let mut dynamo_figures = Vec::new();
        for router in [&nats_echo, &tcp_echo] {
            dynamo_figures.push(
                measure::sequential(n, || {
                    let (router, text) = (router.clone(), text.clone());
                    async move {
                        dynamo::echo(&router, text).await;
                    }
                })
                .await,
            );
        }
        let (dn, dt) = (&dynamo_figures[0], &dynamo_figures[1]);
        println!(
            "unary echo, {size}-byte payload, sequential, {n} calls:        p50         p99     calls/s"
        );
        figures_row("rotor typed client, NATS plane", &rotor);
        figures_row("rotor typed client, direct plane", &direct);
        figures_row("raw async-nats request/reply", &raw);
        figures_row(Plane::Nats.label(), dn);
        figures_row(Plane::Tcp.label(), dt);
        figures_ratio("ratio rotor/raw", &rotor, &raw);
        figures_ratio("ratio rotor direct/raw", &direct, &raw);
        figures_ratio("ratio dynamo (NATS)/raw", dn, &raw);
        figures_ratio("ratio dynamo (TCP)/raw", dt, &raw);
        versus("rotor vs dynamo (NATS), p50", secs(dn.p50), secs(rotor.p50));
        versus("rotor vs dynamo (NATS), calls/s", rotor.per_sec, dn.per_sec);
        versus("rotor vs dynamo (TCP), p50", secs(dt.p50), secs(rotor.p50));
        versus("rotor direct vs dynamo (TCP), p50", secs(dt.p50), secs(direct.p50));
        println!();
        let label = match size {
            64 => "64 B".to_string(),
            1024 => "1 KiB".to_string(),
            _ => "64 KiB".to_string(),
        };
        summary.push(Summary {
            what: format!("unary {label}, sequential, p50"),
            rotor: format!("{:.1?}", rotor.p50),
            direct: format!("{:.1?}", direct.p50),
            raw: format!("{:.1?}", raw.p50),
            nats: format!("{:.1?}", dn.p50),
            tcp: format!("{:.1?}", dt.p50),
            rotor_raw: secs(rotor.p50) / secs(raw.p50),
            nats_raw: secs(dn.p50) / secs(raw.p50),
            rotor_vs_nats: secs(dn.p50) / secs(rotor.p50),
            direct_vs_tcp: secs(dt.p50) / secs(direct.p50),
        });
        if size == 64 {
            summary.push(Summary {
                what: "unary 64 B, sequential, calls/s".to_string(),
                rotor: format!("{:.0}", rotor.per_sec),
                direct: format!("{:.0}", direct.per_sec),
                raw: format!("{:.0}", raw.per_sec),
                nats: format!("{:.0}", dn.per_sec),
                tcp: format!("{:.0}", dt.per_sec),
                rotor_raw: rotor.per_sec / raw.per_sec,
                nats_raw: dn.per_sec / raw.per_sec,
                rotor_vs_nats: rotor.per_sec / dn.per_sec,
                direct_vs_tcp: direct.per_sec / dt.per_sec,
            });
        }
    }

    let text = "x".repeat(62);
    let bytes = Bytes::from(vec![b'x'; 64]);
    let n = calls * 2;
    let rotor = in_flight(n, || {
        let (echo, text) = (echo.clone(), text.clone());
        async move {
            echo.echo(text).await.unwrap();
        }
    })
    .await;
    let direct = in_flight(n, || {
        let (echo, text) = (direct_echo.clone(), text.clone());
        async move {
            echo.echo(text).await.unwrap();
        }
    })
    .await;
    let raw = in_flight(n, || {
        let (nats, bytes) = (nats.clone(), bytes.clone());
        async move {
            nats.request(raw::ECHO_SUBJECT, bytes).await.unwrap();
        }
    })
    .await;
    let mut dynamo_rates = Vec::new();
    for router in [&nats_echo, &tcp_echo] {
        dynamo_rates.push(
            in_flight(n, || {
                let (router, text) = (router.clone(), text.clone());
                async move {
                    dynamo::echo(&router, text).await;
                }
            })
            .await,
        );
    }
    let ((rotor, rotor_cpu), (direct, direct_cpu), (raw, raw_cpu)) = (rotor, direct, raw);
    let ((dn, dn_cpu), (dt, dt_cpu)) = (dynamo_rates[0], dynamo_rates[1]);
    println!(
        "unary echo, 64-byte payload, {WINDOW} in flight, {n} calls:    calls/s    CPU of this process per call"
    );
    for (name, r, cpu) in [
        ("rotor typed client, NATS plane", rotor, rotor_cpu),
        ("rotor typed client, direct plane", direct, direct_cpu),
        ("raw async-nats request/reply", raw, raw_cpu),
        (Plane::Nats.label(), dn, dn_cpu),
        (Plane::Tcp.label(), dt, dt_cpu),
    ] {
        println!("  {name:<32} {r:>22.0}    {}", cpu.per(n));
    }
    println!(
        "  {:<32} rotor/raw {:.2}x, dynamo (NATS)/raw {:.2}x, dynamo (TCP)/raw {:.2}x",
        "ratios",
        rotor / raw,
        dn / raw,
        dt / raw
    );
    versus("rotor vs dynamo (NATS)", rotor, dn);
    versus("rotor vs dynamo (TCP)", rotor, dt);
    versus("rotor direct vs dynamo (TCP)", direct, dt);
    println!();
    summary.push(Summary {
        what: format!("unary 64 B, {WINDOW} in flight, calls/s"),
        rotor: format!("{rotor:.0}"),
        direct: format!("{direct:.0}"),
        raw: format!("{raw:.0}"),
        nats: format!("{dn:.0}"),
        tcp: format!("{dt:.0}"),
        rotor_raw: rotor / raw,
        nats_raw: dn / raw,
        rotor_vs_nats: rotor / dn,
        direct_vs_tcp: direct / dt,
    });

    // Interleaved, so that every system sees the same machine.
    let mut streams: [Vec<Duration>; 5] = Default::default();
    let mut cpu = [Cpu::default(); 5];
    for _ in 0..runs {
        streams[0].push(metered(&mut cpu[0], rotor_side::stream(&source, ITEMS)).await);
        streams[1].push(metered(&mut cpu[1], raw::stream(&url, ITEMS)).await);
        streams[2].push(metered(&mut cpu[2], dynamo::stream(&nats_items, ITEMS as u64)).await);
        streams[3].push(metered(&mut cpu[3], dynamo::stream(&tcp_items, ITEMS as u64)).await);
        streams[4].push(metered(&mut cpu[4], rotor_side::stream(&direct_source, ITEMS)).await);
    }
    println!(
        "stream of {ITEMS} items of 64 bytes, {runs} runs each, interleaved: median items/s  best items/s    CPU of this process per item"
    );
    let names = [
        "rotor streaming, NATS plane",
        "raw NATS publish to inbox",
        Plane::Nats.label(),
        Plane::Tcp.label(),
        "rotor streaming, direct plane",
    ];
    let mut medians = [0.0; 5];
    for (i, name) in names.iter().enumerate() {
        medians[i] = rate(median(&mut streams[i]));
        let best = rate(*streams[i].iter().min().unwrap());
        println!("  {name:<32} {:>26.0} {:>13.0}    {}", medians[i], best, cpu[i].per(runs * ITEMS));
    }
    let [rotor, raw, dn, dt, direct] = medians;
    println!(
        "  {:<32} rotor/raw {:.2}x, dynamo (NATS)/raw {:.2}x, dynamo (TCP)/raw {:.2}x",
        "ratios of medians",
        rotor / raw,
        dn / raw,
        dt / raw
    );
    versus("rotor vs dynamo (NATS)", rotor, dn);
    versus("rotor vs dynamo (TCP)", rotor, dt);
    versus("rotor direct vs dynamo (TCP)", direct, dt);
    println!();
    summary.push(Summary {
        what: "100,000-item stream, items/s (median)".to_string(),
        rotor: format!("{rotor:.0}"),
        direct: format!("{direct:.0}"),
        raw: format!("{raw:.0}"),
        nats: format!("{dn:.0}"),
        tcp: format!("{dt:.0}"),
        rotor_raw: rotor / raw,
        nats_raw: dn / raw,
        rotor_vs_nats: rotor / dn,
        direct_vs_tcp: direct / dt,
    });

    let mut discovery = [
        rotor_side::registration_to_first_call(&servers, rounds).await,
        raw::subscribe_put_watch_request(&servers, rounds).await,
        dynamo::registration_to_first_call(&target, Plane::Nats, rounds).await,
        dynamo::registration_to_first_call(&target, Plane::Tcp, rounds).await,
    ];
    println!(
        "discovery: serving a new instance to the first call answered by it, {rounds} rounds:   p50         p99"
    );
    let names = [
        "rotor: serve() -> call answered",
        "raw: subscribe, put, watch, request",
        Plane::Nats.label(),
        Plane::Tcp.label(),
    ];
    let mut p50s = [Duration::ZERO; 4];
    for (i, name) in names.iter().enumerate() {
        p50s[i] = percentile(&mut discovery[i], 0.5);
        let p99 = percentile(&mut discovery[i], 0.99);
        println!("  {name:<36} {:>22.2?} {:>11.2?}", p50s[i], p99);
    }
    let [rotor, raw, dn, dt] = p50s.map(secs);
    println!(
        "  {:<36} rotor/raw {:.2}x, dynamo (NATS)/raw {:.2}x, dynamo (TCP)/raw {:.2}x",
        "ratios of p50",
        rotor / raw,
        dn / raw,
        dt / raw
    );
    versus("rotor vs dynamo (NATS), p50", dn, rotor);
    versus("rotor vs dynamo (TCP), p50", dt, rotor);
    println!("  (dynamo's NATS plane sleeps a fixed 10 ms in registering an endpoint, inside its figure)");
    println!();
    summary.push(Summary {
        what: "serve a new instance -> first call answered, p50".to_string(),
        rotor: format!("{:.2?}", p50s[0]),
        direct: "-".to_string(),
        raw: format!("{:.2?}", p50s[1]),
        nats: format!("{:.2?}", p50s[2]),
        tcp: format!("{:.2?}", p50s[3]),
        rotor_raw: rotor / raw,
        nats_raw: dn / raw,
        rotor_vs_nats: dn / rotor,
        direct_vs_tcp: dt / rotor,
    });

    println!("summary (markdown):");
    println!();
    println!(
        "| row | Rotor, NATS plane | Rotor, direct plane | raw async-nats | dynamo, NATS plane | dynamo, TCP plane (default) | Rotor/raw | dynamo NATS/raw | Rotor vs dynamo NATS | Rotor direct vs dynamo TCP |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for s in &summary {
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.2}x | {:.2}x | {} | {} |",
            s.what,
            s.rotor,
            s.direct,
            s.raw,
            s.nats,
            s.tcp,
            s.rotor_raw,
            s.nats_raw,
            faster(s.rotor_vs_nats),
            faster(s.direct_vs_tcp)
        );
    }

    // dynamo's runtimes would otherwise keep their endpoints registered
    // until the process exits; say goodbye first, then stop the servers.
    dyn_nats_rt.shutdown();
    dyn_tcp_rt.shutdown();
    direct_rt.shutdown().await.unwrap();
    rt.shutdown().await.unwrap();
}
