//! The distributed runtime against real etcd and nats-server processes.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rotor::config::{NatsConfig, Source};
use rotor::discovery::etcd_client::{self, GetOptions};
use rotor::prelude::*;
use rotor::wire::ErrorKind;
use serde::{Deserialize, Serialize};
use support::{Nats, Servers};

/// Bounds every wait in this file: a hang fails the test instead.
const WAIT: Duration = Duration::from_secs(20);

struct Echo {
    calls: AtomicUsize,
    /// Signalled when `hold` starts; `hold` then waits for `release`.
    entered: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

impl Echo {
    fn new() -> Self {
        Echo { calls: AtomicUsize::new(0), entered: Default::default(), release: Default::default() }
    }
}

#[derive(Debug, Serialize, Deserialize, PartialEq, thiserror::Error)]
enum EchoError {
    #[error("refused: {0}")]
    Refused(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct Said {
    text: String,
    by: InstanceId,
}

#[rotor::component(namespace = "test.dist")]
impl Echo {
    #[endpoint]
    async fn say(&self, ctx: Context, text: String) -> Result<Said, EchoError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if text == "refuse" {
            return Err(EchoError::Refused(text));
        }
        Ok(Said { text, by: ctx.instance_id() })
    }

    #[endpoint]
    async fn ping(&self, ctx: Context) -> Result<InstanceId, EchoError> {
        Ok(ctx.instance_id())
    }

    #[endpoint(idempotent = false)]
    async fn once(&self) -> Result<InstanceId, EchoError> {
        Ok(InstanceId(0))
    }

    #[endpoint]
    async fn hold(&self) -> Result<String, EchoError> {
        self.entered.notify_one();
        self.release.notified().await;
        Ok("released".into())
    }
}

#[allow(dead_code)]
#[path = "../examples/hello/greeter.rs"]
mod greeter;

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.unwrap_or_else(|_| panic!("{what} did not happen within {WAIT:?}"))
}

#[tokio::test]
async fn registration_writes_the_designed_key_and_value_under_the_lease() {
    let servers = Servers::start();
    let rt = servers.runtime().await;
    assert_eq!(rt.mode(), rotor::Mode::Distributed);
    let server = rt.serve(Echo::new()).await.unwrap();
    let id = server.instance_id();

    let mut etcd = servers.etcd.client().await;
    let key = format!("instances/test.dist/echo/say:{id:x}");
    let resp = etcd.get(key.as_str(), None).await.unwrap();
    let kv = resp.kvs().first().unwrap_or_else(|| panic!("{key} is missing"));
    assert_eq!(kv.lease(), id.get(), "the key is attached to the instance's lease");
    let value: serde_json::Value = serde_json::from_slice(kv.value()).unwrap();
    // The fingerprint of the description published beside the records.
    let described = etcd.get(format!("components/test.dist/echo/descriptor/{id:x}"), None).await.unwrap();
    let description = std::str::from_utf8(described.kvs()[0].value()).unwrap();
    assert_eq!(
        value,
        serde_json::json!({
            "namespace": "test.dist",
            "component": "echo",
            "endpoint": "say",
            "instance_id": id.get(),
            "transport": { "nats_tcp": format!("test_dist_echo.say-{id:x}") },
            "descriptor": rotor::describe::fingerprint(description),
        })
    );
    let all = etcd.get("instances/test.dist/echo/", Some(GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(all.kvs().len(), 4, "one key per endpoint");

    let listed =
        rt.namespace("test.dist").unwrap().component("echo").unwrap().list_instances().await.unwrap();
    assert_eq!(listed.len(), 4);
    assert!(listed.iter().all(|r| r.instance_id == id));
}

/// One write serves an instance: its descriptor and its four records land
/// in one etcd transaction, so a client sees all or none of them and a new
/// instance costs one round trip to etcd, not five.
#[tokio::test]
async fn serving_writes_the_descriptor_and_every_record_in_one_etcd_revision() {
    let servers = Servers::start();
    let rt = servers.runtime().await;
    let server = rt.serve(Echo::new()).await.unwrap();
    let id = server.instance_id();
    let mut etcd = servers.etcd.client().await;
    let prefix = Some(GetOptions::new().with_prefix());
    let records = etcd.get("instances/test.dist/echo/", prefix.clone()).await.unwrap();
    let descriptor = etcd.get(format!("components/test.dist/echo/descriptor/{id:x}"), None).await.unwrap();
    let revisions: std::collections::BTreeSet<i64> =
        records.kvs().iter().chain(descriptor.kvs()).map(|kv| kv.mod_revision()).collect();
    assert_eq!(records.kvs().len() + descriptor.kvs().len(), 5, "four records and a descriptor");
    assert_eq!(revisions.len(), 1, "written at revisions {revisions:?}");

    // So does a second instance: one revision, where one write per key made five.
    let before = etcd.get("instances/", None).await.unwrap().header().unwrap().revision();
    let second = rt.with_new_lease().await.unwrap().serve(Echo::new()).await.unwrap();
    let after = etcd.get("instances/", None).await.unwrap().header().unwrap().revision();
    assert_eq!(after - before, 1, "the second instance's writes took {} revisions", after - before);
    drop(second);
}

#[tokio::test]
async fn shutdown_removes_the_keys_and_revokes_the_lease() {
    let servers = Servers::start();
    let rt = servers.runtime().await;
    let server = rt.serve(Echo::new()).await.unwrap();
    let id = server.instance_id();
    let mut etcd = servers.etcd.client().await;
    let count = |resp: etcd_client::GetResponse| resp.kvs().len();
    let prefix = Some(GetOptions::new().with_prefix());
    assert_eq!(count(etcd.get("instances/test.dist/", prefix.clone()).await.unwrap()), 4);

    assert!(server.shutdown().await.drained);
    rt.shutdown().await.unwrap();
    assert_eq!(count(etcd.get("instances/test.dist/", prefix).await.unwrap()), 0);
    let ttl = etcd.lease_time_to_live(id.get(), None).await.unwrap();
    assert_eq!(ttl.ttl(), -1, "the lease no longer exists");
}

#[tokio::test]
async fn lost_lease_is_replaced_and_every_endpoint_registered_again() {
    // This test has failed about once in thirty full runs, without a
    // reproduction since: if it fails again, its output shows the watch's
    // resyncs and the lease's replacement in order.
    let _ = tracing_subscriber::fmt().with_env_filter("rotor_runtime=debug").with_test_writer().try_init();
    let mut servers = Servers::start();
    let rt = servers.runtime().await;
    let server = rt.serve(Echo::new()).await.unwrap();
    let old = server.instance_id();
    let client_rt = servers.runtime().await;
    let client = Echo::client(&client_rt).await.unwrap();
    assert_eq!(client.ping().await.unwrap(), old);

    let mut lease = rt.lease_changes();
    servers.etcd.restart_wiped();
    let new =
        within("re-registration", async { lease.wait_for(|s| s.live && s.id != old).await.unwrap().id })
            .await;
    assert_eq!(rt.instance_id(), new);

    let mut etcd = servers.etcd.client().await;
    let keys = etcd.get("instances/test.dist/echo/", Some(GetOptions::new().with_prefix())).await.unwrap();
    let mut names: Vec<String> = keys.kvs().iter().map(|kv| kv.key_str().unwrap().to_string()).collect();
    names.sort();
    let expected: Vec<String> = ["hold", "once", "ping", "say"]
        .iter()
        .map(|e| format!("instances/test.dist/echo/{e}:{new:x}"))
        .collect();
    assert_eq!(names, expected);

    // The client follows the new instance id.
    let seen = tokio::time::timeout(WAIT, client.core().wait_for(|ids| ids == [new])).await;
    let ids = seen.unwrap_or_else(|_| {
        panic!("the client did not see [{new}] within {WAIT:?}; it lists {:?}", client.core().instances())
    });
    assert_eq!(ids.unwrap(), [new]);
    assert_eq!(client.ping().await.unwrap(), new);
    assert_eq!(client.direct(new).say("again".into()).await.unwrap().text, "again");
}

/// The race behind a rare failure of the test above: a client's watch is
/// read from one etcd and opened on the next, restarted without its data
/// in between. The restart blocks this single-threaded runtime, so the
/// watches of the client just built open only afterwards, from a revision
/// the new etcd is far below.
#[tokio::test]
async fn a_watch_opened_on_an_etcd_that_lost_its_data_since_the_read_reads_again() {
    let mut servers = Servers::start();
    let rt = servers.runtime().await;
    let server = rt.serve(Echo::new()).await.unwrap();
    let old = server.instance_id();
    let mut etcd = servers.etcd.client().await;
    for n in 0..50 {
        etcd.put(format!("test/padding/{n}"), "x", None).await.unwrap();
    }
    let client_rt = servers.runtime().await;
    let client = Echo::client(&client_rt).await.unwrap();
    let mut lease = rt.lease_changes();
    servers.etcd.restart_wiped();
    let new =
        within("re-registration", async { lease.wait_for(|s| s.live && s.id != old).await.unwrap().id })
            .await;
    let seen = tokio::time::timeout(WAIT, client.core().wait_for(|ids| ids == [new])).await;
    let ids = seen.unwrap_or_else(|_| {
        panic!("the client did not see [{new}] within {WAIT:?}; it lists {:?}", client.core().instances())
    });
    assert_eq!(ids.unwrap(), [new]);
    assert_eq!(client.ping().await.unwrap(), new);
}

#[tokio::test]
async fn an_etcd_restart_with_its_data_keeps_the_lease() {
    let mut servers = Servers::start();
    let rt = servers.runtime().await;
    let server = rt.serve(Echo::new()).await.unwrap();
    let id = server.instance_id();
    servers.etcd.restart();
    let client = Echo::client(&servers.runtime().await).await.unwrap();
    assert_eq!(within("discovery after restart", client.core().wait_for_instances()).await.unwrap(), [id]);
    assert_eq!(client.ping().await.unwrap(), id);
}

#[tokio::test]
async fn an_instance_started_later_is_discovered() {
    let servers = Servers::start();
    let rt = servers.runtime().await;
    let first = rt.serve(Echo::new()).await.unwrap();
    let client = Echo::client(&rt).await.unwrap();
    assert_eq!(client.core().instances(), [first.instance_id()]);

    let later_rt = rt.with_new_lease().await.unwrap();
    let later = later_rt.serve(Echo::new()).await.unwrap();
    let ids = within("discovery", client.core().wait_for(|ids| ids.len() == 2)).await.unwrap();
    assert!(ids.contains(&later.instance_id()));
    let answered: Vec<InstanceId> = futures::future::join_all((0..4).map(|_| client.ping()))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(answered.contains(&later.instance_id()), "{answered:?}");
}

#[tokio::test]
async fn round_robin_spreads_300_calls_over_3_instances() {
    let servers = Servers::start();
    let rt = servers.runtime().await;
    let mut handles = Vec::new();
    for _ in 0..3 {
        handles.push(rt.with_new_lease().await.unwrap().serve(Echo::new()).await.unwrap());
    }
    let client = Echo::client(&rt).await.unwrap();
    within("3 instances", client.core().wait_for(|ids| ids.len() == 3)).await.unwrap();
    let mut by: HashMap<InstanceId, usize> = HashMap::new();
    for i in 0..300 {
        *by.entry(client.say(format!("call {i}")).await.unwrap().by).or_default() += 1;
    }
    for h in &handles {
        let n = by.get(&h.instance_id()).copied().unwrap_or(0);
        assert!(n >= 60, "instance {} got {n} of 300: {by:?}", h.instance_id());
        assert_eq!(h.service().calls.load(Ordering::Relaxed), n);
    }
}

#[tokio::test]
async fn direct_calls_and_other_routers() {
    let servers = Servers::start();
    let rt = servers.runtime().await;
    let a = rt.with_new_lease().await.unwrap().serve(Echo::new()).await.unwrap();
    let b = rt.with_new_lease().await.unwrap().serve(Echo::new()).await.unwrap();
    let client = Echo::client(&rt).await.unwrap();
    within("2 instances", client.core().wait_for(|ids| ids.len() == 2)).await.unwrap();
    for _ in 0..20 {
        assert_eq!(client.direct(b.instance_id()).ping().await.unwrap(), b.instance_id());
    }
    assert_eq!(a.service().calls.load(Ordering::Relaxed), 0);
    for router in [Router::Random, Router::PowerOfTwo] {
        let routed = client.with_router(router);
        let mut seen = std::collections::HashSet::new();
        for i in 0..100 {
            seen.insert(routed.say(format!("{i}")).await.unwrap().by);
        }
        assert_eq!(seen.len(), 2, "{router:?} used both instances");
    }
}

/// A `hello_server` example process; its first stdout line says it serves.
struct ServerProcess(Child, BufReader<std::process::ChildStdout>);

impl ServerProcess {
    fn start(servers: &Servers) -> (ServerProcess, String) {
        let mut child = Command::new(support::example("hello_server"))
            .envs(servers.env())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start hello_server");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        assert!(line.starts_with("serving hello_greeter as instance"), "unexpected first line: {line:?}");
        (ServerProcess(child, stdout), line)
    }

    fn sigkill(&mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().unwrap();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn sigkill_of_a_server_process_fails_no_idempotent_call() {
    let servers = Servers::start();
    let mut processes: Vec<ServerProcess> = (0..3).map(|_| ServerProcess::start(&servers).0).collect();
    let rt = servers.runtime().await;
    let client = greeter::Greeter::client(&rt).await.unwrap();
    let before = within("3 instances", client.core().wait_for(|ids| ids.len() == 3)).await.unwrap();

    let failures = Arc::new(AtomicUsize::new(0));
    let mut answered_after = std::collections::HashSet::new();
    for i in 0..300 {
        if i == 100 {
            let connections = servers.nats.connections();
            processes[0].sigkill();
            // NATS drops the dead process's subscriptions with its connection.
            servers.nats.wait_for_connections(connections - 1);
        }
        match client.ping().await {
            Ok(id) if i > 100 => {
                answered_after.insert(id);
            }
            Ok(_) => {}
            Err(e) => {
                failures.fetch_add(1, Ordering::Relaxed);
                eprintln!("call {i} failed: {e}");
            }
        }
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0, "every idempotent call succeeded");
    let stats = client.core().stats("ping").unwrap();
    assert_eq!(stats.evictions, 1, "the dead instance left rotation once: {stats:?}");
    assert!(stats.retries >= 1, "the call that met it was retried elsewhere: {stats:?}");
    assert_eq!(stats.failures, 0);
    assert_eq!(answered_after.len(), 2, "the two survivors answered: {answered_after:?} of {before:?}");
}

#[tokio::test]
async fn static_mode_routes_through_the_queue_group() {
    let nats = Nats::start();
    let rt = Runtime::builder().nats(nats.config()).build().await.unwrap();
    assert_eq!(rt.mode(), rotor::Mode::Static);
    let a = rt.serve(Echo::new()).await.unwrap();
    let b = rt.with_new_lease().await.unwrap().serve(Echo::new()).await.unwrap();
    let client = Echo::client(&rt).await.unwrap();
    assert!(client.core().instances().is_empty(), "no discovery in static mode");
    let mut seen = std::collections::HashSet::new();
    for i in 0..100 {
        seen.insert(client.say(format!("{i}")).await.unwrap().by);
    }
    // NATS picks a queue-group member at random: both serve.
    assert_eq!(seen, [a.instance_id(), b.instance_id()].into_iter().collect());
}

/// The instances that answer a request to `subject` within 5 s, once `n`
/// have answered: their ids (as in `rotor.instance`) and micro service ids.
async fn answering(
    nats: &async_nats::Client,
    subject: &str,
    n: usize,
) -> std::collections::BTreeMap<String, String> {
    use futures::StreamExt;
    let inbox = nats.new_inbox();
    let mut replies = nats.subscribe(inbox.clone()).await.unwrap();
    nats.publish_with_reply(subject.to_string(), inbox, Bytes::new()).await.unwrap();
    let mut ids = std::collections::BTreeMap::new();
    while ids.len() < n {
        let reply = tokio::time::timeout(Duration::from_secs(5), replies.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {n} instances answered {subject}", ids.len()))
            .unwrap();
        let ping: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
        let instance = ping["metadata"]["rotor.instance"].as_str().unwrap().to_string();
        ids.insert(instance, ping["id"].as_str().unwrap().to_string());
    }
    ids
}

#[tokio::test]
async fn instances_in_one_process_share_the_srv_subjects_that_name_no_instance_and_each_still_answers() {
    let servers = Servers::start();
    let rt = servers.runtime().await;
    let nats = async_nats::connect(servers.nats.url()).await.unwrap();
    let subscriptions = || servers.nats.subscriptions();
    let before = subscriptions();
    let mut serving = vec![rt.serve(Echo::new()).await.unwrap()];
    let first = serving[0].instance_id();
    support::until("the first instance's subscriptions", || subscriptions() > before).await;
    let one = subscriptions() - before;
    let mut runtimes = Vec::new();
    for _ in 1..10 {
        let next = rt.with_new_lease().await.unwrap();
        serving.push(next.serve(Echo::new()).await.unwrap());
        runtimes.push(next);
    }
    // Six `$SRV` subjects name no instance; the first instance subscribed
    // them for the process, the others only what names them.
    let own = one - 6;
    support::until("ten instances' subscriptions", || subscriptions() - before == one + 9 * own).await;

    let ids: std::collections::BTreeSet<String> =
        serving.iter().map(|s| s.instance_id().to_string()).collect();
    let by_name = answering(&nats, "$SRV.PING.test_dist_echo", 10).await;
    assert_eq!(
        by_name.keys().cloned().collect::<std::collections::BTreeSet<_>>(),
        ids,
        "each instance answers by name"
    );
    let every = answering(&nats, "$SRV.PING", 10).await;
    assert_eq!(every, by_name, "each instance answers every service's ping");
    let first_hex = first.to_string();
    let own_ping = format!("$SRV.PING.test_dist_echo.{}", by_name[&first_hex]);
    let only = answering(&nats, &own_ping, 1).await;
    assert_eq!(
        only.keys().collect::<Vec<_>>(),
        [&first_hex],
        "the subject with its id reaches that instance"
    );

    // The first to stop takes none of the shared subjects with it; the last does.
    serving.remove(0).shutdown().await;
    support::until("the first instance's own subscriptions to go", || {
        subscriptions() - before == one + 8 * own
    })
    .await;
    let left = answering(&nats, "$SRV.PING.test_dist_echo", 9).await;
    assert!(!left.contains_key(&first_hex), "a stopped instance does not answer: {left:?}");
    for server in serving {
        server.shutdown().await;
    }
    support::until("every subscription of the services to go", || subscriptions() == before).await;
}

#[tokio::test]
async fn srv_info_and_stats_describe_the_component() {
    let servers = Servers::start();
    let rt = servers.runtime().await;
    let server = rt.serve(Echo::new()).await.unwrap();
    let id = server.instance_id();
    let client = Echo::client(&rt).await.unwrap();
    for i in 0..5 {
        client.say(format!("{i}")).await.unwrap();
    }
    assert!(client.say("refuse".into()).await.is_err());

    let nats = async_nats::connect(servers.nats.url()).await.unwrap();
    let ping = nats.request("$SRV.PING.test_dist_echo", Bytes::new()).await.unwrap();
    let ping: serde_json::Value = serde_json::from_slice(&ping.payload).unwrap();
    assert_eq!(ping["name"], "test_dist_echo");

    let info = nats.request("$SRV.INFO.test_dist_echo", Bytes::new()).await.unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.payload).unwrap();
    assert_eq!(info["type"], "io.nats.micro.v1.info_response");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["metadata"]["rotor.instance"], id.to_string());
    let endpoints = info["endpoints"].as_array().unwrap();
    let subjects: Vec<&str> = endpoints.iter().map(|e| e["subject"].as_str().unwrap()).collect();
    assert!(subjects.contains(&"test_dist_echo.say"), "{subjects:?}");
    assert!(subjects.contains(&format!("test_dist_echo.say-{id:x}").as_str()), "{subjects:?}");
    let say = endpoints.iter().find(|e| e["subject"] == "test_dist_echo.say").unwrap();
    assert_eq!(say["metadata"]["rotor.request"], "String");
    assert_eq!(say["metadata"]["rotor.response"], "Said");

    let stats = rt.namespace("test.dist").unwrap().component("echo").unwrap();
    let set = stats.scrape_stats(Duration::from_millis(500)).await.unwrap();
    assert_eq!(set.services.len(), 1);
    let service = &set.services[0];
    assert_eq!(service.instance_id(), Some(id));
    assert_eq!(service.kind, "io.nats.micro.v1.stats_response");
    let say = service.endpoints.iter().find(|e| e.subject == format!("test_dist_echo.say-{id:x}")).unwrap();
    assert_eq!((say.num_requests, say.num_errors), (6, 1));
    assert!(say.last_error.starts_with("422:refused"), "{}", say.last_error);
    assert_eq!(set.total_requests(), 6);
}

#[tokio::test]
async fn application_errors_cross_nats_typed_with_service_error_headers() {
    let servers = Servers::start();
    let rt = servers.runtime().await;
    let server = rt.serve(Echo::new()).await.unwrap();
    let client = Echo::client(&rt).await.unwrap();
    let err = client.say("refuse".into()).await.unwrap_err();
    assert_eq!(err.instance(), Some(server.instance_id()));
    assert_eq!(err.into_app().unwrap(), EchoError::Refused("refuse".into()));

    // What a plain NATS client sees.
    let nats = async_nats::connect(servers.nats.url()).await.unwrap();
    let reply = nats.request("test_dist_echo.say", Bytes::from_static(b"\"refuse\"")).await.unwrap();
    let headers = reply.headers.unwrap();
    assert_eq!(headers.get("Nats-Service-Error-Code").unwrap().as_str(), "422");
    assert_eq!(headers.get("Nats-Service-Error").unwrap().as_str(), "refused: refuse");
    assert_eq!(headers.get("Rotor-Error").unwrap().as_str(), "application");
}

#[tokio::test]
async fn malformed_payloads_and_oversize_requests_over_nats() {
    let servers = Servers::start();
    let rt = servers.runtime().await;
    let _server = rt.serve(Echo::new()).await.unwrap();
    let endpoint = rt.namespace("test.dist").unwrap().component("echo").unwrap().endpoint("say").unwrap();
    let raw = endpoint.client().await.unwrap();
    let (reply, _) = raw.call_raw("say", Bytes::from_static(b"{not json")).await.unwrap();
    assert_eq!(reply.error_kind(), Some(ErrorKind::Decode));

    let client = Echo::client(&rt).await.unwrap();
    // Over NATS's max_payload a request goes in chunks: the transport's
    // limit is the largest message it carries that way.
    let limit = rt.transport().max_message();
    let err = client.say("x".repeat(limit + 1)).await.unwrap_err();
    match err.transport() {
        Some(TransportError::Oversize { limit: l, .. }) => assert_eq!(*l, limit),
        other => panic!("expected an oversize error, got {other:?}"),
    }
    assert_eq!(client.say("still serving".into()).await.unwrap().text, "still serving");
}

#[derive(Debug, Serialize, Deserialize)]
enum Position {
    On,
    Off,
}

struct Switch;

#[rotor::component(namespace = "test.dist")]
impl Switch {
    #[endpoint]
    async fn flip(&self, to: Position) -> Result<Position, EchoError> {
        Ok(match to {
            Position::On => Position::Off,
            Position::Off => Position::On,
        })
    }
}

/// serde quotes the unknown variant in its message, carriage return
/// included; the message goes into a header, which must stay one line.
#[tokio::test]
async fn an_error_message_with_control_characters_still_makes_a_reply() {
    let servers = Servers::start();
    let rt = servers.runtime().await;
    let _server = rt.serve(Switch).await.unwrap();
    let raw = rt.namespace("test.dist").unwrap().component("switch").unwrap().endpoint("flip").unwrap();
    let client = raw.client().await.unwrap().with_timeout(Duration::from_secs(5));
    let (reply, _) = client.call_raw("flip", Bytes::from_static(b"\"a\\rb\"")).await.unwrap();
    assert_eq!(reply.error_kind(), Some(ErrorKind::Decode));
    let message = reply.headers.get("Nats-Service-Error").unwrap();
    assert!(message.contains("unknown variant") && !message.contains('\r'), "{message:?}");
    assert!(matches!(Switch::client(&rt).await.unwrap().flip(Position::On).await.unwrap(), Position::Off));
}

#[tokio::test]
async fn nats_token_authentication() {
    let nats = Nats::start_with_token("s3cret");
    let rt = Runtime::builder().nats(nats.config()).build().await.unwrap();
    let _server = rt.serve(Echo::new()).await.unwrap();
    assert_eq!(Echo::client(&rt).await.unwrap().say("in".into()).await.unwrap().text, "in");

    let wrong = NatsConfig { urls: vec![nats.url()], ..NatsConfig::default() };
    let err = Runtime::builder().nats(wrong).build().await.unwrap_err();
    assert!(matches!(err, rotor::Error::Refused { engine: "NATS", .. }), "{err}");
}

#[tokio::test]
async fn nats_user_and_password_authentication() {
    let nats = Nats::start_with_user("rotor", "pa55");
    let rt = Runtime::builder().nats(nats.config()).build().await.unwrap();
    let _server = rt.serve(Echo::new()).await.unwrap();
    assert_eq!(Echo::client(&rt).await.unwrap().say("in".into()).await.unwrap().text, "in");
    let anonymous = NatsConfig { urls: vec![nats.url()], ..NatsConfig::default() };
    assert!(Runtime::builder().nats(anonymous).build().await.is_err());
}

/// Registers, with a plain etcd client and a lease of its own, an instance
/// of every Echo endpoint whose subjects nobody listens on: what a crashed
/// process leaves behind until its lease lapses.
async fn zombie(servers: &Servers) -> InstanceId {
    let mut etcd = servers.etcd.client().await;
    let lease = etcd.lease_grant(60, None).await.unwrap().id();
    for endpoint in ["say", "ping", "once", "hold"] {
        let record = serde_json::json!({
            "namespace": "test.dist", "component": "echo", "endpoint": endpoint, "instance_id": lease,
            "transport": { "nats_tcp": format!("test_dist_echo.{endpoint}-{lease:x}") },
        });
        let key = format!("instances/test.dist/echo/{endpoint}:{lease:x}");
        let options = etcd_client::PutOptions::new().with_lease(lease);
        etcd.put(key, record.to_string(), Some(options)).await.unwrap();
    }
    InstanceId(lease)
}

#[tokio::test]
async fn no_responders_evicts_and_retries_idempotent_calls_only() {
    let servers = Servers::start();
    let rt = servers.runtime().await;
    let live = rt.serve(Echo::new()).await.unwrap();
    let dead = zombie(&servers).await;
    let client = Echo::client(&rt).await.unwrap();
    within("both instances", client.core().wait_for(|ids| ids.len() == 2)).await.unwrap();

    // Idempotent: the call that meets the zombie is retried on the live one.
    for _ in 0..10 {
        assert_eq!(client.ping().await.unwrap(), live.instance_id());
    }
    let stats = client.core().stats("ping").unwrap();
    assert_eq!((stats.evictions, stats.retries, stats.failures), (1, 1, 0), "{stats:?}");

    // Not idempotent: never retried, so the call that meets the zombie fails.
    let fresh = Echo::client(&rt).await.unwrap();
    let results: Vec<_> = futures::future::join_all((0..2).map(|_| fresh.once())).await;
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(failed.len(), 1, "{results:?}");
    assert!(
        matches!(failed[0].transport(), Some(TransportError::NoResponders { instance: Some(i), .. }) if *i == dead),
        "{:?}",
        failed[0]
    );
    let stats = fresh.core().stats("once").unwrap();
    assert_eq!((stats.retries, stats.failures), (0, 1), "{stats:?}");
}

#[tokio::test]
async fn an_unreachable_server_is_named_with_its_variable_within_the_timeout() {
    let port = support::free_port();
    let config = NatsConfig {
        urls: vec![format!("nats://127.0.0.1:{port}")],
        source: Source::Env("ROTOR_NATS_URL"),
        ..NatsConfig::default()
    };
    let started = std::time::Instant::now();
    let err = Runtime::builder().nats(config).build().await.unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(err.contains(&format!("127.0.0.1:{port}")) && err.contains("ROTOR_NATS_URL"), "{err}");

    let etcd = rotor::config::EtcdConfig {
        endpoints: vec![format!("http://127.0.0.1:{port}")],
        source: Source::Env("ROTOR_ETCD_ENDPOINTS"),
        ..Default::default()
    };
    let nats = Nats::start();
    let started = std::time::Instant::now();
    let err = Runtime::builder()
        .nats(nats.config())
        .etcd(etcd)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap_err()
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(err.contains("etcd") && err.contains("ROTOR_ETCD_ENDPOINTS"), "{err}");
}

#[tokio::test]
async fn stats_scrape_sees_every_instance() {
    let servers = Servers::start();
    let rt = servers.runtime().await;
    let a = rt.serve(Echo::new()).await.unwrap();
    let b = rt.with_new_lease().await.unwrap().serve(Echo::new()).await.unwrap();
    let component = rt.namespace("test.dist").unwrap().component("echo").unwrap();
    let set = component.scrape_stats(Duration::from_millis(500)).await.unwrap();
    assert_eq!(set.services.len(), 2);
    let mut instances: Vec<InstanceId> = set.services.iter().filter_map(|s| s.instance_id()).collect();
    instances.sort();
    let mut expected = vec![a.instance_id(), b.instance_id()];
    expected.sort();
    assert_eq!(instances, expected, "one reply per instance");
}

#[tokio::test]
async fn graceful_shutdown_leaves_routing_then_finishes_what_it_accepted() {
    let servers = Servers::start();
    let rt = servers.runtime().await;
    let server = rt.serve(Echo::new()).await.unwrap();
    let service = server.service().clone();
    let client = Echo::client(&rt).await.unwrap();
    let held = tokio::spawn({
        let client = client.clone();
        async move { client.hold().await }
    });
    within("the held call to start", service.entered.notified()).await;

    let shutdown = tokio::spawn(server.shutdown());
    within("deregistration", client.core().wait_for(|ids| ids.is_empty())).await.unwrap();
    let err = client.ping().await.unwrap_err();
    assert!(matches!(err.transport(), Some(TransportError::NoInstances { .. })), "{err:?}");

    service.release.notify_one();
    assert_eq!(within("the held call", held).await.unwrap().unwrap(), "released");
    assert!(within("shutdown", shutdown).await.unwrap().drained);
}

#[tokio::test]
async fn sigterm_drains_and_revokes_the_lease_at_once() {
    let servers = Servers::start();
    let (mut process, line) = ServerProcess::start(&servers);
    let hex = line.split_whitespace().nth(4).expect("the instance id").to_string();
    let mut etcd = servers.etcd.client().await;
    let key = format!("instances/hello/greeter/ping:{hex}");
    assert_eq!(etcd.get(key.as_str(), None).await.unwrap().kvs().len(), 1);

    let status = Command::new("kill").args(["-TERM", &process.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = within("the server to exit", async {
        loop {
            if let Some(status) = process.0.try_wait().unwrap() {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(exit.success(), "{exit}");
    let mut last = String::new();
    process.1.read_line(&mut last).unwrap();
    assert_eq!(last.trim(), "stopped; drained: true");
    // Gone at once, not after the 3 s lease TTL.
    assert_eq!(etcd.get(key.as_str(), None).await.unwrap().kvs().len(), 0);
    let lease = i64::from_str_radix(&hex, 16).unwrap();
    assert_eq!(etcd.lease_time_to_live(lease, None).await.unwrap().ttl(), -1);
}

/// With nats-server gone, a graceful shutdown still ends: the endpoints
/// stop waiting for NATS to confirm their unsubscribe.
#[tokio::test]
async fn shutdown_ends_while_nats_is_down() {
    let mut servers = Servers::start();
    let rt = servers.builder().drain_timeout(Duration::from_secs(5)).build().await.unwrap();
    let server = rt.serve(Echo::new()).await.unwrap();
    servers.nats.kill();
    let report = within("shutdown with NATS down", server.shutdown()).await;
    assert!(report.drained, "nothing was in flight, so nothing was left to cancel");
}

#[tokio::test]
async fn a_service_name_another_process_reserved_for_another_pair_is_refused_naming_both() {
    let servers = Servers::start();
    let rt = servers.runtime().await;
    let mut etcd = servers.etcd.client().await;
    // Serving reserves the service name for this pair; a second instance of
    // the same pair shares it.
    let first = rt.serve(Echo::new()).await.unwrap();
    let reserved = etcd.get("services/test_dist_echo", None).await.unwrap();
    assert_eq!(reserved.kvs()[0].value_str().unwrap(), "test.dist/echo");
    let second = rt.with_new_lease().await.unwrap().serve(Echo::new()).await.unwrap();
    drop((first, second));

    // `test/dist_echo`, served by another binary, maps to the same name.
    let other = Servers::start();
    let mut etcd = other.etcd.client().await;
    etcd.put("services/test_dist_echo", "test/dist_echo", None).await.unwrap();
    let rt = other.runtime().await;
    let err = rt.serve(Echo::new()).await.expect_err("refused");
    let text = err.to_string();
    assert!(matches!(err, rotor::Error::ServiceTaken { .. }), "{text}");
    for part in ["test_dist_echo", "test/dist_echo", "test.dist/echo", "etcdctl del services/test_dist_echo"]
    {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
    let keys = etcd.get("instances/test.dist/", Some(GetOptions::new().with_prefix())).await.unwrap();
    assert!(keys.kvs().is_empty(), "nothing registered");
}

#[tokio::test]
async fn a_draining_instance_refuses_new_requests_unrun_and_finishes_what_it_accepted() {
    let servers = Servers::start();
    let rt = servers.runtime().await;
    let server = rt.serve(Echo::new()).await.unwrap();
    let id = server.instance_id();
    let service = server.service().clone();
    let client = Echo::client(&rt).await.unwrap();
    let held = tokio::spawn({
        let client = client.clone();
        async move { client.hold().await }
    });
    within("the held call to start", service.entered.notified()).await;
    let shutdown = tokio::spawn(server.shutdown());
    within("deregistration", client.core().wait_for(|ids| ids.is_empty())).await.unwrap();

    // What a caller that has not seen the deregistration yet still sends
    // to the instance's own subject: refused, and never run.
    let subject = format!("{}-{id}", Echo::SAY_SUBJECT);
    let late = rotor::wire::Message::request(Bytes::from_static(b"\"late\""), None);
    let reply = rt.transport().request(&subject, late, WAIT).await.unwrap();
    assert_eq!(reply.error_kind(), Some(ErrorKind::Refused), "{:?}", reply.headers);
    assert_eq!(service.calls.load(Ordering::Relaxed), 0, "the refused request did not run");
    // Nor does a probe count as evidence of life.
    let probe = rt.transport().request(&subject, rotor::wire::Message::probe(), WAIT).await.unwrap();
    assert_eq!(probe.error_kind(), Some(ErrorKind::Refused));

    service.release.notify_one();
    assert_eq!(within("the held call", held).await.unwrap().unwrap(), "released");
    assert!(within("shutdown", shutdown).await.unwrap().drained);
}
