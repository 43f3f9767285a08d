//! What a client learns about an instance beyond discovery, and how an
//! instance it took out of rotation earns its way back: on evidence (an
//! answer to a probe, or to a call), never by a clock alone.
//!
//! Two kinds of evidence take an instance out. "No responders" says that
//! nothing listens on its subject: it died or lost its connection, and comes
//! back as soon as a probe is answered (probed quickly, since a broker
//! restart makes live instances look gone for a moment). Consecutive
//! timeouts say that it hangs: it is ejected for a while that grows with
//! each ejection, as Envoy's outlier detection does, then probed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;

use super::Shared;
use crate::InstanceId;
use crate::wire::Message;

/// Consecutive timeouts that eject an instance.
pub(super) const EJECT_AFTER_TIMEOUTS: u32 = 3;

/// The first probe of an instance that answered "no responders"; each
/// unanswered probe doubles the wait, up to [`GONE_PROBE_MAX`].
const GONE_PROBE_FIRST: Duration = Duration::from_millis(25);

/// The longest wait between probes of an instance that answered "no
/// responders": a live instance is back in rotation at most this long after
/// it listens again.
const GONE_PROBE_MAX: Duration = Duration::from_millis(400);

/// How long a first ejection for timeouts lasts; each further one doubles
/// it, up to [`EJECTION_MAX`].
const EJECTION_FIRST: Duration = Duration::from_secs(1);

/// The longest ejection.
const EJECTION_MAX: Duration = Duration::from_secs(16);

/// How long a probe waits for its answer.
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Why an instance is out of rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Why {
    /// A request to it met "no responders": nothing listens on its subject.
    Gone,
    /// Consecutive calls to it timed out: it hangs, or is far too slow.
    Hung,
    /// It refused a request because it is shutting down: it finishes what
    /// it accepted, so the calls in flight to it are not lost.
    Draining,
}

/// An instance out of rotation.
#[derive(Clone, Copy, Debug)]
pub(super) struct Out {
    pub why: Why,
    /// Probes sent and not answered.
    pub failed_probes: u32,
    /// Times it was ejected for timeouts since it last answered, this one
    /// included.
    pub ejections: u32,
    /// [`Health::clock`] when it was taken out: an answer to a call sent
    /// before then is older than the evidence that took it out.
    taken_at: u64,
}

impl Out {
    pub(super) fn new(why: Why, ejections: u32) -> Self {
        Out { why, failed_probes: 0, ejections, taken_at: 0 }
    }

    /// How long to wait before the next probe.
    pub(super) fn next_probe(&self) -> Duration {
        match self.why {
            Why::Gone | Why::Draining => doubled(GONE_PROBE_FIRST, self.failed_probes, GONE_PROBE_MAX),
            Why::Hung => {
                doubled(EJECTION_FIRST, self.ejections.saturating_sub(1) + self.failed_probes, EJECTION_MAX)
            }
        }
    }
}

/// The instances out of rotation, for every route of a client: an instance
/// serves all the endpoints of its component, so what one endpoint's calls
/// learn about it holds for the others.
#[derive(Default)]
pub(super) struct Health {
    out: Mutex<HashMap<InstanceId, Out>>,
    /// `true` while `out` is not empty (set under its lock), so that the
    /// common case, every instance in rotation, takes no lock.
    any_out: AtomicBool,
    /// Changes whenever an instance leaves or rejoins rotation, so that the
    /// calls in flight to it and the calls waiting for one can act.
    rotation: watch::Sender<u64>,
    /// How many times an instance was taken out: the order of evidence.
    taken: AtomicU64,
}

impl Health {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<InstanceId, Out>> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `true` when no instance is out of rotation (a hint: read without
    /// the lock).
    pub(super) fn all_in(&self) -> bool {
        !self.any_out.load(Ordering::Relaxed)
    }

    /// Changes whenever an instance leaves or rejoins rotation.
    pub(super) fn rotation(&self) -> watch::Receiver<u64> {
        self.rotation.subscribe()
    }

    /// Why `id` is out of rotation, or `None` while it is in.
    pub(super) fn get(&self, id: InstanceId) -> Option<Out> {
        if self.all_in() {
            return None;
        }
        self.lock().get(&id).copied()
    }

    /// Now, in the order of evidence: a call sent at `clock()` that is
    /// answered readmits only an instance taken out before it was sent.
    pub(super) fn clock(&self) -> u64 {
        self.taken.load(Ordering::SeqCst)
    }

    /// Takes `id` out of rotation; `true` when it was in.
    pub(super) fn take_out(&self, id: InstanceId, mut out: Out) -> bool {
        let newly = {
            let mut all = self.lock();
            let newly = !all.contains_key(&id);
            if newly {
                out.taken_at = self.taken.fetch_add(1, Ordering::SeqCst) + 1;
                all.insert(id, out);
                self.any_out.store(true, Ordering::Relaxed);
            }
            newly
        };
        if newly {
            self.changed();
        }
        newly
    }

    /// Puts `id` back in rotation; `true` when it was out.
    pub(super) fn readmit(&self, id: InstanceId) -> bool {
        self.readmit_if_sent_after(id, u64::MAX)
    }

    /// Puts `id` back in rotation on the answer to a call sent at
    /// [`clock`](Self::clock) `sent`, unless it was taken out after that:
    /// a reply that was already on its way when the instance died says
    /// nothing of it now. `true` when it was out.
    pub(super) fn readmit_if_sent_after(&self, id: InstanceId, sent: u64) -> bool {
        if self.all_in() {
            return false;
        }
        let back = {
            let mut all = self.lock();
            let back = match all.get(&id) {
                Some(out) if out.taken_at > sent => false,
                Some(_) => all.remove(&id).is_some(),
                None => false,
            };
            self.any_out.store(!all.is_empty(), Ordering::Relaxed);
            back
        };
        if back {
            self.changed();
        }
        back
    }

    /// Counts a probe of `id` that was not answered.
    pub(super) fn probe_failed(&self, id: InstanceId) {
        if let Some(out) = self.lock().get_mut(&id) {
            out.failed_probes += 1;
        }
    }

    fn changed(&self) {
        self.rotation.send_modify(|n| *n += 1);
    }
}

/// `first` doubled `times` times, at most `max`.
fn doubled(first: Duration, times: u32, max: Duration) -> Duration {
    first.saturating_mul(1 << times.min(16)).min(max)
}

/// Probes instance `id` on a subject of route `route` at
/// [`Out::next_probe`] intervals until it answers (back in rotation),
/// leaves discovery (forgotten), is readmitted by other evidence, or the
/// client is gone.
pub(super) async fn probe(shared: Weak<Shared>, route: usize, id: InstanceId, subject: String) {
    loop {
        let wait = {
            let Some(shared) = shared.upgrade() else { return };
            match shared.health.get(id) {
                Some(out) => out.next_probe(),
                None => return,
            }
        };
        tokio::time::sleep(wait).await;
        let Some(strong) = shared.upgrade() else { return };
        let r = &strong.routes[route];
        if strong.health.get(id).is_none() {
            return;
        }
        if !r.listed(id) {
            // Forgotten: what is not listed is not routed to anyway.
            strong.health.readmit(id);
            return;
        }
        let engines = strong.engines.clone();
        let record = r.record(id);
        // Not held across the probe: a client dropped meanwhile goes.
        drop(strong);
        // Over the plane calls would take: over NATS, a live instance whose
        // direct address refuses would come back only to fail each call.
        let answered = match super::plane::plane(&engines, record.as_deref()).await {
            Err(()) => false,
            // A refusal is no evidence: a draining instance refuses probes.
            Ok(plane) => matches!(
                plane.transport.request(&subject, Message::probe(), PROBE_TIMEOUT).await,
                Ok(reply) if reply.error_kind() != Some(crate::ErrorKind::Refused)
            ),
        };
        let Some(strong) = shared.upgrade() else { return };
        let r = &strong.routes[route];
        if answered {
            r.readmit(id);
            tracing::debug!(endpoint = %r.label, instance = %id, "answered a probe; back in rotation");
            return;
        }
        strong.health.probe_failed(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gone_instance_is_probed_soon_and_at_most_every_400_ms() {
        let mut out = Out::new(Why::Gone, 0);
        let waits: Vec<_> = (0..6)
            .map(|n| {
                out.failed_probes = n;
                out.next_probe().as_millis()
            })
            .collect();
        assert_eq!(waits, [25, 50, 100, 200, 400, 400]);
    }

    #[test]
    fn an_answer_to_a_call_sent_before_its_instance_was_taken_out_leaves_it_out() {
        let health = Health::default();
        let (id, before) = (InstanceId(7), health.clock());
        assert!(health.take_out(id, Out::new(Why::Gone, 0)));
        assert!(!health.readmit_if_sent_after(id, before), "the older answer readmitted it");
        assert!(health.get(id).is_some());
        assert!(health.readmit_if_sent_after(id, health.clock()), "an answer to a later call readmits");
        assert!(health.get(id).is_none());
    }

    #[test]
    fn each_ejection_of_a_hung_instance_lasts_twice_the_last_up_to_16_s() {
        let waits: Vec<_> = (1..=7).map(|n| Out::new(Why::Hung, n).next_probe().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 16, 16]);
        let mut out = Out::new(Why::Hung, 1);
        out.failed_probes = 2;
        assert_eq!(out.next_probe(), Duration::from_secs(4), "an unanswered probe extends the ejection");
    }
}
