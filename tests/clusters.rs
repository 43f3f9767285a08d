//! Clusters, the way users scale out: three nats-server nodes routed to
//! each other and a three-member etcd, real processes on loopback. A server
//! and its client on different NATS nodes call each other; under 32 calls in
//! flight, the NATS node the client uses and the etcd leader are killed
//! together, and no idempotent call fails and no registration is lost; a
//! lease keep-alive and the watches on an etcd member that dies go on on
//! the others.
//!
//! Two more hold what etcd-client 0.21 and etcd do not give by themselves:
//! with one member of three down, a runtime starts, registers, is listed
//! and stops every time (etcd-client sends a call to a member that is down
//! as often as to a live one), and an idle client's watches stay open (etcd
//! closes a connection pinged more often than every 5 s).

mod support;

use std::collections::BTreeSet;
use std::process::Child;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rotor::discovery::etcd_client::GetOptions;
use rotor::prelude::*;
use support::cluster::Clusters;
use support::{start_example_with_env, until};

#[allow(dead_code)]
#[path = "../examples/soak/worker.rs"]
mod worker;

#[path = "support/load.rs"]
mod load;

use load::{CALL_TIMEOUT, Load};
use worker::Worker;

/// Bounds every wait in this file: a hang fails the test instead.
const WAIT: Duration = Duration::from_secs(20);

/// The lease of every runtime here (`ROTOR_LEASE_TTL_SECS` of the servers).
const LEASE_TTL: Duration = Duration::from_secs(3);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A `soak serve` process given every NATS URL and etcd endpoint; killed
/// when dropped.
struct Server {
    child: Child,
    /// Held open: the process prints to it.
    _out: std::io::BufReader<std::process::ChildStdout>,
    id: InstanceId,
}

impl Server {
    fn start(clusters: &Clusters) -> Server {
        let (child, out, line) = start_example_with_env("soak", &["serve"], &clusters.env());
        let id = line
            .strip_prefix("serving soak_worker as instance ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|hex| i64::from_str_radix(hex, 16).ok())
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
        Server { child, _out: out, id: InstanceId(id) }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_one_nats_node_and_its_client_on_another_call_each_other() {
    let clusters = Clusters::start(3);
    let on = |node: usize| {
        rotor::Runtime::builder()
            .nats(clusters.nats.config_for(node))
            .etcd(clusters.etcd.config())
            .lease_ttl(LEASE_TTL)
            .build()
    };
    let server_rt = on(0).await.expect("a server runtime on node 0");
    let server = server_rt.serve(Worker).await.expect("serve on node 0");
    let client_rt = on(2).await.expect("a client runtime on node 2");
    assert_eq!(clusters.nats.nodes_connected_from_here(), [0, 2], "each runtime on its own node");
    let client = Worker::client(&client_rt).await.unwrap();
    let listed =
        within("the server's registration", client.core().wait_for(|ids| !ids.is_empty())).await.unwrap();
    assert_eq!(listed, [server.instance_id()]);
    // At once, as a user would: a request from node 2 crosses the route to
    // node 0, and the reply crosses back.
    for n in 0..100 {
        let done = client.with_timeout(CALL_TIMEOUT).work(n).await.expect("a call across the route");
        assert_eq!((done.n, done.by), (n, server.instance_id()));
    }
    let by = client.with_timeout(CALL_TIMEOUT).hold(10).await.expect("a call that must not run twice");
    assert_eq!(by, server.instance_id());
    let stats = client.core().stats("work").unwrap();
    assert_eq!(stats.evictions, 0, "{stats:?}");
    // The client's listing follows the server out, through etcd.
    server.shutdown().await;
    within("the server's registration to go", client.core().wait_for(|ids| ids.is_empty())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_nats_node_and_one_etcd_member_under_continuous_load_loses_no_idempotent_call_and_keeps_every_registration()
 {
    let mut clusters = Clusters::start(3);
    let servers: Vec<Server> = (0..3).map(|_| Server::start(&clusters)).collect();
    let ids: BTreeSet<InstanceId> = servers.iter().map(|s| s.id).collect();
    let rt = clusters.runtime().await;
    let client = Worker::client(&rt).await.unwrap();
    within("3 instances", client.core().wait_for(|listed| listed.len() == 3)).await.unwrap();
    let load = Load::start(&client);
    load.run_for_calls(2_000).await;

    // The NATS node the client is connected to (async-nats picks one of its
    // URLs at random), and the etcd leader.
    let here = clusters.nats.nodes_connected_from_here();
    let [nats_victim] = here[..] else { panic!("the client is connected to nodes {here:?}") };
    let etcd_victim = clusters.etcd.wait_for_leader().await;
    let streams: Vec<(u64, u64)> = (0..3).map(|i| clusters.etcd.open_streams(i)).collect();
    let before = load.ok();
    eprintln!(
        "killing NATS node {nats_victim} (the client's) and etcd member m{etcd_victim} (the leader); \
         open (keep-alive, watch) streams by member: {streams:?}"
    );
    let killed = Instant::now();
    clusters.nats.kill(nats_victim);
    clusters.etcd.kill(etcd_victim);

    until("the client to reconnect to another node", || {
        clusters.nats.nodes_connected_from_here().iter().any(|node| *node != nats_victim)
    })
    .await;
    let reconnected = killed.elapsed();
    // The load goes on through the failover and past one lease TTL: a
    // lease whose keep-alives did not move to another member would lapse.
    let (mut fewest, mut polls) = (3, 0);
    until("a lease TTL of load after the kill", || {
        fewest = fewest.min(client.core().instances().len());
        polls += 1;
        killed.elapsed() >= LEASE_TTL + Duration::from_secs(1) && load.ok() >= before + 3_000
    })
    .await;
    let after_kill = load.ok() - before;
    let seen = load.stop().await;

    let (ok, failed) = (seen.ok.load(Ordering::Relaxed), seen.failed.load(Ordering::Relaxed));
    let slowest = *seen.slowest.lock().unwrap();
    eprintln!(
        "{ok} calls succeeded ({after_kill} after the kill, over {:?}), {failed} failed, slowest {slowest:?}; \
         the client reconnected {reconnected:?} after the kill; answered by instance: {:?}",
        killed.elapsed(),
        seen.answered_counts()
    );
    assert_eq!(failed, 0, "{failed} of {} calls failed: {:#?}", ok + failed, seen.failures.lock().unwrap());
    assert_eq!(fewest, 3, "the client listed fewer than 3 instances at some point of {polls}");

    // Every registration is still there, under its first lease: none was
    // lost and taken again.
    let listed: BTreeSet<InstanceId> = client.core().instances().into_iter().collect();
    assert_eq!(listed, ids, "the client's listing");
    let alive = (0..3).find(|i| *i != etcd_victim).unwrap();
    let mut etcd = clusters.etcd.member_client(alive).await;
    let keys = etcd.get("instances/soak/", Some(GetOptions::new().with_prefix())).await.expect("read etcd");
    let leases: BTreeSet<InstanceId> = keys.kvs().iter().map(|kv| InstanceId(kv.lease())).collect();
    assert_eq!(leases, ids, "the leases of the keys in etcd");
    // Two endpoints (work, hold) per instance.
    assert_eq!(keys.kvs().len(), 6, "{:?}", keys.kvs().iter().map(|kv| kv.key_str()).collect::<Vec<_>>());

    // The keep-alive and watch streams the dead member held are open again
    // on the others (a stream that breaks is opened again after a pause).
    let total = |s: &[(u64, u64)]| s.iter().fold((0, 0), |(k, w), (k2, w2)| (k + k2, w + w2));
    let live = |clusters: &Clusters| -> Vec<(u64, u64)> {
        (0..3).filter(|i| *i != etcd_victim).map(|i| clusters.etcd.open_streams(i)).collect()
    };
    until("every stream open again on the live members", || total(&live(&clusters)) == total(&streams)).await;
    eprintln!("open (keep-alive, watch) streams on the live members: {:?}", live(&clusters));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_keep_alive_and_a_watch_on_an_etcd_member_that_dies_move_to_another_member() {
    let mut clusters = Clusters::start(3);
    let server_rt = clusters.runtime().await;
    let server = server_rt.serve(Worker).await.unwrap();
    let id = server.instance_id();
    let client_rt = clusters.runtime().await;
    let client = Worker::client(&client_rt).await.unwrap();
    within("the server listed", client.core().wait_for(|ids| ids == [id])).await.unwrap();
    let holding = |clusters: &Clusters, method: &str| -> Vec<usize> {
        (0..3)
            .filter(|i| clusters.etcd.is_running(*i) && clusters.etcd.streams(*i, method).open > 0)
            .collect()
    };

    // The only lease is the server's: a runtime takes one when it first serves.
    let [keeper] = holding(&clusters, "LeaseKeepAlive")[..] else { panic!("one keep-alive stream") };
    let killed = Instant::now();
    clusters.etcd.kill(keeper);
    until("the keep-alive on another member", || !holding(&clusters, "LeaseKeepAlive").is_empty()).await;
    eprintln!("the keep-alive stream was open on another member {:?} after m{keeper} died", killed.elapsed());
    // Past one TTL, the lease is the one the server started with.
    tokio::time::sleep_until((killed + LEASE_TTL + Duration::from_secs(1)).into()).await;
    let alive = (0..3).find(|i| *i != keeper).unwrap();
    let keys = (clusters.etcd.member_client(alive).await)
        .get("instances/soak/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("read etcd");
    let leases: BTreeSet<i64> = keys.kvs().iter().map(|kv| kv.lease()).collect();
    assert_eq!(leases, BTreeSet::from([id.0]), "the keys' leases");
    assert_eq!(server_rt.lease_changes().borrow().id, id, "the server took a new lease");
    tokio::task::block_in_place(|| clusters.etcd.start_again(keeper));

    // The client learns that the server left through its watches, opened
    // again on the other members.
    let watches = |clusters: &Clusters| -> u64 {
        (0..3).filter(|i| clusters.etcd.is_running(*i)).map(|i| clusters.etcd.streams(i, "Watch").open).sum()
    };
    // One watch per endpoint (work, hold); a watch that broke is opened
    // again after a pause.
    until("the client's two watches open", || watches(&clusters) == 2).await;
    let watching = holding(&clusters, "Watch");
    let watcher = watching[0];
    let killed = Instant::now();
    clusters.etcd.kill(watcher);
    until("the watches open again on the other members", || watches(&clusters) == 2).await;
    let moved = killed.elapsed();
    let left = Instant::now();
    server.shutdown().await;
    // The lease goes with the runtime, or else when its TTL passes.
    if let Err(e) = server_rt.shutdown().await {
        eprintln!("the server's runtime stopped with {e}");
    }
    within("the client to see the server go", client.core().wait_for(|ids| ids.is_empty())).await.unwrap();
    eprintln!(
        "watch streams on m{watching:?}; m{watcher} killed; both open again on the others {moved:?} \
         later; the client saw the server go {:?} after it left",
        left.elapsed()
    );
}

/// One runtime's life, each step on etcd: connect, take a lease, register,
/// list, deregister, revoke.
async fn one_life(clusters: &Clusters) -> Result<(), String> {
    let rt = clusters.builder().build().await.map_err(|e| format!("build: {e}"))?;
    let server = rt.serve(Worker).await.map_err(|e| format!("serve: {e}"))?;
    let id = server.instance_id();
    let client = Worker::client(&rt).await.map_err(|e| format!("client: {e}"))?;
    within("the instance listed", client.core().wait_for(|ids| ids.contains(&id)))
        .await
        .map_err(|e| format!("listed: {e}"))?;
    server.shutdown().await;
    rt.shutdown().await.map_err(|e| format!("shutdown: {e}"))
}

/// etcd-client 0.21 sends about one call in three to the member that is
/// down, where it fails at once (`Unavailable: tcp connect error`): Rotor
/// sends such a call again, to another member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_one_etcd_member_of_three_is_down_a_runtime_starts_registers_is_listed_and_stops_every_time() {
    let mut clusters = Clusters::start(3);
    clusters.etcd.kill(0);
    // Down, not in the middle of an election.
    clusters.etcd.wait_for_leader().await;
    let rounds = 20;
    let mut failures = Vec::new();
    for round in 0..rounds {
        if let Err(e) = one_life(&clusters).await {
            failures.push(format!("round {round}: {e}"));
        }
    }
    let mut etcd = clusters.etcd.member_client(1).await;
    let keys = etcd.get("instances/", Some(GetOptions::new().with_prefix())).await.expect("read etcd");
    assert!(failures.is_empty(), "{} of {rounds} lives failed: {failures:#?}", failures.len());
    assert_eq!(keys.kvs().len(), 0, "keys left behind");
}

/// etcd (`--grpc-keepalive-min-time`, 5 s by default) closes a connection
/// pinged more often, and every watch on it: Rotor pings every 10 s, not
/// every third of the lease TTL (1 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_client_keeps_its_etcd_watches_open_rather_than_opening_them_again_every_few_seconds() {
    let servers = support::Servers::start();
    let server_rt = servers.runtime().await;
    let _server = server_rt.serve(Worker).await.unwrap();
    let client_rt = servers.runtime().await;
    let client = Worker::client(&client_rt).await.unwrap();
    within("the server listed", client.core().wait_for(|ids| ids.len() == 1)).await.unwrap();
    let watches = || support::cluster::etcd_streams(servers.etcd.client_port, "Watch");
    // One per endpoint (work, hold).
    until("the client's two watches open", || watches().open == 2).await;
    let before = watches();
    // The window observed: more than three pings at a third of the TTL.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = watches();
    assert_eq!(
        after.started, before.started,
        "watch streams opened in 10 s: before {before:?}, after {after:?}"
    );
}
