//! The embedded mode end to end: macros, typed clients, routing, errors and
//! instance removal, with the in-process transport and in-memory discovery.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rotor::prelude::*;
use rotor::wire::ErrorKind;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

struct Counter {
    calls: AtomicUsize,
    cancelled: Option<mpsc::UnboundedSender<&'static str>>,
}

impl Counter {
    fn new() -> Self {
        Counter { calls: AtomicUsize::new(0), cancelled: None }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Sum {
    value: i64,
    by: InstanceId,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, thiserror::Error)]
enum MathError {
    #[error("overflow adding {0} and {1}")]
    Overflow(i64, i64),
}

#[rotor::component(namespace = "test.math", labels(team = "core"))]
impl Counter {
    #[endpoint]
    async fn add(&self, ctx: &Context, req: Add) -> Result<Sum, MathError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let value = req.a.checked_add(req.b).ok_or(MathError::Overflow(req.a, req.b))?;
        Ok(Sum { value, by: ctx.instance_id() })
    }

    #[endpoint(name = "who-am-i")]
    async fn whoami(&self, ctx: Context) -> Result<(InstanceId, String), MathError> {
        Ok((ctx.instance_id(), format!("{}/{}/{}", ctx.namespace(), ctx.component(), ctx.endpoint())))
    }

    #[endpoint]
    async fn panic(&self) -> Result<(), MathError> {
        panic!("boom")
    }

    #[endpoint]
    async fn wait_for_cancel(&self, ctx: Context) -> Result<(), MathError> {
        assert!(ctx.time_left().is_some(), "the client's timeout travels with the request");
        let tx = self.cancelled.clone().expect("a cancellation channel");
        // Work spawned by the handler watches the context; the handler's own
        // future is dropped, which its guard reports.
        tokio::spawn({
            let (ctx, tx) = (ctx.clone(), tx.clone());
            async move {
                ctx.cancelled().await;
                tx.send("context cancelled").unwrap();
            }
        });
        let _guard = DropReport(tx);
        std::future::pending().await
    }

    #[endpoint]
    async fn echo(&self, data: String) -> Result<String, MathError> {
        Ok(data)
    }

    #[endpoint]
    async fn repeat(&self, n: usize) -> Result<String, MathError> {
        Ok("y".repeat(n))
    }
}

struct DropReport(mpsc::UnboundedSender<&'static str>);

impl Drop for DropReport {
    fn drop(&mut self) {
        let _ = self.0.send("handler dropped");
    }
}

/// A static component: no discovery, reached through its queue group.
struct Clock;

#[rotor::component(namespace = "test", static)]
impl Clock {
    #[endpoint]
    async fn tick(&self, ctx: Context) -> Result<InstanceId, MathError> {
        Ok(ctx.instance_id())
    }
}

/// `n` instances, each on its own lease, plus a client runtime.
async fn instances(n: usize) -> (Runtime, Vec<rotor::ServeHandle<Counter>>) {
    let rt = Runtime::embedded().await.unwrap();
    let mut handles = Vec::new();
    for _ in 0..n {
        let lease = rt.with_new_lease().await.unwrap();
        handles.push(lease.serve(Counter::new()).await.unwrap());
    }
    (rt, handles)
}

#[tokio::test]
async fn round_robin_spreads_calls_evenly() {
    let (rt, servers) = instances(3).await;
    let client = Counter::client(&rt).await.unwrap();
    let mut by_instance: HashMap<InstanceId, usize> = HashMap::new();
    for i in 0..300 {
        let sum = client.add(Add { a: i, b: 1 }).await.unwrap();
        assert_eq!(sum.value, i + 1);
        *by_instance.entry(sum.by).or_default() += 1;
    }
    for s in &servers {
        assert_eq!(by_instance.get(&s.instance_id()), Some(&100), "{by_instance:?}");
        assert_eq!(s.service().calls.load(Ordering::Relaxed), 100);
    }
}

#[tokio::test]
async fn random_router_reaches_every_instance() {
    let (rt, servers) = instances(3).await;
    let client = Counter::client(&rt).await.unwrap().with_router(Router::Random);
    for i in 0..300 {
        client.add(Add { a: i, b: 0 }).await.unwrap();
    }
    for s in &servers {
        // 300 uniform draws over 3: fewer than 50 for one is ~1e-9 likely.
        assert!(s.service().calls.load(Ordering::Relaxed) >= 50);
    }
}

#[tokio::test]
async fn direct_calls_reach_only_the_named_instance() {
    let (rt, servers) = instances(3).await;
    let target = servers[1].instance_id();
    let client = Counter::client(&rt).await.unwrap().direct(target);
    for _ in 0..10 {
        assert_eq!(client.add(Add { a: 1, b: 2 }).await.unwrap().by, target);
    }
    assert_eq!(servers[0].service().calls.load(Ordering::Relaxed), 0);
    assert_eq!(servers[1].service().calls.load(Ordering::Relaxed), 10);

    let unknown = InstanceId(0x1234);
    let err = client.direct(unknown).add(Add { a: 1, b: 2 }).await.unwrap_err();
    assert!(
        matches!(err, CallError::Transport(TransportError::UnknownInstance { instance, .. }) if instance == unknown),
        "{err:?}"
    );
}

#[tokio::test]
async fn application_errors_arrive_typed_with_the_instance() {
    let (rt, servers) = instances(1).await;
    let client = Counter::client(&rt).await.unwrap();
    let err = client.add(Add { a: i64::MAX, b: 1 }).await.unwrap_err();
    assert_eq!(err.instance(), Some(servers[0].instance_id()));
    assert_eq!(err.into_app().unwrap(), MathError::Overflow(i64::MAX, 1));
}

#[tokio::test]
async fn malformed_payload_is_a_decode_error_and_the_server_keeps_serving() {
    let (rt, servers) = instances(1).await;
    let endpoint = rt.namespace("test.math").unwrap().component("counter").unwrap().endpoint("add").unwrap();
    let raw = endpoint.client().await.unwrap();

    let (reply, instance) = raw.call_raw("add", Bytes::from_static(b"{not json")).await.unwrap();
    assert_eq!(reply.error_kind(), Some(ErrorKind::Decode));
    assert_eq!(instance, Some(servers[0].instance_id()));

    // The same through the typed path: a request of the wrong shape.
    let err = raw.unary::<_, Sum, MathError>("add", &"a string, not an Add").await.unwrap_err();
    match err {
        CallError::Transport(TransportError::BadRequest { endpoint, detail, instance }) => {
            assert!(endpoint.contains("test.math/counter/add"), "{endpoint}");
            assert!(detail.contains("Add"), "{detail}");
            assert_eq!(instance, Some(servers[0].instance_id()));
        }
        other => panic!("expected a decode error, got {other:?}"),
    }

    let client = Counter::client(&rt).await.unwrap();
    assert_eq!(client.add(Add { a: 2, b: 3 }).await.unwrap().value, 5);
}

#[tokio::test]
async fn the_lease_is_taken_at_the_first_serve_and_followed_from_before() {
    let rt = Runtime::embedded().await.unwrap();
    let mut changes = rt.lease_changes();
    assert_eq!(*changes.borrow(), rotor::discovery::LeaseState { id: InstanceId(0), live: false });
    let server = rt.serve(Counter::new()).await.unwrap();
    let seen =
        tokio::time::timeout(Duration::from_secs(5), changes.wait_for(|s| s.live)).await.unwrap().unwrap().id;
    assert_eq!(seen, server.instance_id());
    assert_eq!(rt.instance_id(), server.instance_id());

    let shut = Runtime::embedded().await.unwrap();
    shut.shutdown().await.unwrap();
    let err = shut.serve(Counter::new()).await.expect_err("no serving after shutdown");
    assert!(matches!(err, rotor::Error::LeaseRevoked { .. }), "{err}");
}

#[tokio::test]
async fn a_bounded_wait_for_a_component_nobody_serves_ends_with_what_to_check() {
    let rt = Runtime::embedded().await.unwrap();
    let client = Counter::client(&rt).await.unwrap();
    let err = client.core().wait_for_instances_within(Duration::from_millis(50)).await.unwrap_err();
    assert!(matches!(err, rotor::Error::NoInstancesWithin { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("test.math/counter") && text.contains("is a server for it running"), "{text}");
}

#[tokio::test]
async fn the_first_calls_of_fresh_clients_spread_over_the_instances() {
    let (rt, servers) = instances(3).await;
    for _ in 0..60 {
        let fresh = Counter::client(&rt).await.unwrap();
        fresh.add(Add { a: 0, b: 0 }).await.unwrap();
    }
    // Each of 60 first calls lands on any of 3 instances: one left out by
    // chance has a probability below 1e-10.
    let firsts: Vec<usize> = servers.iter().map(|s| s.service().calls.load(Ordering::Relaxed)).collect();
    assert!(firsts.iter().all(|&n| n > 0), "first calls per instance: {firsts:?}");
}

#[tokio::test]
async fn a_direct_client_stays_with_its_instance_whatever_its_router() {
    let (rt, servers) = instances(3).await;
    let target = servers[2].instance_id();
    let direct = Counter::client(&rt).await.unwrap().direct(target);
    for router in [Router::RoundRobin, Router::Random, Router::PowerOfTwo] {
        let routed = direct.with_router(router);
        for _ in 0..10 {
            assert_eq!(routed.add(Add { a: 1, b: 1 }).await.unwrap().by, target, "{router:?}");
        }
    }
    assert_eq!(servers[2].service().calls.load(Ordering::Relaxed), 30);
}

#[tokio::test]
async fn instance_leaves_routing_when_shut_down() {
    let (rt, mut servers) = instances(2).await;
    let client = Counter::client(&rt).await.unwrap();
    assert_eq!(client.core().instances().len(), 2);
    let gone = servers.remove(0);
    let gone_id = gone.instance_id();
    let report = gone.shutdown().await;
    assert!(report.drained);
    assert_eq!(client.core().instances(), vec![servers[0].instance_id()]);
    for _ in 0..20 {
        assert_eq!(client.add(Add { a: 0, b: 0 }).await.unwrap().by, servers[0].instance_id());
    }
    let err = client.direct(gone_id).add(Add { a: 0, b: 0 }).await.unwrap_err();
    assert!(matches!(err.transport(), Some(TransportError::UnknownInstance { .. })), "{err:?}");
}

#[tokio::test]
async fn instance_leaves_routing_when_dropped() {
    let (rt, mut servers) = instances(2).await;
    let client = Counter::client(&rt).await.unwrap();
    drop(servers.remove(1));
    assert_eq!(client.core().instances(), vec![servers[0].instance_id()]);
    for _ in 0..20 {
        assert_eq!(client.add(Add { a: 0, b: 0 }).await.unwrap().by, servers[0].instance_id());
    }
    drop(servers);
    let err = client.add(Add { a: 0, b: 0 }).await.unwrap_err();
    assert!(matches!(err.transport(), Some(TransportError::NoInstances { .. })), "{err:?}");
}

#[tokio::test]
async fn wait_for_instances_sees_a_later_server() {
    let rt = Runtime::embedded().await.unwrap();
    let client = Counter::client(&rt).await.unwrap();
    assert!(client.core().instances().is_empty());
    let server_rt = rt.with_new_lease().await.unwrap();
    let waiter = tokio::spawn({
        let client = client.clone();
        async move { client.core().wait_for_instances().await }
    });
    let server = server_rt.serve(Counter::new()).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap().unwrap();
    assert_eq!(seen, vec![server.instance_id()]);
}

#[tokio::test]
async fn one_lease_serves_a_component_once() {
    let rt = Runtime::embedded().await.unwrap();
    let _first = rt.serve(Counter::new()).await.unwrap();
    let err = rt.serve(Counter::new()).await.expect_err("second serve on one lease fails");
    assert!(matches!(err, rotor::Error::AlreadyServing { .. }), "{err}");
    assert!(err.to_string().contains("with_new_lease"), "{err}");
}

#[tokio::test]
async fn context_names_the_endpoint_and_instance() {
    let (rt, servers) = instances(1).await;
    let client = Counter::client(&rt).await.unwrap();
    let (id, names) = client.whoami().await.unwrap();
    assert_eq!(id, servers[0].instance_id());
    assert_eq!(names, "test.math/counter/who-am-i");
}

#[tokio::test]
async fn a_panicking_handler_is_an_internal_error_and_serving_goes_on() {
    let (rt, _servers) = instances(1).await;
    let client = Counter::client(&rt).await.unwrap();
    let err = client.panic().await.unwrap_err();
    match err.transport() {
        Some(e @ TransportError::Panicked { message, .. }) => {
            assert_eq!(e.code(), 500);
            assert!(message.contains("boom"), "{message}")
        }
        other => panic!("expected an internal error, got {other:?}"),
    }
    assert_eq!(client.add(Add { a: 1, b: 1 }).await.unwrap().value, 2);
}

#[tokio::test]
async fn the_deadline_travels_and_cancels_the_handler() {
    let rt = Runtime::embedded().await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _server = rt.serve(Counter { calls: AtomicUsize::new(0), cancelled: Some(tx) }).await.unwrap();
    let client = Counter::client(&rt).await.unwrap().with_timeout(Duration::from_millis(100));
    let err = client.wait_for_cancel().await.unwrap_err();
    assert!(
        matches!(
            err.transport(),
            Some(TransportError::Timeout { .. } | TransportError::DeadlineExceeded { .. })
        ),
        "{err:?}"
    );
    // When the deadline passed, the handler was dropped and its context
    // cancelled.
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap());
    }
    seen.sort();
    assert_eq!(seen, ["context cancelled", "handler dropped"]);
}

#[tokio::test]
async fn oversize_messages_are_refused_on_the_side_that_sends_them() {
    let transport = Arc::new(rotor::transport::InProcess::with_max_payload(1024));
    let rt = Runtime::builder().transport(transport).build().await.unwrap();
    let _server = rt.serve(Counter::new()).await.unwrap();
    let client = Counter::client(&rt).await.unwrap();

    let err = client.echo("x".repeat(2048)).await.unwrap_err();
    match err.transport() {
        Some(TransportError::Oversize { what, limit: 1024, .. }) => assert_eq!(what, "request"),
        other => panic!("expected an oversize request, got {other:?}"),
    }
    assert!(err.to_string().contains("max_payload"), "{err}");

    // A small request whose response is too large: refused by the server.
    let err = client.repeat(2000).await.unwrap_err();
    assert!(
        matches!(err.transport(), Some(TransportError::Remote { kind: ErrorKind::Oversize, code: 413, .. })),
        "{err:?}"
    );
    assert_eq!(client.repeat(900).await.unwrap().len(), 900);
    // Still serving.
    assert_eq!(client.echo("ok".into()).await.unwrap(), "ok");
}

#[tokio::test]
async fn static_components_are_reached_through_the_queue_group() {
    let rt = Runtime::embedded().await.unwrap();
    let server = rt.serve(Clock).await.unwrap();
    let client = Clock::client(&rt).await.unwrap();
    assert!(client.core().instances().is_empty(), "static components are not in discovery");
    assert!(client.core().wait_for_instances().await.unwrap().is_empty());
    assert_eq!(client.tick().await.unwrap(), server.instance_id());
}

#[tokio::test]
async fn names_built_at_run_time_follow_the_rules() {
    let rt = Runtime::embedded().await.unwrap();
    let err = rt.namespace("Bad.ns").unwrap_err().to_string();
    assert!(err.contains("^[a-z0-9_-]+$"), "{err}");
    let ns = rt.namespace("llm").unwrap().namespace("prod").unwrap();
    assert_eq!(ns.name(), "llm.prod");
    assert!(ns.namespace("").is_err());
    let err = ns.component("tok enizer").unwrap_err().to_string();
    assert!(err.contains("' '") && err.contains("component name"), "{err}");
    let ep = ns.component("tokenizer").unwrap().endpoint("encode").unwrap();
    assert_eq!(ep.subject(), "llm_prod_tokenizer.encode");
    assert_eq!(ep.instance_subject(InstanceId(0xab)), "llm_prod_tokenizer.encode-ab");
    assert_eq!(ep.instance_key(InstanceId(0xab)), "instances/llm.prod/tokenizer/encode:ab");
    assert!(ns.component("t").unwrap().endpoint(&"e".repeat(65)).is_err());
}

#[tokio::test]
async fn generated_constants_and_registry() {
    assert_eq!(Counter::NAMESPACE, "test.math");
    assert_eq!(Counter::COMPONENT, "counter");
    assert_eq!(Counter::SERVICE, "test_math_counter");
    assert_eq!(Counter::ADD_SUBJECT, "test_math_counter.add");
    assert_eq!(Counter::WHOAMI_SUBJECT, "test_math_counter.who-am-i");
    let all = rotor::components();
    let counter = all.iter().find(|c| c.service == "test_math_counter").expect("registered");
    assert_eq!(counter.labels, &[("team", "core")]);
    let add = &counter.endpoints[0];
    assert_eq!((add.request, add.response, add.error), ("Add", "Sum", "MathError"));
    assert_eq!(counter.endpoints[1].request, "()");
    assert!(all.iter().any(|c| c.service == "test_clock" && c.is_static));
}

#[tokio::test]
async fn shutdown_cancels_what_outlives_the_drain_timeout() {
    let rt = Runtime::builder().drain_timeout(Duration::from_millis(100)).build().await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server = rt.serve(Counter { calls: AtomicUsize::new(0), cancelled: Some(tx) }).await.unwrap();
    let client = Counter::client(&rt).await.unwrap();
    let call = tokio::spawn(async move { client.wait_for_cancel().await });
    while server.in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    let report = server.shutdown().await;
    assert!(!report.drained);
    let err = call.await.unwrap().unwrap_err();
    assert!(
        matches!(
            err.transport(),
            Some(TransportError::Remote { kind: ErrorKind::Unavailable, code: 503, .. })
        ),
        "{err:?}"
    );
    let mut seen = vec![rx.recv().await.unwrap(), rx.recv().await.unwrap()];
    seen.sort();
    assert_eq!(seen, ["context cancelled", "handler dropped"]);
}

#[tokio::test]
async fn stats_and_instance_lists_in_embedded_mode() {
    let (rt, servers) = instances(2).await;
    let client = Counter::client(&rt).await.unwrap();
    for i in 0..4 {
        client.add(Add { a: i, b: 0 }).await.unwrap();
    }
    client.add(Add { a: i64::MAX, b: 1 }).await.unwrap_err();
    let component = rt.namespace("test.math").unwrap().component("counter").unwrap();
    let listed = component.list_instances().await.unwrap();
    assert_eq!(listed.len(), 2 * 6, "6 endpoints on each of 2 instances");
    let set = component.scrape_stats(Duration::from_millis(10)).await.unwrap();
    assert_eq!(set.services.len(), 2);
    assert_eq!((set.total_requests(), set.total_errors()), (5, 1));
    let mut ids: Vec<InstanceId> = set.services.iter().filter_map(|s| s.instance_id()).collect();
    ids.sort();
    let mut expected: Vec<InstanceId> = servers.iter().map(|s| s.instance_id()).collect();
    expected.sort();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn a_request_of_another_wire_version_is_refused_clearly() {
    let (rt, _servers) = instances(1).await;
    let mut message = rotor::wire::Message::request(Bytes::from_static(b"{\"a\":1,\"b\":2}"), None);
    message.headers.insert(rotor::wire::header::WIRE, "2");
    let reply = rt.transport().request(Counter::ADD_SUBJECT, message, Duration::from_secs(5)).await.unwrap();
    assert_eq!(reply.error_kind(), Some(ErrorKind::Decode));
    let text = reply.headers.get(rotor::wire::header::SERVICE_ERROR).unwrap();
    assert!(text.contains("version 2"), "{text}");
    // Version 1 is the default and needs no header.
    let ok = rotor::wire::Message::request(Bytes::from_static(b"{\"a\":1,\"b\":2}"), None);
    let reply = rt.transport().request(Counter::ADD_SUBJECT, ok, Duration::from_secs(5)).await.unwrap();
    assert_eq!(reply.error_kind(), None);
}

/// Reports where its handlers run, and holds one call until released.
struct Tasks {
    release: std::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    events: mpsc::UnboundedSender<&'static str>,
    /// Its own client, for calls that nest.
    me: Arc<std::sync::OnceLock<<Tasks as rotor::Endpoints>::Client>>,
}

#[rotor::component(namespace = "test.fast")]
impl Tasks {
    #[endpoint]
    async fn task_id(&self) -> Result<Option<String>, MathError> {
        Ok(tokio::task::try_id().map(|id| id.to_string()))
    }

    #[endpoint]
    async fn nest(&self, depth: u32) -> Result<u32, MathError> {
        if depth == 0 {
            return Ok(0);
        }
        let me = self.me.get().expect("the client is set").clone();
        let below = me
            .nest(depth - 1)
            .await
            .map_err(|e| MathError::Overflow(depth.into(), e.to_string().len() as i64))?;
        Ok(below + 1)
    }

    #[endpoint]
    async fn hold(&self) -> Result<(), MathError> {
        let release = self.release.lock().unwrap().take().expect("one call to hold");
        self.events.send("started").unwrap();
        let _ = release.await;
        self.events.send("finished").unwrap();
        Ok(())
    }
}

fn tasks() -> (Tasks, tokio::sync::oneshot::Sender<()>, mpsc::UnboundedReceiver<&'static str>) {
    let (release_tx, release) = tokio::sync::oneshot::channel();
    let (events, events_rx) = mpsc::unbounded_channel();
    let me = Arc::default();
    (Tasks { release: std::sync::Mutex::new(Some(release)), events, me }, release_tx, events_rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_handler_that_answers_at_its_first_poll_runs_in_the_callers_task() {
    let rt = Runtime::embedded().await.unwrap();
    let (served, _release, _events) = tasks();
    let _server = rt.serve(served).await.unwrap();
    let client = Tasks::client(&rt).await.unwrap();
    client.core().wait_for_instances().await.unwrap();
    // The test's body is not a task: the caller is one.
    let (caller, handler) = tokio::spawn(async move {
        let caller = tokio::task::id().to_string();
        (caller, client.task_id().await.unwrap())
    })
    .await
    .unwrap();
    assert_eq!(handler.as_deref(), Some(caller.as_str()), "no task of its own, no hop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_call_dropped_while_its_handler_waits_leaves_the_handler_to_finish() {
    let rt = Runtime::embedded().await.unwrap();
    let (served, release, mut events) = tasks();
    let server = rt.serve(served).await.unwrap();
    let client = Tasks::client(&rt).await.unwrap();
    client.core().wait_for_instances().await.unwrap();
    {
        let call = client.hold();
        tokio::pin!(call);
        tokio::select! {
            _ = &mut call => panic!("answered before it was released"),
            event = events.recv() => assert_eq!(event, Some("started")),
        }
        // The caller gives up here, as a NATS caller may.
    }
    release.send(()).unwrap();
    let finished = tokio::time::timeout(Duration::from_secs(20), events.recv()).await.unwrap();
    assert_eq!(finished, Some("finished"), "the handler went on on a task of its own");
    assert!(server.shutdown().await.drained);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_calls_nested_five_hundred_deep_answer_without_growing_one_stack_to_overflow() {
    let rt = Runtime::embedded().await.unwrap();
    let (served, _release, _events) = tasks();
    let me = served.me.clone();
    let _server = rt.serve(served).await.unwrap();
    let client = Tasks::client(&rt).await.unwrap();
    client.core().wait_for_instances().await.unwrap();
    me.set(client.clone()).ok().unwrap();
    // On a worker thread (2 MiB of stack), as a served caller would be.
    let depth = tokio::spawn(async move { client.nest(500).await.unwrap() }).await.unwrap();
    assert_eq!(depth, 500);
}
