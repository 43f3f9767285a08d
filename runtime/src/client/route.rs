//! Where one endpoint's calls go: the instances discovery lists, what this
//! client has learned about them beyond discovery, and the choice of one
//! for each call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Router;
use crate::engine::discovery::InstanceList;
use crate::engine::metrics::ClientEndpointMetrics;
use crate::engines::Watch;
use crate::{InstanceId, TransportError};
use rotor_names as names;

/// What a client knows beyond discovery about one route's instances.
#[derive(Default)]
pub(super) struct RouteState {
    /// Instances that answered "no responders", and since when. They leave
    /// rotation at once, before their lease lapses, and come back only if
    /// discovery still lists them two lease TTLs later.
    evicted: HashMap<InstanceId, Instant>,
    /// Calls in flight from this client, for [`Router::PowerOfTwo`].
    in_flight: HashMap<InstanceId, usize>,
}

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
    /// `true` while `state.evicted` is not empty, so that routing can skip
    /// the lock otherwise.
    any_evicted: AtomicBool,
    pub idempotent: bool,
    state: Mutex<RouteState>,
    pub metrics: ClientEndpointMetrics,
}

/// Where one attempt goes: a subject borrowed from the instance list it was
/// picked from or from the route, or one made for it.
pub(super) enum CallSubject<'r> {
    Listed(InstanceList, usize),
    Route(&'r str),
    Made(String),
}

impl CallSubject<'_> {
    pub(super) fn as_str(&self) -> &str {
        match self {
            CallSubject::Listed(list, at) => list[*at].transport.subject(),
            CallSubject::Route(subject) => subject,
            CallSubject::Made(subject) => subject,
        }
    }
}

/// The position of the instance a call goes to, among `len` instances, or
/// `None` when every one is evicted. `live(at)` says whether the instance at
/// `at` is in rotation, `load(at)` how many calls this client has in flight
/// to it; `cursor` is the route's round-robin position.
pub(super) fn choose(
    router: Router,
    len: usize,
    live: impl Fn(usize) -> bool,
    load: impl Fn(usize) -> usize,
    cursor: &AtomicUsize,
) -> Option<usize> {
    let live_count = (0..len).filter(|&at| live(at)).count();
    if live_count == 0 {
        return None;
    }
    let nth = |n: usize| (0..len).filter(|&at| live(at)).nth(n).expect("fewer than `live_count` live");
    Some(match router {
        Router::RoundRobin => nth(cursor.fetch_add(1, Ordering::Relaxed) % live_count),
        Router::Random => nth(fastrand::usize(..live_count)),
        Router::PowerOfTwo => {
            let (a, b) = (nth(fastrand::usize(..live_count)), nth(fastrand::usize(..live_count)));
            if load(b) < load(a) { b } else { a }
        }
    })
}

impl Route {
    pub(super) fn new(
        label: String,
        service: String,
        endpoint: String,
        instances: Option<Arc<Watch>>,
        idempotent: bool,
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
            any_evicted: AtomicBool::new(false),
            idempotent,
            state: Mutex::default(),
            metrics,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, RouteState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `id` out of rotation; `true` when it was in.
    pub(super) fn evict(&self, id: InstanceId) -> bool {
        let mut state = self.state();
        // Set under the lock, as routing clears it under the lock.
        self.any_evicted.store(true, Ordering::Relaxed);
        state.evicted.insert(id, Instant::now()).is_none()
    }

    /// The subject for the next call, and the instance behind it when known.
    pub(super) fn pick(
        &self,
        router: Router,
        target: Option<InstanceId>,
        readmit_after: Duration,
    ) -> Result<(CallSubject<'_>, Option<InstanceId>), TransportError> {
        let Some(instances) = &self.instances else {
            return Ok(match target {
                Some(id) => (
                    CallSubject::Made(names::instance_subject(&self.service, &self.endpoint, id.0)),
                    Some(id),
                ),
                None => (CallSubject::Route(&self.queue_subject), None),
            });
        };
        // The list itself, not the watch's guard, which must not be held
        // across the call: the subject is then borrowed, not copied.
        let list = instances.borrow().clone();
        if let Some(id) = target {
            return match list.iter().position(|r| r.instance_id == id) {
                Some(at) => Ok((CallSubject::Listed(list, at), Some(id))),
                None => Err(TransportError::UnknownInstance { endpoint: self.label.clone(), instance: id }),
            };
        }
        let none = || TransportError::NoInstances { endpoint: self.label.clone() };
        // The common case, nothing evicted and no load to compare, takes
        // no lock and allocates nothing.
        if !self.any_evicted.load(Ordering::Relaxed) && router != Router::PowerOfTwo {
            let at = choose(router, list.len(), |_| true, |_| 0, &self.next).ok_or_else(none)?;
            let instance = list[at].instance_id;
            return Ok((CallSubject::Listed(list, at), Some(instance)));
        }
        let mut state = self.state();
        if !state.evicted.is_empty() {
            // Past twice the TTL the lease of a dead instance has surely
            // lapsed; one still listed then is alive after all.
            state.evicted.retain(|id, since| {
                since.elapsed() < readmit_after && list.iter().any(|r| r.instance_id == *id)
            });
            self.any_evicted.store(!state.evicted.is_empty(), Ordering::Relaxed);
        }
        let live = |at: usize| !state.evicted.contains_key(&list[at].instance_id);
        let load = |at: usize| state.in_flight.get(&list[at].instance_id).copied().unwrap_or(0);
        let at = choose(router, list.len(), live, load, &self.next).ok_or_else(none)?;
        let instance = list[at].instance_id;
        drop(state);
        Ok((CallSubject::Listed(list, at), Some(instance)))
    }
}

/// Counts a call in flight to one instance while it lives.
pub(super) struct InFlight<'a> {
    route: &'a Route,
    instance: Option<InstanceId>,
}

impl<'a> InFlight<'a> {
    pub(super) fn start(route: &'a Route, instance: Option<InstanceId>) -> Self {
        if let Some(id) = instance {
            *route.state().in_flight.entry(id).or_default() += 1;
        }
        InFlight { route, instance }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.instance {
            let mut state = self.route.state();
            if let Some(n) = state.in_flight.get_mut(&id) {
                *n -= 1;
                if *n == 0 {
                    state.in_flight.remove(&id);
                }
            }
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
        for router in [Router::RoundRobin, Router::Random, Router::PowerOfTwo] {
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
    fn random_stays_among_the_live() {
        let cursor = AtomicUsize::new(0);
        for _ in 0..200 {
            let at = choose(Router::Random, 5, |at| at % 2 == 0, |_| 0, &cursor).unwrap();
            assert_eq!(at % 2, 0);
        }
    }
}
