//! Where one endpoint's calls go: the instances discovery lists, what this
//! client has learned about them beyond discovery, and the choice of one
//! for each call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use super::Router;
use super::health::{EJECT_AFTER_TIMEOUTS, Health, Out, Why};
use crate::engine::discovery::{InstanceList, InstanceRecord};
use crate::engine::metrics::ClientEndpointMetrics;
use crate::engines::Watch;
use crate::{InstanceId, TransportError};
use rotor_names as names;

/// What a client counts of one instance on one route: calls in flight and
/// recent failures. Atomics, so that a call counts itself in and out
/// without a lock; which instances are out of rotation is the client's
/// [`Health`], shared by its routes.
#[derive(Default)]
struct Tally {
    in_flight: AtomicUsize,
    /// Timeouts since its last answer.
    timeouts: AtomicU32,
    /// Ejections for timeouts since its last answer.
    ejections: AtomicU32,
}

impl Tally {
    /// Counts a timeout; the ejection count when it makes
    /// [`EJECT_AFTER_TIMEOUTS`] in a row.
    fn timed_out(&self) -> Option<u32> {
        let before = self
            .timeouts
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(if t + 1 >= EJECT_AFTER_TIMEOUTS { 0 } else { t + 1 })
            })
            .expect("the update always gives a value");
        (before + 1 >= EJECT_AFTER_TIMEOUTS).then(|| self.ejections.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn answered(&self) {
        self.timeouts.store(0, Ordering::Relaxed);
        self.ejections.store(0, Ordering::Relaxed);
    }
}

/// The tallies of one route, by instance. Read-locked by every pick
/// (readers never wait for each other) and write-locked only to add an
/// instance picked for the first time.
type Tallies = HashMap<InstanceId, Arc<Tally>>;

/// Where one endpoint's calls go.
pub(super) struct Route {
    /// `namespace/component/endpoint`, for messages.
    pub label: String,
    pub service: String,
    pub endpoint: String,
    pub queue_subject: String,
    /// `None` for static components and runtimes without discovery.
    pub instances: Option<Arc<Watch>>,
    next: AtomicUsize,
    pub idempotent: bool,
    /// Locked after `health`, never before.
    tallies: RwLock<Tallies>,
    health: Arc<Health>,
    pub metrics: ClientEndpointMetrics,
}

/// Where one attempt goes: a subject borrowed from the record it was
/// picked from or from the route, or one made for it.
pub(super) enum CallSubject<'r> {
    Listed(Arc<InstanceRecord>),
    Route(&'r str),
    Made(String),
}

impl CallSubject<'_> {
    pub(super) fn as_str(&self) -> &str {
        match self {
            CallSubject::Listed(record) => record.transport.subject(),
            CallSubject::Route(subject) => subject,
            CallSubject::Made(subject) => subject,
        }
    }
}

/// The instance one attempt goes to.
pub(super) struct Picked<'r> {
    pub subject: CallSubject<'r>,
    /// `None` for a static component: the queue group picks.
    pub instance: Option<InstanceId>,
    /// `true` when every listed instance was out of rotation and this one
    /// was tried anyway.
    pub fallback: bool,
    pub in_flight: InFlight<'r>,
}

/// Choices drawn among every instance before [`choose`] walks the list for
/// those in rotation: with half of them out, a walk is needed once in 256
/// picks.
const DRAWS_BEFORE_A_WALK: usize = 8;

/// The position of the instance a call goes to, among `len` instances, or
/// `None` when every one is out of rotation. `live(at)` says whether the
/// instance at `at` is in rotation, `load(at)` how many calls this client
/// has in flight to it; `cursor` is the route's round-robin position.
///
/// O(1) while most instances are in rotation: the choice is first made
/// among all, as [`choose_any`] does, and kept when in rotation (round-robin
/// then skips the instances out, random draws among those in). Only when
/// [`DRAWS_BEFORE_A_WALK`] choices in a row are out does it walk the list.
pub(super) fn choose(
    router: Router,
    len: usize,
    live: impl Fn(usize) -> bool,
    load: impl Fn(usize) -> usize,
    cursor: &AtomicUsize,
) -> Option<usize> {
    for _ in 0..DRAWS_BEFORE_A_WALK {
        let at = choose_any(router, len, &load, cursor)?;
        if live(at) {
            return Some(at);
        }
    }
    let live_count = (0..len).filter(|&at| live(at)).count();
    let nth = |n: usize| (0..len).filter(|&at| live(at)).nth(n).expect("fewer than `live_count` live");
    among(router, live_count, nth, load, cursor)
}

/// [`choose`] when every instance is in rotation: O(1), whatever `len`.
pub(super) fn choose_any(
    router: Router,
    len: usize,
    load: impl Fn(usize) -> usize,
    cursor: &AtomicUsize,
) -> Option<usize> {
    among(router, len, |n| n, load, cursor)
}

/// The choice among `live_count` instances in rotation, the `n`th of them
/// at position `nth(n)`.
fn among(
    router: Router,
    live_count: usize,
    nth: impl Fn(usize) -> usize,
    load: impl Fn(usize) -> usize,
    cursor: &AtomicUsize,
) -> Option<usize> {
    if live_count == 0 {
        return None;
    }
    let turn = || cursor.fetch_add(1, Ordering::Relaxed) % live_count;
    let drawn = || nth(fastrand::usize(..live_count));
    let lighter = |a: usize, b: usize| if load(b) < load(a) { b } else { a };
    Some(match router {
        Router::LeastOutstanding if live_count == 1 => nth(0),
        // The instance whose turn it is, against one other drawn at random:
        // never itself, or an instance that holds calls would keep a share
        // of new ones however many it holds.
        Router::LeastOutstanding => {
            let n = turn();
            let other = (n + 1 + fastrand::usize(..live_count - 1)) % live_count;
            lighter(nth(n), nth(other))
        }
        Router::RoundRobin => nth(turn()),
        Router::Random => drawn(),
        Router::PowerOfTwo => lighter(drawn(), drawn()),
    })
}

impl Route {
    pub(super) fn new(
        label: String,
        service: String,
        endpoint: String,
        instances: Option<Arc<Watch>>,
        idempotent: bool,
        health: Arc<Health>,
        metrics: ClientEndpointMetrics,
    ) -> Self {
        Route {
            queue_subject: names::endpoint_subject(&service, &endpoint),
            label,
            service,
            endpoint,
            instances,
            // A fresh client starts anywhere in the list, so that many
            // short-lived clients do not all begin on the same instance.
            next: AtomicUsize::new(fastrand::usize(..)),
            idempotent,
            tallies: RwLock::default(),
            health,
            metrics,
        }
    }

    fn tallies(&self) -> std::sync::RwLockReadGuard<'_, Tallies> {
        self.tallies.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The tally of `id`, added when it has none.
    fn tally(&self, id: InstanceId, list: Option<&InstanceList>) -> Arc<Tally> {
        if let Some(tally) = self.tallies().get(&id) {
            return tally.clone();
        }
        let mut tallies = self.tallies.write().unwrap_or_else(|p| p.into_inner());
        // Instances come and go: forget those no longer listed and not in
        // flight once they are half the map, so that it stays in
        // proportion to the list at O(1) per instance added.
        if let Some(list) = list
            && tallies.len() > 2 * list.len() + 16
        {
            tallies.retain(|id, tally| Arc::strong_count(tally) > 1 || list.contains(*id));
        }
        tallies.entry(id).or_default().clone()
    }

    /// Changes whenever an instance leaves or rejoins rotation.
    pub(super) fn rotation(&self) -> watch::Receiver<u64> {
        self.health.rotation()
    }

    /// Why `id` is out of rotation, or `None` while it is in.
    pub(super) fn out(&self, id: InstanceId) -> Option<Out> {
        self.health.get(id)
    }

    /// `true` while discovery lists `id` (always, without discovery).
    /// The record of `id`, when discovery lists it.
    pub(super) fn record(&self, id: InstanceId) -> Option<Arc<InstanceRecord>> {
        let list = self.instances.as_ref()?.borrow().clone();
        list.position(id).and_then(|at| list.shared(at))
    }

    pub(super) fn listed(&self, id: InstanceId) -> bool {
        self.instances.as_ref().is_none_or(|list| list.borrow().contains(id))
    }

    /// Takes `id` out of rotation for `why`; `true` when it was in, and a
    /// probe should start.
    pub(super) fn take_out(&self, id: InstanceId, why: Why) -> bool {
        let newly = self.health.take_out(id, Out::new(why, 0));
        if newly {
            self.metrics.evictions.inc();
        }
        newly
    }

    /// Puts `id` back in rotation: it answered.
    pub(super) fn readmit(&self, id: InstanceId) {
        if let Some(tally) = self.tallies().get(&id) {
            tally.answered();
        }
        self.health.readmit(id);
    }

    /// The instance for the next attempt, counted in flight to it until the
    /// returned [`InFlight`] is settled or dropped.
    pub(super) fn pick(
        &self,
        router: Router,
        target: Option<InstanceId>,
    ) -> Result<Picked<'_>, TransportError> {
        let Some(instances) = &self.instances else {
            let subject = match target {
                Some(id) => CallSubject::Made(names::instance_subject(&self.service, &self.endpoint, id.0)),
                None => CallSubject::Route(&self.queue_subject),
            };
            return Ok(Picked { subject, instance: target, fallback: false, in_flight: self.start(target) });
        };
        // The list itself, not the watch's guard, which must not be held
        // across the call: one reference count.
        let list = instances.borrow().clone();
        if let Some(id) = target {
            let Some(record) = list.position(id).and_then(|at| list.shared(at)) else {
                return Err(TransportError::UnknownInstance { endpoint: self.label.clone(), instance: id });
            };
            let in_flight = self.count_in(id, self.tally(id, Some(&list)));
            return Ok(Picked {
                subject: CallSubject::Listed(record),
                instance: Some(id),
                fallback: false,
                in_flight,
            });
        }
        let (at, fallback) = {
            // Taken only while some instance is out: a hint read without
            // the lock may be stale by one call, which routes that call as
            // before.
            let out = (!self.health.all_in()).then(|| self.health.lock());
            let tallies = self.tallies();
            let load = |at: usize| {
                list.id(at).and_then(|id| tallies.get(&id)).map_or(0, |t| t.in_flight.load(Ordering::Relaxed))
            };
            let live = |at: usize| {
                out.as_ref().is_none_or(|out| list.id(at).is_some_and(|id| !out.contains_key(&id)))
            };
            let chosen = match &out {
                None => choose_any(router, list.len(), load, &self.next),
                Some(_) => choose(router, list.len(), live, load, &self.next),
            };
            match chosen {
                Some(at) => (at, false),
                // Every instance is out: they are still tried, since
                // evidence of life can only come from trying (a broker
                // restart makes every live instance look gone for a moment).
                None => match choose_any(router, list.len(), load, &self.next) {
                    Some(at) => (at, true),
                    None => return Err(TransportError::NoInstances { endpoint: self.label.clone() }),
                },
            }
        };
        let record = list.shared(at).expect("chosen among the list's positions");
        let instance = record.instance_id;
        let in_flight = self.count_in(instance, self.tally(instance, Some(&list)));
        Ok(Picked { subject: CallSubject::Listed(record), instance: Some(instance), fallback, in_flight })
    }

    fn count_in(&self, id: InstanceId, tally: Arc<Tally>) -> InFlight<'_> {
        tally.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight { route: self, counted: Some((id, tally)), sent: self.health.clock() }
    }

    fn start(&self, instance: Option<InstanceId>) -> InFlight<'_> {
        match instance {
            Some(id) => self.count_in(id, self.tally(id, None)),
            None => InFlight { route: self, counted: None, sent: 0 },
        }
    }
}

/// How an attempt ended, for what the route learns from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Settled {
    /// The instance answered (an error reply too is an answer).
    Answered,
    /// The call's time ran out waiting for it.
    TimedOut,
    /// Anything else: nothing learned.
    Other,
}

/// Counts a call in flight to one instance while it lives.
pub(super) struct InFlight<'a> {
    route: &'a Route,
    counted: Option<(InstanceId, Arc<Tally>)>,
    /// [`Health::clock`] when the attempt was sent.
    sent: u64,
}

impl InFlight<'_> {
    /// Ends the attempt with what it showed of its instance; `true` when
    /// that ejected the instance (and a probe should start).
    pub(super) fn settle(mut self, how: Settled) -> bool {
        let Some((id, tally)) = self.counted.take() else { return false };
        let route = self.route;
        tally.in_flight.fetch_sub(1, Ordering::Relaxed);
        let (readmitted, ejected) = match how {
            Settled::Answered => {
                tally.answered();
                (route.health.readmit_if_sent_after(id, self.sent), false)
            }
            Settled::TimedOut => {
                (false, tally.timed_out().is_some_and(|n| route.health.take_out(id, Out::new(Why::Hung, n))))
            }
            Settled::Other => (false, false),
        };
        if ejected {
            route.metrics.evictions.inc();
            tracing::warn!(
                endpoint = %route.label,
                instance = %id,
                "{EJECT_AFTER_TIMEOUTS} calls in a row timed out; out of rotation until it answers a probe"
            );
        }
        if readmitted {
            tracing::debug!(endpoint = %route.label, instance = %id, "answered; back in rotation");
        }
        ejected
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some((_, tally)) = &self.counted {
            tally.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_visits_every_live_instance_in_turn() {
        let cursor = AtomicUsize::new(0);
        let picks: Vec<_> =
            (0..6).map(|_| choose(Router::RoundRobin, 3, |_| true, |_| 0, &cursor).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn evicted_instances_are_skipped_and_none_live_is_none() {
        let cursor = AtomicUsize::new(0);
        let live = |at: usize| at != 1;
        let picks: Vec<_> =
            (0..4).map(|_| choose(Router::RoundRobin, 3, live, |_| 0, &cursor).unwrap()).collect();
        assert_eq!(picks, [0, 2, 0, 2]);
        for router in [Router::LeastOutstanding, Router::RoundRobin, Router::Random, Router::PowerOfTwo] {
            assert_eq!(choose(router, 3, |_| false, |_| 0, &cursor), None);
            assert_eq!(choose(router, 0, |_| true, |_| 0, &cursor), None);
        }
    }

    #[test]
    fn power_of_two_never_picks_the_busier_of_two() {
        let cursor = AtomicUsize::new(0);
        // Instance 0 carries 10 calls, 1 carries none: of any two draws that
        // include 1, 1 wins; 0 is picked only when drawn twice.
        let load = |at: usize| if at == 0 { 10 } else { 0 };
        let zeros =
            (0..2000).filter(|_| choose(Router::PowerOfTwo, 2, |_| true, load, &cursor) == Some(0)).count();
        assert!(zeros < 700, "the busy instance was picked {zeros} times of 2000 (about 500 expected)");
    }

    #[test]
    fn with_every_instance_live_the_quick_choice_is_the_full_one() {
        for router in [Router::LeastOutstanding, Router::RoundRobin] {
            let (a, b) = (AtomicUsize::new(7), AtomicUsize::new(7));
            for _ in 0..50 {
                assert_eq!(choose_any(router, 5, |_| 0, &a), choose(router, 5, |_| true, |_| 0, &b));
            }
        }
        assert_eq!(choose_any(Router::Random, 0, |_| 0, &AtomicUsize::new(0)), None);
        let load = |at: usize| if at == 3 { 9 } else { 0 };
        let threes = (0..3000)
            .filter(|_| {
                choose_any(Router::LeastOutstanding, 5, load, &AtomicUsize::new(fastrand::usize(..)))
                    == Some(3)
            })
            .count();
        assert_eq!(threes, 0, "the loaded instance is passed over");
    }

    #[test]
    fn least_outstanding_takes_turns_when_loads_are_equal() {
        let cursor = AtomicUsize::new(0);
        let picks: Vec<_> =
            (0..6).map(|_| choose(Router::LeastOutstanding, 3, |_| true, |_| 0, &cursor).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn least_outstanding_passes_over_an_instance_that_holds_calls() {
        let cursor = AtomicUsize::new(0);
        // Instance 1 hangs with 8 calls; the others hold 2. Its turn goes to
        // whichever other instance is drawn.
        let load = |at: usize| if at == 1 { 8 } else { 2 };
        let ones = (0..3000)
            .filter(|_| choose(Router::LeastOutstanding, 3, |_| true, load, &cursor) == Some(1))
            .count();
        assert_eq!(ones, 0, "the loaded instance got {ones} of 3000");
    }

    fn route_to(ids: &[i64], health: Arc<Health>) -> Route {
        use crate::engine::discovery::{InstanceRecord, TransportAddress};
        let list: InstanceList = ids
            .iter()
            .map(|&id| InstanceRecord {
                namespace: "ns".into(),
                component: "c".into(),
                endpoint: "e".into(),
                instance_id: InstanceId(id),
                transport: TransportAddress::NatsTcp(names::instance_subject("ns_c", "e", id)),
                descriptor: None,
                codec: None,
                direct: None,
            })
            .collect();
        let (_, watch) = watch::channel(list);
        let metrics = crate::engine::metrics::Metrics::default().client("ns", "c").endpoint("e");
        Route::new("ns/c/e".into(), "ns_c".into(), "e".into(), Some(Arc::new(watch)), true, health, metrics)
    }

    #[test]
    fn with_every_instance_out_a_call_still_tries_one_and_says_so() {
        let health = Arc::new(Health::default());
        let route = route_to(&[1, 2], health.clone());
        assert!(route.take_out(InstanceId(1), Why::Gone));
        let picked = route.pick(Router::LeastOutstanding, None).unwrap();
        assert_eq!((picked.instance, picked.fallback), (Some(InstanceId(2)), false), "the live one");
        drop(picked);
        assert!(route.take_out(InstanceId(2), Why::Gone));
        let picked = route.pick(Router::LeastOutstanding, None).unwrap();
        assert!(picked.fallback, "every instance is out, and one is tried anyway");
        drop(picked);
        health.readmit(InstanceId(1));
        let picked = route.pick(Router::LeastOutstanding, None).unwrap();
        assert_eq!((picked.instance, picked.fallback), (Some(InstanceId(1)), false), "back on evidence");
    }

    #[test]
    fn an_instance_out_of_rotation_on_one_endpoint_is_out_on_every_endpoint_of_the_client() {
        let health = Arc::new(Health::default());
        let (work, hold) = (route_to(&[1, 2], health.clone()), route_to(&[1, 2], health.clone()));
        work.take_out(InstanceId(1), Why::Gone);
        for _ in 0..10 {
            assert_eq!(hold.pick(Router::RoundRobin, None).unwrap().instance, Some(InstanceId(2)));
        }
        assert_eq!(hold.out(InstanceId(1)).map(|o| o.why), Some(Why::Gone));
    }

    #[test]
    fn with_a_tenth_of_the_instances_out_a_pick_looks_at_one_or_two_not_the_list() {
        for router in [Router::LeastOutstanding, Router::RoundRobin, Router::Random, Router::PowerOfTwo] {
            let cursor = AtomicUsize::new(0);
            let looked = std::cell::Cell::new(0usize);
            let live = |at: usize| {
                looked.set(looked.get() + 1);
                at % 10 != 3
            };
            for _ in 0..1000 {
                let at = choose(router, 10_000, live, |_| 0, &cursor).unwrap();
                assert_ne!(at % 10, 3, "{router:?} picked an instance out of rotation");
            }
            // About 1.1 looks per pick; a walk would look at 10,000.
            assert!(looked.get() < 2000, "{router:?} looked at {} instances for 1000 picks", looked.get());
        }
    }

    #[test]
    fn random_stays_among_the_live() {
        let cursor = AtomicUsize::new(0);
        for _ in 0..200 {
            let at = choose(Router::Random, 5, |at| at % 2 == 0, |_| 0, &cursor).unwrap();
            assert_eq!(at % 2, 0);
        }
    }
}
