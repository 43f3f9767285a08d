//! The direct plane on real servers: calls and streams go straight to the
//! instance over one persistent connection, with the same answers, errors,
//! statistics and failure handling as over NATS; they keep going while
//! nats-server is down; a killed instance is evicted and idempotent calls
//! in flight go elsewhere; a bad peer is closed and the server keeps
//! serving; mutual TLS guards it.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use futures::{Stream, StreamExt};
use rotor::config::{DirectConfig, DirectTls, Plane};
use serde::{Deserialize, Serialize};
use support::Servers;

#[allow(dead_code)]
#[path = "../examples/soak/worker.rs"]
mod worker;

#[path = "support/load.rs"]
mod load;

#[path = "support/soak_server.rs"]
mod soak_server;

use load::Load;
use soak_server::Server;
use worker::Worker;

const WAIT: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[derive(Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum Refused {
    #[error("nothing to add")]
    Empty,
    #[error("stopped at {0}")]
    StoppedAt(u32),
}

pub struct Adder;

#[rotor::component(namespace = "test.direct")]
impl Adder {
    #[endpoint]
    async fn sum(&self, values: Vec<u64>) -> Result<u64, Refused> {
        if values.is_empty() {
            return Err(Refused::Empty);
        }
        Ok(values.iter().sum())
    }

    /// Counts up to `up_to`, failing mid-stream at `fail_at` when set.
    #[endpoint]
    async fn count(
        &self,
        count: (u32, Option<u32>),
    ) -> Result<impl Stream<Item = Result<u32, Refused>> + Send + 'static, Refused> {
        let (up_to, fail_at) = count;
        Ok(futures::stream::iter((1..=up_to).map(move |n| match fail_at {
            Some(at) if n == at => Err(Refused::StoppedAt(n)),
            _ => Ok(n),
        })))
    }
}

fn loopback() -> DirectConfig {
    DirectConfig { bind: "127.0.0.1:0".parse().unwrap(), advertise: None }
}

#[tokio::test]
async fn calls_streams_and_errors_go_over_the_direct_plane_and_count_in_srv_stats() {
    let servers = Servers::start();
    let server_rt = servers.builder().direct(loopback()).build().await.unwrap();
    let port = server_rt.direct_addr().expect("the direct plane listens").port();
    let served = server_rt.serve(Adder).await.unwrap();
    let id = served.instance_id();

    let records = server_rt.discovery().unwrap().list("instances/test.direct/adder/".into()).await.unwrap();
    assert_eq!(records.len(), 2, "{records:?}");
    for record in &records {
        assert_eq!(record.direct.as_deref(), Some(format!("tcp://127.0.0.1:{port}").as_str()), "{record:?}");
        assert!(record.transport.subject().starts_with("test_direct_adder."), "and the subject beside it");
    }

    let rt = servers.runtime().await;
    let client = Adder::client(&rt).await.unwrap();
    within("the instance", client.core().wait_for_instances()).await.unwrap();
    let before = servers.nats.in_msgs();
    for n in 1..=200u64 {
        assert_eq!(client.sum(vec![n, 1]).await.unwrap(), n + 1);
    }
    let over_nats = servers.nats.in_msgs() - before;
    assert!(over_nats < 100, "200 calls crossed nats-server as {over_nats} messages");

    let e = client.sum(vec![]).await.unwrap_err();
    assert_eq!(e.instance(), Some(id));
    assert_eq!(e.into_app().unwrap(), Refused::Empty);

    let items: Vec<_> = client.count((10_000, None)).await.unwrap().collect().await;
    assert_eq!(items.len(), 10_000);
    assert!(items.iter().enumerate().all(|(i, n)| n.as_ref().ok() == Some(&(i as u32 + 1))), "in order");
    let mut failing = client.count((50, Some(20))).await.unwrap();
    for n in 1..20 {
        assert_eq!(failing.next().await.unwrap().unwrap(), n);
    }
    let e = failing.next().await.unwrap().unwrap_err();
    assert_eq!(e.into_app().unwrap(), Refused::StoppedAt(20));
    assert!(failing.next().await.is_none(), "and the end");

    // A stream dropped early stops the server's work, over the direct plane too.
    let mut endless = client.count((u32::MAX, None)).await.unwrap();
    assert_eq!(endless.next().await.unwrap().unwrap(), 1);
    drop(endless);

    let component = rt.namespace("test.direct").unwrap().component("adder").unwrap();
    let set = component.scrape_stats(Duration::from_millis(500)).await.unwrap();
    let sum = set.services[0]
        .endpoints
        .iter()
        .find(|e| e.subject == format!("test_direct_adder.sum-{id:x}"))
        .expect("the instance subject's statistics");
    assert_eq!((sum.num_requests, sum.num_errors), (201, 1), "direct calls count in $SRV.STATS");
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_client_keeps_calling_over_the_direct_plane_while_nats_is_down() {
    let mut servers = Servers::start();
    let processes: Vec<Server> = (0..2).map(|_| Server::start_direct(&servers)).collect();
    let rt = servers.runtime().await;
    let client = Worker::client(&rt).await.unwrap();
    within("both instances", client.core().wait_for(|ids| ids.len() == 2)).await.unwrap();
    let load = Load::start(&client);
    load.run_for_calls(2_000).await;
    servers.nats.kill();
    load.run_for_calls(20_000).await;
    let seen = load.stop().await;
    seen.assert_none_failed("nats-server down, over the direct plane");
    assert_eq!(seen.answered_counts().len(), 2, "both instances kept answering");
    drop(processes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_one_of_three_direct_servers_under_32_calls_in_flight_fails_no_idempotent_call() {
    let servers = Servers::start();
    let mut processes: Vec<Server> = (0..3).map(|_| Server::start_direct(&servers)).collect();
    let rt = servers.runtime().await;
    let client = Worker::client(&rt).await.unwrap();
    within("three instances", client.core().wait_for(|ids| ids.len() == 3)).await.unwrap();
    let load = Load::start(&client);
    load.run_for_calls(3_000).await;
    processes[0].sigkill();
    load.run_for_calls(10_000).await;
    let seen = load.stop().await;
    seen.assert_none_failed("kill -9 of a direct server");
    let slowest = *seen.slowest.lock().unwrap();
    // The calls in flight to the dead process are sent again as soon as its
    // connection closes, not when their timeout passes.
    assert!(slowest < load::CALL_TIMEOUT / 2, "the slowest call took {slowest:?}");
    let stats = client.core().stats("work").unwrap();
    assert_eq!(stats.evictions, 1, "the killed instance was taken out: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_must_not_run_twice_fails_at_once_when_its_direct_instance_is_killed() {
    let servers = Servers::start();
    let mut process = Server::start_direct(&servers);
    let rt = servers.runtime().await;
    let client = Worker::client(&rt).await.unwrap();
    within("the instance", client.core().wait_for_instances()).await.unwrap();
    let call = tokio::spawn({
        let client = client.with_timeout(Duration::from_secs(10));
        async move { client.hold(5_000).await }
    });
    tokio::task::block_in_place(|| process.wait_for_a_held_call());
    let killed = std::time::Instant::now();
    process.sigkill();
    let e = within("the held call", call).await.unwrap().unwrap_err();
    assert!(
        killed.elapsed() < Duration::from_secs(2),
        "failed after {:?}, not at its timeout",
        killed.elapsed()
    );
    assert!(e.to_string().contains("may or may not have run"), "{e}");
}

#[tokio::test]
async fn a_connection_that_sends_garbage_an_oversize_frame_or_a_stray_reply_is_closed_and_the_server_keeps_serving()
 {
    let servers = Servers::start();
    let server_rt = servers.builder().direct(loopback()).build().await.unwrap();
    let addr = server_rt.direct_addr().unwrap();
    let _served = server_rt.serve(Adder).await.unwrap();
    // The preamble, version 2, and the largest message this side takes (64 KiB).
    let preamble = b"ROTOR\0\0\x02\0\x01\0\0";
    let mut stray_reply = preamble.to_vec();
    stray_reply.extend_from_slice(&13u32.to_be_bytes());
    stray_reply.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0, 42, 0, 0, 0, 0]);
    let mut oversize = preamble.to_vec();
    oversize.extend_from_slice(&u32::MAX.to_be_bytes());
    let mut unknown_kind = preamble.to_vec();
    unknown_kind.extend_from_slice(&13u32.to_be_bytes());
    unknown_kind.extend_from_slice(&[99, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
    for (what, bytes) in [
        ("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("an earlier version's preamble", b"ROTOR\0\0\x01\0\x01\0\0".to_vec()),
        ("a stray reply", stray_reply),
        ("an oversize frame", oversize),
        ("a frame of an unknown kind", unknown_kind),
    ] {
        let closed = tokio::task::spawn_blocking(move || {
            let mut socket = std::net::TcpStream::connect(addr).unwrap();
            socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            socket.write_all(&bytes).unwrap();
            let mut rest = Vec::new();
            // Read to the end: the server closes the connection.
            let _ = socket.read_to_end(&mut rest);
            rest.len() <= preamble.len()
        });
        assert!(
            within(what, closed).await.unwrap(),
            "{what}: the server answered something other than its preamble"
        );
        let rt = servers.runtime().await;
        let client = Adder::client(&rt).await.unwrap();
        within("the instance", client.core().wait_for_instances()).await.unwrap();
        assert_eq!(client.sum(vec![2, 3]).await.unwrap(), 5, "after {what}, the server still serves");
    }
}

#[tokio::test]
async fn mutual_tls_guards_the_direct_plane_and_a_caller_without_a_certificate_falls_back_to_nats() {
    let mut servers = Servers::start();
    let ca = support::secure::Ca::new("direct-ca");
    let tls = |name: &str| {
        let signed = ca.peer(name);
        DirectTls { ca: ca.cert.clone(), cert: signed.cert, key: signed.key }
    };
    let server_rt = servers.builder().direct(loopback()).direct_tls(tls("server")).build().await.unwrap();
    let addr = server_rt.direct_addr().unwrap();
    let _served = server_rt.serve(Adder).await.unwrap();
    let records = server_rt.discovery().unwrap().list("instances/test.direct/adder/".into()).await.unwrap();
    assert_eq!(records[0].direct.as_deref(), Some(format!("tls://127.0.0.1:{}", addr.port()).as_str()));

    // A caller without TLS settings calls over NATS instead.
    let plain_rt = servers.runtime().await;
    let plain = Adder::client(&plain_rt).await.unwrap();
    within("the instance", plain.core().wait_for_instances()).await.unwrap();
    assert_eq!(plain.sum(vec![1, 2]).await.unwrap(), 3);

    // A caller whose certificate another CA signed is refused at the handshake.
    let other = support::secure::Ca::new("other-ca");
    let stranger = other.peer("stranger");
    let stranger_rt = servers
        .builder()
        .direct_tls(DirectTls { ca: ca.cert.clone(), cert: stranger.cert, key: stranger.key })
        .build()
        .await
        .unwrap();
    let refused = Adder::client(&stranger_rt).await.unwrap();
    within("the instance", refused.core().wait_for_instances()).await.unwrap();
    assert_eq!(refused.sum(vec![1, 1]).await.unwrap(), 2, "over NATS, after the refused handshake");

    // A caller with a certificate of the CA calls directly, so NATS can go.
    let trusted_rt = servers.builder().direct_tls(tls("caller")).build().await.unwrap();
    let trusted = Adder::client(&trusted_rt).await.unwrap();
    within("the instance", trusted.core().wait_for_instances()).await.unwrap();
    assert_eq!(trusted.sum(vec![4, 5]).await.unwrap(), 9);
    servers.nats.kill();
    for n in 0..100u64 {
        assert_eq!(trusted.sum(vec![n, n]).await.unwrap(), 2 * n, "over mutual TLS with NATS down");
    }
    let stream: Vec<_> = trusted.count((1_000, None)).await.unwrap().collect().await;
    assert_eq!(stream.len(), 1_000);
}

#[tokio::test]
async fn a_caller_with_tls_calls_a_plain_tcp_address_over_nats_rather_than_in_plain_text() {
    let servers = Servers::start();
    let ca = support::secure::Ca::new("direct-ca");
    let signed = ca.peer("caller");
    let server_rt = servers.builder().direct(loopback()).build().await.unwrap();
    let _served = server_rt.serve(Adder).await.unwrap();
    let rt = servers
        .builder()
        .direct_tls(DirectTls { ca: ca.cert.clone(), cert: signed.cert, key: signed.key })
        .build()
        .await
        .unwrap();
    let client = Adder::client(&rt).await.unwrap();
    within("the instance", client.core().wait_for_instances()).await.unwrap();
    let before = servers.nats.in_msgs();
    for n in 0..20u64 {
        assert_eq!(client.sum(vec![n, 1]).await.unwrap(), n + 1);
    }
    assert!(servers.nats.in_msgs() - before >= 40, "each call and its reply crossed nats-server");
}

#[tokio::test]
async fn a_request_over_the_servers_smaller_limit_fails_with_oversize_and_the_connection_goes_on() {
    let servers = Servers::start();
    let server_rt = servers.builder().direct(loopback()).direct_max_payload(64 * 1024).build().await.unwrap();
    let _served = server_rt.serve(Adder).await.unwrap();
    let rt = servers.runtime().await;
    let client = Adder::client(&rt).await.unwrap();
    within("the instance", client.core().wait_for_instances()).await.unwrap();
    let before = servers.nats.in_msgs();
    // A stream under way on the same connection, to see that the refusal
    // did not close it.
    let mut stream = client.count((1_000, None)).await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap(), 1);

    let e = client.sum(vec![u64::MAX; 10_000]).await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains("limit of 65536 bytes"), "the server's limit, which its hello announced: {text}");
    assert_eq!(client.sum(vec![2, 3]).await.unwrap(), 5);
    let rest: Vec<_> = stream.collect().await;
    assert_eq!(rest.len(), 999, "the stream on the connection went on");
    assert!(rest.iter().all(Result::is_ok));
    assert!(servers.nats.in_msgs() - before < 20, "over the direct plane, not NATS");
}

#[tokio::test]
async fn an_open_direct_plane_beside_a_nats_that_asks_for_a_token_is_refused_at_build() {
    let servers = Servers::start();
    let mut nats = servers.nats.config();
    nats.auth = rotor::config::NatsAuth::Token("s3cret".into());
    let e = rotor::Runtime::builder()
        .nats(nats)
        .etcd(servers.etcd.config())
        .direct(loopback())
        .build()
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("ROTOR_TCP_TLS_CERT") && text.contains("unset ROTOR_TCP_ADDR"), "{text}");
}

#[tokio::test]
async fn a_client_told_to_use_nats_ignores_the_direct_address() {
    let servers = Servers::start();
    let server_rt = servers.builder().direct(loopback()).build().await.unwrap();
    let _served = server_rt.serve(Adder).await.unwrap();
    let rt = servers.builder().plane(Plane::Nats).build().await.unwrap();
    let client = Adder::client(&rt).await.unwrap();
    within("the instance", client.core().wait_for_instances()).await.unwrap();
    let before = servers.nats.in_msgs();
    for n in 0..50u64 {
        assert_eq!(client.sum(vec![n]).await.unwrap(), n);
    }
    assert!(servers.nats.in_msgs() - before >= 100, "each call and its reply crossed nats-server");
}
