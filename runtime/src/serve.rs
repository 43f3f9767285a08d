//! Hosting: bind the transport, register in discovery, dispatch requests to
//! the component, and on shutdown undo it all in the opposite order while
//! the requests already accepted finish.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::context::{Parts, ServedEndpoint, StreamSetup, with_trace};
use crate::discovery::{InstanceRecord, TransportAddress};
use crate::metrics::EndpointMetrics;
use crate::transport::{EndpointSpec, Incoming, ServiceSpec};
use crate::wire::{ErrorKind, Message, header};
use crate::{Context, Error, Guard, InstanceId, Runtime, Service, names};

/// A served component. It serves until [`shutdown`](ServeHandle::shutdown)
/// or until it is dropped.
///
/// Dropping it leaves discovery and stops taking requests at once; requests
/// already accepted still run to completion in the background. `shutdown`
/// does the same and then waits for them, up to the runtime's drain timeout.
#[must_use = "the component stops serving when the handle is dropped"]
pub struct ServeHandle<S> {
    service: Arc<S>,
    instance: InstanceId,
    registrations: Vec<Guard>,
    binding: Option<Guard>,
    _claim: Guard,
    _health: Guard,
    draining: Arc<std::sync::atomic::AtomicBool>,
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    scraper: Option<JoinHandle<()>>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    rt: Runtime,
}

/// What a graceful shutdown did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutdownReport {
    /// `true` when every accepted request finished within the drain timeout;
    /// `false` when the rest were cancelled.
    pub drained: bool,
}

impl<S: Service> ServeHandle<S> {
    /// The instance id this component is served under: the runtime's lease
    /// id, which changes only when a lost lease is replaced.
    pub fn instance_id(&self) -> InstanceId {
        self.rt.instance_id()
    }

    /// The served value.
    pub fn service(&self) -> &Arc<S> {
        &self.service
    }

    /// Requests being handled right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Leaves discovery, stops taking requests, and waits for the accepted
    /// ones up to the drain timeout; past it, cancels the rest.
    pub async fn shutdown(mut self) -> ShutdownReport {
        self.draining.store(true, std::sync::atomic::Ordering::Relaxed);
        self.registrations.clear();
        self.binding.take();
        let drain = self.rt.config().drain_timeout;
        self.tracker.close();
        // Waits for the transport to let go of the dispatcher (everything it
        // received is handed over) and for every handler.
        let drained = tokio::time::timeout(drain, self.tracker.wait()).await.is_ok();
        if !drained {
            tracing::warn!(service = S::DESCRIPTOR.service, instance = %self.instance, ?drain,
                remaining = self.tracker.len(), "drain timeout passed; cancelling the remaining requests");
            self.cancel.cancel();
            self.tracker.wait().await;
        }
        ShutdownReport { drained }
    }
}

impl<S> Drop for ServeHandle<S> {
    fn drop(&mut self) {
        // Order matters: leave routing before unsubscribing, so that no
        // client picks an instance that no longer listens.
        self.registrations.clear();
        self.binding.take();
        if let Some(scraper) = self.scraper.take() {
            scraper.abort();
        }
    }
}

pub(crate) async fn serve<S: Service>(rt: &Runtime, service: Arc<S>) -> Result<ServeHandle<S>, Error> {
    let desc = S::DESCRIPTOR;
    let claim = rt.claim(desc.service)?;
    let instance = rt.instance_id();
    let engines = rt.engines();
    let lease = if desc.is_static { None } else { rt.lease() };
    let discovered = lease.is_some();
    let server_metrics = engines.metrics.server(desc);
    let metrics: Arc<[EndpointMetrics]> =
        desc.endpoints.iter().map(|ep| server_metrics.endpoint(ep.name)).collect();
    let stats: crate::transport::StatsData = {
        let (metrics, service) = (metrics.clone(), Arc::downgrade(&service));
        Arc::new(move |number| {
            let extra = service.upgrade().and_then(|s| s.extra_stats());
            metrics
                .get(number)
                .map(|m| serde_json::to_value(m.data(extra)).unwrap_or_default())
                .unwrap_or_default()
        })
    };

    let spec = ServiceSpec {
        name: desc.service.to_string(),
        namespace: desc.namespace.to_string(),
        component: desc.name.to_string(),
        version: desc.version.to_string(),
        instance,
        endpoints: desc
            .endpoints
            .iter()
            .map(|ep| {
                let mut subjects = vec![ep.subject.to_string()];
                if discovered {
                    subjects.push(names::instance_subject(desc.service, ep.name, instance.0));
                }
                EndpointSpec {
                    name: ep.name.to_string(),
                    subjects,
                    request_type: ep.request.to_string(),
                    response_type: ep.response.to_string(),
                }
            })
            .collect(),
        stats,
    };
    let tracker = TaskTracker::new();
    let cancel = CancellationToken::new();
    let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let dispatcher = Arc::new(Dispatcher {
        service: service.clone(),
        lease: rt.lease_changes(),
        endpoints: desc
            .endpoints
            .iter()
            .zip(metrics.iter())
            .map(|(ep, metrics)| {
                let names = [desc.namespace.into(), desc.name.into(), ep.name.into()];
                Arc::new(ServedEndpoint { names, metrics: metrics.clone(), shutdown: cancel.clone() })
            })
            .collect(),
        tracker: tracker.clone(),
        // Keeps the tracker from counting as drained while the transport
        // can still dispatch: it goes with the last copy of the closure.
        _listening: tracker.token(),
        transport: engines.transport.clone(),
        span: tracing::info_span!("serve", namespace = desc.namespace, component = desc.name, instance = %instance),
        in_flight: in_flight.clone(),
    });
    let dispatch: crate::transport::Dispatch = Arc::new(move |incoming| dispatcher.dispatch(incoming));

    // Listen first, register second: a client must never find an instance
    // that cannot answer yet.
    let guard = engines.transport.bind(spec.clone(), dispatch).await?;

    let mut registrations = Vec::new();
    if let Some(lease) = lease {
        for (ep, ep_spec) in desc.endpoints.iter().zip(&spec.endpoints) {
            let record = InstanceRecord {
                namespace: desc.namespace.to_string(),
                component: desc.name.to_string(),
                endpoint: ep.name.to_string(),
                instance_id: instance,
                transport: TransportAddress::NatsTcp(ep_spec.subjects[1].clone()),
            };
            registrations.push(lease.register(record).await?);
        }
    }
    tracing::info!(namespace = desc.namespace, component = desc.name, instance = %instance,
        endpoints = desc.endpoints.len(), "serving");

    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let endpoint_names: Vec<&str> = desc.endpoints.iter().map(|ep| ep.name).collect();
    let health = engines.health.add(
        desc.namespace,
        desc.name,
        &endpoint_names,
        rt.lease_changes(),
        discovered,
        draining.clone(),
    );
    let scraper = engines.config.stats_scrape_interval.map(|interval| {
        let rt = rt.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                let wait = (interval / 2).min(Duration::from_secs(1));
                match rt.transport().scrape_stats(desc.service.to_string(), wait).await {
                    Ok(stats) => rt.metrics().nats_service.record(desc.service, &stats),
                    Err(e) => tracing::debug!(error = %e, "$SRV.STATS scrape failed"),
                }
            }
        })
    });

    Ok(ServeHandle {
        in_flight,
        _health: health,
        draining,
        scraper,
        service,
        instance,
        registrations,
        binding: Some(guard),
        _claim: claim,
        tracker,
        cancel,
        rt: rt.clone(),
    })
}

struct Dispatcher<S> {
    service: Arc<S>,
    /// The current instance id: a replaced lease changes it.
    lease: tokio::sync::watch::Receiver<crate::discovery::LeaseState>,
    endpoints: Vec<Arc<ServedEndpoint>>,
    tracker: TaskTracker,
    _listening: tokio_util::task::task_tracker::TaskTrackerToken,
    transport: Arc<dyn crate::transport::Transport>,
    span: tracing::Span,
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
}

impl<S: Service> Dispatcher<S> {
    /// Starts a task for one request.
    fn dispatch(&self, incoming: Incoming) {
        let Incoming { endpoint, addressed, mut message, responder } = incoming;
        {
            let Some(served) = self.endpoints.get(endpoint) else {
                let reply = Message::error(ErrorKind::UnknownEndpoint, "no such endpoint");
                tokio::spawn(responder.respond(reply));
                return;
            };
            let timeout = match message.check_version().and_then(|()| message.open_envelope()) {
                Ok(timeout) => timeout,
                Err(version) => {
                    let text = format!(
                        "wire format version {version} is not supported; this server speaks version 1"
                    );
                    tokio::spawn(responder.respond(Message::error(ErrorKind::Decode, &text)));
                    return;
                }
            };
            let arrived = Instant::now();
            let metrics = &served.metrics;
            metrics.inflight.inc();
            metrics.request_bytes.inc_by(message.payload.len() as u64);
            let deadline = timeout.map(|t| arrived + t);
            let instance = self.lease.borrow().id;
            let window = message
                .headers
                .get(header::STREAM_WINDOW)
                .and_then(crate::stream::parse_pair)
                .unwrap_or((1, 1));
            let stream = message.headers.get(header::STREAM_INBOX).map(|inbox| StreamSetup {
                inbox: inbox.to_string(),
                window: window.0.clamp(1, u64::from(u32::MAX)) as u32,
                window_bytes: window.1.max(1),
                heartbeat: crate::stream::clamp_heartbeat(
                    message
                        .headers
                        .get(header::STREAM_HEARTBEAT_MS)
                        .and_then(|h| h.parse().ok())
                        .map(Duration::from_millis)
                        .unwrap_or(crate::stream::DEFAULT_HEARTBEAT),
                ),
                transport: self.transport.clone(),
            });
            let parts =
                Parts { instance, endpoint: served.clone(), deadline, headers: message.headers, stream };
            let ctx = Context::new(parts, responder);
            let handler = S::handle(self.service.clone(), endpoint, ctx.clone(), message.payload);
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
            let transport = self.transport.clone();
            let in_flight = self.in_flight.clone();
            in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let work = async move {
                let reply = with_trace(ctx.trace().clone(), run_handler(handler, &ctx)).await;
                let metrics = ctx.metrics();
                metrics.inflight.dec();
                metrics.requests.inc();
                metrics.duration.observe(arrived.elapsed().as_secs_f64());
                if let Some(kind) = reply.error_kind() {
                    metrics.error(kind.as_str());
                    if matches!(kind, ErrorKind::Deadline | ErrorKind::Unavailable) {
                        metrics.cancellations.inc();
                    }
                }
                if !crate::stream::is_done(&reply) {
                    metrics.response_bytes.inc_by(reply.payload.len() as u64);
                }
                finish(&ctx, reply, addressed, &*transport).await;
                in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            };
            self.tracker.spawn(work.instrument(span));
        }
    }
}

/// Sends a handler's outcome: as the reply, or, when a stream was already
/// accepted, as the stream's last message.
async fn finish(
    ctx: &Context,
    mut reply: Message,
    addressed: bool,
    transport: &dyn crate::transport::Transport,
) {
    let max_payload = transport.max_payload();
    // A caller that addressed this instance knows who answers; a success
    // then goes without any header, the cheapest reply there is.
    if !addressed || reply.error_kind().is_some() {
        reply.headers.insert(header::INSTANCE, ctx.instance_id().to_string());
    }
    if reply.size() > max_payload {
        let text = format!(
            "the response is {} bytes, over the transport's limit of {max_payload} bytes (max_payload)",
            reply.size()
        );
        reply = Message::error(ErrorKind::Oversize, &text);
        reply.headers.insert(header::INSTANCE, ctx.instance_id().to_string());
    }
    match ctx.take_responder() {
        Some(responder) => {
            if let Err(e) = responder.respond(reply).await {
                tracing::warn!(error = %e, "could not send a reply");
            }
        }
        None if crate::stream::is_done(&reply) => {}
        None => {
            // The stream was cut short (deadline, shutdown, panic): tell the caller.
            if let Some(setup) = ctx.stream_setup() {
                let _ = transport.publish(setup.inbox.clone(), crate::stream::terminal(reply)).await;
            }
        }
    }
}

/// Runs a handler until it finishes, panics, passes its deadline, or is
/// cancelled by shutdown; each ending gives a reply.
async fn run_handler(handler: futures::future::BoxFuture<'static, Message>, ctx: &Context) -> Message {
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
        match ctx.stream_setup() {
            Some(_) => ctx.cancelled().await,
            None => ctx.shutdown().await,
        }
    };
    tokio::select! {
        biased;
        outcome = AssertUnwindSafe(handler).catch_unwind() => match outcome {
            Ok(reply) => reply,
            Err(panic) => {
                let text = panic_message(&panic);
                tracing::error!(endpoint = ctx.endpoint(), panic = %text, "handler panicked");
                Message::error(ErrorKind::Internal, &format!("the handler panicked: {text}"))
            }
        },
        () = deadline => {
            ctx.cancel_token().cancel();
            Message::error(ErrorKind::Deadline, "the request's deadline passed; the handler was cancelled")
        }
        () = cancelled => {
            Message::error(ErrorKind::Unavailable, "the instance shut down before the handler finished")
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
