//! From a request the transport delivered to the handler's outcome on its
//! way back: the work of one request, with its deadline, its cancellation,
//! its panic guard and its metrics, started where the transport says.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tracing::Instrument;

use super::Handle;
use crate::component::Request;
use crate::context::{Parts, ServedEndpoint};
use crate::engine::discovery::LeaseState;
use crate::engine::transport::{Incoming, Start, Transport};
use crate::exchange::sink::{Answer, Outcome, ReplySink, StreamSlot};
use crate::exchange::stream::StreamSetup;
use crate::exchange::trace::with_trace;
use crate::wire::Message;
use crate::{Context, ErrorKind};

pub(super) struct Dispatcher {
    handle: Handle,
    /// The current instance id: a replaced lease changes it.
    lease: watch::Receiver<LeaseState>,
    endpoints: Vec<Arc<ServedEndpoint>>,
    work: Work,
    /// Keeps the listening tracker from counting as done while the
    /// transport can still dispatch: it goes with the last copy of the
    /// dispatcher.
    _listening: TaskTrackerToken,
    transport: Arc<dyn Transport>,
    span: tracing::Span,
}

/// What a served component's requests are doing, shared by its dispatcher
/// and its handle.
#[derive(Clone, Default)]
pub(super) struct Work {
    /// The handlers' tasks.
    pub tracker: TaskTracker,
    /// Done when the transport let go of the dispatcher.
    pub listening: TaskTracker,
    pub in_flight: Arc<AtomicUsize>,
    /// Set when a graceful shutdown starts: from then on, requests are
    /// refused unrun, so that their callers may send them elsewhere.
    pub draining: Arc<AtomicBool>,
}

impl Dispatcher {
    pub(super) fn new(
        handle: Handle,
        lease: watch::Receiver<LeaseState>,
        endpoints: Vec<Arc<ServedEndpoint>>,
        work: &Work,
        transport: Arc<dyn Transport>,
        span: tracing::Span,
    ) -> Self {
        Dispatcher {
            handle,
            lease,
            endpoints,
            _listening: work.listening.token(),
            work: work.clone(),
            transport,
            span,
        }
    }

    /// Starts the work of answering one request where `start` says.
    pub(super) fn dispatch(&self, incoming: Incoming, start: Start) {
        let Incoming { endpoint, addressed, mut message, responder, peer } = incoming;
        let instance = self.lease.borrow().id;
        let transport = peer.as_ref().unwrap_or(&self.transport);
        let answer = Answer::new(responder, instance, addressed, transport.max_message());
        if self.work.draining.load(Ordering::Relaxed) {
            // A probe too: a draining instance is not back in rotation.
            let reply =
                Message::error(ErrorKind::Refused, "the instance is shutting down; the request did not run");
            return start_untracked(start, ReplySink::Unary(answer).finish(Outcome::Reply(reply)));
        }
        if message.is_probe() {
            // The answer is the evidence: this instance listens and its
            // runtime runs. Nothing else is read from a probe.
            return start_untracked(
                start,
                ReplySink::Unary(answer).finish(Outcome::Reply(Message::default())),
            );
        }
        let Some(served) = self.endpoints.get(endpoint) else {
            let reply = Message::error(ErrorKind::UnknownEndpoint, "no such endpoint");
            return start_untracked(start, ReplySink::Unary(answer).finish(Outcome::Reply(reply)));
        };
        let timeout = match message.check_version().and_then(|()| message.open_envelope()) {
            Ok(timeout) => timeout,
            Err(version) => {
                let text =
                    format!("wire format version {version} is not supported; this server speaks version 1");
                let reply = Message::error(ErrorKind::Decode, &text);
                return start_untracked(start, ReplySink::Unary(answer).finish(Outcome::Reply(reply)));
            }
        };
        // Over NATS a larger request was refused from its head; over the
        // direct plane the frame limit bounded what was read.
        if message.payload.len() > served.max_request {
            let reply = Message::error(
                ErrorKind::Oversize,
                &crate::engine::transport::too_large(message.payload.len(), served.max_request),
            );
            return start_untracked(start, ReplySink::Unary(answer).finish(Outcome::Reply(reply)));
        }
        // Only a streaming endpoint reads the stream headers.
        let setup = match served.streaming.then(|| StreamSetup::from_headers(&message.headers, transport)) {
            None | Some(Ok(None)) => None,
            Some(Ok(Some(setup))) => Some(setup),
            Some(Err(text)) => {
                let reply = Message::error(ErrorKind::Decode, &text);
                return start_untracked(start, ReplySink::Unary(answer).finish(Outcome::Reply(reply)));
            }
        };
        let arrived = Instant::now();
        let metrics = &served.metrics;
        metrics.inflight.inc();
        metrics.request_bytes.inc_by(message.payload.len() as u64);
        let (sink, stream) = match setup {
            Some(setup) => {
                let slot = StreamSlot::new(answer, setup);
                (ReplySink::Stream(slot.clone()), Some(slot))
            }
            None => (ReplySink::Unary(answer), None),
        };
        let parts = Parts {
            instance,
            endpoint: served.clone(),
            deadline: timeout.map(|t| arrived + t),
            headers: message.headers,
        };
        let ctx = Context::new(parts);
        let streaming = stream.is_some();
        let request = Request { ctx: ctx.clone(), payload: message.payload, stream };
        let handler = (self.handle)(endpoint, request);
        let span = tracing::info_span!(
            parent: &self.span,
            "rotor.request",
            namespace = ctx.namespace(),
            component = ctx.component(),
            endpoint = ctx.endpoint(),
            instance = %instance,
            request_id = ctx.request_id(),
            trace_id = ctx.trace_id(),
        );
        let in_flight = self.work.in_flight.clone();
        in_flight.fetch_add(1, Ordering::SeqCst);
        let work = async move {
            let outcome = with_trace(ctx.trace().clone(), run_handler(handler, &ctx, streaming)).await;
            let metrics = ctx.metrics();
            metrics.inflight.dec();
            metrics.requests.inc();
            metrics.duration.observe(arrived.elapsed().as_secs_f64());
            if let Outcome::Reply(reply) = &outcome {
                if let Some(kind) = reply.error_kind() {
                    metrics.error(kind.as_str());
                    if matches!(kind, ErrorKind::Deadline | ErrorKind::Unavailable) {
                        metrics.cancellations.inc();
                    }
                }
                metrics.response_bytes.inc_by(reply.payload.len() as u64);
            }
            sink.finish(outcome).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
        };
        let work = work.instrument(span);
        // A stream's first poll would encode and send its whole first
        // window of items in the caller's task: it starts on a task.
        match start {
            Start::HereFirst if !streaming => here_first(Box::pin(self.work.tracker.track_future(work))),
            _ => drop(self.work.tracker.spawn(work)),
        }
    }
}

/// Starts an answer that runs no handler (a refusal, a probe's answer, an
/// error before the handler), which shutdown does not wait for.
fn start_untracked(start: Start, work: impl Future<Output = ()> + Send + 'static) {
    match start {
        Start::OnTask => drop(tokio::spawn(work)),
        Start::HereFirst => here_first(Box::pin(work)),
    }
}

/// Polls `work` once here, in the caller's task, and gives it a task of its
/// own only if it is not done: a handler that answers at its first poll
/// costs no task, no wake-up and no timer. Safe, because a caller cannot
/// give up within a poll: a call dropped later leaves the work running on
/// its task, as a NATS caller that gives up leaves its server running.
/// Polled with a waker that does nothing; the task polls it again at its
/// start, which registers its own.
///
/// Calls made from a handler polled here nest on this thread's stack, so
/// past [`NESTED_MAX`] levels the work goes to a task at once. A panic that
/// escapes the handler's own guard (a `Drop` of its state, say) ends this
/// request's work, as it would end its task, not the caller.
fn here_first(mut work: Pin<Box<dyn Future<Output = ()> + Send + 'static>>) {
    let depth = NESTED.get();
    if depth >= NESTED_MAX {
        tokio::spawn(work);
        return;
    }
    NESTED.set(depth + 1);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let polled = std::panic::catch_unwind(AssertUnwindSafe(|| work.as_mut().poll(&mut cx)));
    NESTED.set(depth);
    match polled {
        Ok(std::task::Poll::Pending) => drop(tokio::spawn(work)),
        Ok(std::task::Poll::Ready(())) => {}
        Err(_) => {
            tracing::error!("a request's work panicked outside its handler; the request is not answered")
        }
    }
}

/// How deep in-process calls polled in their caller's task may nest.
const NESTED_MAX: u32 = 8;

thread_local! {
    /// How many [`here_first`] polls this thread is inside.
    static NESTED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Runs a handler until it finishes, panics, passes its deadline, or is
/// cancelled; each ending gives an outcome.
async fn run_handler(handler: BoxFuture<'static, Outcome>, ctx: &Context, streaming: bool) -> Outcome {
    // Boxed: a timer is 128-byte aligned, which would make every request's
    // task a costly aligned allocation; the box is made only for a handler
    // that does not finish at its first poll.
    let deadline = async {
        match ctx.deadline() {
            Some(d) => Box::pin(tokio::time::sleep_until(d.into())).await,
            None => std::future::pending().await,
        }
    };
    // A unary request is cancelled only by its deadline (below) or by
    // shutdown; a stream also by its caller, through the request's token.
    let cancelled = async {
        match streaming {
            true => ctx.cancelled().await,
            false => ctx.shutdown().await,
        }
    };
    let failure = |kind: ErrorKind, text: &str| Outcome::Reply(Message::error(kind, text));
    tokio::select! {
        biased;
        outcome = AssertUnwindSafe(handler).catch_unwind() => match outcome {
            Ok(outcome) => outcome,
            Err(panic) => {
                let text = panic_message(&panic);
                tracing::error!(endpoint = ctx.endpoint(), panic = %text, "handler panicked");
                failure(ErrorKind::Panic, &format!("the handler panicked: {text}"))
            }
        },
        () = deadline => {
            ctx.cancel_token().cancel();
            failure(ErrorKind::Deadline, "the request's deadline passed; the handler was cancelled")
        }
        () = cancelled => {
            failure(ErrorKind::Unavailable, "the instance shut down before the handler finished")
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}
