//! The dynamo-runtime side: distributed runtimes on the benchmark's etcd and
//! nats-server, an echo, a stream and a probe endpoint written the way
//! dynamo's own tests write them (an `AsyncEngine` behind an `Ingress`), and
//! a `PushRouter` as the client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dynamo_runtime::discovery::EventTransportKind;
use dynamo_runtime::distributed::{DiscoveryBackend, DistributedConfig, RequestPlaneMode};
use dynamo_runtime::pipeline::network::Ingress;
use dynamo_runtime::pipeline::{
    AsyncEngine, AsyncEngineContextProvider, Error, ManyOut, PushRouter, ResponseStream, RouterMode,
    SingleIn, async_trait,
};
use dynamo_runtime::protocols::annotated::Annotated;
use dynamo_runtime::storage::kv;
use dynamo_runtime::transports::{etcd, nats};
use dynamo_runtime::{DistributedRuntime, Runtime};
use futures::StreamExt;

const NAMESPACE: &str = "peer";

/// How requests reach a dynamo worker. Responses come back the same way in
/// both: the worker dials a TCP connection to the caller per request (the
/// default `tcp` response plane).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plane {
    /// A NATS request/reply to the worker's service subject, answered by an
    /// acknowledgement.
    Nats,
    /// dynamo 1.6.1's default: a pooled TCP connection to the worker's
    /// request-plane listener.
    Tcp,
}

impl Plane {
    /// Instances of both planes share one etcd: each plane gets its own
    /// component, or a router would pick instances it cannot reach.
    fn component(self, what: &str) -> String {
        match self {
            Plane::Nats => format!("{what}-nats"),
            Plane::Tcp => format!("{what}-tcp"),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Plane::Nats => "dynamo, NATS request plane",
            Plane::Tcp => "dynamo, TCP plane (default)",
        }
    }
}

/// Where dynamo finds the servers that the benchmark started.
#[derive(Clone)]
pub struct Servers {
    pub etcd: String,
    pub nats: String,
}

/// A distributed runtime on the benchmark's tokio runtime. Each one is a
/// discovery instance of its own (its connection id, under its own lease).
pub async fn runtime(servers: &Servers, plane: Plane) -> DistributedRuntime {
    let etcd = etcd::ClientOptions {
        etcd_url: vec![servers.etcd.clone()],
        // Rotor's runtimes use 3 s too.
        lease_ttl: 3,
        ..etcd::ClientOptions::default()
    };
    // As dynamo's own settings do: NATS is connected only when something
    // needs it, and with the TCP plane and the ZMQ event plane nothing does.
    let (request_plane, nats_config) = match plane {
        Plane::Nats => (
            RequestPlaneMode::Nats,
            Some(nats::ClientOptions::builder().server(servers.nats.clone()).build().expect("NATS options")),
        ),
        Plane::Tcp => (RequestPlaneMode::Tcp, None),
    };
    let config = DistributedConfig {
        discovery_backend: DiscoveryBackend::KvStore(kv::Selector::Etcd(Box::new(etcd))),
        nats_config,
        request_plane,
        response_plane: None,
        event_transport_kind: EventTransportKind::Zmq,
    };
    let rt = Runtime::from_current().expect("a dynamo runtime on the current tokio runtime");
    DistributedRuntime::new(rt, config).await.expect("a dynamo distributed runtime")
}

struct Echo;

#[async_trait]
impl AsyncEngine<SingleIn<String>, ManyOut<Annotated<String>>, Error> for Echo {
    async fn generate(&self, input: SingleIn<String>) -> Result<ManyOut<Annotated<String>>, Error> {
        let (data, ctx) = input.into_parts();
        let once = futures::stream::iter([Annotated::from_data(data)]);
        Ok(ResponseStream::new(Box::pin(once), ctx.context()))
    }
}

struct Source;

#[async_trait]
impl AsyncEngine<SingleIn<u64>, ManyOut<Annotated<String>>, Error> for Source {
    async fn generate(&self, input: SingleIn<u64>) -> Result<ManyOut<Annotated<String>>, Error> {
        let (n, ctx) = input.into_parts();
        let item = "x".repeat(62);
        let items = futures::stream::iter((0..n).map(move |_| Annotated::from_data(item.clone())));
        Ok(ResponseStream::new(Box::pin(items), ctx.context()))
    }
}

/// Answers with the discovery instance it was served as.
struct Probe {
    instance: u64,
}

#[async_trait]
impl AsyncEngine<SingleIn<u64>, ManyOut<Annotated<u64>>, Error> for Probe {
    async fn generate(&self, input: SingleIn<u64>) -> Result<ManyOut<Annotated<u64>>, Error> {
        let (_, ctx) = input.into_parts();
        let once = futures::stream::iter([Annotated::from_data(self.instance)]);
        Ok(ResponseStream::new(Box::pin(once), ctx.context()))
    }
}

pub type EchoRouter = Arc<PushRouter<String, Annotated<String>>>;
pub type SourceRouter = Arc<PushRouter<u64, Annotated<String>>>;

/// Serves `echo` and `items` on `drt` and returns routers to them, once the
/// routers can see the instance.
pub async fn serve_and_connect(drt: &DistributedRuntime, plane: Plane) -> (EchoRouter, SourceRouter) {
    let component = drt.namespace(NAMESPACE).unwrap().component(plane.component("bench")).unwrap();
    let echo = component.endpoint("echo");
    let items = component.endpoint("items");
    // `start_with_registration` returns once the instance is in discovery;
    // the endpoints then live as long as the runtime.
    let _echo = echo
        .endpoint_builder()
        .handler(Ingress::for_engine(Arc::new(Echo)).unwrap())
        .start_with_registration()
        .await
        .expect("serve dynamo echo");
    let _items = items
        .endpoint_builder()
        .handler(Ingress::for_engine(Arc::new(Source)).unwrap())
        .start_with_registration()
        .await
        .expect("serve dynamo items");
    let echo_client = echo.client().await.unwrap();
    echo_client.wait_for_routable_instances().await.unwrap();
    let items_client = items.client().await.unwrap();
    items_client.wait_for_routable_instances().await.unwrap();
    let echo = PushRouter::from_client(echo_client, RouterMode::RoundRobin).await.unwrap();
    let items = PushRouter::from_client(items_client, RouterMode::RoundRobin).await.unwrap();
    (Arc::new(echo), Arc::new(items))
}

/// One unary call: the worker answers with a one-item stream, which is read
/// to its end.
pub async fn echo(router: &EchoRouter, text: String) -> String {
    let mut stream = router.round_robin(text.into()).await.expect("dynamo echo call");
    let mut answer = None;
    while let Some(item) = stream.next().await {
        assert!(item.error.is_none(), "dynamo echo failed: {:?}", item.error);
        answer = item.data.or(answer);
    }
    answer.expect("dynamo echo answered")
}

/// A stream of `n` items, counted as they arrive.
pub async fn stream(router: &SourceRouter, n: u64) -> Duration {
    let start = Instant::now();
    let mut stream = router.round_robin(n.into()).await.expect("dynamo stream call");
    let mut seen = 0;
    while let Some(item) = stream.next().await {
        assert_eq!(item.data.expect("an item").len(), 62);
        seen += 1;
    }
    assert_eq!(seen, n, "dynamo lost items");
    start.elapsed()
}

/// Serve a fresh instance, then call through a router until the instance
/// answers. The new instance's runtime (its etcd lease, and for the NATS
/// plane its NATS connection) is made before the clock starts, as Rotor's
/// lease is; creating the component (for the NATS plane, its NATS service),
/// serving the endpoint and registering it in etcd are inside it.
pub async fn registration_to_first_call(servers: &Servers, plane: Plane, rounds: usize) -> Vec<Duration> {
    let caller = runtime(servers, plane).await;
    let endpoint =
        caller.namespace(NAMESPACE).unwrap().component(plane.component("probe")).unwrap().endpoint("ping");
    let client = endpoint.client().await.unwrap();
    let router =
        PushRouter::<u64, Annotated<u64>>::from_client(client.clone(), RouterMode::RoundRobin).await.unwrap();
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let drt = runtime(servers, plane).await;
        let probe = Arc::new(Probe { instance: drt.connection_id() });
        let start = Instant::now();
        let component = drt.namespace(NAMESPACE).unwrap().component(plane.component("probe")).unwrap();
        let started = component
            .endpoint("ping")
            .endpoint_builder()
            .handler(Ingress::for_engine(probe).unwrap())
            .start_with_registration()
            .await
            .expect("serve dynamo probe");
        let id = started.instance().instance_id;
        loop {
            assert!(start.elapsed() < Duration::from_secs(10), "dynamo instance never reached");
            // Without this the loop would spin on "no instances" errors.
            client.wait_for_routable_instances().await.unwrap();
            if let Ok(mut answers) = router.round_robin(0u64.into()).await {
                let mut answered = None;
                while let Some(item) = answers.next().await {
                    answered = item.data.or(answered);
                }
                if answered == Some(id) {
                    break;
                }
            }
        }
        samples.push(start.elapsed());
        started.shutdown().await.unwrap();
        drt.shutdown();
        // Wait until the client no longer sees it, so the next round starts clean.
        let gone = Instant::now();
        while !client.instance_ids().is_empty() {
            assert!(gone.elapsed() < Duration::from_secs(10), "dynamo instance never left discovery");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    caller.shutdown();
    samples
}
