//! Faults under load, as an operator meets them: 32 calls in flight from one
//! client, three server processes (the `soak` example's `serve` mode) on
//! real etcd and nats-server, a 2 s call timeout and a 3 s lease, while a
//! server is killed, hangs or stops, or the broker or etcd restarts.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rotor::prelude::*;
use support::Servers;

#[allow(dead_code)]
#[path = "../examples/soak/worker.rs"]
mod worker;

#[path = "support/load.rs"]
mod load;

use load::{CALL_TIMEOUT, Load};

#[path = "support/soak_server.rs"]
mod soak_server;

use soak_server::Server;

use worker::{Worker, WorkerClient};

/// Bounds every wait in this file: a hang fails the test instead.
const WAIT: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Three servers and a client routed to all three.
async fn three(servers: &Servers) -> (Vec<Server>, rotor::Runtime, WorkerClient) {
    let processes: Vec<Server> = (0..3).map(|_| Server::start(servers)).collect();
    let rt = servers.runtime().await;
    let client = Worker::client(&rt).await.unwrap();
    within("3 instances", client.core().wait_for(|ids| ids.len() == 3)).await.unwrap();
    (processes, rt, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_one_of_three_servers_under_32_calls_in_flight_fails_no_idempotent_call() {
    let servers = Servers::start();
    let (mut processes, _rt, client) = three(&servers).await;
    let load = Load::start(&client);
    load.run_for_calls(2_000).await;
    let killed = Instant::now();
    processes[0].sigkill();
    load.run_for_calls(5_000).await;
    let seen = load.stop().await;
    seen.assert_none_failed("SIGKILL of 1 of 3");
    let slowest = *seen.slowest.lock().unwrap();
    // The calls in flight to the dead process are sent again as soon as a
    // call meets "no responders" there, not when their timeout passes.
    assert!(slowest < CALL_TIMEOUT / 2, "the slowest call took {slowest:?}, of a {CALL_TIMEOUT:?} timeout");
    let stats = client.core().stats("work").unwrap();
    assert_eq!(stats.evictions, 1, "{stats:?}");
    eprintln!("killed {:?} ago; {stats:?}", killed.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_must_not_run_twice_fails_at_once_when_its_instance_is_killed() {
    let servers = Servers::start();
    let (mut processes, _rt, client) = three(&servers).await;
    let load = Load::start(&client);
    load.run_for_calls(1_000).await;
    // Six held calls, two on each instance (least outstanding spreads them).
    let held = client.with_timeout(Duration::from_secs(10));
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let held = held.clone();
            tokio::spawn(async move {
                let result = held.hold(5_000).await;
                (result, Instant::now())
            })
        })
        .collect();
    let victim = processes[0].id;
    tokio::task::block_in_place(|| processes[0].wait_for_a_held_call());
    let killed = Instant::now();
    processes[0].sigkill();
    let (mut lost, mut in_flight) = (0, 0);
    for call in calls {
        let (result, ended) = call.await.unwrap();
        match result {
            Ok(by) => assert_ne!(by, victim, "the killed instance answered"),
            Err(e) => {
                let transport = e.transport().expect("a transport error");
                // Lost in flight; or, when the kill beat a request to the
                // process, never delivered ("no responders", never retried).
                assert!(["instance_lost", "no_responders"].contains(&transport.kind()), "{e}");
                assert_eq!(transport.instance(), Some(victim), "{e}");
                let after = ended - killed;
                assert!(after < Duration::from_secs(1), "failed {after:?} after the kill: {e}");
                lost += 1;
                in_flight += usize::from(transport.kind() == "instance_lost");
            }
        }
    }
    assert!(lost >= 1, "no held call was on the killed instance");
    assert!(in_flight >= 1, "no held call was in flight to the killed instance when it died");
    load.stop().await.assert_none_failed("idempotent load beside");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_under_32_calls_in_flight_fails_no_idempotent_call_and_every_instance_is_back_within_a_second()
 {
    let mut servers = Servers::start();
    let (processes, _rt, client) = three(&servers).await;
    let load = Load::start(&client);
    load.run_for_calls(2_000).await;
    servers.nats.kill();
    // The fault itself: the broker stays down for a second.
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| servers.nats.start_again());
    let back = Instant::now();
    load.run_for_calls(5_000).await;
    for p in &processes {
        let first = within("an answer from every instance", async {
            loop {
                if let Some(at) = load.first_answer_after(p.id, back) {
                    return at;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        let after = first - back;
        eprintln!("instance {} answered {after:?} after the broker was back", p.id);
        assert!(
            after < Duration::from_secs(1),
            "instance {} was back in rotation only after {after:?}",
            p.id
        );
    }
    let seen = load.stop().await;
    seen.assert_none_failed("NATS restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_keeps_at_least_half_the_calls_per_second_flowing_and_rejoins_when_it_resumes() {
    let servers = Servers::start();
    let (processes, _rt, client) = three(&servers).await;
    let load = Load::start(&client);
    load.run_for_calls(2_000).await;
    // Rates over fixed windows: the windows are the measurement.
    let window = Duration::from_secs(3);
    let (start, t0) = (load.ok(), Instant::now());
    tokio::time::sleep(window).await;
    let before = (load.ok() - start) as f64 / t0.elapsed().as_secs_f64();
    support::signal(&processes[0].child, "STOP");
    let (start, t0) = (load.ok(), Instant::now());
    tokio::time::sleep(window).await;
    let hung = (load.ok() - start) as f64 / t0.elapsed().as_secs_f64();
    support::signal(&processes[0].child, "CONT");
    let resumed = Instant::now();
    eprintln!("calls/s: {before:.0} before, {hung:.0} while one of three hung ({:.2}x)", hung / before);
    assert!(hung >= 0.5 * before, "{hung:.0} calls/s while it hung, against {before:.0} before");
    let stats = client.core().stats("work").unwrap();
    assert!(stats.evictions >= 1, "the hung instance was ejected: {stats:?}");
    // Hung for as long as its lease TTL, it may have lost its lease and
    // registered again under a new id: three instances answer, whatever
    // their ids.
    within("the resumed instance to answer again", async {
        while load.answered_after(resumed).len() < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    eprintln!("three instances answered again {:?} after SIGCONT", resumed.elapsed());
    let seen = load.stop().await;
    eprintln!(
        "{} calls failed while it hung (those stuck on it): {:?}",
        seen.failed.load(Ordering::Relaxed),
        seen.failures.lock().unwrap().first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_sigterms_of_one_of_three_servers_under_32_calls_in_flight_fail_no_call() {
    let servers = Servers::start();
    let (mut processes, _rt, client) = three(&servers).await;
    let load = Load::start(&client);
    load.run_for_calls(1_000).await;
    for round in 0..10 {
        let victim = round % 3;
        support::signal(&processes[victim].child, "TERM");
        let status =
            tokio::task::block_in_place(|| processes[victim].child.wait()).expect("wait for the server");
        assert!(status.success(), "round {round}: the server exited with {status}");
        processes[victim] = Server::start(&servers);
        let ids: Vec<InstanceId> = processes.iter().map(|p| p.id).collect();
        within(
            "the new instance in rotation",
            client.core().wait_for(|listed| ids.iter().all(|id| listed.contains(id))),
        )
        .await
        .unwrap();
        load.run_for_calls(500).await;
    }
    let seen = load.stop().await;
    seen.assert_none_failed("10 SIGTERMs of 1 of 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_wiped_and_restarted_under_32_calls_in_flight_fails_no_call_and_every_server_registers_again() {
    let mut servers = Servers::start();
    let (_processes, _rt, client) = three(&servers).await;
    let before = client.core().instances();
    let load = Load::start(&client);
    load.run_for_calls(2_000).await;
    tokio::task::block_in_place(|| servers.etcd.restart_wiped());
    // Every lease is gone with the data: each server takes a new one and
    // registers again, while calls go on to the instances last seen.
    within(
        "three new registrations",
        client.core().wait_for(|ids| ids.len() == 3 && ids.iter().all(|id| !before.contains(id))),
    )
    .await
    .unwrap();
    load.run_for_calls(3_000).await;
    load.stop().await.assert_none_failed("etcd wiped and restarted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_outage_longer_than_the_lease_fails_no_call_and_leaves_no_ghost_key_a_second_after_etcd_is_back()
 {
    let mut servers = Servers::start();
    let (_processes, _rt, client) = three(&servers).await;
    let before = client.core().instances();
    let load = Load::start(&client);
    load.run_for_calls(2_000).await;
    servers.etcd.kill();
    // The fault: down for longer than the 3 s lease, so that every server
    // takes a new lease, while etcd keeps the old ones on disk.
    tokio::time::sleep(Duration::from_secs(4)).await;
    tokio::task::block_in_place(|| servers.etcd.start_again());
    let back = Instant::now();
    let mut etcd = servers.etcd.client().await;
    let ghosts_gone = within("the old leases' keys to go", async {
        loop {
            let keys = etcd
                .get("instances/soak/", Some(rotor::discovery::etcd_client::GetOptions::new().with_prefix()))
                .await
                .expect("read etcd");
            let ghost = keys.kvs().iter().any(|kv| before.iter().any(|id| kv.lease() == id.0));
            if !ghost && keys.kvs().len() == 6 {
                return back.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    eprintln!("the old leases' keys were gone {ghosts_gone:?} after etcd was back");
    assert!(
        ghosts_gone < Duration::from_millis(1500),
        "ghost keys lasted {ghosts_gone:?} after etcd was back"
    );
    load.run_for_calls(3_000).await;
    load.stop().await.assert_none_failed("etcd down 4 s");
}
