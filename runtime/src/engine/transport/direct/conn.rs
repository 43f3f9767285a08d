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
use super::stall::{Stall, WRITE_STALL};
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

/// The sizes a connection takes and sends, each side's hello having
/// announced what it takes.
#[derive(Clone, Copy)]
pub(crate) struct Limits {
    /// The largest message this side takes.
    pub receive: usize,
    /// The largest message the other side takes, or this side's limit
    /// when that is smaller.
    pub send: usize,
}

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
    /// The largest message sent.
    max_payload: usize,
    /// Checks a frame before it is queued: the writer must never refuse one.
    sendable: FrameCodec,
}

impl Conn {
    /// Runs a connection over `io`, whose preambles were exchanged, until
    /// either side closes it or `stop` is cancelled.
    pub(crate) fn start<S>(
        io: S,
        peer: String,
        side: Side,
        limits: Limits,
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
            max_payload: limits.send,
            sendable: FrameCodec::new(limits.send),
        });
        tokio::spawn(write_frames(
            FramedWrite::new(Stall::new(write, WRITE_STALL), FrameCodec::new(limits.send)),
            queued,
            conn.closed.clone(),
        ));
        let frames = FramedRead::new(read, FrameCodec::new(limits.receive));
        tokio::spawn(read_frames(frames, conn.clone(), side));
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

    /// Queues `frame` for the writer, waiting while the queue is full
    /// (back-pressure) but not past the connection's end.
    async fn send(&self, frame: Frame) -> Result<(), TransportError> {
        if self.is_closed() {
            return Err(self.gone());
        }
        if let Err(e) = self.sendable.body_len(&frame) {
            return Err(TransportError::Encode { what: "direct frame".into(), detail: e.to_string() });
        }
        tokio::select! {
            () = self.closed.cancelled() => Err(self.gone()),
            queued = self.out.send(frame) => queued.map_err(|_| self.gone()),
        }
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
    let write = async {
        while let Some(frame) = queued.recv().await {
            // Everything queued meanwhile goes in the same write: one flush
            // for a burst, not one per call.
            sink.feed(frame).await?;
            while let Ok(frame) = queued.try_recv() {
                sink.feed(frame).await?;
            }
            sink.flush().await?;
        }
        Ok::<(), FrameError>(())
    };
    tokio::select! {
        () = closed.cancelled() => {}
        written = write => if let Err(e) = written {
            tracing::debug!(error = %e, "a direct connection could not write; closing it");
        },
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

/// Forgets a call's entry when the call ends, whichever way.
struct Forget<'a> {
    conn: &'a Conn,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.conn.lock_pending().remove(&self.id);
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
            // Closed after the insert: `close` has failed it, or will. Ended
            // any way (a reply, the timeout, the caller gone), the call
            // leaves nothing behind.
            let _forget = Forget { conn: self, id };
            let frame = Frame::Request { id, subject: subject.to_string(), message };
            let call = async {
                self.send(frame).await?;
                match reply.await {
                    Ok(Err(TransportError::NoResponders { instance, .. })) => {
                        Err(TransportError::NoResponders { subject: subject.to_string(), instance })
                    }
                    Ok(reply) => reply,
                    Err(_) => Err(self.gone()),
                }
            };
            // The timeout covers the wait for room in the queue as well.
            tokio::time::timeout(timeout, call).await.unwrap_or_else(|_| {
                Err(TransportError::Timeout { subject: subject.to_string(), after: timeout, instance: None })
            })
        })
    }

    fn max_payload(&self) -> usize {
        self.max_payload
    }

    fn inbox(&self) -> String {
        // The connection's subjects are its own: a counter keeps them apart.
        format!("_INBOX.{}", self.next_id.fetch_add(1, Ordering::Relaxed))
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
            // Closed before the insert, `close` cleared the subjects first and
            // this one would never end: looked at again after it.
            if self.is_closed() {
                return Err(self.gone());
            }
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

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[tokio::test]
    async fn a_call_dropped_before_its_reply_leaves_nothing_behind() {
        let (io, _silent) = tokio::io::duplex(1 << 16);
        let limits = Limits { receive: 1024, send: 1024 };
        let conn = Conn::start(io, "peer".into(), Side::Client, limits, CancellationToken::new());
        let mut call = conn.request("subject", Message::default(), Duration::from_secs(60));
        assert!((&mut call).now_or_never().is_none(), "sent, and waiting for its reply");
        assert_eq!(conn.lock_pending().len(), 1);
        drop(call);
        assert!(conn.lock_pending().is_empty(), "the caller gave up: its entry went with it");
    }

    #[tokio::test]
    async fn a_frame_the_writer_would_refuse_fails_its_call_and_not_the_connection() {
        let (io, _silent) = tokio::io::duplex(1 << 16);
        let limits = Limits { receive: 1 << 20, send: 1 << 20 };
        let conn = Conn::start(io, "peer".into(), Side::Client, limits, CancellationToken::new());
        let long = "s".repeat(70_000);
        let e = conn.request(&long, Message::default(), Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(e, TransportError::Encode { .. }), "{e}");
        assert!(!conn.is_closed());
    }
}
