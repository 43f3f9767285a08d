//! A soak: two clients with 64 calls in flight each, for two minutes, while
//! one of three server processes is restarted every 20 s (SIGKILL and
//! SIGTERM in turn). It starts its own etcd and nats-server on loopback,
//! prints the calls made and failed and the RSS of every process at start
//! and end, and fails if a call failed or a process grew past its bound.
//!
//! ```console
//! cargo run --release --features etcd --example soak                 # 120 s
//! cargo run --release --features etcd --example soak -- --secs 30
//! ```
//!
//! `soak serve` is one server process: it serves `soak/worker` on the
//! servers `ROTOR_*` names until SIGTERM, as the fault tests use it.

#[path = "soak/worker.rs"]
mod worker;

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rotor::Runtime;
use support::Servers;
use worker::{Worker, WorkerClient};

/// A long-lived server may grow by this much RSS over the run.
const SERVER_GROWTH_BOUND_KB: u64 = 24 * 1024;
/// The driver (two clients, 128 calls in flight) may grow by this much.
const DRIVER_GROWTH_BOUND_KB: u64 = 48 * 1024;
/// Load runs this long before RSS is first read, so that pools and
/// buffers reach their working size first.
const WARM_UP: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        return serve().await;
    }
    let secs = flag(&args, "--secs").unwrap_or(120);
    let every = flag(&args, "--restart-every").unwrap_or(20);
    let in_flight = flag(&args, "--in-flight").unwrap_or(64) as usize;
    drive(Duration::from_secs(secs), Duration::from_secs(every), in_flight).await
}

fn flag(args: &[String], name: &str) -> Option<u64> {
    let at = args.iter().position(|a| a == name)?;
    Some(args.get(at + 1)?.parse().unwrap_or_else(|_| panic!("{name} takes a number of seconds")))
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let rt = Runtime::from_env().await?;
    let server = rt.serve(Worker).await?;
    let stop = rotor::shutdown_signal();
    println!("serving {} as instance {}", Worker::SERVICE, server.instance_id());
    stop.await;
    server.shutdown().await;
    rt.shutdown().await?;
    Ok(())
}

/// This program again, in `serve` mode.
fn start_server(servers: &Servers) -> Child {
    use std::io::BufRead;
    let exe = std::env::current_exe().expect("this program's path");
    let mut child = std::process::Command::new(exe)
        .arg("serve")
        .envs(servers.env())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start a server");
    let mut line = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
    out.read_line(&mut line).expect("read the server's first line");
    assert!(line.starts_with("serving soak_worker"), "unexpected first line: {line:?}");
    child
}

struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
}

fn load(client: &WorkerClient, in_flight: usize, stop: &Arc<AtomicBool>, counts: &Arc<Counts>) {
    for task in 0..in_flight {
        let (client, stop, counts) =
            (client.with_timeout(Duration::from_secs(2)), stop.clone(), counts.clone());
        tokio::spawn(async move {
            let mut n = task as u64;
            while !stop.load(Ordering::Relaxed) {
                match client.work(n).await {
                    Ok(done) if done.n == n => counts.ok.fetch_add(1, Ordering::Relaxed),
                    Ok(done) => panic!("call {n} was answered with {}", done.n),
                    Err(e) => {
                        eprintln!("call failed: {e}");
                        counts.failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                n += in_flight as u64;
            }
        });
    }
}

async fn drive(
    length: Duration,
    every: Duration,
    in_flight: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: set before any thread of ours reads the environment.
    unsafe { std::env::set_var("RUST_BACKTRACE", "0") };
    let servers = Servers::start();
    // Servers 0 and 1 live through the run; server 2 is restarted.
    let mut processes: Vec<Child> = (0..3).map(|_| start_server(&servers)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..2 {
        let rt = servers.runtime().await;
        let client = Worker::client(&rt).await?;
        client.core().wait_for(|ids| ids.len() == 3).await?;
        let counts = Arc::new(Counts { ok: AtomicU64::new(0), failed: AtomicU64::new(0) });
        load(&client, in_flight, &stop, &counts);
        clients.push((rt, client, counts));
    }
    println!(
        "soak: {in_flight} calls in flight from each of 2 clients, {length:?}, one of 3 servers restarted every {every:?}"
    );
    tokio::time::sleep(WARM_UP).await;
    let me = std::process::id();
    let start_rss: Vec<u64> = processes[..2]
        .iter()
        .map(|p| support::process::rss_kib(p.id()))
        .chain([support::process::rss_kib(me)])
        .collect();
    let started = Instant::now();
    let mut restarts = 0;
    while started.elapsed() < length {
        tokio::time::sleep(every.min(length.saturating_sub(started.elapsed()))).await;
        if started.elapsed() >= length {
            break;
        }
        let signal = if restarts % 2 == 0 { "KILL" } else { "TERM" };
        support::signal(&processes[2], signal);
        processes[2].wait()?;
        processes[2] = start_server(&servers);
        restarts += 1;
        println!("{:>4.0} s: restarted server 2 after SIG{signal}", started.elapsed().as_secs_f64());
    }
    let end_rss: Vec<u64> = processes[..2]
        .iter()
        .map(|p| support::process::rss_kib(p.id()))
        .chain([support::process::rss_kib(me)])
        .collect();
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for (i, (_, _, counts)) in clients.iter().enumerate() {
        let (o, f) = (counts.ok.load(Ordering::Relaxed), counts.failed.load(Ordering::Relaxed));
        println!("client {i}: {o} calls succeeded, {f} failed");
        ok += o;
        failed += f;
    }
    println!(
        "{restarts} restarts; {ok} calls in {:.0} s ({:.0}/s), {failed} failed",
        started.elapsed().as_secs_f64(),
        ok as f64 / started.elapsed().as_secs_f64()
    );
    println!("{:<10} {:>12} {:>12} {:>10} {:>10}", "process", "RSS start", "RSS end", "growth", "bound");
    let mut grew_too_much = false;
    for (i, (start, end)) in start_rss.iter().zip(&end_rss).enumerate() {
        let (name, bound) = match i {
            2 => ("driver".to_string(), DRIVER_GROWTH_BOUND_KB),
            i => (format!("server {i}"), SERVER_GROWTH_BOUND_KB),
        };
        let growth = end.saturating_sub(*start);
        grew_too_much |= growth > bound;
        println!("{name:<10} {:>9} KiB {:>9} KiB {:>6} KiB {:>6} KiB", start, end, growth, bound);
    }
    for mut p in processes {
        let _ = p.kill();
        let _ = p.wait();
    }
    if failed > 0 || grew_too_much {
        return Err(format!("soak failed: {failed} failed calls; RSS over its bound: {grew_too_much}").into());
    }
    println!("soak passed");
    Ok(())
}
