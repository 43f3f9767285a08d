//! How Rotor's costs grow with the number of instances N, on real etcd and
//! nats-server that the benchmark starts itself on loopback. For each N:
//!
//! 1. one server process hosting N instances of one component (the runtime
//!    from the environment, then N-1 `with_new_lease` runtimes): time to
//!    register all N, RSS per instance, time to shut all N down gracefully;
//! 2. a fresh client process: from client creation until it sees N;
//! 3. a client process started before anything is registered: its CPU time
//!    from just before the registrations start until it sees N (the
//!    headline: the cost of following a cold start);
//! 4. 64 calls in flight from one client process for a fixed time, with
//!    three routers: calls/s, and CPU per call of the client, the server
//!    process and nats-server; NATS subscriptions.
//!
//! Then, at N = 100, instances churning under load; and 50 client-only
//! runtimes in one process: NATS and etcd connections, leases, RSS, etcd
//! watchers, also for 50 clients built from run-time names.
//!
//! Beside Rotor, at each N, two floors: etcd-client alone follows a cold
//! start of N Rotor instances (a round of its own), and async-nats alone
//! carries the round-robin load to N subscriptions (`scale/raw.rs`). What falls with N for them falls for any
//! code on these servers.
//!
//! Every process is this binary again (`serve`, `follow`, `client`, `many`
//! modes, in `scale/child.rs`; `follow-raw`, `serve-raw`, `client-raw`), so
//! that each figure belongs to one process. The `calls N K ROUTER` mode is
//! not run here: it makes K calls and exits, for counting a process's
//! instructions per call under callgrind (two runs, two K, by hand).
//! Leases have the default TTL (10 s), not the test harness's 3 s, so that
//! keep-alives cost what they do in a deployment.
//!
//! `cargo bench --features etcd --bench scale` (N = 1, 10, 100, 1000; add
//! `-- --max 3000` for N = 3000 too, `-- --quick` for N up to 100 and
//! shorter runs).

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "common/cpu.rs"]
mod cpu;

#[path = "scale/child.rs"]
mod child;

#[path = "scale/probe.rs"]
mod probe;

#[path = "scale/raw.rs"]
mod raw;

use std::time::Duration;

use probe::{Fields, Proc, etcd_metric, nats_figure};
use support::Servers;
use support::process::connections_to;

#[derive(Debug, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[error("never")]
pub struct Never;

/// What every instance serves: an idempotent unary endpoint with a small payload.
pub struct Pinger;

#[rotor::component(namespace = "bench.scale")]
impl Pinger {
    #[endpoint]
    async fn ping(&self, n: u64) -> Result<u64, Never> {
        Ok(n)
    }
}

const ROUTERS: [&str; 3] = ["least-outstanding", "round-robin", "power-of-two"];
const IN_FLIGHT: usize = 64;
const CHURN_N: usize = 100;
const CHURN_PER_SEC: usize = 10;
const CHURN_IN_FLIGHT: usize = 32;
const MANY: usize = 50;
/// Instances served while the many clients are measured: enough to route
/// to, few enough that the watch lists do not weigh on their RSS.
const MANY_N: usize = 10;

/// The run's parameters, from the command line.
struct Plan {
    ns: Vec<usize>,
    calls_for: Duration,
    warm_up: Duration,
    churn_secs: u32,
}

impl Plan {
    fn from_args() -> Plan {
        let args: Vec<String> = std::env::args().collect();
        let quick = args.iter().any(|a| a == "--quick");
        let max = args.iter().position(|a| a == "--max").map(|at| {
            args.get(at + 1).and_then(|m| m.parse().ok()).expect("--max takes a number of instances")
        });
        let max: usize = max.unwrap_or(if quick { 100 } else { 1000 });
        let mut ns: Vec<usize> = [1, 10, 100, 1000, 3000].into_iter().filter(|n| *n <= max).collect();
        if !ns.contains(&max) {
            ns.push(max);
        }
        let secs = |quick_ms, full_ms| Duration::from_millis(if quick { quick_ms } else { full_ms });
        Plan {
            ns,
            calls_for: secs(1000, 3000),
            warm_up: secs(250, 500),
            churn_secs: if quick { 3 } else { 10 },
        }
    }
}

/// Every figure, by row and by N, printed as it is measured.
struct Summary {
    ns: Vec<usize>,
    rows: Vec<(String, Vec<Option<f64>>)>,
}

fn shown(v: f64) -> String {
    match v.abs() {
        _ if v.fract() == 0.0 => format!("{v:.0}"),
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    }
}

impl Summary {
    fn set(&mut self, n: usize, label: &str, value: f64) {
        println!("  {label:<54} {:>12}", shown(value));
        let column = self.ns.iter().position(|m| *m == n).expect("a planned N");
        let at = match self.rows.iter().position(|(l, _)| l == label) {
            Some(at) => at,
            None => {
                self.rows.push((label.to_string(), vec![None; self.ns.len()]));
                self.rows.len() - 1
            }
        };
        self.rows[at].1[column] = Some(value);
    }

    fn get(&self, n: usize, label: &str) -> Option<f64> {
        let column = self.ns.iter().position(|m| *m == n)?;
        self.rows.iter().find(|(l, _)| l == label)?.1[column]
    }

    fn print(&self) {
        let (from, to) = (10, *self.ns.last().expect("an N"));
        print!("{:<54}", "figure \\ N");
        for n in &self.ns {
            print!(" {n:>10}");
        }
        println!(" {:>12}", format!("{from}->{to}"));
        for (label, values) in &self.rows {
            print!("{label:<54}");
            for v in values {
                print!(" {:>10}", v.map_or("-".to_string(), shown));
            }
            let growth = match (self.get(from, label), self.get(to, label)) {
                (Some(a), Some(b)) if a != 0.0 => format!("{:.2}x", b / a),
                _ => "-".to_string(),
            };
            println!(" {growth:>12}");
        }
    }
}

/// The variables of every child: the servers', and the default lease TTL.
fn child_env(servers: &Servers) -> Vec<(&'static str, String)> {
    let mut env = servers.env();
    env.retain(|(k, _)| *k != "ROTOR_LEASE_TTL_SECS");
    env
}

/// A server process with `n` instances registered; its `registered` line.
async fn server_with(env: &[(&'static str, String)], n: usize) -> (Proc, probe::Fields) {
    let mut server = Proc::start("serve", &[], env);
    server.expect("ready").await;
    server.send(&format!("register {n}")).await;
    let registered = server.expect("registered").await;
    (server, registered)
}

async fn shut_down(mut server: Proc) -> f64 {
    server.send("shutdown").await;
    let ms = server.expect("shutdown").await.num("ms");
    report_errors("server", &server.errors);
    server.finish().await;
    ms
}

fn report_errors(who: &str, errors: &[String]) {
    for e in errors {
        println!("  {who} error: {e}");
    }
}

/// Blocks while nats-server still counts the connections of a child that exited.
fn settle_connections(servers: &Servers, n: usize) {
    tokio::task::block_in_place(|| servers.nats.wait_for_connections(n));
}

async fn at_n(servers: &Servers, plan: &Plan, n: usize, s: &mut Summary) {
    println!("N = {n}:");
    let env = child_env(servers);
    let nats_pid = servers.nats.pid().expect("nats-server runs");
    let monitor = servers.nats.monitor_port();
    // nats-server's own subscriptions (its system account), counted with
    // no client connected, so that what is left is the bench's processes'.
    settle_connections(servers, 0);
    let own_subscriptions = nats_figure(monitor, "/varz", "subscriptions") as f64;
    let subscriptions = || nats_figure(monitor, "/varz", "subscriptions") as f64 - own_subscriptions;

    let mut server = Proc::start("serve", &[], &env);
    server.expect("ready").await;
    let (registered, seen) = cold_start(&mut server, "follow", n, &env).await;
    s.set(n, "registration of all N, ms", registered.num("ms"));
    let rss = registered.num("rss_after") - registered.num("rss_before");
    s.set(n, "server RSS per instance, KiB", rss / n as f64);
    s.set(n, "cold-start client CPU until it sees N, ms", seen.num("cpu_ms"));
    s.set(n, "cold-start client wall time until it sees N, ms", seen.num("ms"));

    settle_connections(servers, 1);
    s.set(n, "NATS subscriptions of the server process", subscriptions());
    let mut client = Proc::start("client", &[n.to_string()], &env);
    let fresh = client.expect("seen").await;
    s.set(n, "fresh client: creation until it sees N, ms", fresh.num("ms"));
    s.set(n, "fresh client: CPU until it sees N, ms", fresh.num("cpu_ms"));

    for router in ROUTERS {
        measure_load(
            &mut client,
            [server.pid(), nats_pid],
            &format!("load {router} {IN_FLIGHT}"),
            plan,
            n,
            s,
            router,
        )
        .await;
        report_errors("client", &client.errors);
        client.errors.clear();
    }
    s.set(n, "NATS subscriptions, server and a client that called", subscriptions());
    client.finish().await;
    s.set(n, "graceful shutdown of all N, ms", shut_down(server).await);
    floor_at_n(&env, plan, n, nats_pid, s).await;
}

/// A follower (`mode`) started before `server` registers `n` instances:
/// the server's `registered` line and the follower's `seen` line.
async fn cold_start(
    server: &mut Proc,
    mode: &str,
    n: usize,
    env: &[(&'static str, String)],
) -> (Fields, Fields) {
    let mut follower = Proc::start(mode, &[n.to_string()], env);
    follower.expect("watching").await;
    follower.send("start").await;
    follower.expect("started").await;
    server.send(&format!("register {n}")).await;
    let registered = server.expect("registered").await;
    let seen = follower.expect("seen").await;
    follower.finish().await;
    (registered, seen)
}

/// Runs `load` on `client` for the plan's warm-up, then measures it for the
/// plan's time: calls/s (and over N = 1's), each process's CPU per call
/// and the failed calls, in rows named `{label}: ...`. Returns the calls/s.
/// `others` are the server process's and nats-server's pids.
async fn measure_load(
    client: &mut Proc,
    others: [u32; 2],
    load: &str,
    plan: &Plan,
    n: usize,
    s: &mut Summary,
    label: &str,
) -> f64 {
    client.send(load).await;
    tokio::time::sleep(plan.warm_up).await;
    client.send("stop").await;
    client.expect("stopped").await;
    let meter = cpu::CpuMeter::start(&[client.pid(), others[0], others[1]]);
    client.send(load).await;
    tokio::time::sleep(plan.calls_for).await;
    client.send("stop").await;
    let ran = client.expect("stopped").await;
    let calls = ran.num("calls") + ran.num("failed");
    let per = meter.per(calls.max(1.0) as usize);
    let rate = calls / ran.num("secs");
    s.set(n, &format!("{label}: calls/s"), rate);
    let base = s.get(1, &format!("{label}: calls/s")).unwrap_or(rate);
    s.set(n, &format!("{label}: calls/s relative to N = 1"), rate / base);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    s.set(n, &format!("{label}: client CPU per call, us"), us(per[0]));
    s.set(n, &format!("{label}: server process CPU per call, us"), us(per[1]));
    s.set(n, &format!("{label}: nats-server CPU per call, us"), us(per[2]));
    s.set(n, &format!("{label}: failed calls"), ran.num("failed"));
    rate
}

/// The floors at `n`: a cold start of `n` Rotor instances followed with
/// etcd-client alone, then the round-robin load with async-nats alone (a
/// server process with `n` subscriptions, a task each, and a client that
/// requests their subjects in turn). What falls with N here falls for any
/// code on one etcd and one nats-server.
async fn floor_at_n(env: &[(&'static str, String)], plan: &Plan, n: usize, nats_pid: u32, s: &mut Summary) {
    // The same cold start again, followed by etcd-client alone: a round of
    // its own, so that neither follower's wake-ups move the other's figure.
    let mut rotor = Proc::start("serve", &[], env);
    rotor.expect("ready").await;
    let (_, seen) = cold_start(&mut rotor, "follow-raw", n, env).await;
    shut_down(rotor).await;
    s.set(n, "cold-start raw etcd-client watch CPU (the floor), ms", seen.num("cpu_ms"));
    if let Some(client) = s.get(n, "cold-start client CPU until it sees N, ms") {
        s.set(n, "cold-start client CPU / the floor's", client / seen.num("cpu_ms"));
    }
    let mut server = Proc::start("serve-raw", &[n.to_string()], env);
    server.expect("ready").await;
    let mut client = Proc::start("client-raw", &[n.to_string()], env);
    client.expect("ready").await;
    let rate = measure_load(
        &mut client,
        [server.pid(), nats_pid],
        &format!("load {IN_FLIGHT}"),
        plan,
        n,
        s,
        "floor",
    )
    .await;
    if let Some(rotor) = s.get(n, "round-robin: calls/s") {
        s.set(n, "round-robin: calls/s over the floor's", rotor / rate);
    }
    client.finish().await;
    server.finish().await;
}

/// Instances stopped and started every second under load.
async fn churn(servers: &Servers, plan: &Plan) -> Vec<(String, f64)> {
    let secs = plan.churn_secs;
    println!(
        "churn: N = {CHURN_N}, {CHURN_PER_SEC} instances stopped gracefully and {CHURN_PER_SEC} started \
         every second for {secs} s, {CHURN_IN_FLIGHT} calls in flight (least outstanding):"
    );
    let env = child_env(servers);
    let (mut server, _) = server_with(&env, CHURN_N).await;
    let mut client = Proc::start("client", &[CHURN_N.to_string()], &env);
    client.expect("seen").await;
    client.send(&format!("load least-outstanding {CHURN_IN_FLIGHT}")).await;
    server.send(&format!("churn {secs} {CHURN_PER_SEC}")).await;
    let churned = server.expect("churned").await;
    client.send("stop").await;
    let ran = client.expect("stopped").await;
    let figures = vec![
        ("churn: instances stopped".to_string(), churned.num("stopped")),
        ("churn: instances started".to_string(), churned.num("started")),
        ("churn: slowest round (stop 10, start 10), ms".to_string(), churned.num("slowest_round_ms")),
        ("churn: calls made".to_string(), ran.num("calls") + ran.num("failed")),
        ("churn: calls failed".to_string(), ran.num("failed")),
        ("churn: calls retried on another instance".to_string(), ran.num("retries")),
        ("churn: instances taken out of rotation".to_string(), ran.num("evictions")),
    ];
    for (label, v) in &figures {
        println!("  {label:<54} {:>12}", shown(*v));
    }
    if client.errors.is_empty() {
        println!("  no call failed");
    }
    for e in &client.errors {
        println!("  first errors: {e}");
    }
    client.finish().await;
    shut_down(server).await;
    figures
}

async fn lease_count(etcd: &mut rotor::discovery::etcd_client::Client) -> f64 {
    etcd.leases().await.expect("etcd lists leases").leases().len() as f64
}

/// Many client-only runtimes in one process, then many clients from names.
async fn many(servers: &Servers) -> Vec<(String, f64)> {
    println!("many clients: {MANY} client-only runtimes in one process, N = {MANY_N}:");
    let env = child_env(servers);
    let (server, _) = server_with(&env, MANY_N).await;
    let (etcd_port, nats_port) = (servers.etcd.client_port, servers.nats.port);
    let mut etcd = servers.etcd.client().await;
    let watchers = || etcd_metric(etcd_port, "etcd_debugging_mvcc_watcher_total").unwrap_or(f64::NAN);
    let streams = || etcd_metric(etcd_port, "etcd_debugging_mvcc_watch_stream_total").unwrap_or(f64::NAN);
    let mut figures = Vec::new();
    let mut put = |label: &str, v: f64| {
        println!("  {label:<54} {:>12}", shown(v));
        figures.push((label.to_string(), v));
    };

    settle_connections(servers, 1);
    let server_connections = servers.nats.connections() as f64;
    let leases_before = lease_count(&mut etcd).await;
    let (watchers_before, streams_before) = (watchers(), streams());
    let mut m = Proc::start("many", &[MANY.to_string(), MANY_N.to_string()], &env);
    put("many: RSS before building, KiB", m.expect("ready").await.num("rss_kib"));
    m.send("build").await;
    let built = m.expect("built").await;
    put("many: building all (runtime, client, 3 calls each), ms", built.num("ms"));
    put("many: RSS with all built, KiB", built.num("rss_kib"));
    put(
        "many: NATS connections (/connz, less the server's)",
        servers.nats.connections() as f64 - server_connections,
    );
    put("many: NATS TCP connections of the process", connections_to(m.pid(), nats_port) as f64);
    put("many: etcd TCP connections of the process", connections_to(m.pid(), etcd_port) as f64);
    put("many: etcd leases held (etcd's count, less before)", lease_count(&mut etcd).await - leases_before);
    put("many: etcd watchers (server-wide, less before)", watchers() - watchers_before);
    put("many: etcd watch streams (server-wide, less before)", streams() - streams_before);
    m.send("drop").await;
    put("many: RSS 1 s after dropping all, KiB", m.expect("dropped").await.num("rss_kib"));
    put("many: NATS connections after dropping", servers.nats.connections() as f64 - server_connections);
    put("many: etcd TCP connections after dropping", connections_to(m.pid(), etcd_port) as f64);
    put("many: etcd watchers after dropping", watchers() - watchers_before);
    put("many: etcd leases after dropping", lease_count(&mut etcd).await - leases_before);

    let before = watchers();
    put("names: etcd watchers before (server-wide)", before);
    m.send("names").await;
    let named = m.expect("named").await;
    put(&format!("names: etcd watchers with {MANY} clients from names"), watchers());
    put("names: etcd watch streams with them", streams());
    put("names: etcd TCP connections of the process", connections_to(m.pid(), etcd_port) as f64);
    put("names: RSS with them, KiB", named.num("rss_kib"));
    m.send("unname").await;
    let unnamed = m.expect("unnamed").await;
    put("names: etcd watchers 1 s after dropping them", watchers());
    put("names: RSS after dropping them, KiB", unnamed.num("rss_kib"));
    m.finish().await;
    shut_down(server).await;
    figures
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(mode) = args.first().filter(|a| !a.starts_with('-')) {
        return child::run(mode, &args[1..]).await;
    }
    let plan = Plan::from_args();
    let servers = Servers::start();
    println!(
        "scale: N = {:?} instances in one server process; calls for {:?} per router after {:?} of warm-up",
        plan.ns, plan.calls_for, plan.warm_up
    );
    let mut summary = Summary { ns: plan.ns.clone(), rows: Vec::new() };
    for &n in &plan.ns {
        at_n(&servers, &plan, n, &mut summary).await;
    }
    let churned = churn(&servers, &plan).await;
    let many = many(&servers).await;

    println!();
    println!("summary (growth: the figure at the largest N over the figure at N = 10)");
    summary.print();
    for (label, v) in churned.iter().chain(&many) {
        println!("{label:<54} {:>10}", shown(*v));
    }
    let headline = "cold-start client CPU until it sees N, ms";
    for (n, target) in [(1000, 30.0), (3000, 100.0)] {
        if let Some(v) = summary.get(n, headline) {
            println!("headline: {headline} at N = {n}: {} (target <= {target} ms)", shown(v));
        }
    }
}
