//! The calling side of a stream: items in order as a [`Stream`], credit as
//! they are taken, keep-alives, and a cancel when the stream is dropped.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};

use super::{
    ENTRY_HEADER, Grants, INBOX_PREFIX, Items, MISSED_BEATS, Silence, clamp_heartbeat, control, is_inbox,
    kind, kind_of, seq_of,
};
use crate::engine::transport::Transport;
use crate::engine::transport::message::{Headers, Message, header};
use crate::exchange::codec::Decode;
use crate::exchange::outcome;
use crate::{CallError, InstanceId, TransportError};

/// The headers that ask for a stream: where to send it, how far ahead, and
/// how often each side must be heard from.
pub(crate) fn open_headers(inbox: String, window: (u32, u64), heartbeat: Duration) -> Headers {
    let mut open = Headers::new();
    open.insert(header::STREAM_INBOX, inbox);
    open.insert(header::STREAM_WINDOW, format!("{} {}", window.0, window.1));
    open.insert(header::STREAM_HEARTBEAT_MS, heartbeat.as_millis().to_string());
    open
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
    pending: VecDeque<(Result<T, CallError<E>>, u64)>,
    decode: Decode<T>,
    decode_err: Decode<E>,
    instance: Option<InstanceId>,
    label: String,
    next_seq: u64,
    grants: Grants,
    /// Fires every heartbeat interval.
    beat: Pin<Box<Sleep>>,
    interval: Duration,
    silence: Silence,
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

/// An accepted stream, before it is typed.
pub(crate) struct Opened {
    pub messages: BoxStream<'static, Message>,
    pub control: String,
    pub transport: Arc<dyn Transport>,
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
            pending: VecDeque::new(),
            decode,
            decode_err,
            instance: opened.instance,
            label: opened.label,
            next_seq: 0,
            grants: Grants::new(opened.window),
            beat: Box::pin(tokio::time::sleep(opened.heartbeat)),
            interval: opened.heartbeat,
            silence: Silence::default(),
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

    fn end(&mut self) {
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

    /// The next pending item, granting credit for it.
    fn take(&mut self) -> Next<T, E> {
        let Some((item, size)) = self.pending.pop_front() else { return Poll::Pending };
        if item.is_ok() {
            if let Some((items, bytes)) = self.grants.taken(size) {
                let _ = self.control.send(Control::Credit(items, bytes));
            }
        }
        Poll::Ready(Some(item))
    }

    /// Takes the items of an item message into `pending`.
    fn on_items(&mut self, payload: &[u8]) -> Next<T, E> {
        let instance = self.instance;
        let broken = |what: &str| TransportError::Protocol {
            detail: format!("a malformed stream message: {what}"),
            instance,
        };
        let (first, items) = match Items::parse(payload) {
            Ok(parsed) => parsed,
            Err(e) => return self.fail(broken(e.what())),
        };
        if first != self.next_seq {
            let detail = format!("expected item {}, got item {first}: messages were lost", self.next_seq);
            return self.fail(TransportError::Protocol { detail, instance });
        }
        for item in items {
            let item = match item {
                Ok(item) => item,
                Err(e) => return self.fail(broken(e.what())),
            };
            self.next_seq += 1;
            match (self.decode)(item) {
                Ok(v) => self.pending.push_back((Ok(v), (ENTRY_HEADER + item.len()) as u64)),
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
        let kind = kind_of(&msg).unwrap_or("");
        if kind == kind::HEARTBEAT {
            return None;
        }
        let seq = seq_of(&msg);
        // A terminal failure from the server's dispatcher (deadline,
        // shutdown) has no sequence number: it cuts the stream anywhere.
        let cut = kind == kind::END && seq.is_none() && msg.error_kind().is_some();
        if !cut && seq != Some(self.next_seq) {
            let detail = format!("expected item {}, got {seq:?}: messages were lost", self.next_seq);
            return Some(self.fail(TransportError::Protocol { detail, instance: self.instance }));
        }
        match (kind == kind::END, msg.error_kind()) {
            (true, None) => {
                self.end();
                Some(Poll::Ready(None))
            }
            (_, Some(error_kind)) => {
                self.end();
                let error = outcome::failure(&msg, error_kind, &self.label, self.instance, self.decode_err);
                Some(Poll::Ready(Some(Err(error))))
            }
            (false, None) => {
                let detail = format!("unexpected stream message {:?}", msg.headers.get(header::STREAM));
                Some(self.fail(TransportError::Protocol { detail, instance: self.instance }))
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
                    this.silence.heard();
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
                        if this.silence.tick() {
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
    transport: Arc<dyn Transport>,
    subject: String,
    mut rx: mpsc::UnboundedReceiver<Control>,
    heartbeat: Duration,
) {
    let mut beat = tokio::time::interval(heartbeat);
    beat.tick().await;
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Control::Credit(items, bytes)) => {
                    let mut m = control(kind::CREDIT);
                    m.headers.insert(header::STREAM_CREDIT, format!("{items} {bytes}"));
                    let _ = transport.publish(subject.clone(), m).await;
                }
                Some(Control::Finished) => return,
                Some(Control::Cancel) | None => {
                    let _ = transport.publish(subject.clone(), control(kind::CANCEL)).await;
                    return;
                }
            },
            _ = beat.tick() => {
                let _ = transport.publish(subject.clone(), control(kind::KEEPALIVE)).await;
            }
        }
    }
}

/// Turns the reply to a stream request into a stream, or the error it carries.
pub(crate) fn accepted<T, E>(
    reply: Message,
    opened: impl FnOnce(String) -> Opened,
    label: &str,
    instance: Option<InstanceId>,
    decode: Decode<T>,
    decode_err: Decode<E>,
) -> Result<ResponseStream<T, E>, CallError<E>> {
    if let Some(kind) = reply.error_kind() {
        return Err(outcome::failure(&reply, kind, label, instance, decode_err));
    }
    let Some(control) = reply.headers.get(header::STREAM_CONTROL) else {
        return Err(CallError::Transport(TransportError::Decode {
            what: format!("stream acceptance of {label}"),
            detail: "no control subject: is the server's endpoint streaming?".into(),
            instance,
        }));
    };
    if !is_inbox(control) {
        return Err(CallError::Transport(TransportError::Protocol {
            detail: format!(
                "the stream's control subject {control:?} is not an inbox (under {INBOX_PREFIX}); \
                 credit and cancellation go only to one"
            ),
            instance,
        }));
    }
    Ok(ResponseStream::new(opened(control.to_string()), decode, decode_err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::codec;

    #[test]
    fn a_control_subject_that_is_not_an_inbox_refuses_the_stream() {
        for control in ["$SRV.PING", "svc.endpoint", "_INBOX.>", "_INBOX."] {
            let reply = Message {
                headers: Headers::one(header::STREAM_CONTROL, control),
                payload: bytes::Bytes::new(),
            };
            let opened = |_: String| -> Opened { panic!("a stream opened on {control:?}") };
            let result = accepted::<u64, String>(
                reply,
                opened,
                "ns/c/e",
                None,
                codec::decode::<u64>,
                codec::decode::<String>,
            );
            match result {
                Err(CallError::Transport(TransportError::Protocol { detail, .. })) => {
                    assert!(detail.contains("not an inbox"), "{detail}")
                }
                Err(other) => panic!("{control:?}: {other}"),
                Ok(_) => panic!("{control:?}: accepted"),
            }
        }
    }
}
