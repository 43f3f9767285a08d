//! Clusters, as users scale out: three nats-server nodes routed to each
//! other and a three-member etcd, on free loopback ports, each etcd member
//! with its own data directory; kill and start again by node, and cleanup
//! on drop. Plus what a test needs to see which NATS node a client uses,
//! which etcd member leads and which streams a member holds, and to start
//! a server process on all of them.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rotor::config::{EtcdConfig, NatsConfig};
use rotor::discovery::etcd_client;

use super::{READY_TIMEOUT, http_get, require, spawn};

/// `n` distinct free loopback ports.
fn free_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| super::free_port()).collect()
}

/// Waits until `ready` holds, for at most [`READY_TIMEOUT`]. Any process of
/// the cluster that exits meanwhile fails the wait at once, by name: a node
/// waited on may be unready only because another could not start.
fn wait_for_cluster(
    what: &str,
    processes: &mut [(String, &mut Option<Child>)],
    mut ready: impl FnMut() -> bool,
    state: impl Fn() -> String,
) {
    let start = std::time::Instant::now();
    while start.elapsed() < READY_TIMEOUT {
        if ready() {
            return;
        }
        for (name, child) in processes.iter_mut() {
            if let Some(Ok(Some(status))) = child.as_mut().map(Child::try_wait) {
                panic!("{name} exited while waiting for {what}: {status}");
            }
        }
        // A server offers no readiness signal but its HTTP endpoint: poll
        // it, at an interval short against its start-up time.
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what}: not ready within {READY_TIMEOUT:?}; {}", state());
}

fn stop(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A name no other cluster of this machine uses: nodes of two clusters
/// started at once by two test binaries must not join each other.
fn unique(what: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("rotor-{what}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

struct NatsNode {
    port: u16,
    monitor_port: u16,
    cluster_port: u16,
    child: Option<Child>,
}

/// nats-server nodes on loopback, each routed to all the others.
pub struct NatsCluster {
    nodes: Vec<NatsNode>,
    name: String,
    binary: PathBuf,
}

impl NatsCluster {
    /// `n` nodes; returns once every node has a route to every other.
    pub fn start(n: usize) -> NatsCluster {
        let binary = require("nats-server", "nats-server");
        let ports = free_ports(3 * n);
        let nodes = (ports.chunks(3))
            .map(|p| NatsNode { port: p[0], monitor_port: p[1], cluster_port: p[2], child: None })
            .collect();
        let mut cluster = NatsCluster { nodes, name: unique("nats"), binary };
        for i in 0..n {
            cluster.spawn(i);
        }
        for i in 0..n {
            cluster.wait_ready(i);
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let routes: Vec<String> = (self.nodes.iter().enumerate())
            .filter(|(j, _)| *j != i)
            .map(|(_, node)| format!("nats://127.0.0.1:{}", node.cluster_port))
            .collect();
        let node = &self.nodes[i];
        let args = [
            "-a".to_string(),
            "127.0.0.1".to_string(),
            "-p".to_string(),
            node.port.to_string(),
            "-m".to_string(),
            node.monitor_port.to_string(),
            format!("--server_name={}-n{i}", self.name),
            format!("--cluster_name={}", self.name),
            format!("--cluster=nats://127.0.0.1:{}", node.cluster_port),
            format!("--routes={}", routes.join(",")),
        ];
        self.nodes[i].child = Some(spawn(&self.binary, &args));
    }

    /// Waits until node `i` serves clients and is routed to every other node.
    fn wait_ready(&mut self, i: usize) {
        let others = self.nodes.len() - 1;
        let monitor_port = self.nodes[i].monitor_port;
        let mut processes: Vec<(String, &mut Option<Child>)> = (self.nodes.iter_mut().enumerate())
            .map(|(j, n)| (format!("nats-server node {j}"), &mut n.child))
            .collect();
        wait_for_cluster(
            &format!("nats-server node {i} with {others} routes"),
            &mut processes,
            || matches!(http_get(monitor_port, "/healthz"), Some((200, _))) && routes(monitor_port) >= others,
            || {
                format!(
                    "/healthz: {:?}, routes: {}",
                    http_get(monitor_port, "/healthz"),
                    routes(monitor_port)
                )
            },
        );
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].port)
    }

    /// Every node's URL.
    pub fn urls(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.url(i)).collect()
    }

    /// A configuration that names node `i` alone.
    pub fn config_for(&self, i: usize) -> NatsConfig {
        NatsConfig { urls: vec![self.url(i)], ..NatsConfig::default() }
    }

    /// A configuration that names every node.
    pub fn config(&self) -> NatsConfig {
        NatsConfig { urls: self.urls(), ..NatsConfig::default() }
    }

    /// SIGKILL of node `i`.
    pub fn kill(&mut self, i: usize) {
        stop(&mut self.nodes[i].child);
    }

    /// Starts node `i` again after [`kill`](Self::kill), on the same ports;
    /// returns once it is routed to every other node again.
    pub fn start_again(&mut self, i: usize) {
        assert!(self.nodes[i].child.is_none(), "nats-server node {i} is running");
        self.spawn(i);
        self.wait_ready(i);
    }

    /// Client connections node `i` holds now.
    pub fn connections(&self, i: usize) -> usize {
        connz(self.nodes[i].monitor_port)["num_connections"].as_u64().expect("num_connections") as usize
    }

    /// The nodes that hold a client connection of this process: a running
    /// node whose `/connz` lists a client at an address and port that one
    /// of this process's sockets has, connected to that node's port.
    pub fn nodes_connected_from_here(&self) -> Vec<usize> {
        let mine = tcp_connections_of_this_process();
        (self.nodes.iter().enumerate())
            .filter(|(_, node)| node.child.is_some())
            .filter(|(_, node)| {
                let connz = connz(node.monitor_port);
                let listed = connz["connections"].as_array().cloned().unwrap_or_default();
                listed
                    .iter()
                    .any(|c| c["port"].as_u64().is_some_and(|port| mine.contains(&(port as u16, node.port))))
            })
            .map(|(i, _)| i)
            .collect()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            stop(&mut node.child);
        }
    }
}

fn connz(monitor_port: u16) -> serde_json::Value {
    let (_, body) = http_get(monitor_port, "/connz").expect("nats-server monitoring answers");
    serde_json::from_str(&body).expect("/connz is JSON")
}

/// The other servers a node has a route to (duplicates, while two nodes
/// solicit each other at once, counted once).
fn routes(monitor_port: u16) -> usize {
    let Some((200, body)) = http_get(monitor_port, "/routez") else { return 0 };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&body) else { return 0 };
    let routes = json["routes"].as_array().cloned().unwrap_or_default();
    routes.iter().filter_map(|r| r["remote_id"].as_str().map(String::from)).collect::<HashSet<_>>().len()
}

/// This process's TCP connections on loopback, as (local port, remote port):
/// the sockets among its file descriptors, looked up in the kernel's tables.
pub fn tcp_connections_of_this_process() -> HashSet<(u16, u16)> {
    let inodes: HashSet<u64> = std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|link| link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok())
        .collect();
    let port = |address: &str| u16::from_str_radix(address.rsplit(':').next()?, 16).ok();
    let mut connections = HashSet::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(inode)) = (fields.get(1), fields.get(2), fields.get(9))
            else {
                continue;
            };
            if !inode.parse().is_ok_and(|inode: u64| inodes.contains(&inode)) {
                continue;
            }
            if let (Some(local), Some(remote)) = (port(local), port(remote)) {
                connections.insert((local, remote));
            }
        }
    }
    connections
}

struct EtcdMember {
    client_port: u16,
    peer_port: u16,
    data: tempfile::TempDir,
    child: Option<Child>,
}

/// An etcd cluster on loopback.
pub struct EtcdCluster {
    members: Vec<EtcdMember>,
    token: String,
    binary: PathBuf,
}

impl EtcdCluster {
    /// `n` members `m0`, `m1`, ...; returns once every member is healthy
    /// (its `/health` says so only when the cluster has a leader).
    pub fn start(n: usize) -> EtcdCluster {
        let binary = require("etcd", "etcd-server");
        let ports = free_ports(2 * n);
        let members = (ports.chunks(2))
            .map(|p| EtcdMember {
                client_port: p[0],
                peer_port: p[1],
                data: tempfile::tempdir().expect("a temporary directory"),
                child: None,
            })
            .collect();
        let mut cluster = EtcdCluster { members, token: unique("etcd"), binary };
        // All at once: a member waits for a quorum before it is healthy.
        for i in 0..n {
            cluster.spawn(i);
        }
        for i in 0..n {
            cluster.wait_ready(i);
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let initial: Vec<String> = (self.members.iter().enumerate())
            .map(|(j, m)| format!("m{j}=http://127.0.0.1:{}", m.peer_port))
            .collect();
        let member = &self.members[i];
        let client = format!("http://127.0.0.1:{}", member.client_port);
        let peer = format!("http://127.0.0.1:{}", member.peer_port);
        // On a restart the data directory holds the membership, and etcd
        // ignores the --initial-* flags.
        let args = [
            format!("--name=m{i}"),
            format!("--data-dir={}", member.data.path().join("etcd").display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={}", initial.join(",")),
            "--initial-cluster-state=new".to_string(),
            format!("--initial-cluster-token={}", self.token),
            "--log-level=error".to_string(),
        ];
        self.members[i].child = Some(spawn(&self.binary, &args));
    }

    fn wait_ready(&mut self, i: usize) {
        let port = self.members[i].client_port;
        let mut processes: Vec<(String, &mut Option<Child>)> = (self.members.iter_mut().enumerate())
            .map(|(j, m)| (format!("etcd member m{j}"), &mut m.child))
            .collect();
        wait_for_cluster(
            &format!("etcd member m{i}"),
            &mut processes,
            || matches!(http_get(port, "/health"), Some((200, body)) if body.contains("\"health\":\"true\"")),
            || format!("/health: {:?}", http_get(port, "/health")),
        );
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// A configuration that names every member.
    pub fn config(&self) -> EtcdConfig {
        EtcdConfig { endpoints: self.endpoints(), ..EtcdConfig::default() }
    }

    /// A plain etcd client of every member, for reading what Rotor wrote.
    /// While a member is down, one call in three fails (etcd-client sends
    /// it there all the same): use [`member_client`](Self::member_client).
    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect(self.endpoints(), None).await.expect("connect to etcd")
    }

    /// A plain etcd client of member `i` alone.
    pub async fn member_client(&self, i: usize) -> etcd_client::Client {
        etcd_client::Client::connect([self.endpoint(i)], None).await.expect("connect to an etcd member")
    }

    /// The member that leads the cluster now, as the running members'
    /// status (the maintenance API) says; `None` while they hold an election.
    pub async fn leader(&self) -> Option<usize> {
        let mut ids = Vec::new();
        let mut leader = None;
        for i in (0..self.members.len()).filter(|i| self.members[*i].child.is_some()) {
            let mut client = self.member_client(i).await;
            let status = tokio::time::timeout(Duration::from_secs(2), client.status()).await;
            let Ok(Ok(status)) = status else { continue };
            ids.push((i, status.header().map(|h| h.member_id())));
            if status.leader() != 0 {
                leader = Some(status.leader());
            }
        }
        let leader = leader?;
        ids.into_iter().find(|(_, id)| *id == Some(leader)).map(|(i, _)| i)
    }

    /// Streams member `i` holds open now, from its metrics: (lease
    /// keep-alive streams, watch streams).
    pub fn open_streams(&self, i: usize) -> (u64, u64) {
        let port = self.members[i].client_port;
        (etcd_streams(port, "LeaseKeepAlive").open, etcd_streams(port, "Watch").open)
    }

    /// Waits until a running member leads (after a kill, until the others
    /// have held their election); returns it.
    pub async fn wait_for_leader(&self) -> usize {
        let start = std::time::Instant::now();
        loop {
            if let Some(leader) = self.leader().await {
                return leader;
            }
            assert!(start.elapsed() < READY_TIMEOUT, "no etcd member led within {READY_TIMEOUT:?}");
            // Only the members' status says who leads: poll it.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Member `i`'s [`Streams`] of `method` (`Watch`, `LeaseKeepAlive`).
    pub fn streams(&self, i: usize, method: &str) -> Streams {
        etcd_streams(self.members[i].client_port, method)
    }

    /// Whether member `i` runs (it was not killed, or was started again).
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// SIGKILL of member `i`.
    pub fn kill(&mut self, i: usize) {
        stop(&mut self.members[i].child);
    }

    /// Starts member `i` again after [`kill`](Self::kill), on the same ports
    /// and data; returns once it is healthy.
    pub fn start_again(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "etcd member m{i} is running");
        self.spawn(i);
        self.wait_ready(i);
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            stop(&mut member.child);
        }
    }
}

/// The gRPC streams of one method (`Watch`, `LeaseKeepAlive`) that the etcd
/// member with client port `port` has served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Streams {
    /// Opened since the member started.
    pub started: u64,
    /// Open now.
    pub open: u64,
}

/// The member's [`Streams`] of `method`, from its `/metrics`.
pub fn etcd_streams(port: u16, method: &str) -> Streams {
    let (_, metrics) = http_get(port, "/metrics").expect("etcd /metrics");
    let label = format!("grpc_method=\"{method}\"");
    let sum = |name: &str| -> u64 {
        (metrics.lines())
            .filter(|l| l.starts_with(name) && l.contains(&label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    let (started, handled) = (sum("grpc_server_started_total"), sum("grpc_server_handled_total"));
    Streams { started, open: started.saturating_sub(handled) }
}

/// Both clusters.
pub struct Clusters {
    pub nats: NatsCluster,
    pub etcd: EtcdCluster,
}

impl Clusters {
    /// `n` NATS nodes and `n` etcd members.
    pub fn start(n: usize) -> Clusters {
        Clusters { nats: NatsCluster::start(n), etcd: EtcdCluster::start(n) }
    }

    /// A runtime that knows every NATS node and every etcd member, with a
    /// short lease so that lease tests finish quickly.
    pub fn builder(&self) -> rotor::RuntimeBuilder {
        rotor::Runtime::builder()
            .nats(self.nats.config())
            .etcd(self.etcd.config())
            .lease_ttl(Duration::from_secs(3))
    }

    pub async fn runtime(&self) -> rotor::Runtime {
        self.builder().build().await.expect("a distributed runtime")
    }

    /// The variables a child process needs to reach every node and member.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ROTOR_NATS_URL", self.nats.urls().join(",")),
            ("ROTOR_ETCD_ENDPOINTS", self.etcd.endpoints().join(",")),
            ("ROTOR_LEASE_TTL_SECS", "3".to_string()),
            ("RUST_BACKTRACE", "0".to_string()),
        ]
    }
}
