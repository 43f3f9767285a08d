//! Discovery and failover on real etcd and nats-server, which it starts
//! itself on loopback:
//!
//! - registration to the first call routed to a new instance, against the
//!   floor of a raw etcd put seen by a raw etcd watch, in one run;
//! - SIGKILL of one of three `hello_server` processes to the last call that
//!   failed or had to be re-routed, with a client calling continuously.
//!
//! `cargo bench --features etcd --bench discovery` (add `-- --quick` for fewer rounds).

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "common/floor.rs"]
mod floor;

#[allow(dead_code)]
#[path = "../examples/hello/greeter.rs"]
mod greeter;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rotor::prelude::*;
use support::Servers;

#[derive(Debug, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[error("never")]
struct Never;

struct Probe;

#[rotor::component(namespace = "bench.discovery")]
impl Probe {
    #[endpoint]
    async fn ping(&self, ctx: Context) -> Result<InstanceId, Never> {
        Ok(ctx.instance_id())
    }
}

fn percentile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * q).round() as usize]
}

fn row(name: &str, samples: &mut [Duration]) -> (Duration, Duration) {
    let (p50, p99) = (percentile(samples, 0.5), percentile(samples, 0.99));
    println!("{name:<44} {:>10.2?} {:>10.2?} {:>6}", p50, p99, samples.len());
    (p50, p99)
}

/// Serve a fresh instance, then call until a call is answered by it. The
/// lease is taken before the clock starts; serving (NATS service, etcd
/// registration) is inside it.
async fn registration_to_first_call(servers: &Servers, rounds: usize) -> Vec<Duration> {
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
    samples
}

fn start_server(servers: &Servers) -> Child {
    use std::io::BufRead;
    let mut child = Command::new(support::example("hello_server"))
        .envs(servers.env())
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hello_server");
    let mut line = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("serving"), "{line:?}");
    // Keep reading so the child never writes into a closed pipe.
    std::thread::spawn(move || for _ in out.lines() {});
    child
}

struct Failover {
    last_affected: Duration,
    rerouted: u64,
    failed: u64,
    calls_after: u64,
}

/// Three server processes; a client calls `ping` in a loop; one process is
/// killed; how long until calls stop being affected.
async fn failover_round(servers: &Servers) -> Failover {
    let mut children: Vec<Child> = (0..3).map(|_| start_server(servers)).collect();
    let rt = servers.runtime().await;
    let client = greeter::Greeter::client(&rt).await.unwrap();
    client.core().wait_for(|ids| ids.len() == 3).await.unwrap();
    for _ in 0..100 {
        client.ping().await.unwrap();
    }
    let before = client.core().stats("ping").unwrap();
    children[0].kill().unwrap();
    let killed = Instant::now();
    children[0].wait().unwrap();
    let mut last_affected = Duration::ZERO;
    let mut calls_after = 0;
    // Run past the 3 s lease TTL, so the dead instance also leaves discovery.
    while killed.elapsed() < Duration::from_secs(4) {
        let seen = client.core().stats("ping").unwrap();
        let result = client.ping().await;
        let now = client.core().stats("ping").unwrap();
        calls_after += 1;
        if result.is_err() || now.retries > seen.retries {
            last_affected = killed.elapsed();
        }
    }
    let after = client.core().stats("ping").unwrap();
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    Failover {
        last_affected,
        rerouted: after.retries - before.retries,
        failed: after.failures - before.failures,
        calls_after,
    }
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, failovers) = if quick { (20, 2) } else { (100, 5) };
    let servers = Servers::start();

    println!("discovery: registration to first routed call ({rounds} rounds, lease TTL 3 s)");
    println!("{:<44} {:>10} {:>10} {:>6}", "", "p50", "p99", "n");
    let mut rotor = registration_to_first_call(&servers, rounds).await;
    let (rp50, rp99) = row("rotor: serve() -> first call answered by it", &mut rotor);
    let mut floor = floor::subscribe_put_watch_request(&servers, rounds).await;
    let (fp50, fp99) = row("raw: subscribe, put, watch sees it, request", &mut floor);
    println!(
        "ratio rotor/floor: p50 {:.2}x, p99 {:.2}x",
        rp50.as_secs_f64() / fp50.as_secs_f64(),
        rp99.as_secs_f64() / fp99.as_secs_f64()
    );

    println!();
    println!(
        "failover: SIGKILL of 1 of 3 hello_server processes, sequential idempotent calls ({failovers} rounds)"
    );
    let mut last = Vec::new();
    for round in 0..failovers {
        let f = failover_round(&servers).await;
        println!(
            "round {round}: last affected call {:>9.2?} after SIGKILL; {} re-routed, {} failed, of {} calls",
            f.last_affected, f.rerouted, f.failed, f.calls_after
        );
        last.push(f.last_affected);
    }
    row("SIGKILL -> last failed or re-routed call", &mut last);
}
