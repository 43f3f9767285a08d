//! What clients hold is given back when they go: watches of discovery, and
//! the tasks that follow them, on real etcd.

mod support;

use std::time::{Duration, Instant};

use support::Servers;

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
