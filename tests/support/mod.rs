//! The shared test harness: real `etcd` and `nats-server` processes on free
//! loopback ports, with temporary data directories, readiness checks
//! (etcd's `/health`, NATS's `/healthz`), kill and restart, and cleanup on
//! drop — also when a test panics.
//!
//! A missing server binary fails the test with the command that installs it.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use rotor::config::{EtcdConfig, NatsAuth, NatsConfig};
use rotor::discovery::etcd_client;

/// How long a server may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A free loopback port for a server to listen on, never the same twice in
/// one process.
///
/// Ports are taken below the kernel's ephemeral range: a port the kernel
/// hands out for `bind(0)` is also one it hands out to outgoing connections,
/// and tests running beside each other open many, so such a port can be
/// taken by a client between our check and the server's bind (etcd then
/// exits at start-up). A counter starting at an offset of the process id
/// keeps two test processes from walking the same ports.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let (low, high) = listening_range();
    let span = u32::from(high - low);
    let _ = NEXT.compare_exchange(u32::MAX, std::process::id().wrapping_mul(7919) % span, SeqCst, SeqCst);
    for _ in 0..span {
        let port = low + (NEXT.fetch_add(1, SeqCst) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {low}..{high}")
}

/// Ports from 15000 up to the start of the ephemeral range (Linux's
/// `ip_local_port_range`, 32768 by default).
fn listening_range() -> (u16, u16) {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let low = 15000;
    assert!(
        ephemeral_start > low + 1000,
        "the ephemeral port range starts at {ephemeral_start}; the tests need ports {low}..{} for their servers",
        low + 1000
    );
    (low, ephemeral_start)
}

fn require(binary: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(binary)).find(|p| p.is_file()));
    found.unwrap_or_else(|| {
        panic!(
            "`{binary}` is not installed; these tests run a real server. Install it with \
             `sudo apt-get install -y {package}` (or run scripts/test.sh, which does)"
        )
    })
}

/// `GET path` over plain HTTP/1.0; the status code and body.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// Waits until `done` holds, for at most 20 s. For state that signals
/// nothing (counts on a server's monitoring endpoint, in another process,
/// in the runtime's task list), so it is read again every 10 ms.
pub async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < READY_TIMEOUT, "{what} did not happen within {READY_TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn wait_until(what: &str, child: &mut Child, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < READY_TIMEOUT {
        if ready() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before it was ready: {status}");
        }
        // A server process offers no readiness signal but its HTTP endpoint:
        // poll it, at an interval short against its start-up time.
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} was not ready within {READY_TIMEOUT:?}");
}

/// A quiet child: servers' logs would drown the test output.
fn spawn(binary: &Path, args: &[String]) -> Child {
    Command::new(binary)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()))
}

/// A single-member etcd on loopback.
pub struct Etcd {
    pub client_port: u16,
    peer_port: u16,
    data: tempfile::TempDir,
    binary: PathBuf,
    child: Option<Child>,
}

impl Etcd {
    pub fn start() -> Etcd {
        let binary = require("etcd", "etcd-server");
        let data = tempfile::tempdir().expect("a temporary directory");
        let mut etcd = Etcd { client_port: free_port(), peer_port: free_port(), data, binary, child: None };
        etcd.launch();
        etcd
    }

    fn launch(&mut self) {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let args = [
            "--name=rotor-test".to_string(),
            format!("--data-dir={}", self.data.path().join("etcd").display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=rotor-test={peer}"),
            "--log-level=error".to_string(),
        ];
        let mut child = spawn(&self.binary, &args);
        let port = self.client_port;
        wait_until(
            "etcd",
            &mut child,
            || matches!(http_get(port, "/health"), Some((200, body)) if body.contains("\"health\":\"true\"")),
        );
        self.child = Some(child);
    }

    /// etcd's own count of the watches its clients hold open.
    pub fn watchers(&self) -> u64 {
        let (_, body) = http_get(self.client_port, "/metrics").expect("etcd serves /metrics");
        body.lines()
            .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watcher_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .expect("etcd reports etcd_debugging_mvcc_watcher_total") as u64
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn config(&self) -> EtcdConfig {
        EtcdConfig { endpoints: vec![self.endpoint()], ..EtcdConfig::default() }
    }

    /// A plain etcd client, for reading what Rotor wrote.
    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.endpoint()], None).await.expect("connect to etcd")
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again after [`kill`](Self::kill), on the same ports and
    /// data: its leases are back, with their TTLs started afresh.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "etcd is running");
        self.launch();
    }

    /// Kill, then start again on the same ports and data: leases survive.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Kill, then start again on the same ports with no data: every lease
    /// and key is gone, as after losing the cluster's state.
    pub fn restart_wiped(&mut self) {
        self.kill();
        std::fs::remove_dir_all(self.data.path().join("etcd")).expect("remove etcd data");
        self.launch();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A nats-server on loopback.
pub struct Nats {
    pub port: u16,
    monitor_port: u16,
    token: Option<String>,
    user: Option<(String, String)>,
    binary: PathBuf,
    child: Option<Child>,
}

impl Nats {
    pub fn start() -> Nats {
        Nats::launch_with(None, None)
    }

    /// A server that requires `token`.
    pub fn start_with_token(token: &str) -> Nats {
        Nats::launch_with(Some(token.to_string()), None)
    }

    /// A server that requires a user and password.
    pub fn start_with_user(user: &str, password: &str) -> Nats {
        Nats::launch_with(None, Some((user.to_string(), password.to_string())))
    }

    fn launch_with(token: Option<String>, user: Option<(String, String)>) -> Nats {
        let binary = require("nats-server", "nats-server");
        let mut nats =
            Nats { port: free_port(), monitor_port: free_port(), token, user, binary, child: None };
        nats.launch();
        nats
    }

    fn launch(&mut self) {
        let mut args = vec![
            "-a".to_string(),
            "127.0.0.1".to_string(),
            "-p".to_string(),
            self.port.to_string(),
            "-m".to_string(),
            self.monitor_port.to_string(),
        ];
        if let Some(token) = &self.token {
            args.push(format!("--auth={token}"));
        }
        if let Some((user, password)) = &self.user {
            args.push(format!("--user={user}"));
            args.push(format!("--pass={password}"));
        }
        let mut child = spawn(&self.binary, &args);
        let port = self.monitor_port;
        wait_until("nats-server", &mut child, || matches!(http_get(port, "/healthz"), Some((200, _))));
        self.child = Some(child);
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The port of its monitoring endpoint (`/varz`, `/connz`).
    pub fn monitor_port(&self) -> u16 {
        self.monitor_port
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn config(&self) -> NatsConfig {
        let auth = match (&self.token, &self.user) {
            (Some(t), _) => NatsAuth::Token(t.clone()),
            (None, Some((user, password))) => {
                NatsAuth::UserPassword { user: user.clone(), password: password.clone() }
            }
            (None, None) => NatsAuth::None,
        };
        NatsConfig { urls: vec![self.url()], auth, ..NatsConfig::default() }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kill, then start again on the same ports, as a broker restart does:
    /// every client must reconnect and subscribe again.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Starts the server again after [`kill`](Self::kill), on the same ports.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "nats-server is running");
        self.launch();
    }

    /// Subscriptions the server holds now, its own internal ones included
    /// (from its monitoring port).
    pub fn subscriptions(&self) -> u64 {
        let (_, body) = http_get(self.monitor_port, "/varz").expect("nats-server monitoring answers");
        let json: serde_json::Value = serde_json::from_str(&body).expect("/varz is JSON");
        json["subscriptions"].as_u64().expect("subscriptions")
    }

    /// Messages the server has received from its clients so far (from its
    /// monitoring port).
    pub fn in_msgs(&self) -> u64 {
        let (_, body) = http_get(self.monitor_port, "/varz").expect("nats-server monitoring answers");
        let json: serde_json::Value = serde_json::from_str(&body).expect("/varz is JSON");
        json["in_msgs"].as_u64().expect("in_msgs")
    }

    /// Client connections the server holds now (from its monitoring port).
    pub fn connections(&self) -> usize {
        let (_, body) = http_get(self.monitor_port, "/connz").expect("nats-server monitoring answers");
        let json: serde_json::Value = serde_json::from_str(&body).expect("/connz is JSON");
        json["num_connections"].as_u64().expect("num_connections") as usize
    }

    /// Waits until the server holds `n` client connections: a killed
    /// client's subscriptions are gone once its connection is.
    pub fn wait_for_connections(&self, n: usize) {
        let start = Instant::now();
        while self.connections() != n {
            assert!(start.elapsed() < READY_TIMEOUT, "nats-server did not reach {n} connections");
            // The count is only on nats-server's monitoring endpoint: poll it.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Both servers.
pub struct Servers {
    pub etcd: Etcd,
    pub nats: Nats,
}

impl Servers {
    pub fn start() -> Servers {
        Servers { etcd: Etcd::start(), nats: Nats::start() }
    }

    /// A distributed runtime on these servers, with a short lease so that
    /// lease tests finish quickly.
    pub async fn runtime(&self) -> rotor::Runtime {
        self.builder().build().await.expect("a distributed runtime")
    }

    pub fn builder(&self) -> rotor::RuntimeBuilder {
        rotor::Runtime::builder()
            .nats(self.nats.config())
            .etcd(self.etcd.config())
            .lease_ttl(Duration::from_secs(3))
    }

    /// The variables a child process needs to reach these servers.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ROTOR_NATS_URL", self.nats.url()),
            ("ROTOR_ETCD_ENDPOINTS", self.etcd.endpoint()),
            ("ROTOR_LEASE_TTL_SECS", "3".to_string()),
            ("RUST_BACKTRACE", "0".to_string()),
        ]
    }
}

/// An example binary of this package started on `servers`, with `args`:
/// the child, its stdout, and the first line it printed (the examples print
/// one when they serve).
pub fn start_example(
    name: &str,
    args: &[&str],
    servers: &Servers,
) -> (Child, std::io::BufReader<std::process::ChildStdout>, String) {
    start_example_with_env(name, args, &servers.env())
}

/// An example binary of this package started with `env` (on top of this
/// process's) and `args`: the child, its stdout, and the first line it
/// printed. Hold on to the stdout: a closed pipe would fail its next print.
pub fn start_example_with_env(
    name: &str,
    args: &[&str],
    env: &[(&str, String)],
) -> (Child, std::io::BufReader<std::process::ChildStdout>, String) {
    use std::io::BufRead;
    let mut child = Command::new(example(name))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let mut out = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    out.read_line(&mut line).unwrap_or_else(|e| panic!("read {name}'s first line: {e}"));
    (child, out, line)
}

/// Sends `signal` (`INT`, `TERM`) to `child`.
pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status();
    assert!(status.expect("run kill").success(), "kill -{signal} {}", child.id());
}

/// Sends `signal` to `child`, whether or not it still runs (for teardown).
pub fn signal_quiet(child: &Child, signal: &str) -> bool {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
    status.is_ok_and(|s| s.success())
}

/// The path of an example binary of the `rotor` package, built once per test run.
pub fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    // Tests run from target/<profile>/deps/; examples live in target/<profile>/examples/.
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    BUILT.get_or_init(|| {
        // `--workspace`, as `cargo test --workspace` resolves features: with
        // `-p rotor` the runtime and its dependents would be built a second
        // time, with a second copy on disk.
        let mut args = vec!["build", "--quiet", "--workspace", "--examples", "--features", "etcd"];
        if release {
            args.push("--release");
        }
        let status = Command::new(env!("CARGO"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build --examples");
        assert!(status.success(), "cargo build --examples failed");
    });
    let path = profile_dir.join("examples").join(name);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}
pub mod cluster;
pub mod process;
pub mod secure;
