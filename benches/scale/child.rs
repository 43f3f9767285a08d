//! The processes the scale benchmark starts: this binary again, in a mode
//! named by its first argument. Each reaches the servers through the
//! `ROTOR_*` variables, as a deployed process would, reads commands one a
//! line on stdin, answers one a line on stdout, and exits when stdin closes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rotor::{ClientStats, Config, Router, Runtime, ServeHandle};
use tokio::task::JoinHandle;

use crate::probe::own_cpu;
use crate::raw;
use crate::support::process::rss_kib;
use crate::{Never, Pinger, PingerClient};

/// How long a call may take before it counts as failed: far above a
/// loopback round trip, far below the 30 s default that would stall a run.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Errors a client prints, of all it saw.
const ERRORS_KEPT: usize = 5;
/// How long a process waits after dropping runtimes before it is measured:
/// connections and watches close in background tasks.
const SETTLE: Duration = Duration::from_secs(1);

pub async fn run(mode: &str, args: &[String]) {
    let number = |i: usize| -> usize {
        args.get(i).and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("{mode}: argument {i} is a number"))
    };
    match mode {
        "serve" => serve().await,
        "follow" => follow(number(0)).await,
        "follow-raw" => raw::follow(number(0)).await,
        "serve-raw" => raw::serve(number(0)).await,
        "client-raw" => raw::client(number(0)).await,
        "client" => client(number(0)).await,
        "calls" => calls(number(0), number(1), args.get(2).map_or("power-of-two", String::as_str)).await,
        "many" => many(number(0), number(1)).await,
        _ => panic!("no child mode {mode}"),
    }
}

/// The commands on stdin, read by a thread: tokio's stdin needs a feature
/// the workspace does not enable.
pub struct Commands(tokio::sync::mpsc::UnboundedReceiver<String>);

impl Commands {
    pub fn start() -> Commands {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::stdin().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Commands(rx)
    }

    /// The next command; `None` once the benchmark closed stdin.
    pub async fn next(&mut self) -> Option<String> {
        self.0.recv().await
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn me() -> u32 {
    std::process::id()
}

async fn env_runtime() -> Runtime {
    Runtime::from_env().await.expect("a runtime from the ROTOR_* variables")
}

type Instance = (Runtime, ServeHandle<Pinger>);

async fn start_instance(base: &Runtime) -> Instance {
    let rt = base.with_new_lease().await.expect("a new lease");
    let handle = rt.serve(Pinger).await.expect("serve an instance");
    (rt, handle)
}

/// Stops instances at once, each as a SIGTERM would: drain, then revoke.
async fn stop(instances: Vec<Instance>) -> usize {
    let stops = instances.into_iter().map(|(rt, handle)| async move {
        handle.shutdown().await;
        if let Err(e) = rt.shutdown().await {
            println!("error revoking a lease: {e}");
        }
    });
    futures::future::join_all(stops).await.len()
}

/// One process hosting instances: `register N`, `churn SECS PER_SEC`, `shutdown`.
async fn serve() {
    let base = env_runtime().await;
    let mut commands = Commands::start();
    let mut instances: VecDeque<Instance> = VecDeque::new();
    println!("ready");
    while let Some(line) = commands.next().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            ["register", n] => {
                let n: usize = n.parse().expect("register N");
                let before = rss_kib(me());
                let start = Instant::now();
                for i in 0..n {
                    // The first instance is the runtime from the environment
                    // itself, as a one-instance process would serve.
                    if i == 0 && instances.is_empty() {
                        instances.push_back((base.clone(), base.serve(Pinger).await.expect("serve")));
                    } else {
                        instances.push_back(start_instance(&base).await);
                    }
                }
                let took = start.elapsed();
                println!("registered ms={:.3} rss_before={before} rss_after={}", ms(took), rss_kib(me()));
            }
            ["churn", secs, per] => {
                let (secs, per): (u32, usize) = (secs.parse().unwrap(), per.parse().unwrap());
                let (mut stopped, mut started, mut slowest) = (0, 0, Duration::ZERO);
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                for _ in 0..secs {
                    tick.tick().await;
                    let round = Instant::now();
                    let old: Vec<Instance> = instances.drain(..per.min(instances.len())).collect();
                    let fresh = futures::future::join_all((0..per).map(|_| start_instance(&base)));
                    let (n, fresh) = tokio::join!(stop(old), fresh);
                    stopped += n;
                    started += fresh.len();
                    instances.extend(fresh);
                    slowest = slowest.max(round.elapsed());
                }
                // The last round's instances take calls for a second too.
                tick.tick().await;
                println!("churned stopped={stopped} started={started} slowest_round_ms={:.3}", ms(slowest));
            }
            ["shutdown"] => {
                let start = Instant::now();
                let n = stop(instances.drain(..).collect()).await;
                println!("shutdown ms={:.3} instances={n}", ms(start.elapsed()));
            }
            _ => panic!("serve: unknown command {line:?}"),
        }
    }
}

/// A client started before anything is registered: `start` marks the start
/// of registrations; it prints `seen` once it sees `n` instances.
async fn follow(n: usize) {
    let rt = env_runtime().await;
    let client = Pinger::client(&rt).await.expect("a client");
    let mut commands = Commands::start();
    println!("watching");
    assert_eq!(commands.next().await.as_deref(), Some("start"));
    let (cpu, start) = (own_cpu(), Instant::now());
    println!("started");
    client.core().wait_for(|ids| ids.len() >= n).await.expect("the watch runs");
    let (cpu, took) = (own_cpu() - cpu, start.elapsed());
    println!("seen ms={:.3} cpu_ms={:.3}", ms(took), ms(cpu));
    while commands.next().await.is_some() {}
}

fn router(name: &str) -> Router {
    match name {
        "least-outstanding" => Router::LeastOutstanding,
        "round-robin" => Router::RoundRobin,
        "power-of-two" => Router::PowerOfTwo,
        "random" => Router::Random,
        _ => panic!("no router {name}"),
    }
}

/// What a load's calls did: answered, failed, and the first errors.
#[derive(Default)]
pub struct Counts {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl Counts {
    /// Counts one call, `None` when it was answered as asked.
    pub fn count(&self, error: Option<String>) {
        match error {
            None => self.ok.fetch_add(1, Ordering::Relaxed),
            Some(e) => {
                let mut errors = self.errors.lock().unwrap();
                if errors.len() < ERRORS_KEPT {
                    errors.push(e);
                }
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    /// Prints the errors kept, one an `error` line.
    pub fn print_errors(&self) {
        for e in self.errors.lock().unwrap().iter() {
            println!("error {e}");
        }
    }
}

/// Calls in flight until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    counts: Arc<Counts>,
    started: Instant,
    before: ClientStats,
}

impl Load {
    fn start(client: &PingerClient, in_flight: usize) -> Load {
        let (stop, counts) = (Arc::new(AtomicBool::new(false)), Arc::new(Counts::default()));
        let before = client.core().stats("ping").expect("a ping endpoint");
        let tasks = (0..in_flight)
            .map(|task| {
                let (client, stop, counts) =
                    (client.with_timeout(CALL_TIMEOUT), stop.clone(), counts.clone());
                tokio::spawn(async move {
                    let mut n = task as u64;
                    while !stop.load(Ordering::Relaxed) {
                        let error = match client.ping(n).await {
                            Ok(back) if back == n => None,
                            Ok(back) => Some(format!("call {n} was answered with {back}")),
                            Err(e) => Some(e.to_string()),
                        };
                        counts.count(error);
                        n += in_flight as u64;
                    }
                })
            })
            .collect();
        Load { stop, tasks, counts, started: Instant::now(), before }
    }

    /// Stops, waits for the calls in flight, and prints what they did.
    async fn stop(self, client: &PingerClient) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a load task");
        }
        let took = self.started.elapsed();
        let after = client.core().stats("ping").expect("a ping endpoint");
        self.counts.print_errors();
        println!(
            "stopped calls={} failed={} secs={:.6} retries={} evictions={}",
            self.counts.ok.load(Ordering::Relaxed),
            self.counts.failed.load(Ordering::Relaxed),
            took.as_secs_f64(),
            after.retries - self.before.retries,
            after.evictions - self.before.evictions,
        );
    }
}

/// A fresh client in a fresh process: prints how long it took to see `n`
/// instances, then runs `load ROUTER IN_FLIGHT` until `stop`.
async fn client(n: usize) {
    let rt = env_runtime().await;
    let mut commands = Commands::start();
    let (cpu, start) = (own_cpu(), Instant::now());
    let client = Pinger::client(&rt).await.expect("a client");
    client.core().wait_for(|ids| ids.len() >= n).await.expect("the watch runs");
    let (cpu, took) = (own_cpu() - cpu, start.elapsed());
    println!("seen ms={:.3} cpu_ms={:.3}", ms(took), ms(cpu));
    let mut load = None;
    while let Some(line) = commands.next().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            ["load", name, in_flight] => {
                let routed = client.with_router(router(name));
                load = Some((Load::start(&routed, in_flight.parse().expect("a number")), routed));
            }
            ["stop"] => {
                let (load, routed) = load.take().expect("a load to stop");
                load.stop(&routed).await;
            }
            _ => panic!("client: unknown command {line:?}"),
        }
    }
}

/// `k` calls, 64 in flight, once `n` instances are seen, then exit: for
/// counting a client's instructions per call under callgrind, where time
/// means nothing (`calls N K ROUTER`; run it with two K, and the difference
/// over the difference of K is one call's count, setup taken out).
async fn calls(n: usize, k: usize, router_name: &str) {
    let rt = env_runtime().await;
    let client = Pinger::client(&rt).await.expect("a client").with_router(router(router_name));
    client.core().wait_for(|ids| ids.len() >= n).await.expect("the watch runs");
    let left = Arc::new(AtomicU64::new(k as u64));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            // Far above a call's time under callgrind, which runs it some
            // fifty times slower.
            let (client, left) = (client.with_timeout(CALL_TIMEOUT * 15), left.clone());
            tokio::spawn(async move {
                while left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(1)).is_ok() {
                    client.ping(7).await.expect("a call");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a call task");
    }
    println!("done calls={k}");
}

/// Many client-only runtimes in one process: `build`, `drop`, then many
/// clients from run-time names on one runtime: `names`, `unname`.
async fn many(count: usize, n: usize) {
    let mut commands = Commands::start();
    println!("ready rss_kib={}", rss_kib(me()));
    let (mut runtimes, mut clients) = (Vec::new(), Vec::new());
    let (mut named_rt, mut named) = (None, Vec::new());
    while let Some(line) = commands.next().await {
        match line.as_str() {
            "build" => {
                let start = Instant::now();
                for _ in 0..count {
                    // What `Runtime::from_env` does, spelled out as a program
                    // that tunes its config would.
                    let config = Config::from_env().expect("a config from ROTOR_*");
                    let rt = Runtime::builder().config(config).build().await.expect("a runtime");
                    let client = Pinger::client(&rt).await.expect("a client");
                    client.core().wait_for(|ids| ids.len() >= n).await.expect("the watch runs");
                    for i in 0..3 {
                        assert_eq!(client.ping(i).await.expect("a call"), i);
                    }
                    runtimes.push(rt);
                    clients.push(client);
                }
                println!("built rss_kib={} ms={:.3}", rss_kib(me()), ms(start.elapsed()));
            }
            "drop" => {
                clients.clear();
                for rt in runtimes.drain(..) {
                    rt.shutdown().await.expect("shut a runtime down");
                }
                tokio::time::sleep(SETTLE).await;
                println!("dropped rss_kib={}", rss_kib(me()));
            }
            "names" => {
                let rt = env_runtime().await;
                for i in 0..count as u64 {
                    let endpoint = rt
                        .namespace(Pinger::NAMESPACE)
                        .and_then(|ns| ns.component(Pinger::COMPONENT))
                        .and_then(|c| c.endpoint("ping"))
                        .expect("valid names");
                    let client = endpoint.client().await.expect("a client from names");
                    client.wait_for(|ids| ids.len() >= n).await.expect("the watch runs");
                    let back: u64 = client.unary::<u64, u64, Never>("ping", &i).await.expect("a call");
                    assert_eq!(back, i);
                    named.push(client);
                }
                named_rt = Some(rt);
                println!("named rss_kib={}", rss_kib(me()));
            }
            "unname" => {
                named.clear();
                tokio::time::sleep(SETTLE).await;
                println!("unnamed rss_kib={}", rss_kib(me()));
            }
            _ => panic!("many: unknown command {line:?}"),
        }
    }
    // Held to the end, so that the watchers counted after `unname` are
    // what the dropped clients left, not the runtime's going.
    drop(named_rt);
}
