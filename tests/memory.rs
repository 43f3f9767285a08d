//! Memory is given back when clients and runtimes go: the heap returns to
//! where it was, and built and dropped twice they take the same pages again,
//! not new ones. Alone in its test
//! binary, because resident memory is the whole process's: another test
//! running beside this one would be counted with it.

mod support;

use std::time::Duration;

use rotor::prelude::*;
use support::process::{connections_to, rss_kib};
use support::{Servers, until};

struct Clock;

#[rotor::component(namespace = "test.mem")]
impl Clock {
    #[endpoint]
    async fn now(&self, ctx: Context) -> Result<InstanceId, String> {
        Ok(ctx.instance_id())
    }
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

fn own_rss() -> u64 {
    rss_kib(std::process::id())
}

/// glibc's `struct mallinfo2`: byte counts of the heap, all arenas summed.
#[repr(C)]
struct Mallinfo2 {
    arena: usize,
    ordblks: usize,
    smblks: usize,
    hblks: usize,
    hblkhd: usize,
    usmblks: usize,
    fsmblks: usize,
    uordblks: usize,
    fordblks: usize,
    keepcost: usize,
}

unsafe extern "C" {
    fn mallinfo2() -> Mallinfo2;
}

/// Bytes the program holds allocated, in KiB: what resident memory shows
/// only after the allocator decides to give pages back, shown at once.
fn heap_in_use_kib() -> usize {
    // SAFETY: mallinfo2 takes nothing and returns a plain struct by value
    // (glibc 2.33 and later; the tests run on Debian's glibc).
    let info = unsafe { mallinfo2() };
    (info.uordblks + info.hblkhd) / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_runtimes_and_a_thousand_clients_dropped_give_back_their_connections_tasks_watches_and_memory()
{
    let servers = Servers::start();
    let server_rt = servers.runtime().await;
    let _server = server_rt.serve(Clock).await.unwrap();
    let component = server_rt.namespace("test.mem").unwrap().component("clock").unwrap();
    let etcd_connections = || connections_to(std::process::id(), servers.etcd.client_port);
    // Runtimes for 50 different lease lengths share nothing: each holds its
    // own NATS and etcd connection and its own watch, all to be given back.
    let build = |i: u64| servers.builder().lease_ttl(Duration::from_millis(10_000 + i)).build();
    let warm = build(0).await.unwrap();
    Clock::client(&warm).await.unwrap().now().await.unwrap();
    drop(warm);
    until("the warm-up runtime to go", || servers.nats.connections() == 1 && servers.etcd.watchers() == 0)
        .await;
    let (tasks, rss, heap) = (alive_tasks(), own_rss(), heap_in_use_kib());

    let build_all = || async {
        let mut runtimes = Vec::new();
        for i in 1..=50 {
            let rt = build(i).await.unwrap();
            let client = Clock::client(&rt).await.unwrap();
            client.core().wait_for_instances_within(Duration::from_secs(5)).await.unwrap();
            client.now().await.unwrap();
            runtimes.push((rt, client));
        }
        let mut clients = Vec::new();
        for i in 0..1000 {
            clients.push(component.endpoint(&format!("e{i}")).unwrap().client().await.unwrap());
        }
        (runtimes, clients)
    };
    let gone = || async {
        until("the connections to close", || servers.nats.connections() == 1 && etcd_connections() == 1)
            .await;
        until("the watches to go", || servers.etcd.watchers() == 0).await;
        until("the tasks to end", || alive_tasks() <= tasks).await;
    };
    let all = build_all().await;
    assert_eq!(servers.nats.connections(), 51);
    assert_eq!(etcd_connections(), 51);
    assert_eq!(servers.etcd.watchers(), 50 + 1000, "a watch per runtime and per named client");
    let (held, heap_held) = (own_rss(), heap_in_use_kib());
    drop(all);
    gone().await;
    let (first, heap_first) = (own_rss(), heap_in_use_kib());
    drop(build_all().await);
    gone().await;
    let (second, heap_second) = (own_rss(), heap_in_use_kib());
    eprintln!(
        "heap in use {heap} KiB at the start, {heap_held} with everything built, {heap_first} after, \
         {heap_second} after a second round; RSS {rss}, {held}, {first}, {second} KiB"
    );
    // What stays: the metric series of the 1,000 endpoint names (counters
    // must not restart while the process lives; a few KiB each).
    assert!(
        heap_first <= heap + 1000 * 5 + 1024,
        "heap in use {heap} KiB at the start, {heap_first} KiB after dropping everything"
    );
    // Timers, thread caches and the like move by a few hundred KiB; 1 KiB
    // kept per runtime or client would be 1 MiB.
    assert!(
        heap_second <= heap_first + 1024,
        "a second round kept memory: heap in use {heap_first} KiB after the first, {heap_second} KiB after the second"
    );
    // The allocator keeps freed pages for reuse rather than return them at
    // once; a second round must mostly take the same pages again.
    assert!(
        second <= first + held.saturating_sub(rss) / 4 + 1024,
        "RSS {rss} KiB at the start, {held} KiB with everything built, {first} KiB after dropping it, \
         {second} KiB after a second round"
    );
}
