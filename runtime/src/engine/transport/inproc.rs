//! The in-process transport of the embedded mode.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::{self, BoxFuture};
use futures::stream::BoxStream;
use tokio::sync::{mpsc, oneshot};

use super::message::Message;
use super::{Dispatch, Incoming, Respond, ServiceSpec, Start, Transport, within_limit};
use crate::engine::micro::stats::ServiceStats;
use crate::engine::micro::{Counters, MicroService};
use crate::{Error, Guard, TransportError};

/// NATS's default `max_payload`; the embedded mode enforces the same limit
/// so that code tested here does not fail for the first time on a server.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// Requests and replies through channels inside this process, with NATS's
/// semantics: queue groups, "no responders", a payload limit.
#[derive(Clone)]
pub struct InProcess {
    inner: Arc<Inner>,
}

struct Inner {
    subjects: Mutex<HashMap<String, Vec<Subscriber>>>,
    /// Plain subscriptions (inboxes), by subject.
    plain: Mutex<HashMap<String, Vec<Inbox>>>,
    services: Mutex<Vec<Arc<MicroService>>>,
    next_id: AtomicU64,
    max_payload: usize,
    /// Never changes: an in-process connection cannot be lost.
    losses: tokio::sync::watch::Sender<u64>,
}

/// A plain subscription: its id and where its messages go.
type Inbox = (u64, mpsc::UnboundedSender<Message>);

#[derive(Clone)]
struct Subscriber {
    id: u64,
    endpoint: usize,
    dispatch: Dispatch,
    addressed: bool,
    counters: Arc<Counters>,
}

impl Default for InProcess {
    fn default() -> Self {
        Self::with_max_payload(DEFAULT_MAX_PAYLOAD)
    }
}

impl InProcess {
    /// A transport with NATS's default payload limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// A transport with the given payload limit, in bytes.
    pub fn with_max_payload(max_payload: usize) -> Self {
        InProcess {
            inner: Arc::new(Inner {
                subjects: Mutex::default(),
                plain: Mutex::default(),
                services: Mutex::default(),
                next_id: AtomicU64::new(1),
                max_payload,
                losses: tokio::sync::watch::Sender::new(0),
            }),
        }
    }

    fn subjects(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Subscriber>>> {
        self.inner.subjects.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn plain(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Inbox>>> {
        self.inner.plain.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One subscriber of `subject`, picked at random as a NATS queue group does.
    fn pick(&self, subject: &str) -> Option<Subscriber> {
        let subjects = self.subjects();
        let subs = subjects.get(subject)?;
        subs.get(fastrand::usize(..subs.len())).cloned()
    }
}

/// Answers one request and counts it in the micro model.
struct ChannelResponder {
    tx: oneshot::Sender<Message>,
    counters: Arc<Counters>,
    started: Instant,
}

impl Respond for ChannelResponder {
    fn respond(self: Box<Self>, reply: Message) -> BoxFuture<'static, Result<(), TransportError>> {
        self.counters.record(self.started.elapsed(), &reply);
        // The caller may have given up; that is not the server's error.
        let _ = self.tx.send(reply);
        Box::pin(future::ready(Ok(())))
    }
}

impl Transport for InProcess {
    fn bind(&self, spec: ServiceSpec, dispatch: Dispatch) -> BoxFuture<'_, Result<Guard, Error>> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let micro = Arc::new(MicroService::new(&spec));
        let mut subjects = self.subjects();
        let mut bound = Vec::new();
        for ep in &micro.endpoints {
            let sub = Subscriber {
                id,
                endpoint: ep.number,
                dispatch: dispatch.clone(),
                addressed: ep.addressed,
                counters: ep.counters.clone(),
            };
            subjects.entry(ep.subject.clone()).or_default().push(sub);
            bound.push(ep.subject.clone());
        }
        drop(subjects);
        self.inner.services.lock().unwrap_or_else(|p| p.into_inner()).push(micro.clone());
        let this = self.clone();
        let guard = Guard::new(move || {
            let mut subjects = this.subjects();
            for subject in bound {
                if let Some(subs) = subjects.get_mut(&subject) {
                    subs.retain(|s| s.id != id);
                    if subs.is_empty() {
                        subjects.remove(&subject);
                    }
                }
            }
            this.inner.services.lock().unwrap_or_else(|p| p.into_inner()).retain(|s| !Arc::ptr_eq(s, &micro));
        });
        Box::pin(future::ready(Ok(guard)))
    }

    fn request<'a>(
        &'a self,
        subject: &'a str,
        message: Message,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Message, TransportError>> {
        Box::pin(async move {
            within_limit("request", &message, self.inner.max_payload)?;
            let no_responders =
                || TransportError::NoResponders { subject: subject.to_string(), instance: None };
            let sub = self.pick(subject).ok_or_else(no_responders)?;
            let (reply_tx, reply_rx) = oneshot::channel();
            let responder = Box::new(ChannelResponder {
                tx: reply_tx,
                counters: sub.counters.clone(),
                started: Instant::now(),
            });
            let incoming =
                Incoming { endpoint: sub.endpoint, addressed: sub.addressed, message, responder, peer: None };
            (sub.dispatch)(incoming, Start::HereFirst);
            // Dropped now: a served component that is shutting down must not
            // wait for this request to finish before it stops listening.
            drop(sub);
            // A handler that answered at once has replied by now.
            let mut reply_rx = reply_rx;
            match reply_rx.try_recv() {
                Ok(reply) => return Ok(reply),
                Err(oneshot::error::TryRecvError::Closed) => return Err(no_responders()),
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let exchange = async {
                // A dropped responder means the instance went away with the
                // request unanswered, which NATS reports as no responders.
                reply_rx.await.map_err(|_| no_responders())
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(result) => result,
                Err(_) => Err(TransportError::Timeout {
                    subject: subject.to_string(),
                    after: timeout,
                    instance: None,
                }),
            }
        })
    }

    fn max_payload(&self) -> usize {
        self.inner.max_payload
    }

    fn inbox(&self) -> String {
        format!("_INBOX.inproc.{}", self.inner.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn connection_losses(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.losses.subscribe()
    }

    fn connection_loss_count(&self) -> u64 {
        0
    }

    fn subscribe(
        &self,
        subject: String,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Message>, TransportError>> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        self.plain().entry(subject.clone()).or_default().push((id, tx));
        let this = self.clone();
        let guard = Guard::new(move || {
            let mut plain = this.plain();
            if let Some(subs) = plain.get_mut(&subject) {
                subs.retain(|(i, _)| *i != id);
                if subs.is_empty() {
                    plain.remove(&subject);
                }
            }
        });
        // The guard lives as long as the stream: dropping it unsubscribes.
        let stream = futures::stream::unfold((rx, guard), |(mut rx, guard)| async move {
            rx.recv().await.map(|m| (m, (rx, guard)))
        });
        Box::pin(future::ready(Ok(stream.boxed())))
    }

    fn publish(&self, subject: String, message: Message) -> BoxFuture<'_, Result<(), TransportError>> {
        if let Err(e) = within_limit("message", &message, self.inner.max_payload) {
            return Box::pin(future::ready(Err(e)));
        }
        if let Some(subs) = self.plain().get(&subject) {
            for (_, tx) in subs {
                let _ = tx.send(message.clone());
            }
        }
        Box::pin(future::ready(Ok(())))
    }

    fn info_stream(
        &self,
        service: String,
        _timeout: Duration,
    ) -> BoxFuture<'_, Result<BoxStream<'static, bytes::Bytes>, Error>> {
        let services = self.inner.services.lock().unwrap_or_else(|p| p.into_inner());
        let infos: Vec<bytes::Bytes> = services
            .iter()
            .filter(|micro| micro.name == service)
            .filter_map(|micro| micro.answer(crate::engine::micro::Verb::Info).ok())
            .collect();
        Box::pin(future::ready(Ok(futures::stream::iter(infos).boxed())))
    }

    fn stats_stream(
        &self,
        service: String,
        _timeout: Duration,
    ) -> BoxFuture<'_, Result<BoxStream<'static, ServiceStats>, Error>> {
        let services = self.inner.services.lock().unwrap_or_else(|p| p.into_inner());
        let stats: Vec<ServiceStats> =
            services.iter().filter(|micro| micro.name == service).map(|micro| micro.stats()).collect();
        Box::pin(future::ready(Ok(futures::stream::iter(stats).boxed())))
    }
}
