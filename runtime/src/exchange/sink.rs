//! Where a request's outcome goes. A request is answered once: with a reply,
//! or, at a streaming endpoint, by accepting the stream, after which
//! whatever ends the request (the handler's end, its error, its deadline, a
//! panic, shutdown) ends the stream instead. The handler hands its outcome
//! back as a value; nothing it holds can answer twice.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::stream::{StreamSetup, terminal};
use crate::engine::transport::Respond;
use crate::engine::transport::message::{Message, header};
use crate::{ErrorKind, InstanceId};

/// What a handler's future ends with.
pub enum Outcome {
    /// The reply to send (or, after a stream was accepted, the failure that
    /// ends it).
    Reply(Message),
    /// A stream was accepted and has sent its own end.
    Streamed,
}

/// Everything needed to send the one reply to a request.
pub(crate) struct Answer {
    responder: Box<dyn Respond>,
    instance: InstanceId,
    /// The caller addressed this instance, so it knows who answers.
    addressed: bool,
    max_payload: usize,
}

impl Answer {
    pub(crate) fn new(
        responder: Box<dyn Respond>,
        instance: InstanceId,
        addressed: bool,
        max_payload: usize,
    ) -> Self {
        Answer { responder, instance, addressed, max_payload }
    }

    async fn send(self, mut reply: Message) {
        // A caller that addressed this instance knows who answers; a success
        // then goes without any header, the cheapest reply there is.
        if !self.addressed || reply.error_kind().is_some() {
            reply.headers.insert(header::INSTANCE, self.instance.to_string());
        }
        if reply.size() > self.max_payload {
            let text = format!(
                "the response is {} bytes, over the transport's limit of {} bytes (max_payload)",
                reply.size(),
                self.max_payload
            );
            reply = Message::error(ErrorKind::Oversize, &text);
            reply.headers.insert(header::INSTANCE, self.instance.to_string());
        }
        if let Err(e) = self.responder.respond(reply).await {
            tracing::warn!(error = %e, "could not send a reply");
        }
    }
}

/// The request's reply channel, held by whoever serves the request.
pub(crate) enum ReplySink {
    /// Answered once, with the outcome.
    Unary(Answer),
    /// A request that opens a stream; the handler holds the same slot to
    /// accept it.
    Stream(Arc<StreamSlot>),
}

impl ReplySink {
    /// Sends the outcome: the reply, or, when a stream was accepted, the
    /// failure that ends it.
    pub(crate) async fn finish(self, outcome: Outcome) {
        let reply = match (outcome, &self) {
            (Outcome::Reply(reply), _) => reply,
            (Outcome::Streamed, ReplySink::Stream(_)) => return,
            // Only a handler written by hand can claim a stream it never
            // opened: the caller still gets an answer.
            (Outcome::Streamed, ReplySink::Unary(_)) => {
                super::outcome::internal("the handler ended a stream it never opened")
            }
        };
        match self {
            ReplySink::Unary(answer) => answer.send(reply).await,
            ReplySink::Stream(slot) => match slot.take() {
                Some(answer) => answer.send(reply).await,
                None => {
                    // The stream was cut short (deadline, shutdown, panic): tell the caller.
                    let setup = &slot.setup;
                    let _ = setup.transport.publish(setup.inbox.clone(), terminal(reply)).await;
                }
            },
        }
    }
}

/// A stream not yet accepted, and where its messages go.
pub(crate) struct StreamSlot {
    answer: Mutex<Option<Answer>>,
    pub(crate) setup: StreamSetup,
    instance: InstanceId,
}

impl StreamSlot {
    pub(crate) fn new(answer: Answer, setup: StreamSetup) -> Arc<Self> {
        let instance = answer.instance;
        Arc::new(StreamSlot { answer: Mutex::new(Some(answer)), setup, instance })
    }

    fn take(&self) -> Option<Answer> {
        self.answer.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Accepts the stream: answers the request with the subject the caller
    /// sends credit and cancellation to. `false` when the request was
    /// already answered, or the caller is gone.
    pub(crate) async fn accept(&self, control: String) -> bool {
        let Some(answer) = self.take() else { return false };
        let mut accept = Message::ok(Bytes::new());
        accept.headers.insert(header::STREAM_CONTROL, control);
        accept.headers.insert(header::INSTANCE, self.instance.to_string());
        answer.responder.respond(accept).await.is_ok()
    }
}
