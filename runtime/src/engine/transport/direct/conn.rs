//! One direct connection, either side of it: calls multiplexed by request
//! id, messages to the connection's own subjects (a stream's inbox and
//! control), writes pipelined by one writer task, and everything in flight
//! failed at once when the connection goes.
//!
//! A connection is a [`Transport`] for what travels over it: the exchange's
//! streams run over it unchanged, with its subjects in place of NATS's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use super::frame::{Frame, FrameCodec, FrameError};
use super::server::Routes;
use crate::engine::micro::Counters;
use crate::engine::micro::stats::ServiceStats;
use crate::engine::transport::{Dispatch, message::Message};
use crate::engine::transport::{Incoming, Respond, ServiceSpec, Start, Transport, within_limit};
use crate::{Error, Guard, TransportError};

/// Frames queued for the writer at most: a caller that sends faster than
/// the connection drains waits (back-pressure) rather than queue without
/// bound.
const QUEUED_FRAMES: usize = 1024;

/// Which side of the connection this is.
pub(crate) enum Side {
    /// Sends requests; replies and publishes come back.
    Client,
    /// Answers requests for the subjects its server serves.
    Server(Arc<Routes>),
}

type Waiting = oneshot::Sender<Result<Message, TransportError>>;

/// One connection.
pub(crate) struct Conn {
    /// The other side's address, for errors and logs.
    peer: String,
    out: mpsc::Sender<Frame>,
    pending: Mutex<HashMap<u64, Waiting>>,
    subjects: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Message>>>>,
    next_id: AtomicU64,
    closed: CancellationToken,
    losses: watch::Sender<u64>,
    max_payload: usize,
}

impl Conn {
    /// Runs a connection over `io`, whose preambles were exchanged, until
    /// either side closes it or `stop` is cancelled.
    pub(crate) fn start<S>(
        io: S,
        peer: String,
        side: Side,
        max_payload: usize,
        stop: CancellationToken,
    ) -> Arc<Conn>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(io);
        let (out, queued) = mpsc::channel(QUEUED_FRAMES);
        let conn = Arc::new(Conn {
            peer,
            out,
            pending: Mutex::default(),
            subjects: Arc::default(),
            next_id: AtomicU64::new(1),
            closed: stop,
            losses: watch::Sender::new(0),
            max_payload,
        });
        tokio::spawn(write_frames(
            FramedWrite::new(write, FrameCodec::new(max_payload)),
            queued,
            conn.closed.clone(),
        ));
        tokio::spawn(read_frames(FramedRead::new(read, FrameCodec::new(max_payload)), conn.clone(), side));
        conn
    }

    /// `true` once the connection is gone: a new call needs a new one.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiting>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends the connection: every call waiting on it fails, every stream on
    /// it ends.
    fn close(&self) {
        self.closed.cancel();
        let waiting: Vec<Waiting> = self.lock_pending().drain().map(|(_, w)| w).collect();
        for w in waiting {
            let _ = w.send(Err(TransportError::Disconnected(format!(
                "the direct connection to {} closed before the reply came",
                self.peer
            ))));
        }
        self.subjects.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.losses.send_modify(|n| *n += 1);
    }

    async fn send(&self, frame: Frame) -> Result<(), TransportError> {
        if self.is_closed() {
            return Err(self.gone());
        }
        self.out.send(frame).await.map_err(|_| self.gone())
    }

    fn gone(&self) -> TransportError {
        TransportError::Disconnected(format!("the direct connection to {} is closed", self.peer))
    }
}

async fn write_frames<W: AsyncWrite + Send + Unpin>(
    mut sink: FramedWrite<W, FrameCodec>,
    mut queued: mpsc::Receiver<Frame>,
    closed: CancellationToken,
) {
    loop {
        let frame = tokio::select! {
            () = closed.cancelled() => break,
            frame = queued.recv() => match frame {
                Some(frame) => frame,
                None => break,
            },
        };
        // Everything queued meanwhile goes in the same write: one flush for
        // a burst, not one per call.
        let mut written = sink.feed(frame).await;
        while written.is_ok()
            && let Ok(frame) = queued.try_recv()
        {
            written = sink.feed(frame).await;
        }
        if let Err(e) = written.and(sink.flush().await) {
            tracing::debug!(error = %e, "a direct connection could not write; closing it");
            break;
        }
    }
    closed.cancel();
}

async fn read_frames<R: AsyncRead + Send + Unpin>(
    mut frames: FramedRead<R, FrameCodec>,
    conn: Arc<Conn>,
    side: Side,
) {
    loop {
        let frame = tokio::select! {
            () = conn.closed.cancelled() => break,
            frame = frames.next() => frame,
        };
        let refused = match frame {
            None => break,
            Some(Err(FrameError::Io(e))) => {
                tracing::debug!(peer = %conn.peer, error = %e, "a direct connection broke");
                break;
            }
            Some(Err(e)) => Some(e.to_string()),
            Some(Ok(frame)) => take(&conn, &side, frame).await.err(),
        };
        if let Some(why) = refused {
            tracing::warn!(peer = %conn.peer, "closing a direct connection that sent {why}");
            break;
        }
    }
    conn.close();
}

/// Acts on one frame; `Err` with what was wrong closes the connection.
async fn take(conn: &Arc<Conn>, side: &Side, frame: Frame) -> Result<(), String> {
    match (frame, side) {
        (Frame::Reply { id, message }, Side::Client) => answer(conn, id, Ok(message)),
        (Frame::NoResponders { id }, Side::Client) => {
            answer(conn, id, Err(TransportError::NoResponders { subject: String::new(), instance: None }))
        }
        (Frame::Publish { subject, message }, _) => {
            // Nobody subscribed (a stream already gone): dropped, as on NATS.
            if let Some(to) = conn.subjects.lock().unwrap_or_else(|p| p.into_inner()).get(&subject) {
                let _ = to.send(message);
            }
        }
        (Frame::Request { id, subject, message }, Side::Server(routes)) => {
            let Some((dispatch, endpoint, counters)) = routes.get(&subject) else {
                // A closed connection has nobody to tell.
                let _ = conn.send(Frame::NoResponders { id }).await;
                return Ok(());
            };
            let responder = Box::new(Responder { conn: conn.clone(), id, counters, arrived: Instant::now() });
            let peer: Arc<dyn Transport> = conn.clone();
            dispatch(
                Incoming { endpoint, addressed: true, message, responder, peer: Some(peer) },
                Start::OnTask,
            );
        }
        (Frame::Request { .. }, Side::Client) => return Err("a request to a client".into()),
        (Frame::Reply { id, .. } | Frame::NoResponders { id }, Side::Server(_)) => {
            return Err(format!("a reply to request id {id}, which it was never sent"));
        }
    }
    Ok(())
}

/// Hands the reply of request `id` to its caller; one whose caller gave up
/// (its timeout passed) is dropped.
fn answer(conn: &Conn, id: u64, reply: Result<Message, TransportError>) {
    match conn.lock_pending().remove(&id) {
        Some(waiting) => {
            let _ = waiting.send(reply);
        }
        None => tracing::debug!(peer = %conn.peer, id, "a reply after its caller stopped waiting"),
    }
}

/// Sends the reply to one request that came over a connection, and counts
/// it in the endpoint's `$SRV.STATS` figures with the NATS ones.
struct Responder {
    conn: Arc<Conn>,
    id: u64,
    counters: Arc<Counters>,
    arrived: Instant,
}

impl Respond for Responder {
    fn respond(self: Box<Self>, reply: Message) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(async move {
            self.counters.record(self.arrived.elapsed(), &reply);
            self.conn.send(Frame::Reply { id: self.id, message: reply }).await
        })
    }
}

/// A subscription to one of the connection's subjects; dropping it
/// unsubscribes.
struct Subscription {
    messages: mpsc::UnboundedReceiver<Message>,
    subjects: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Message>>>>,
    subject: String,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.subjects.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.subject);
    }
}

impl Transport for Conn {
    fn bind(&self, spec: ServiceSpec, _: Dispatch) -> BoxFuture<'_, Result<Guard, Error>> {
        let detail = "a direct connection serves nothing itself: its server binds".to_string();
        Box::pin(std::future::ready(Err(Error::Bind { service: spec.name, detail })))
    }

    fn request<'a>(
        &'a self,
        subject: &'a str,
        message: Message,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Message, TransportError>> {
        Box::pin(async move {
            within_limit("request", &message, self.max_payload)?;
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let (waiting, reply) = oneshot::channel();
            self.lock_pending().insert(id, waiting);
            // Closed after the insert: `close` has failed it, or will.
            let frame = Frame::Request { id, subject: subject.to_string(), message };
            if let Err(e) = self.send(frame).await {
                self.lock_pending().remove(&id);
                return Err(e);
            }
            let not_served = |e: TransportError| match e {
                TransportError::NoResponders { instance, .. } => {
                    TransportError::NoResponders { subject: subject.to_string(), instance }
                }
                e => e,
            };
            match tokio::time::timeout(timeout, reply).await {
                Ok(Ok(reply)) => reply.map_err(not_served),
                Ok(Err(_)) => Err(self.gone()),
                Err(_) => {
                    self.lock_pending().remove(&id);
                    Err(TransportError::Timeout {
                        subject: subject.to_string(),
                        after: timeout,
                        instance: None,
                    })
                }
            }
        })
    }

    fn max_payload(&self) -> usize {
        self.max_payload
    }

    fn inbox(&self) -> String {
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let id: String = (0..22).map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char).collect();
        format!("_INBOX.{id}")
    }

    fn connection_losses(&self) -> watch::Receiver<u64> {
        self.losses.subscribe()
    }

    fn connection_loss_count(&self) -> u64 {
        *self.losses.borrow()
    }

    fn subscribe(
        &self,
        subject: String,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Message>, TransportError>> {
        Box::pin(async move {
            if self.is_closed() {
                return Err(self.gone());
            }
            let (to, messages) = mpsc::unbounded_channel();
            self.subjects.lock().unwrap_or_else(|p| p.into_inner()).insert(subject.clone(), to);
            let subscription = Subscription { messages, subjects: self.subjects.clone(), subject };
            Ok(futures::stream::unfold(subscription, |mut s| async move {
                let message = s.messages.recv().await?;
                Some((message, s))
            })
            .boxed())
        })
    }

    fn publish(&self, subject: String, message: Message) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            within_limit("message", &message, self.max_payload)?;
            self.send(Frame::Publish { subject, message }).await
        })
    }

    fn stats_stream(
        &self,
        _: String,
        _: Duration,
    ) -> BoxFuture<'_, Result<BoxStream<'static, ServiceStats>, Error>> {
        Box::pin(std::future::ready(Ok(futures::stream::empty().boxed())))
    }

    fn info_stream(
        &self,
        _: String,
        _: Duration,
    ) -> BoxFuture<'_, Result<BoxStream<'static, bytes::Bytes>, Error>> {
        Box::pin(std::future::ready(Ok(futures::stream::empty().boxed())))
    }
}
