//! Requests and replies larger than one NATS message. NATS carries at most
//! its `max_payload` (1 MiB by default) in one message; an endpoint takes
//! requests up to its `max_request` and may answer as much. Over NATS such
//! a message travels in chunks, each a request answered before the next
//! goes, so that neither side can be overrun, and a chunk lost with a
//! broken connection fails the call at its timeout like any request:
//!
//! - A large request first sends its headers alone, with `Rotor-Upload:
//!   <size>`, to the endpoint's subject. The instance that takes it
//!   refuses at once a size over the endpoint's limit (`oversize`, 413,
//!   before any memory is set aside for it), or answers with an inbox of
//!   its own (`Rotor-Upload-To`). The chunks go there; each is
//!   acknowledged with an empty reply, and the last is answered with the
//!   call's reply.
//! - A large reply is sent as its headers alone, with `Rotor-Download:
//!   <size>` and an inbox of the instance's (`Rotor-Download-From`); the
//!   caller asks there for each chunk in turn.
//!
//! The direct plane needs none of this: its frames carry the whole message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::message::{ENVELOPE_LEN, Headers, Message, header};
use super::nats::{Nats, NatsResponder, to_nats};
use super::{Respond, Transport, too_large};
use crate::{ErrorKind, TransportError};

/// How long an instance keeps a request whose chunks stopped coming, or a
/// reply nobody asks for, before it lets go of it.
const IDLE: Duration = Duration::from_secs(30);

/// Sends `message`, too large for one NATS message, to `subject`; the reply
/// (the head of one in chunks, when it is large too).
pub(super) async fn upload(
    nats: &Nats,
    subject: &str,
    message: Message,
    timeout: Duration,
) -> Result<Message, TransportError> {
    let deadline = Instant::now() + timeout;
    let Message { mut headers, payload } = message;
    headers.insert(header::UPLOAD, payload.len().to_string());
    let head = nats.request_once(subject, Message { headers, payload: Bytes::new() }, timeout).await?;
    let Some(to) = head.headers.get(header::UPLOAD_TO).map(str::to_string) else {
        // Refused before any chunk went: over the endpoint's limit, say.
        return Ok(head);
    };
    let mut sent = 0;
    loop {
        let end = (sent + nats.max_payload()).min(payload.len());
        let chunk = Message { headers: Headers::new(), payload: payload.slice(sent..end) };
        let answer = nats.request_once(&to, chunk, left(deadline, subject, timeout)?).await;
        let answer = answer.map_err(|e| named(e, subject))?;
        sent = end;
        // An answer with headers before the last chunk is a refusal.
        if sent == payload.len() || !answer.headers.is_empty() {
            return Ok(answer);
        }
    }
}

/// The whole reply, when `reply` is the head of one sent in chunks.
pub(super) async fn download(
    nats: &Nats,
    subject: &str,
    mut reply: Message,
    deadline: Instant,
    timeout: Duration,
) -> Result<Message, TransportError> {
    let Some(size) = reply.headers.remove(header::DOWNLOAD) else { return Ok(reply) };
    let protocol = |detail: &str| TransportError::Protocol { detail: detail.to_string(), instance: None };
    let (Ok(size), Some(from)) = (size.parse::<usize>(), reply.headers.remove(header::DOWNLOAD_FROM)) else {
        return Err(protocol("a reply in chunks without its size or its inbox"));
    };
    let limit = nats.max_message();
    if size > limit {
        return Err(TransportError::Oversize { what: "response".into(), size, limit });
    }
    let mut body = BytesMut::with_capacity(size);
    while body.len() < size {
        let chunk = nats.request_once(&from, Message::default(), left(deadline, subject, timeout)?).await;
        let chunk = chunk.map_err(|e| named(e, subject))?;
        if chunk.payload.is_empty() || body.len() + chunk.payload.len() > size {
            return Err(protocol("a chunk of a reply that is empty or runs past the reply's size"));
        }
        body.extend_from_slice(&chunk.payload);
    }
    reply.payload = body.freeze();
    Ok(reply)
}

/// Takes the chunks of the request whose head is `head`, then hands the
/// whole request to `deliver`, with the responder of its last chunk.
pub(super) fn receive(
    mut head: Message,
    mut responder: NatsResponder,
    max_request: usize,
    deliver: impl FnOnce(Message, NatsResponder) + Send + 'static,
) {
    tokio::spawn(async move {
        let size = head.headers.remove(header::UPLOAD).and_then(|s| s.parse::<usize>().ok());
        let Some(size) = size else {
            return refuse(responder, ErrorKind::Decode, "Rotor-Upload is not a size in bytes".into()).await;
        };
        // The exact check, on the request without its envelope, is the
        // dispatcher's: the same on every plane.
        if size > max_request.saturating_add(ENVELOPE_LEN) {
            let text = too_large(size.saturating_sub(ENVELOPE_LEN), max_request);
            return refuse(responder, ErrorKind::Oversize, text).await;
        }
        let client = responder.client.clone();
        let inbox = client.new_inbox();
        let mut chunks = match client.subscribe(inbox.clone()).await {
            Ok(chunks) => chunks,
            Err(e) => {
                let text = format!("could not take the request's chunks: {e}");
                return refuse(responder, ErrorKind::Unavailable, text).await;
            }
        };
        let ready = to_nats(Headers::one(header::UPLOAD_TO, inbox));
        if client.publish_with_headers(responder.to.clone(), ready, Bytes::new()).await.is_err() {
            return;
        }
        // Set aside only now, the size being within the endpoint's limit.
        let mut body = BytesMut::with_capacity(size);
        loop {
            let Ok(Some(chunk)) = tokio::time::timeout(IDLE, chunks.next()).await else {
                tracing::debug!(size, received = body.len(), "a request in chunks stopped coming; dropped");
                return;
            };
            let Some(reply_to) = chunk.reply else { continue };
            responder.to = reply_to;
            if chunk.payload.is_empty() || body.len() + chunk.payload.len() > size {
                let text = "a chunk that is empty or runs past the request's announced size".to_string();
                return refuse(responder, ErrorKind::Decode, text).await;
            }
            body.extend_from_slice(&chunk.payload);
            if body.len() == size {
                drop(chunks);
                return deliver(Message { headers: head.headers, payload: body.freeze() }, responder);
            }
            if client.publish(responder.to.clone(), Bytes::new()).await.is_err() {
                return;
            }
        }
    });
}

/// Sends `reply`, too large for one NATS message, to `to`: its head now,
/// its chunks to whoever asks the head's inbox.
pub(super) async fn offer(
    client: &Arc<async_nats::Client>,
    to: async_nats::Subject,
    reply: Message,
    chunk: usize,
) -> Result<(), TransportError> {
    let disconnected = |e: String| TransportError::Disconnected(format!("could not send a reply: {e}"));
    let inbox = client.new_inbox();
    let mut asks = client.subscribe(inbox.clone()).await.map_err(|e| disconnected(e.to_string()))?;
    let Message { mut headers, payload } = reply;
    headers.insert(header::DOWNLOAD, payload.len().to_string());
    headers.insert(header::DOWNLOAD_FROM, inbox);
    client
        .publish_with_headers(to, to_nats(headers), Bytes::new())
        .await
        .map_err(|e| disconnected(e.to_string()))?;
    let client = client.clone();
    tokio::spawn(async move {
        let mut sent = 0;
        while sent < payload.len() {
            let Ok(Some(ask)) = tokio::time::timeout(IDLE, asks.next()).await else {
                tracing::debug!(size = payload.len(), sent, "a reply in chunks was not fetched; dropped");
                return;
            };
            let Some(reply_to) = ask.reply else { continue };
            let end = (sent + chunk).min(payload.len());
            if client.publish(reply_to, payload.slice(sent..end)).await.is_err() {
                return;
            }
            sent = end;
        }
    });
    Ok(())
}

async fn refuse(responder: NatsResponder, kind: ErrorKind, text: String) {
    if let Err(e) = Box::new(responder).respond(Message::error(kind, &text)).await {
        tracing::debug!(error = %e, "could not refuse a request in chunks");
    }
}

/// What is left of the call's time; a timeout on `subject` when nothing is.
fn left(deadline: Instant, subject: &str, timeout: Duration) -> Result<Duration, TransportError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(TransportError::Timeout { subject: subject.to_string(), after: timeout, instance: None });
    }
    Ok(left)
}

/// `e`, naming the call's subject rather than the inbox of its chunks.
fn named(e: TransportError, subject: &str) -> TransportError {
    match e {
        TransportError::Timeout { after, instance, .. } => {
            TransportError::Timeout { subject: subject.to_string(), after, instance }
        }
        TransportError::NoResponders { instance, .. } => {
            TransportError::NoResponders { subject: subject.to_string(), instance }
        }
        e => e,
    }
}
