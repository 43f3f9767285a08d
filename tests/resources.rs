//! What clients hold is given back when they go, and what they never take:
//! watches of discovery and the tasks that follow them, leases, on real etcd.

mod support;

use std::time::Duration;

use rotor::prelude::*;
use support::{Servers, until};

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

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_dropped_clients_leave_no_watch_and_no_task_behind() {
    let servers = Servers::start();
    let rt = servers.runtime().await;
    let component = rt.namespace("test.watch").unwrap().component("gateway").unwrap();
    // One client first, so that connections and the lease keeper are part of
    // the baseline.
    drop(component.endpoint("warm").unwrap().client().await.unwrap());
    until("the first watch to go", || servers.etcd.watchers() == 0).await;
    let (tasks, watchers) = (alive_tasks(), servers.etcd.watchers());

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
    until("etcd to hold 1,000 watches", || servers.etcd.watchers() >= watchers + 1000).await;

    drop(clients);
    until("the tasks to end", || alive_tasks() <= tasks).await;
    until("etcd to let go of the watches", || servers.etcd.watchers() <= watchers).await;

    // A client made again after all that still routes: the map forgot only
    // what nobody held.
    let again = component.endpoint("e7").unwrap().client().await.unwrap();
    assert!(again.instances().is_empty());
}

/// TCP connections this process holds open to `port` on loopback.
fn connections_to(port: u16) -> usize {
    support::process::connections_to(std::process::id(), port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_runtimes_that_only_call_share_one_nats_and_one_etcd_connection_and_hold_no_lease() {
    let servers = Servers::start();
    let server_rt = servers.runtime().await;
    let server = server_rt.serve(Clock).await.unwrap();
    let mut runtimes = Vec::new();
    for _ in 0..50 {
        let rt = servers.runtime().await;
        let client = Clock::client(&rt).await.unwrap();
        client.core().wait_for_instances_within(Duration::from_secs(5)).await.unwrap();
        assert_eq!(client.now().await.unwrap(), server.instance_id());
        runtimes.push((rt, client));
    }
    assert_eq!(servers.nats.connections(), 1, "the server and 50 calling runtimes of one process");
    assert_eq!(connections_to(servers.etcd.client_port), 1, "one etcd connection for the process");
    let mut etcd = servers.etcd.client().await;
    let leases: Vec<i64> = etcd.leases().await.unwrap().leases().iter().map(|l| l.id()).collect();
    assert_eq!(leases, [server.instance_id().get()], "only the serving runtime holds a lease");
    // One watch of the endpoint's prefix, shared by the 50 clients.
    assert_eq!(servers.etcd.watchers(), 1);

    // A runtime for other settings does not share: its connections are its own.
    let apart = servers.builder().lease_ttl(Duration::from_secs(4)).build().await.unwrap();
    assert_eq!(servers.nats.connections(), 2);
    drop(apart);
    until("the connection of a runtime nobody holds to close", || servers.nats.connections() == 1).await;
    drop(runtimes);
    assert_eq!(Clock::client(&server_rt).await.unwrap().now().await.unwrap(), server.instance_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_built_after_the_tokio_runtime_of_an_earlier_one_shut_down_gets_connections_that_work() {
    let servers = Servers::start();
    // The first runtime for these servers, built and kept on another tokio
    // runtime, which then shuts down and takes the tasks of its
    // connections with it.
    let config = servers.builder();
    let earlier = std::thread::spawn(move || {
        let tokio_rt = tokio::runtime::Runtime::new().unwrap();
        tokio_rt.block_on(config.build()).unwrap()
    })
    .join()
    .unwrap();
    let server_rt = servers.runtime().await;
    let server = server_rt.serve(Clock).await.unwrap();
    let later = servers.runtime().await;
    let client = Clock::client(&later).await.unwrap();
    client.core().wait_for_instances_within(Duration::from_secs(5)).await.unwrap();
    assert_eq!(client.now().await.unwrap(), server.instance_id());
    drop(earlier);
}
