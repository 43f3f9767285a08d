//! Fan-out: one endpoint called on every instance discovery lists when the
//! call starts, each answer yielded as it comes, under one deadline and a
//! bound on the calls in flight. It is a mode of the call, not of the
//! exchange: each instance gets a direct call, with its typed outcome.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, Stream, StreamExt};
use tokio::time::Instant;

use super::ClientCore;
use super::health::{PROBE_TIMEOUT, Why};
use crate::engine::transport::message::Message;
use crate::exchange::codec::{CodecError, Decode};
use crate::{CallError, InstanceId, TransportError};

/// How a fan-out runs: its overall deadline and how many instances are
/// called at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FanOut {
    within: Option<Duration>,
    concurrency: usize,
}

impl Default for FanOut {
    fn default() -> Self {
        FanOut { within: None, concurrency: 16 }
    }
}

impl FanOut {
    /// The client's timeout as the deadline, 16 calls at once.
    pub fn new() -> Self {
        FanOut::default()
    }

    /// Every answer comes within `deadline` of the start; an instance that
    /// has not answered by then is reported with a timeout.
    pub fn within(mut self, deadline: Duration) -> Self {
        self.within = Some(deadline);
        self
    }

    /// At most `calls` instances are called at once (at least 1).
    pub fn concurrency(mut self, calls: usize) -> Self {
        self.concurrency = calls.max(1);
        self
    }
}

/// How often the instances still owing an answer are probed, so that one
/// that died is reported at once rather than at the deadline.
const PROBE_EVERY: Duration = Duration::from_millis(100);

/// The answers of a fan-out, one per instance, in the order they come:
/// `(instance, outcome)`. It ends when every instance asked has answered or
/// been reported.
#[must_use = "a fan-out calls nothing until its answers are read"]
pub struct Answers<T, E> {
    calls: BoxStream<'static, (InstanceId, Result<T, CallError<E>>)>,
    /// Probes the instances still owing an answer; never finishes.
    probes: Option<BoxFuture<'static, ()>>,
    asked: usize,
}

impl<T, E> std::fmt::Debug for Answers<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answers").field("asked", &self.asked).finish()
    }
}

impl<T, E> Answers<T, E> {
    /// How many instances were asked: those discovery listed at the start.
    pub fn asked(&self) -> usize {
        self.asked
    }
}

impl<T, E> Stream for Answers<T, E> {
    type Item = (InstanceId, Result<T, CallError<E>>);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(probes) = &mut self.probes {
            // Never ready: it only makes progress while the answers are read.
            let _ = probes.as_mut().poll(cx);
        }
        let next = self.calls.poll_next_unpin(cx);
        if let Poll::Ready(None) = next {
            self.probes = None;
        }
        next
    }
}

impl ClientCore {
    /// Calls `endpoint` (its wire name) with a typed request on every
    /// instance discovery lists now, yielding each typed outcome as it
    /// comes. Instances that join meanwhile are not called; one that dies
    /// is reported (probes find it within about 100 ms), not waited for.
    /// Fails without discovery: the members of a queue group are not known
    /// one by one.
    pub fn fan_out<Req, T, E>(
        &self,
        endpoint: &str,
        request: &Req,
        options: FanOut,
    ) -> Result<Answers<T, E>, CallError<E>>
    where
        Req: serde::Serialize + ?Sized,
        T: serde::de::DeserializeOwned + Send + 'static,
        E: serde::de::DeserializeOwned + Send + 'static,
    {
        let number = self.number(endpoint)?;
        let (payload, ok, err) = self.typed(request);
        self.fan_out_with(number, payload, ok, err, options)
    }

    pub(crate) fn fan_out_with<T, E>(
        &self,
        number: usize,
        payload: Result<Bytes, CodecError>,
        decode_ok: Decode<T>,
        decode_err: Decode<E>,
        options: FanOut,
    ) -> Result<Answers<T, E>, CallError<E>>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        let route = self.route(number)?;
        let payload = super::encoded(route, payload)?;
        let Some(instances) = &route.instances else {
            return Err(CallError::Transport(TransportError::NotListed { endpoint: route.label.clone() }));
        };
        let mut listed: Vec<(InstanceId, String)> =
            instances.borrow().iter().map(|r| (r.instance_id, r.transport.subject().to_string())).collect();
        listed.dedup_by_key(|(id, _)| *id);
        let within = options.within.or(self.timeout).unwrap_or(self.shared.engines.config.request_timeout);
        let deadline = Instant::now() + within;
        let owing: Owing = Arc::new(Mutex::new(HashMap::new()));
        let asked = listed.len();
        let calls = {
            let (core, owing) = (self.clone(), owing.clone());
            futures::stream::iter(listed).map(move |(id, subject)| {
                let (core, owing, payload) = (core.clone(), owing.clone(), payload.clone());
                async move {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        let timeout = TransportError::Timeout { subject, after: within, instance: Some(id) };
                        return (id, Err(CallError::Transport(timeout)));
                    }
                    lock(&owing).insert(id, subject);
                    let call = core.direct(id).with_timeout(left);
                    let outcome = call.unary_with(number, Ok(payload), decode_ok, decode_err).await;
                    lock(&owing).remove(&id);
                    (id, outcome)
                }
            })
        };
        let calls = calls.buffer_unordered(options.concurrency).boxed();
        let probes = Box::pin(probe_owing(self.clone(), number, owing));
        Ok(Answers { calls, probes: Some(probes), asked })
    }
}

/// The instances called and not yet answered, with their subjects.
type Owing = Arc<Mutex<HashMap<InstanceId, String>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Probes every instance still owing an answer, every [`PROBE_EVERY`]: one
/// that no longer listens is taken out of rotation as gone, which ends the
/// direct call in flight to it with `InstanceLost`.
async fn probe_owing(core: ClientCore, number: usize, owing: Owing) {
    let mut tick = tokio::time::interval_at(Instant::now() + PROBE_EVERY, PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let pending: Vec<(InstanceId, String)> =
            lock(&owing).iter().map(|(id, s)| (*id, s.clone())).collect();
        let transport = &core.shared.engines.transport;
        let probes = pending.into_iter().map(|(id, subject)| async move {
            let probe = transport.request(&subject, Message::probe(), PROBE_TIMEOUT).await;
            matches!(probe, Err(TransportError::NoResponders { .. })).then_some((id, subject))
        });
        for (id, subject) in futures::future::join_all(probes).await.into_iter().flatten() {
            if let Ok(route) = core.route(number) {
                tracing::debug!(endpoint = %route.label, instance = %id, "fan-out: no responders; reported");
                core.take_out(number, route, id, Why::Gone, &subject);
            }
        }
    }
}
