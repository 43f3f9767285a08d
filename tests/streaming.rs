//! Streaming endpoints, deadlines and size limits, on real etcd and
//! nats-server and in the embedded mode: each property runs on both.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use rotor::prelude::*;
use rotor::wire::ErrorKind;
use serde::{Deserialize, Serialize};
use support::Servers;
use tokio::sync::oneshot;

#[allow(dead_code)]
#[path = "../examples/streaming/tokens.rs"]
mod tokens;

const WAIT: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.unwrap_or_else(|_| panic!("{what} did not happen within {WAIT:?}"))
}

#[derive(Debug, Serialize, Deserialize, PartialEq, thiserror::Error)]
enum StreamError {
    #[error("failed at {0}")]
    FailedAt(u64),
}

/// Reports when the stream that owns it is dropped.
struct DropSignal(Option<oneshot::Sender<Instant>>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(Instant::now());
        }
    }
}

#[derive(Default)]
struct Numbers {
    produced: AtomicU64,
    dropped: Mutex<Option<oneshot::Sender<Instant>>>,
    cancelled: Mutex<Option<oneshot::Sender<()>>>,
}

#[rotor::component(namespace = "test.stream")]
impl Numbers {
    #[endpoint]
    async fn count(&self, n: u64) -> impl Stream<Item = Result<u64, StreamError>> {
        futures::stream::iter((0..n).map(Ok))
    }

    #[endpoint]
    async fn fail_at(&self, at: u64) -> impl Stream<Item = Result<u64, StreamError>> {
        futures::stream::iter((0..).map(move |i| if i == at { Err(StreamError::FailedAt(i)) } else { Ok(i) }))
    }

    /// Counts every item it produces; reports when it is dropped.
    #[endpoint]
    async fn endless(&self) -> impl Stream<Item = Result<u64, StreamError>> {
        let guard = DropSignal(self.dropped.lock().unwrap().take());
        async_stream::stream! {
            let _guard = guard;
            let mut i = 0;
            loop {
                self.produced.fetch_add(1, Ordering::SeqCst);
                yield Ok(i);
                i += 1;
            }
        }
    }

    #[endpoint]
    async fn big(&self, size: usize) -> impl Stream<Item = Result<String, StreamError>> {
        futures::stream::iter([Ok("small".to_string()), Ok("x".repeat(size))])
    }

    #[endpoint]
    async fn length(&self, text: String) -> impl Stream<Item = Result<usize, StreamError>> {
        futures::stream::iter([Ok(text.len())])
    }

    /// Never answers; work it spawned says when the context is cancelled.
    #[endpoint]
    async fn wait(&self, ctx: Context) -> Result<(), StreamError> {
        let tx = self.cancelled.lock().unwrap().take();
        tokio::spawn(async move {
            ctx.cancelled().await;
            if let Some(tx) = tx {
                let _ = tx.send(());
            }
        });
        std::future::pending().await
    }

    #[endpoint]
    async fn ids(&self, ctx: Context) -> Result<(String, String), StreamError> {
        Ok((ctx.request_id().to_string(), ctx.trace_id().to_string()))
    }
}

/// The runtimes a test runs on: the server's and the client's.
struct Setup {
    _servers: Option<Servers>,
    server: Runtime,
    client: Runtime,
}

impl Setup {
    async fn embedded(window: u32) -> Setup {
        let server = Runtime::builder().stream_window(window).build().await.unwrap();
        let client = server.with_new_lease().await.unwrap();
        Setup { _servers: None, server, client }
    }

    async fn distributed(window: u32) -> Setup {
        let servers = Servers::start();
        let server = servers.runtime().await;
        let client = servers.builder().stream_window(window).build().await.unwrap();
        Setup { _servers: Some(servers), server, client }
    }

    async fn serve(&self, numbers: Numbers) -> (rotor::ServeHandle<Numbers>, NumbersClient) {
        let handle = self.server.serve(numbers).await.unwrap();
        let client = Numbers::client(&self.client).await.unwrap();
        within("the server", client.core().wait_for_instances()).await.unwrap();
        (handle, client)
    }
}

async fn ten_thousand_items_arrive_complete_and_in_order(setup: Setup) {
    let (_h, client) = setup.serve(Numbers::default()).await;
    let mut stream = client.count(10_000).await.unwrap();
    let mut expected = 0;
    while let Some(item) = within("the next item", stream.next()).await {
        assert_eq!(item.unwrap(), expected);
        expected += 1;
    }
    assert_eq!(expected, 10_000);
    assert!(stream.next().await.is_none(), "the end is final");
}

async fn an_error_mid_stream_arrives_typed_then_the_stream_ends(setup: Setup) {
    let (h, client) = setup.serve(Numbers::default()).await;
    let mut stream = client.fail_at(5).await.unwrap();
    for i in 0..5 {
        assert_eq!(stream.next().await.unwrap().unwrap(), i);
    }
    let err = stream.next().await.unwrap().unwrap_err();
    assert_eq!(err.instance(), Some(h.instance_id()));
    assert_eq!(err.into_app().unwrap(), StreamError::FailedAt(5));
    assert!(stream.next().await.is_none());
}

async fn dropping_the_stream_cancels_the_work_within_100ms(setup: Setup) {
    let (dropped_tx, dropped_rx) = oneshot::channel();
    let numbers = Numbers { dropped: Mutex::new(Some(dropped_tx)), ..Numbers::default() };
    let (_h, client) = setup.serve(numbers).await;
    let mut stream = client.endless().await.unwrap();
    for i in 0..3 {
        assert_eq!(stream.next().await.unwrap().unwrap(), i);
    }
    let stopped = Instant::now();
    drop(stream);
    let dropped = within("the server's stream to be dropped", dropped_rx).await.unwrap();
    let after = dropped.saturating_duration_since(stopped);
    assert!(after < Duration::from_millis(100), "the handler saw the cancellation {after:?} after the drop");
}

/// A barrier: a round trip to the server, so that everything it was going
/// to do before has been done.
async fn round_trip(client: &NumbersClient) {
    client.ids().await.unwrap();
}

async fn a_slow_consumer_bounds_what_the_server_produces(setup: Setup, window: u64) {
    let (h, client) = setup.serve(Numbers::default()).await;
    let produced = || h.service().produced.load(Ordering::SeqCst);
    let mut stream = client.endless().await.unwrap();
    for _ in 0..3 {
        stream.next().await.unwrap().unwrap();
    }
    // The server fills the window, then waits for credit.
    within("the window to fill", async {
        while produced() < window {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    round_trip(&client).await;
    assert_eq!(produced(), window, "nothing beyond the window while the consumer is slow");

    // Consuming half a window grants that much credit, and no more is made.
    for _ in 3..window / 2 {
        stream.next().await.unwrap().unwrap();
    }
    within("the new credit to be used", async {
        while produced() < window + window / 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    round_trip(&client).await;
    assert_eq!(produced(), window + window / 2);
}

async fn a_missed_deadline_cancels_the_handler(setup: Setup) {
    let (cancelled_tx, cancelled_rx) = oneshot::channel();
    let numbers = Numbers { cancelled: Mutex::new(Some(cancelled_tx)), ..Numbers::default() };
    let (_h, client) = setup.serve(numbers).await;
    let started = Instant::now();
    let err = client.with_timeout(Duration::from_millis(300)).wait().await.unwrap_err();
    assert!(matches!(err.transport(), Some(TransportError::DeadlineExceeded { .. })), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    within("the handler to see its cancellation", cancelled_rx).await.unwrap();

    // A stream's deadline ends the stream with the same error.
    let mut stream = client.with_timeout(Duration::from_millis(300)).endless().await.unwrap();
    let last = within("the deadline", async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                other => break other,
            }
        }
    })
    .await;
    let err = last.expect("an error, not a bare end").unwrap_err();
    assert!(matches!(err.transport(), Some(TransportError::DeadlineExceeded { .. })), "{err:?}");
}

async fn oversize_items_and_requests_are_refused_with_the_limit(setup: Setup) {
    let (_h, client) = setup.serve(Numbers::default()).await;
    let limit = setup.client.transport().max_payload();
    let mut stream = client.big(limit + 1).await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap(), "small");
    let err = stream.next().await.unwrap().unwrap_err();
    match err.transport() {
        Some(TransportError::Remote { kind: ErrorKind::Oversize, code: 413, message, .. }) => {
            assert!(message.contains(&limit.to_string()), "{message}")
        }
        other => panic!("expected an oversize item, got {other:?}"),
    }
    assert!(stream.next().await.is_none());

    // A request goes in chunks where one message would be too large: its
    // limit is the largest message the transport carries that way.
    let request_limit = setup.client.transport().max_message();
    let err = client.length("y".repeat(request_limit + 1)).await.unwrap_err();
    match err.transport() {
        Some(TransportError::Oversize { limit: l, what, .. }) => {
            assert_eq!((*l, what.as_str()), (request_limit, "request"))
        }
        other => panic!("expected an oversize request, got {other:?}"),
    }
    let mut ok = client.length("fine".into()).await.unwrap();
    assert_eq!(ok.next().await.unwrap().unwrap(), 4);
}

async fn early_errors_and_context_propagation(setup: Setup) {
    let _h = setup.server.serve(tokens::Generator).await.unwrap();
    let client = tokens::Generator::client(&setup.client).await.unwrap();
    within("the server", client.core().wait_for_instances()).await.unwrap();
    let empty = tokens::Prompt { text: String::new(), repeat: 1, pause_ms: 0 };
    let err = client.generate(empty).await.unwrap_err();
    assert_eq!(err.into_app().unwrap(), tokens::GenerateError::EmptyPrompt);

    let (_n, numbers) = setup.serve(Numbers::default()).await;
    let (first_id, first_trace) = numbers.ids().await.unwrap();
    let (second_id, second_trace) = numbers.ids().await.unwrap();
    assert_eq!(first_id.len(), 16);
    assert_eq!(first_trace.len(), 32);
    assert_ne!(first_id, second_id, "each call outside a handler starts a new request");
    assert_ne!(first_trace, second_trace);
}

macro_rules! on_both {
    ($($name:ident $(($arg:expr))?),* $(,)?) => {
        mod embedded {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(Setup::embedded(16).await $(, $arg)?).await;
                }
            )*
        }
        mod nats {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(Setup::distributed(16).await $(, $arg)?).await;
                }
            )*
        }
    };
}

on_both! {
    ten_thousand_items_arrive_complete_and_in_order,
    an_error_mid_stream_arrives_typed_then_the_stream_ends,
    dropping_the_stream_cancels_the_work_within_100ms,
    a_slow_consumer_bounds_what_the_server_produces(16),
    a_missed_deadline_cancels_the_handler,
    oversize_items_and_requests_are_refused_with_the_limit,
    early_errors_and_context_propagation,
}

/// A handler's calls carry its request id and trace id on.
#[tokio::test]
async fn calls_made_by_a_handler_carry_its_request_and_trace_ids() {
    struct Front;

    #[rotor::component(namespace = "test.stream")]
    impl Front {
        #[endpoint]
        async fn relay(&self, ctx: Context) -> Result<[(String, String); 2], StreamError> {
            let rt = RUNTIME.get().expect("set before serving").clone();
            let numbers = Numbers::client(&rt).await.unwrap();
            let downstream = numbers.ids().await.unwrap();
            Ok([(ctx.request_id().to_string(), ctx.trace_id().to_string()), downstream])
        }
    }

    static RUNTIME: std::sync::OnceLock<Runtime> = std::sync::OnceLock::new();
    let servers = Servers::start();
    let rt = servers.runtime().await;
    RUNTIME.set(rt.clone()).unwrap();
    let _numbers = rt.serve(Numbers::default()).await.unwrap();
    let _front = rt.serve(Front).await.unwrap();
    let client = Front::client(&rt).await.unwrap();
    let [front, downstream] = client.relay().await.unwrap();
    assert_eq!(front, downstream, "the same request id and trace id downstream");
}

/// A call made outside any handler sends its trace only when its
/// `rotor.call` span is recorded, so that the trace ids on both sides match;
/// otherwise the server starts the trace.
#[tokio::test]
async fn a_root_call_sends_its_trace_only_when_its_span_is_recorded() {
    struct Traced;

    #[rotor::component(namespace = "test.trace")]
    impl Traced {
        #[endpoint]
        async fn seen(&self, ctx: &Context) -> Result<(Option<String>, String), StreamError> {
            let sent = ctx.headers().get("traceparent").map(str::to_string);
            Ok((sent, ctx.trace_id().to_string()))
        }
    }

    let servers = Servers::start();
    let rt = servers.runtime().await;
    let _server = rt.serve(Traced).await.unwrap();
    let client = Traced::client(&rt).await.unwrap();
    client.core().wait_for_instances().await.unwrap();

    let (sent, trace_id) = client.seen().await.unwrap();
    assert_eq!(sent, None, "no subscriber records the call's span, so no trace is sent");
    assert_eq!(trace_id.len(), 32, "the server started a trace of its own: {trace_id}");

    let recorded = {
        use tracing_subscriber::util::SubscriberInitExt;
        tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::DEBUG)
            .with_writer(std::io::sink)
            .finish()
            .set_default()
    };
    let (sent, trace_id) = client.seen().await.unwrap();
    drop(recorded);
    let sent = sent.expect("a recorded call sends its traceparent");
    assert_eq!(sent.split('-').nth(1), Some(trace_id.as_str()), "the server continues the caller's trace");
}

/// The serving process dies mid-stream: the caller's stream ends with a
/// transport error within three heartbeats, and does not hang.
#[tokio::test]
async fn sigkill_of_the_server_mid_stream_ends_the_stream_with_an_error() {
    let servers = Servers::start();
    let mut child = Command::new(support::example("streaming"))
        .arg("serve")
        .envs(servers.env())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the streaming example");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("serving llm_generator"), "{line:?}");

    let heartbeat = Duration::from_millis(200);
    let rt = servers.builder().stream_heartbeat(heartbeat).build().await.unwrap();
    let client = tokens::Generator::client(&rt).await.unwrap();
    within("the server", client.core().wait_for_instances()).await.unwrap();
    let endless = tokens::Prompt { text: "on and on".into(), repeat: 0, pause_ms: 2 };
    let mut stream = client.generate(endless).await.unwrap();
    for _ in 0..5 {
        stream.next().await.unwrap().unwrap();
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = Instant::now();
    let err = within("the stream to end", async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => break e,
                None => panic!("the stream ended without an error"),
            }
        }
    })
    .await;
    let after = killed.elapsed();
    assert!(matches!(err.transport(), Some(TransportError::Disconnected(_))), "{err:?}");
    assert!(after < heartbeat * 3 + Duration::from_millis(500), "took {after:?}");
    assert!(stream.next().await.is_none());
}

/// The byte window bounds what a server sends ahead, whatever the item
/// window allows. Items 0 to 9 count 5 bytes each (a 4-byte length and one
/// digit); the window is 40 bytes.
#[tokio::test]
async fn the_byte_window_bounds_the_bytes_in_flight() {
    let transport = std::sync::Arc::new(rotor::transport::InProcess::new());
    let discovery = std::sync::Arc::new(rotor::discovery::MemoryDiscovery::new());
    let server_rt =
        Runtime::builder().transport(transport.clone()).discovery(discovery.clone()).build().await.unwrap();
    let client_rt = Runtime::builder()
        .transport(transport)
        .discovery(discovery)
        .stream_window(10_000)
        .stream_window_bytes(40)
        .build()
        .await
        .unwrap();
    let handle = server_rt.serve(Numbers::default()).await.unwrap();
    let produced = || handle.service().produced.load(Ordering::SeqCst);
    let client = Numbers::client(&client_rt).await.unwrap();
    let mut stream = client.endless().await.unwrap();

    // 8 items use the 40 bytes; the server stops there.
    stream.next().await.unwrap().unwrap();
    round_trip(&client).await;
    assert_eq!(produced(), 8);

    // Consuming a quarter of the window (2 items, 10 bytes) grants 10 bytes:
    // 2 more items.
    stream.next().await.unwrap().unwrap();
    within("the credit to be used", async {
        while produced() < 10 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    round_trip(&client).await;
    assert_eq!(produced(), 10, "nothing beyond the window");
}

/// When the caller's side fails a stream (here an item that does not decode
/// as the type it expects), it tells the server to stop at once instead of
/// leaving it to notice the silence three heartbeats later.
#[tokio::test]
async fn a_stream_failed_by_the_caller_cancels_the_server() {
    let (dropped_tx, dropped_rx) = oneshot::channel();
    let rt = Runtime::embedded().await.unwrap();
    let numbers = Numbers { dropped: Mutex::new(Some(dropped_tx)), ..Numbers::default() };
    let _server = rt.serve(numbers).await.unwrap();
    let core = rt.namespace("test.stream").unwrap().component("numbers").unwrap();
    let endless = core.endpoint("endless").unwrap().client().await.unwrap();
    use rotor::__private_0_1::{Format, call_stream, error_codec, request_codec, response_codec};
    // `endless` yields numbers; this caller expects strings.
    let codecs = (
        request_codec::<()>(Format::Json),
        response_codec::<String>(Format::Json),
        error_codec::<StreamError>(),
    );
    let mut stream = call_stream(&endless, 0, &(), codecs).await.unwrap();
    let failed = Instant::now();
    let err = stream.next().await.unwrap().unwrap_err();
    assert!(matches!(err.transport(), Some(TransportError::Decode { .. })), "{err:?}");
    let dropped = within("the server's stream to be dropped", dropped_rx).await.unwrap();
    let after = dropped.saturating_duration_since(failed);
    assert!(after < Duration::from_millis(500), "the server stopped {after:?} later, not at once");
}

#[tokio::test]
async fn a_stream_request_whose_inbox_is_not_an_inbox_is_refused() {
    let rt = Runtime::embedded().await.unwrap();
    let server = rt.serve(Numbers::default()).await.unwrap();
    // A caller that asks the server to publish its stream on `$SRV.PING`.
    let mut request = rotor::wire::Message::request(bytes::Bytes::new(), None);
    request.headers.insert(rotor::wire::header::STREAM_INBOX, "$SRV.PING");
    request.headers.insert(rotor::wire::header::STREAM_WINDOW, "10 1000");
    let reply =
        rt.transport().request(Numbers::ENDLESS_SUBJECT, request, Duration::from_secs(5)).await.unwrap();
    assert_eq!(reply.error_kind(), Some(ErrorKind::Decode));
    let text = reply.headers.get(rotor::wire::header::SERVICE_ERROR).unwrap();
    assert!(text.contains("is not an inbox"), "{text}");
    assert_eq!(server.service().produced.load(Ordering::Relaxed), 0, "the handler never ran");
}
