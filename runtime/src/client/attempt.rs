//! One call's attempts: where each goes, what ends it early, and when the
//! call is sent again.
//!
//! An attempt ends with its reply, its timeout, or as soon as its instance
//! is known to be lost: another call met "no responders" there, discovery
//! dropped it, it was ejected as hung, or this process's connection
//! dropped. A lost attempt of an idempotent call is sent again at once,
//! elsewhere, within the caller's deadline; any other fails at once with
//! [`TransportError::InstanceLost`], rather than waiting out its timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::health::{self, Why};
use super::plane;
use super::route::{CallSubject, Picked, Route, Settled};
use super::{CallMode, ClientCore, Router, server_time};
use crate::engine::transport::Transport;
use crate::engine::transport::message::Message;
use crate::engines::Watch;
use crate::exchange::outcome;
use crate::exchange::trace::Trace;
use crate::{ErrorKind, InstanceId, TransportError};

/// One call's settings, across its attempts.
pub(super) struct Call<'a> {
    pub payload: bytes::Bytes,
    pub timeout: Duration,
    /// Attempts after "no responders", for an idempotent call.
    pub retries: u32,
    /// The trace to send along, if any.
    pub trace: Option<&'a Trace>,
    pub mode: CallMode<'a>,
}

/// Why an attempt stopped waiting before its reply came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lost {
    /// Its instance met "no responders" on another call.
    Gone,
    /// Its instance was ejected for timeouts on other calls.
    Hung,
    /// Discovery no longer lists its instance.
    Deregistered,
    /// This process's connection dropped, and the request or its reply
    /// with it.
    Disconnected,
}

impl Lost {
    fn why(self) -> &'static str {
        match self {
            Lost::Gone => "the instance stopped listening",
            Lost::Hung => "the instance was ejected after consecutive timeouts",
            Lost::Deregistered => "the instance left discovery",
            Lost::Disconnected => "the connection to the broker dropped",
        }
    }
}

/// How long an attempt waits for its reply before it also watches for the
/// loss of its instance.
const WATCH_AFTER: Duration = Duration::from_millis(20);

/// The longest wait for an instance to come back when every one is out of
/// rotation and the last try failed; the first is 10 ms, doubled each time.
const REJOIN_WAIT_MAX: Duration = Duration::from_millis(200);

impl ClientCore {
    /// Sends `call` on route number `number` until a reply, a failure that
    /// ends it, or its deadline.
    pub(super) async fn attempts(
        &self,
        number: usize,
        route: &Route,
        call: Call<'_>,
    ) -> Result<(Message, Option<InstanceId>), TransportError> {
        let Call { payload, timeout, retries, trace, mode } = call;
        let started = Instant::now();
        let engines = &self.shared.engines;
        // A direct call may be sent again only to its own instance, so only
        // when the connection, not the instance, was lost.
        let resendable = route.idempotent;
        let mut retried = 0;
        let mut waits = 0;
        let mut last: Option<TransportError> = None;
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(last.unwrap_or_else(|| TransportError::Timeout {
                    subject: route.queue_subject.clone(),
                    after: timeout,
                    instance: None,
                }));
            }
            // A retry goes to an instance drawn at random, not the next in
            // turn: instances that stop together were mostly started
            // together, so their lease ids, and their places in the sorted
            // list, are neighbours, and the next in turn after one that
            // did not answer is likely to be another.
            let router = if last.is_some() { Router::Random } else { self.router };
            let picked = route.pick(router, self.target)?;
            if picked.fallback && last.is_some() {
                // Every instance is out of rotation and the last try failed:
                // wait a little for one to come back before trying again.
                drop(picked);
                let wait = Duration::from_millis(10).saturating_mul(1 << waits.min(8)).min(REJOIN_WAIT_MAX);
                rejoin(route, wait.min(left)).await;
                waits += 1;
                continue;
            }
            let Picked { subject, instance, fallback, in_flight } = picked;
            // A unary reply is bounded by the call's timeout; a stream lasts
            // as long as the caller reads it, so its deadline is only the
            // one the caller set.
            let server_time = match mode {
                CallMode::Unary => Some(server_time(left)),
                CallMode::Stream(_) => self.timeout.map(|t| t.saturating_sub(started.elapsed())),
            };
            // With a deadline the request is a copy in its envelope, so the
            // payload stays for another attempt without being shared
            // (sharing a payload allocates, and only a stream without a
            // deadline does it: any call may be refused and sent again).
            let mut message = match server_time {
                Some(time) => Message::enveloped(&payload, time),
                None => Message::request(payload.clone(), None),
            };
            if let Some(trace) = trace {
                trace.write(&mut message.headers);
            }
            // A stream's items go to one inbox: a second server may be
            // asked to open it only when the first surely is not streaming
            // (it stopped listening or left), not when it may be alive.
            let unary = matches!(mode, CallMode::Unary);
            let watch_hung = resendable && self.target.is_none() && unary;
            let record = match &subject {
                CallSubject::Listed(record) => Some(&**record),
                _ => None,
            };
            let mut direct = false;
            // Reaching the instance (a first connection to it, a stream's
            // inbox) is part of the call, within its timeout.
            let reach = async {
                let Ok(plane) = plane::plane(engines, record).await else { return Ok(None) };
                if let CallMode::Stream(open) = mode {
                    for (name, value) in open.headers(&plane.transport).await? {
                        message.headers.insert(name, value);
                    }
                }
                Ok(Some(plane))
            };
            let reached = tokio::time::timeout(left, reach).await.unwrap_or_else(|_| {
                Err(TransportError::Timeout {
                    subject: subject.as_str().to_string(),
                    after: timeout,
                    instance,
                })
            });
            let reached = match reached {
                Ok(reached) => reached,
                Err(e) => {
                    in_flight.settle(Settled::Other);
                    return Err(e);
                }
            };
            let result = match reached {
                // Nothing listens at its direct address: as "no responders".
                None => {
                    Ok(Err(TransportError::NoResponders { subject: subject.as_str().to_string(), instance }))
                }
                Some(plane) => {
                    direct = plane.direct;
                    let left = timeout.saturating_sub(started.elapsed());
                    let transport = &*plane.transport;
                    let losses = transport.connection_loss_count();
                    let request = transport.request(subject.as_str(), message, left);
                    tokio::pin!(request);
                    // Most calls end well within WATCH_AFTER; only a call that
                    // takes longer watches for its instance's loss, and first
                    // looks at what happened meanwhile (watching every call
                    // would register it on receivers every call in flight
                    // shares).
                    match tokio::time::timeout(WATCH_AFTER.min(left), &mut request).await {
                        Ok(result) => Ok(result),
                        Err(_) => {
                            let watch = Watchers::new(route, !fallback, transport);
                            let lost =
                                watch.lost(route, instance, subject.as_str(), watch_hung, transport, losses);
                            tokio::select! {
                                biased;
                                result = &mut request => Ok(result),
                                lost = lost => Err(lost),
                            }
                        }
                    }
                }
            };
            match result {
                Ok(Ok(reply)) if reply.error_kind() == Some(ErrorKind::Refused) => {
                    // A draining instance refused it unrun: elsewhere, for
                    // any endpoint.
                    in_flight.settle(Settled::Other);
                    let Some(id) = instance else { return Ok((reply, None)) };
                    self.take_out(number, route, id, Why::Draining, subject.as_str());
                    if retried >= retries.max(1) || self.target.is_some() {
                        return Ok((reply, Some(id)));
                    }
                    retried += 1;
                    route.metrics.retries.inc();
                    last = Some(TransportError::NoResponders {
                        subject: subject.as_str().to_string(),
                        instance,
                    });
                }
                Ok(Ok(reply)) => {
                    in_flight.settle(Settled::Answered);
                    let answered = outcome::answered_by(&reply.headers).or(instance);
                    return Ok((reply, answered));
                }
                Ok(Err(e @ TransportError::NoResponders { .. })) => {
                    in_flight.settle(Settled::Other);
                    let Some(id) = instance else { return Err(e) };
                    // Gone before its lease lapsed: out of rotation now, and
                    // every call in flight to it is sent elsewhere.
                    self.take_out(number, route, id, Why::Gone, subject.as_str());
                    tracing::debug!(endpoint = %route.label, instance = %id, "no responders; out of rotation");
                    if retried >= retries || self.target.is_some() {
                        return Err(e.at(id));
                    }
                    retried += 1;
                    route.metrics.retries.inc();
                    last = Some(e.at(id));
                }
                Ok(Err(TransportError::Disconnected(_))) if direct => {
                    // The instance's own connection closed under the call:
                    // it is gone, as far as this client can tell.
                    in_flight.settle(Settled::Other);
                    if let Some(id) = instance {
                        self.take_out(number, route, id, Why::Gone, subject.as_str());
                    }
                    let lost = TransportError::InstanceLost {
                        endpoint: route.label.clone(),
                        why: "the direct connection to the instance closed",
                        instance,
                    };
                    if !(resendable && unary && self.target.is_none()) || retried >= retries {
                        return Err(lost);
                    }
                    tracing::debug!(endpoint = %route.label, "direct connection closed; sending again");
                    retried += 1;
                    route.metrics.retries.inc();
                    last = Some(lost);
                }
                Ok(Err(e @ TransportError::Timeout { .. })) => {
                    if in_flight.settle(Settled::TimedOut)
                        && let Some(id) = instance
                    {
                        self.start_probe(number, route, id, subject.as_str());
                    }
                    return Err(match instance {
                        Some(id) => e.at(id),
                        None => e,
                    });
                }
                Ok(Err(e)) => {
                    in_flight.settle(Settled::Other);
                    return Err(match instance {
                        Some(id) => e.at(id),
                        None => e,
                    });
                }
                Err(lost) => {
                    in_flight.settle(Settled::Other);
                    let elsewhere = self.target.is_none() || lost == Lost::Disconnected;
                    let surely_idle = unary || matches!(lost, Lost::Gone | Lost::Deregistered);
                    if !(resendable && elsewhere && surely_idle) {
                        return Err(TransportError::InstanceLost {
                            endpoint: route.label.clone(),
                            why: lost.why(),
                            instance,
                        });
                    }
                    tracing::debug!(endpoint = %route.label, why = lost.why(), "sending again");
                    route.metrics.retries.inc();
                    last = Some(TransportError::InstanceLost {
                        endpoint: route.label.clone(),
                        why: lost.why(),
                        instance,
                    });
                }
            }
        }
    }

    /// Takes `id` out of rotation for `why`, probing it on `subject` until
    /// it answers when it was in.
    pub(super) fn take_out(&self, number: usize, route: &Route, id: InstanceId, why: Why, subject: &str) {
        if route.take_out(id, why) {
            self.start_probe(number, route, id, subject);
        }
    }

    fn start_probe(&self, number: usize, route: &Route, id: InstanceId, subject: &str) {
        tracing::debug!(endpoint = %route.label, instance = %id, "probing until it answers");
        tokio::spawn(health::probe(Arc::downgrade(&self.shared), number, id, subject.to_string()));
    }
}

/// Waits up to `wait` for an instance to rejoin rotation or discovery to
/// change.
async fn rejoin(route: &Route, wait: Duration) {
    let mut rotation = route.rotation();
    let mut listed = route.instances.as_deref().cloned();
    if let Some(listed) = &mut listed {
        listed.borrow_and_update();
    }
    tokio::select! {
        _ = rotation.changed() => {}
        _ = changed(&mut listed) => {}
        () = tokio::time::sleep(wait) => {}
    }
}

/// What tells an attempt in flight that its instance is lost.
struct Watchers {
    /// `None` when the instance was already out when picked.
    rotation: Option<watch::Receiver<u64>>,
    listed: Option<Watch>,
    losses: watch::Receiver<u64>,
}

impl Watchers {
    fn new(route: &Route, rotation: bool, transport: &dyn Transport) -> Self {
        let mut listed = route.instances.as_deref().cloned();
        if let Some(listed) = &mut listed {
            listed.borrow_and_update();
        }
        Watchers {
            rotation: rotation.then(|| route.rotation()),
            listed,
            losses: transport.connection_losses(),
        }
    }

    /// Resolves when `instance`, reached on `subject`, is known lost, also
    /// by what happened since the attempt began (`losses` connection losses
    /// then); `hung` says whether an ejection for timeouts counts.
    async fn lost(
        mut self,
        route: &Route,
        instance: Option<InstanceId>,
        subject: &str,
        hung: bool,
        transport: &dyn Transport,
        losses: u64,
    ) -> Lost {
        if transport.connection_loss_count() != losses {
            return Lost::Disconnected;
        }
        let Some(id) = instance else {
            // The queue group's members are not known one by one: only the
            // connection's loss tells.
            if self.losses.changed().await.is_ok() {
                return Lost::Disconnected;
            }
            return std::future::pending().await;
        };
        let mut check_listed = self.listed.is_some();
        loop {
            if self.rotation.is_some() {
                match route.out(id) {
                    Some(out) if out.why == Why::Gone => return Lost::Gone,
                    Some(out) if out.why == Why::Hung && hung => return Lost::Hung,
                    // A draining instance finishes what it accepted.
                    _ => {}
                }
            }
            if std::mem::take(&mut check_listed)
                && let Some(listed) = &mut self.listed
            {
                let list = listed.borrow_and_update().clone();
                // An instance that replaced its lease is listed under a new
                // id, on the same subject: not lost.
                if !list.contains(id) && !list.iter().any(|r| r.transport.subject() == subject) {
                    // A graceful shutdown leaves discovery first and
                    // finishes its calls: only an instance that no longer
                    // listens is lost; one that answers the probe, even with
                    // a refusal, is still at work on this call.
                    let probe = transport.request(subject, Message::probe(), health::PROBE_TIMEOUT).await;
                    if let Err(TransportError::NoResponders { .. }) = probe {
                        return Lost::Deregistered;
                    }
                    self.listed = None;
                }
            }
            tokio::select! {
                Ok(()) = changed_rotation(&mut self.rotation) => {}
                Ok(()) = changed(&mut self.listed) => check_listed = true,
                Ok(()) = self.losses.changed() => return Lost::Disconnected,
                else => std::future::pending::<()>().await,
            }
        }
    }
}

async fn changed_rotation(
    rotation: &mut Option<watch::Receiver<u64>>,
) -> Result<(), watch::error::RecvError> {
    match rotation {
        Some(rx) => rx.changed().await,
        None => std::future::pending().await,
    }
}

async fn changed(listed: &mut Option<Watch>) -> Result<(), watch::error::RecvError> {
    match listed {
        Some(rx) => rx.changed().await,
        None => std::future::pending().await,
    }
}
