//! Fan-out: one endpoint called on every live instance, against three
//! server processes (the `soak` example's `serve` mode) on real etcd and
//! nats-server, one of them killed while the call is under way.

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use rotor::prelude::*;
use rotor::{FanOut, Handler};
use support::Servers;

#[allow(dead_code)]
#[path = "../examples/soak/worker.rs"]
mod worker;

#[path = "support/soak_server.rs"]
mod soak_server;

use soak_server::Server;
use worker::Worker;

/// Bounds every wait in this file: a hang fails the test instead.
const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_over_three_instances_with_one_killed_gives_two_answers_and_one_error_within_the_deadline()
{
    let servers = Servers::start();
    let mut processes: Vec<Server> = (0..3).map(|_| Server::start(&servers)).collect();
    let rt = servers.runtime().await;
    let client = Worker::client(&rt).await.unwrap();
    tokio::time::timeout(WAIT, client.core().wait_for(|ids| ids.len() == 3)).await.unwrap().unwrap();

    // Each instance holds its call for 1.5 s; the fan-out's deadline is 4 s.
    let deadline = Duration::from_secs(4);
    let started = Instant::now();
    let mut answers = client.fan_out(FanOut::new().within(deadline)).hold(1_500).unwrap();
    assert_eq!(answers.asked(), 3);
    // The calls go out as the answers are read: read the first in a task
    // while the victim is killed with its call under way.
    let first = tokio::spawn(async move {
        let first = answers.next().await;
        (first, Instant::now(), answers)
    });
    let victim = processes[0].id;
    tokio::task::block_in_place(|| processes[0].wait_for_a_held_call());
    processes[0].sigkill();
    let killed = Instant::now();

    // A fourth instance that joins now is not called.
    let late = Server::start(&servers);
    tokio::time::timeout(WAIT, client.core().wait_for(|ids| ids.contains(&late.id))).await.unwrap().unwrap();

    let (first, first_at, mut answers) = first.await.unwrap();
    let mut all = vec![first.expect("a first answer")];
    while let Some(answer) = answers.next().await {
        all.push(answer);
    }
    // The dead instance is reported first, found by a probe, not at the
    // deadline nor when its lease lapses.
    assert_eq!(all[0].0, victim, "the killed instance's error comes first");
    let reported = first_at - killed;
    assert!(
        reported < Duration::from_secs(1),
        "the killed instance was reported {reported:?} after the kill"
    );
    let took = started.elapsed();
    assert!(took < deadline, "the fan-out took {took:?}, past its {deadline:?} deadline");
    assert_eq!(all.len(), 3, "one answer per instance listed at the start");
    let (errors, answered): (Vec<_>, Vec<_>) = all.into_iter().partition(|(_, outcome)| outcome.is_err());
    assert_eq!(errors.len(), 1, "{errors:?}");
    let (lost, error) = &errors[0];
    assert_eq!(*lost, victim);
    let kind = error.as_ref().unwrap_err().transport().map(|t| t.kind());
    assert!(matches!(kind, Some("instance_lost" | "no_responders")), "{error:?}");
    let mut by: Vec<InstanceId> = answered
        .into_iter()
        .map(|(id, outcome)| {
            assert_eq!(outcome.unwrap(), id, "each answer is from the instance it is reported for");
            id
        })
        .collect();
    by.sort();
    let mut expected = vec![processes[1].id, processes[2].id];
    expected.sort();
    assert_eq!(by, expected, "the late instance was not called");
    eprintln!("fan-out over 3 with one killed: {took:?} in all; the kill reported after {reported:?}");
}

#[tokio::test]
async fn a_fan_out_reports_what_misses_its_deadline_and_a_queue_group_cannot_be_fanned_out() {
    let rt = Runtime::embedded().await.unwrap();
    let slow = Handler::unary(|ctx: Context, ms: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, String>(ctx.instance_id())
    });
    let endpoint = rt.namespace("test.fan").unwrap().component("slow").unwrap().endpoint("wait").unwrap();
    let mut served = Vec::new();
    for _ in 0..3 {
        served.push(
            rt.with_new_lease().await.unwrap().namespace("test.fan").unwrap().component("slow").unwrap(),
        );
    }
    let mut handles = Vec::new();
    for component in &served {
        handles.push(component.endpoint("wait").unwrap().serve(slow.clone()).await.unwrap());
    }
    let client = endpoint.client().await.unwrap();
    client.wait_for(|ids| ids.len() == 3).await.unwrap();

    // One call at a time and a deadline that fits one 300 ms call: the
    // first answers, the rest are reported with timeouts, all within it.
    let options = FanOut::new().within(Duration::from_millis(450)).concurrency(1);
    let started = Instant::now();
    let answers: Vec<_> =
        client.fan_out::<_, InstanceId, String>("wait", &300u64, options).unwrap().collect().await;
    assert!(started.elapsed() < Duration::from_millis(900), "{:?}", started.elapsed());
    let ok = answers.iter().filter(|(_, r)| r.is_ok()).count();
    let timed_out = answers
        .iter()
        .filter(|(_, r)| {
            r.as_ref()
                .err()
                .and_then(|e| e.transport())
                .is_some_and(|t| matches!(t.kind(), "timeout" | "deadline"))
        })
        .count();
    assert_eq!((answers.len(), ok, timed_out), (3, 1, 2), "{answers:?}");

    let queue = endpoint.static_client().await.unwrap();
    let err = queue.fan_out::<_, InstanceId, String>("wait", &1u64, FanOut::new()).unwrap_err();
    assert_eq!(err.transport().map(|t| t.kind()), Some("not_listed"), "{err:?}");
}

#[tokio::test]
async fn stats_stream_yields_each_instance_as_it_answers_not_at_the_timeout() {
    let servers = Servers::start();
    let rt = servers.runtime().await;
    let mut handles = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let instance = rt.with_new_lease().await.unwrap();
        let handle = instance.serve(Worker).await.unwrap();
        ids.push(handle.instance_id());
        handles.push(handle);
    }
    let component = rt.namespace("soak").unwrap().component("worker").unwrap();
    let timeout = Duration::from_secs(3);
    let started = Instant::now();
    let mut stream = component.stats_stream(timeout).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let stats = tokio::time::timeout(WAIT, stream.next()).await.unwrap().expect("a reply per instance");
        seen.push(stats.instance_id().expect("a Rotor instance says its id"));
    }
    let three_in = started.elapsed();
    assert!(three_in < timeout / 2, "three replies took {three_in:?} of a {timeout:?} timeout");
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids);
    // The stream ends at the timeout.
    assert!(tokio::time::timeout(WAIT, stream.next()).await.unwrap().is_none());
    assert!(started.elapsed() >= timeout);
}
