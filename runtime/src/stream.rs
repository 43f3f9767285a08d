//! Streams over the transport alone: no second connection, no port on the
//! caller.
//!
//! The caller subscribes to an inbox and sends the request with the inbox,
//! a credit window and a heartbeat interval in headers. The server accepts by
//! replying with a control subject, then publishes items to the inbox, each
//! numbered, and finally an end marker (or a typed error, which ends the
//! stream). It sends at most a window of items and of bytes beyond what the
//! caller has granted, so a slow consumer bounds what is in flight. The caller grants
//! credit, sends keep-alives, and on drop a cancel, to the control subject.
//! Both sides send something at least every heartbeat interval; silence for
//! three intervals means the other side is gone.

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};

use crate::transport::Transport;
use crate::wire::{ErrorKind, Message, header};
use crate::{CallError, Context, InstanceId, TransportError};

/// Items a caller lets a server send ahead by default.
pub const DEFAULT_WINDOW: u32 = 4096;
/// Bytes a caller lets a server send ahead by default: with the item window,
/// what bounds the memory one stream can hold up, whatever its item size.
pub const DEFAULT_WINDOW_BYTES: u64 = 4 * 1024 * 1024;
/// Heartbeat and keep-alive interval by default.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
/// Silence for this many intervals ends a stream.
const MISSED_BEATS: u32 = 3;
/// Marks the value a streaming handler returns once it has sent everything
/// itself.
const DONE: &str = "done";

type Encode<T> = fn(&T) -> Result<Bytes, serde_json::Error>;
type Decode<T> = fn(&[u8]) -> Result<T, serde_json::Error>;

fn stream_message(kind: &str, seq: u64, mut message: Message) -> Message {
    message.headers.insert(header::STREAM, format!("{kind} {seq}"));
    message
}

/// The sequence number that starts an item message.
const BATCH_HEADER: usize = 8;
/// The length that starts each item in an item message.
const ENTRY_HEADER: usize = 4;
/// Items ready together are sent together, up to this many bytes a message.
const MAX_BATCH: usize = 64 * 1024;

/// An item message: no header; the sequence number of its first item
/// (8 bytes, big endian), then each item as its length (4 bytes, big
/// endian) and its encoding.
struct Batch(Vec<u8>);

impl Batch {
    fn new(first: u64) -> Self {
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(&first.to_be_bytes());
        Batch(bytes)
    }

    fn push(&mut self, item: &[u8]) {
        self.0.extend_from_slice(&(item.len() as u32).to_be_bytes());
        self.0.extend_from_slice(item);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.len() == BATCH_HEADER
    }

    fn into_message(self) -> Message {
        Message { headers: crate::wire::Headers::new(), payload: self.0.into() }
    }
}

/// Heartbeat intervals are kept between 10 ms (a tighter one would have a
/// stream fail between two beats) and 60 s (a looser one would let a dead
/// peer's work run for ever).
pub(crate) fn clamp_heartbeat(interval: Duration) -> Duration {
    interval.clamp(Duration::from_millis(10), Duration::from_secs(60))
}

/// What a streaming handler returns after it sent its own end.
pub(crate) fn done() -> Message {
    let mut m = Message::ok(Bytes::new());
    m.headers.insert(header::STREAM, DONE);
    m
}

pub(crate) fn is_done(m: &Message) -> bool {
    m.stream_kind() == Some(DONE)
}

/// A failure reply turned into the last message of a stream; it carries no
/// sequence number, since the stream was cut wherever it stood.
pub(crate) fn terminal(mut error: Message) -> Message {
    error.headers.insert(header::STREAM, "end");
    error
}

/// Sends a handler's stream to the caller.
pub(crate) async fn serve_stream<T, E, S>(
    ctx: &Context,
    stream: S,
    encode: Encode<T>,
    describe: fn(&E) -> String,
    encode_err: Encode<E>,
) -> Message
where
    S: Stream<Item = Result<T, E>>,
{
    let Some(setup) = ctx.stream_setup().cloned() else {
        return Message::error(
            ErrorKind::Decode,
            "this endpoint streams: call it with a streaming client (the generated client does)",
        );
    };
    let transport = setup.transport.clone();
    let control = transport.inbox();
    let mut control_messages = match transport.subscribe(control.clone()).await {
        Ok(s) => s,
        Err(e) => return Message::error(ErrorKind::Internal, &format!("cannot open the stream: {e}")),
    };
    let Some(responder) = ctx.take_responder() else {
        return Message::error(ErrorKind::Internal, "the stream was already accepted");
    };
    let mut accept = Message::ok(Bytes::new());
    accept.headers.insert(header::STREAM_CONTROL, control);
    accept.headers.insert(header::INSTANCE, ctx.instance_id().to_string());
    if responder.respond(accept).await.is_err() {
        return done();
    }

    let stream = std::pin::pin!(stream);
    let end = pump(ctx, &setup, stream, &mut control_messages, encode, describe, encode_err).await;
    if let Some(kind) = end.as_ref().and_then(Message::error_kind) {
        ctx.metrics().error(kind.as_str());
    }
    if let Some(mut last) = end {
        if last.size() > transport.max_payload() {
            // An error too large to send (a huge application error): say so instead.
            let text = "the stream's final error is larger than max_payload";
            last = stream_message("end", seq_of(&last), Message::error(ErrorKind::Oversize, text));
        }
        let _ = transport.publish(setup.inbox.clone(), last).await;
    }
    done()
}

fn app_error<E>(e: &E, describe: fn(&E) -> String, encode_err: Encode<E>) -> Message {
    let text = describe(e);
    match encode_err(e) {
        Ok(body) => Message::app_error(&text, &body),
        Err(err) => {
            Message::error(ErrorKind::Internal, &format!("could not encode the error `{text}`: {err}"))
        }
    }
}

fn seq_of(message: &Message) -> u64 {
    message.stream_seq().unwrap_or(0)
}

/// `"<items> <bytes>"`, as in the window and credit headers.
pub(crate) fn parse_pair(value: &str) -> Option<(u64, u64)> {
    let (items, bytes) = value.split_once(' ')?;
    Some((items.parse().ok()?, bytes.parse().ok()?))
}

/// Moves items until the stream ends, fails, or the caller goes; returns
/// the last message to send, if the caller is still there.
async fn pump<T, E, S>(
    ctx: &Context,
    setup: &crate::context::StreamSetup,
    mut stream: Pin<&mut S>,
    control: &mut BoxStream<'static, Message>,
    encode: Encode<T>,
    describe: fn(&E) -> String,
    encode_err: Encode<E>,
) -> Option<Message>
where
    S: Stream<Item = Result<T, E>>,
{
    let transport = &setup.transport;
    let limit = transport.max_payload();
    // Byte credit may go below zero: an item larger than what is left is
    // still sent whole, and the overshoot is paid back before the next.
    let (mut credit, mut credit_bytes) =
        (u64::from(setup.window), setup.window_bytes.min(i64::MAX as u64) as i64);
    let mut seq = 0u64;
    let mut heard_from_caller = Instant::now();
    let silence_limit = setup.heartbeat * MISSED_BEATS;
    let mut beat = tokio::time::interval(setup.heartbeat);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            msg = control.next() => {
                let msg = msg?;
                heard_from_caller = Instant::now();
                match msg.stream_kind() {
                    Some("credit") => {
                        let (items, bytes) = msg.headers.get(header::STREAM_CREDIT).and_then(parse_pair).unwrap_or((0, 0));
                        credit = credit.saturating_add(items);
                        credit_bytes = credit_bytes.saturating_add(bytes.min(i64::MAX as u64) as i64);
                    }
                    Some("cancel") => {
                        ctx.cancel_token().cancel();
                        ctx.metrics().cancellations.inc();
                        return None;
                    }
                    _ => {}
                }
            }
            item = stream.next(), if credit > 0 && credit_bytes > 0 => {
                // Every item ready now, as far as credit goes, travels in
                // one message: a plain NATS PUB carries many items.
                let mut item = item;
                let mut batch = Batch::new(seq);
                let mut last = None;
                loop {
                    let bytes = match item {
                        None => {
                            last = Some(stream_message("end", seq, Message::ok(Bytes::new())));
                            break;
                        }
                        Some(Err(e)) => {
                            last = Some(stream_message("end", seq, app_error(&e, describe, encode_err)));
                            break;
                        }
                        Some(Ok(value)) => match encode(&value) {
                            Ok(bytes) => bytes,
                            Err(e) => {
                                let text = format!("could not encode item {seq}: {e}");
                                last = Some(stream_message("end", seq, Message::error(ErrorKind::Internal, &text)));
                                break;
                            }
                        },
                    };
                    let entry = ENTRY_HEADER + bytes.len();
                    if BATCH_HEADER + entry > limit {
                        let text = format!(
                            "stream item {seq} is {} bytes, over the transport's limit of {limit} bytes (max_payload)",
                            BATCH_HEADER + entry
                        );
                        last = Some(stream_message("end", seq, Message::error(ErrorKind::Oversize, &text)));
                        break;
                    }
                    if batch.len() + entry > limit.min(MAX_BATCH) {
                        let full = std::mem::replace(&mut batch, Batch::new(seq));
                        if transport.publish(setup.inbox.clone(), full.into_message()).await.is_err() {
                            return None;
                        }
                    }
                    batch.push(&bytes);
                    ctx.metrics().stream_items.inc();
                    ctx.metrics().response_bytes.inc_by(entry as u64);
                    seq += 1;
                    credit -= 1;
                    credit_bytes = credit_bytes.saturating_sub(entry as i64);
                    if credit == 0 || credit_bytes <= 0 {
                        break;
                    }
                    match stream.next().now_or_never() {
                        Some(next) => item = next,
                        None => break,
                    }
                }
                if !batch.is_empty() && transport.publish(setup.inbox.clone(), batch.into_message()).await.is_err() {
                    return None;
                }
                if last.is_some() {
                    return last;
                }
            }
            _ = beat.tick() => {
                if heard_from_caller.elapsed() > silence_limit {
                    tracing::debug!(endpoint = ctx.endpoint(), "stream caller silent; cancelling");
                    ctx.cancel_token().cancel();
                    ctx.metrics().cancellations.inc();
                    return None;
                }
                let heartbeat = Message { headers: crate::wire::Headers::one(header::STREAM, "heartbeat"), payload: Bytes::new() };
                let _ = transport.publish(setup.inbox.clone(), heartbeat).await;
            }
        }
    }
}

/// What `poll_next` returns.
type Next<T, E> = Poll<Option<Result<T, CallError<E>>>>;

enum Control {
    /// Items and bytes consumed since the last grant.
    Credit(u64, u64),
    /// The stream ended as the server meant it to: nothing more to say.
    Finished,
    /// The caller gave up on the stream: tell the server to stop.
    Cancel,
}

/// A typed stream of responses from a streaming endpoint: items in order,
/// then the end (`None`), or one error and then the end.
///
/// Dropping it before the end cancels the work on the server.
pub struct ResponseStream<T, E> {
    messages: BoxStream<'static, Message>,
    control: mpsc::UnboundedSender<Control>,
    /// Items of a message received but not yet taken, then possibly the
    /// error that ends the stream.
    pending: std::collections::VecDeque<(Result<T, CallError<E>>, u64)>,
    decode: Decode<T>,
    decode_err: Decode<E>,
    instance: Option<InstanceId>,
    label: String,
    next_seq: u64,
    window: (u64, u64),
    ungranted: (u64, u64),
    /// Fires every heartbeat interval; `silent` counts the intervals with
    /// no message, and `MISSED_BEATS` of them mean the server is gone.
    beat: Pin<Box<Sleep>>,
    interval: Duration,
    silent: u32,
    heard: bool,
    done: bool,
}

impl<T, E> std::fmt::Debug for ResponseStream<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseStream")
            .field("endpoint", &self.label)
            .field("instance", &self.instance)
            .field("received", &self.next_seq)
            .field("done", &self.done)
            .finish()
    }
}

pub(crate) struct Opened {
    pub messages: BoxStream<'static, Message>,
    pub control: String,
    pub transport: std::sync::Arc<dyn Transport>,
    pub instance: Option<InstanceId>,
    pub label: String,
    pub window: (u64, u64),
    pub heartbeat: Duration,
}

impl<T, E> ResponseStream<T, E> {
    pub(crate) fn new(mut opened: Opened, decode: Decode<T>, decode_err: Decode<E>) -> Self {
        opened.heartbeat = clamp_heartbeat(opened.heartbeat);
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(control_task(opened.transport, opened.control, rx, opened.heartbeat));
        ResponseStream {
            messages: opened.messages,
            control: tx,
            pending: std::collections::VecDeque::new(),
            decode,
            decode_err,
            instance: opened.instance,
            label: opened.label,
            next_seq: 0,
            window: opened.window,
            ungranted: (0, 0),
            beat: Box::pin(tokio::time::sleep(opened.heartbeat)),
            interval: opened.heartbeat,
            silent: 0,
            heard: false,
            done: false,
        }
    }

    /// The instance serving this stream.
    pub fn instance(&self) -> Option<InstanceId> {
        self.instance
    }

    /// Items received so far.
    pub fn received(&self) -> u64 {
        self.next_seq
    }

    fn finish(&mut self) {
        self.done = true;
        let _ = self.control.send(Control::Finished);
    }

    fn fail(&mut self, error: TransportError) -> Next<T, E> {
        // The server may still be producing: stop it.
        self.done = true;
        let _ = self.control.send(Control::Cancel);
        self.pending.push_back((Err(CallError::Transport(error)), 0));
        self.take()
    }

    /// The next pending item, granting credit for it: credit follows what
    /// the caller consumes, not what arrived.
    fn take(&mut self) -> Next<T, E> {
        let Some((item, size)) = self.pending.pop_front() else { return Poll::Pending };
        if item.is_ok() {
            self.ungranted.0 += 1;
            self.ungranted.1 += size;
            // Granting at a quarter of the window keeps three quarters of it
            // in flight while the credit travels.
            if self.ungranted.0 >= (self.window.0 / 4).max(1)
                || self.ungranted.1 >= (self.window.1 / 4).max(1)
            {
                let (items, bytes) = std::mem::take(&mut self.ungranted);
                let _ = self.control.send(Control::Credit(items, bytes));
            }
        }
        Poll::Ready(Some(item))
    }

    /// Takes the items of an item message into `pending`.
    fn on_items(&mut self, payload: &[u8]) -> Next<T, E> {
        let broken = |what: &str| TransportError::Disconnected(format!("a malformed stream message: {what}"));
        let Some((first, mut rest)) = payload.split_first_chunk::<BATCH_HEADER>() else {
            return self.fail(broken("no sequence number"));
        };
        let first = u64::from_be_bytes(*first);
        if first != self.next_seq {
            let detail = format!("expected item {}, got item {first}: messages were lost", self.next_seq);
            return self.fail(TransportError::Disconnected(detail));
        }
        while !rest.is_empty() {
            let Some((len, tail)) = rest.split_first_chunk::<ENTRY_HEADER>() else {
                return self.fail(broken("a cut item length"));
            };
            let len = u32::from_be_bytes(*len) as usize;
            if tail.len() < len {
                return self.fail(broken("a cut item"));
            }
            let (item, tail) = tail.split_at(len);
            rest = tail;
            self.next_seq += 1;
            match (self.decode)(item) {
                Ok(v) => self.pending.push_back((Ok(v), (ENTRY_HEADER + len) as u64)),
                Err(e) => {
                    return self.fail(TransportError::Decode {
                        what: format!("item {} of {}", self.next_seq - 1, self.label),
                        detail: e.to_string(),
                        instance: self.instance,
                    });
                }
            }
        }
        self.take()
    }

    fn on_message(&mut self, msg: Message) -> Option<Next<T, E>> {
        if msg.headers.is_empty() {
            let next = self.on_items(&msg.payload);
            return (!next.is_pending()).then_some(next);
        }
        let kind = msg.stream_kind().unwrap_or("");
        if kind == "heartbeat" {
            return None;
        }
        let seq = msg.stream_seq();
        // A terminal failure from the server's dispatcher (deadline,
        // shutdown) has no sequence number: it cuts the stream anywhere.
        let cut = kind == "end" && seq.is_none() && msg.error_kind().is_some();
        if !cut && seq != Some(self.next_seq) {
            let detail = format!("expected item {}, got {seq:?}: messages were lost", self.next_seq);
            return Some(self.fail(TransportError::Disconnected(detail)));
        }
        let kind = if kind == "end" { "end" } else { "other" };
        match (kind, msg.error_kind()) {
            ("end", None) => {
                self.finish();
                Some(Poll::Ready(None))
            }
            (_, Some(kind)) => {
                self.finish();
                let message = msg.headers.get(header::SERVICE_ERROR).unwrap_or("").to_string();
                let instance = self.instance;
                let error = match kind {
                    ErrorKind::Application => {
                        let body = msg.headers.get(header::ERROR_BODY).unwrap_or("");
                        match (self.decode_err)(body.as_bytes()) {
                            Ok(error) => {
                                CallError::App { error, instance: instance.unwrap_or(InstanceId(0)) }
                            }
                            Err(e) => CallError::Transport(TransportError::Decode {
                                what: format!("error of {}", self.label),
                                detail: e.to_string(),
                                instance,
                            }),
                        }
                    }
                    ErrorKind::Deadline => {
                        CallError::Transport(TransportError::DeadlineExceeded { message, instance })
                    }
                    other => CallError::Transport(TransportError::Remote {
                        kind: other,
                        code: other.code(),
                        message,
                        instance,
                    }),
                };
                Some(Poll::Ready(Some(Err(error))))
            }
            (_, None) => {
                let detail = format!("unexpected stream message {:?}", msg.headers.get(header::STREAM));
                Some(self.fail(TransportError::Disconnected(detail)))
            }
        }
    }
}

// Items are only ever moved in and out of the queue, never pinned in place.
impl<T, E> Unpin for ResponseStream<T, E> {}

impl<T, E> Stream for ResponseStream<T, E> {
    type Item = Result<T, CallError<E>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                return this.take();
            }
            if this.done {
                return Poll::Ready(None);
            }
            match this.messages.poll_next_unpin(cx) {
                Poll::Ready(Some(msg)) => {
                    this.heard = true;
                    if let Some(ready) = this.on_message(msg) {
                        return ready;
                    }
                }
                Poll::Ready(None) => {
                    return this
                        .fail(TransportError::Disconnected(format!("the stream of {} closed", this.label)));
                }
                Poll::Pending => {
                    while this.beat.as_mut().poll(cx).is_ready() {
                        this.silent = if std::mem::take(&mut this.heard) { 0 } else { this.silent + 1 };
                        if this.silent >= MISSED_BEATS {
                            let detail = format!(
                                "nothing from instance {} of {} for {:?}: the server is gone",
                                this.instance.map(|i| i.to_string()).unwrap_or_default(),
                                this.label,
                                this.interval * MISSED_BEATS
                            );
                            return this.fail(TransportError::Disconnected(detail));
                        }
                        let interval = this.interval;
                        this.beat.as_mut().reset(Instant::now() + interval);
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Sends credit as items are consumed, a keep-alive every interval, and a
/// cancel if the stream is dropped before its end.
async fn control_task(
    transport: std::sync::Arc<dyn Transport>,
    control: String,
    mut rx: mpsc::UnboundedReceiver<Control>,
    heartbeat: Duration,
) {
    let message = |kind: &str| {
        let mut m = Message::ok(Bytes::new());
        m.headers.insert(header::STREAM, kind);
        m
    };
    let mut beat = tokio::time::interval(heartbeat);
    beat.tick().await;
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Control::Credit(items, bytes)) => {
                    let mut m = message("credit");
                    m.headers.insert(header::STREAM_CREDIT, format!("{items} {bytes}"));
                    let _ = transport.publish(control.clone(), m).await;
                }
                Some(Control::Finished) => return,
                Some(Control::Cancel) | None => {
                    let _ = transport.publish(control.clone(), message("cancel")).await;
                    return;
                }
            },
            _ = beat.tick() => {
                let _ = transport.publish(control.clone(), message("keepalive")).await;
            }
        }
    }
}
