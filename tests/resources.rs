//! What clients hold is given back when they go, and what they never take:
//! watches of discovery and the tasks that follow them, leases, on real etcd.

mod support;

use std::time::{Duration, Instant};

use rotor::prelude::*;
use support::Servers;

struct Clock;

#[rotor::component(namespace = "test.res")]
impl Clock {
    #[endpoint]
    async fn now(&self, ctx: Context) -> Result<InstanceId, String> {
        Ok(ctx.instance_id())
    }
}

#[tokio::test]
async fn a_runtime_that_only_calls_takes_no_lease() {
    let servers = Servers::start();
    let server_rt = servers.runtime().await;
    let server = server_rt.serve(Clock).await.unwrap();
    let client_rt = servers.runtime().await;
    let client = Clock::client(&client_rt).await.unwrap();
    client.core().wait_for_instances().await.unwrap();
    assert_eq!(client.now().await.unwrap(), server.instance_id());
    assert_eq!(client_rt.instance_id(), InstanceId(0), "a runtime that only calls has no instance id");

    let mut etcd = servers.etcd.client().await;
    let leases: Vec<i64> = etcd.leases().await.unwrap().leases().iter().map(|l| l.id()).collect();
    assert_eq!(leases, [server.instance_id().get()], "only the serving runtime holds a lease");
    client_rt.shutdown().await.unwrap();
    drop((client, client_rt));
    let leases = etcd.leases().await.unwrap();
    assert_eq!(leases.leases().len(), 1);
}

/// etcd's own count of the watches its clients hold open.
fn etcd_watchers(servers: &Servers) -> u64 {
    let (_, body) = support::http_get(servers.etcd.client_port, "/metrics").expect("etcd serves /metrics");
    body.lines()
        .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watcher_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .expect("etcd reports etcd_debugging_mvcc_watcher_total") as u64
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

/// Waits until `done` holds; the counts live in other processes and tasks
/// that signal nothing, so they are read again until a bound.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(20), "{what} did not happen within 20s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_dropped_clients_leave_no_watch_and_no_task_behind() {
    let servers = Servers::start();
    let rt = servers.runtime().await;
    let component = rt.namespace("test.watch").unwrap().component("gateway").unwrap();
    // One client first, so that connections and the lease keeper are part of
    // the baseline.
    drop(component.endpoint("warm").unwrap().client().await.unwrap());
    until("the first watch to go", || etcd_watchers(&servers) == 0).await;
    let (tasks, watchers) = (alive_tasks(), etcd_watchers(&servers));

    let mut clients = Vec::new();
    for i in 0..1000 {
        clients.push(component.endpoint(&format!("e{i}")).unwrap().client().await.unwrap());
    }
    assert!(
        alive_tasks() >= tasks + 1000,
        "each watch is followed by a task: {} then {}",
        tasks,
        alive_tasks()
    );
    until("etcd to hold 1,000 watches", || etcd_watchers(&servers) >= watchers + 1000).await;

    drop(clients);
    until("the tasks to end", || alive_tasks() <= tasks).await;
    until("etcd to let go of the watches", || etcd_watchers(&servers) <= watchers).await;

    // A client made again after all that still routes: the map forgot only
    // what nobody held.
    let again = component.endpoint("e7").unwrap().client().await.unwrap();
    assert!(again.instances().is_empty());
}
