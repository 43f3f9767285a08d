//! The serving side of a stream: accept, then send the handler's items as
//! credit allows, heartbeats while idle, and the end.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    BATCH_HEADER, Batch, Credit, DEFAULT_HEARTBEAT, ENTRY_HEADER, INBOX_PREFIX, MAX_BATCH, MISSED_BEATS,
    clamp_heartbeat, control, end, is_inbox, kind, on_control, parse_pair, seq_of,
};
use crate::ErrorKind;
use crate::engine::metrics::EndpointMetrics;
use crate::engine::transport::Transport;
use crate::engine::transport::message::{Headers, Message, header};
use crate::exchange::codec::Encode;
use crate::exchange::outcome::{app_error, internal};
use crate::exchange::sink::{Outcome, StreamSlot};

/// Where a streaming endpoint sends its items, as the caller asked.
pub(crate) struct StreamSetup {
    pub inbox: String,
    pub window: u32,
    pub window_bytes: u64,
    pub heartbeat: Duration,
    pub transport: Arc<dyn Transport>,
}

impl StreamSetup {
    /// The caller's stream request, from its headers; `None` when it asked
    /// for no stream (a plain request to a streaming endpoint); `Err` with
    /// the reason when the inbox is not one.
    pub(crate) fn from_headers(
        headers: &Headers,
        transport: &Arc<dyn Transport>,
    ) -> Result<Option<Self>, String> {
        let Some(inbox) = headers.get(header::STREAM_INBOX) else { return Ok(None) };
        if !is_inbox(inbox) {
            return Err(format!(
                "{} {inbox:?} is not an inbox: a stream goes only to a subject under {INBOX_PREFIX} with \
                 no wildcard",
                header::STREAM_INBOX
            ));
        }
        let window = headers.get(header::STREAM_WINDOW).and_then(parse_pair).unwrap_or((1, 1));
        let heartbeat = headers
            .get(header::STREAM_HEARTBEAT_MS)
            .and_then(|h| h.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_HEARTBEAT);
        Ok(Some(StreamSetup {
            inbox: inbox.to_string(),
            window: window.0.clamp(1, u64::from(u32::MAX)) as u32,
            window_bytes: window.1.max(1),
            heartbeat: clamp_heartbeat(heartbeat),
            transport: transport.clone(),
        }))
    }
}

/// How a stream's items and its error are encoded and described.
pub(crate) struct ItemCodecs<T, E> {
    pub item: Encode<T>,
    pub error: Encode<E>,
    pub describe: fn(&E) -> String,
}

/// What the served request lends the stream.
pub(crate) struct Served<'a> {
    /// Cancelled when the request is: the caller went, or its deadline passed.
    pub cancel: &'a CancellationToken,
    pub metrics: &'a EndpointMetrics,
    /// `namespace/component/endpoint`, for logs.
    pub label: &'a str,
}

/// Accepts the stream and sends `stream` to the caller until it ends, fails,
/// or the caller goes.
pub(crate) async fn serve<T, E, S>(
    slot: &StreamSlot,
    stream: S,
    codecs: ItemCodecs<T, E>,
    served: Served<'_>,
) -> Outcome
where
    S: Stream<Item = Result<T, E>>,
{
    let setup = &slot.setup;
    let transport = &setup.transport;
    let control = transport.inbox();
    let mut control_messages = match transport.subscribe(control.clone()).await {
        Ok(s) => s,
        Err(e) => return Outcome::Reply(internal(&format!("cannot open the stream: {e}"))),
    };
    if !slot.accept(control).await {
        return Outcome::Streamed;
    }
    let stream = std::pin::pin!(stream);
    let last = pump(setup, stream, &mut control_messages, &codecs, &served).await;
    if let Some(kind) = last.as_ref().and_then(Message::error_kind) {
        served.metrics.error(kind.as_str());
    }
    if let Some(mut last) = last {
        if last.size() > transport.max_payload() {
            // An error too large to send (a huge application error): say so instead.
            let text = "the stream's final error is larger than max_payload";
            last = end(seq_of(&last).unwrap_or(0), Message::error(ErrorKind::Oversize, text));
        }
        let _ = transport.publish(setup.inbox.clone(), last).await;
    }
    Outcome::Streamed
}

/// Moves items until the stream ends, fails, or the caller goes; returns
/// the last message to send, if the caller is still there.
async fn pump<T, E, S>(
    setup: &StreamSetup,
    mut stream: std::pin::Pin<&mut S>,
    control_messages: &mut BoxStream<'static, Message>,
    codecs: &ItemCodecs<T, E>,
    served: &Served<'_>,
) -> Option<Message>
where
    S: Stream<Item = Result<T, E>>,
{
    let transport = &setup.transport;
    let limit = transport.max_payload();
    let mut credit = Credit::new(u64::from(setup.window), setup.window_bytes);
    let mut seq = 0u64;
    let mut heard_from_caller = Instant::now();
    let silence_limit = setup.heartbeat * MISSED_BEATS;
    let mut beat = tokio::time::interval(setup.heartbeat);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let cancelled = |metrics: &EndpointMetrics| {
        served.cancel.cancel();
        metrics.cancellations.inc();
    };
    loop {
        tokio::select! {
            biased;
            msg = control_messages.next() => {
                let msg = msg?;
                heard_from_caller = Instant::now();
                if on_control(&mut credit, &msg) {
                    cancelled(served.metrics);
                    return None;
                }
            }
            item = stream.next(), if credit.can_send() => {
                // Every item ready now, as far as credit goes, travels in
                // one message: a plain NATS PUB carries many items.
                let mut item = item;
                let mut batch = Batch::new(seq);
                let mut last = None;
                loop {
                    let bytes = match item {
                        None => {
                            last = Some(end(seq, Message::ok(Bytes::new())));
                            break;
                        }
                        Some(Err(e)) => {
                            last = Some(end(seq, app_error(&e, codecs.describe, codecs.error)));
                            break;
                        }
                        Some(Ok(value)) => match (codecs.item)(&value) {
                            Ok(bytes) => bytes,
                            Err(e) => {
                                last = Some(end(seq, internal(&format!("could not encode item {seq}: {e}"))));
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
                        last = Some(end(seq, Message::error(ErrorKind::Oversize, &text)));
                        break;
                    }
                    if batch.len() + entry > limit.min(MAX_BATCH) {
                        let full = std::mem::replace(&mut batch, Batch::new(seq));
                        if transport.publish(setup.inbox.clone(), full.into_message()).await.is_err() {
                            return None;
                        }
                    }
                    batch.push(&bytes);
                    served.metrics.stream_items.inc();
                    served.metrics.response_bytes.inc_by(entry as u64);
                    seq += 1;
                    credit.spend(entry);
                    if !credit.can_send() {
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
                    tracing::debug!(endpoint = served.label, "stream caller silent; cancelling");
                    cancelled(served.metrics);
                    return None;
                }
                let _ = transport.publish(setup.inbox.clone(), control(kind::HEARTBEAT)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_inbox;

    #[test]
    fn only_an_inbox_may_receive_a_stream() {
        for ok in ["_INBOX.abc", "_INBOX.inproc.7", "_INBOX.Ab12.x"] {
            assert!(is_inbox(ok), "{ok}");
        }
        for bad in [
            "$SRV.PING",
            "svc.endpoint",
            "_INBOX.",
            "_INBOX.>",
            "_INBOX.*",
            "_INBOX..a",
            "_INBOXa.b",
            "_INBOX.a b",
        ] {
            assert!(!is_inbox(bad), "{bad}");
        }
    }
}
