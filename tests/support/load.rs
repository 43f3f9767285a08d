//! A load generator for fault tests: `IN_FLIGHT` callers of the idempotent
//! `work` endpoint of the soak worker, counting what succeeded, what failed
//! and which instance answered when. Included by the test files that use it
//! (`#[path = "support/load.rs"] mod load;`), each with the worker as
//! `crate::worker`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rotor::InstanceId;

use crate::worker::WorkerClient;

/// Calls in flight.
pub const IN_FLIGHT: usize = 32;

/// The call timeout of the load.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Bounds every wait of the load: a hang fails the test instead.
const WAIT: Duration = Duration::from_secs(20);

/// What the load saw.
#[derive(Default)]
pub struct Seen {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    /// The first few failures, for the assertion message.
    pub failures: Mutex<Vec<String>>,
    pub slowest: Mutex<Duration>,
    /// When each instance last answered.
    pub answered: Mutex<HashMap<InstanceId, Vec<Instant>>>,
}

/// `IN_FLIGHT` callers of the idempotent `work` endpoint, until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Seen>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(client: &WorkerClient) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Seen::default());
        let tasks = (0..IN_FLIGHT)
            .map(|worker| {
                let (client, stop, seen) = (client.with_timeout(CALL_TIMEOUT), stop.clone(), seen.clone());
                tokio::spawn(async move {
                    let mut n = worker as u64;
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let result = client.work(n).await;
                        let took = started.elapsed();
                        {
                            let mut slowest = seen.slowest.lock().unwrap();
                            *slowest = (*slowest).max(took);
                        }
                        match result {
                            Ok(done) => {
                                assert_eq!(done.n, n, "the answer to another call");
                                seen.ok.fetch_add(1, Ordering::Relaxed);
                                seen.answered
                                    .lock()
                                    .unwrap()
                                    .entry(done.by)
                                    .or_default()
                                    .push(Instant::now());
                            }
                            Err(e) => {
                                seen.failed.fetch_add(1, Ordering::Relaxed);
                                let mut failures = seen.failures.lock().unwrap();
                                if failures.len() < 10 {
                                    failures.push(format!("after {took:?}: {e}"));
                                }
                            }
                        }
                        n += IN_FLIGHT as u64;
                    }
                })
            })
            .collect();
        Load { stop, seen, tasks }
    }

    pub fn ok(&self) -> u64 {
        self.seen.ok.load(Ordering::Relaxed)
    }

    /// Waits until `n` more calls succeeded.
    pub async fn run_for_calls(&self, n: u64) {
        let target = self.ok() + n;
        let progress = async {
            while self.ok() < target {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(WAIT, progress)
            .await
            .unwrap_or_else(|_| panic!("{n} more calls did not succeed within {WAIT:?}"));
    }

    /// The first time after `t` that `id` answered.
    pub fn first_answer_after(&self, id: InstanceId, t: Instant) -> Option<Instant> {
        let answered = self.seen.answered.lock().unwrap();
        answered.get(&id)?.iter().copied().find(|at| *at > t)
    }

    /// The instances that answered after `t`.
    pub fn answered_after(&self, t: Instant) -> std::collections::HashSet<InstanceId> {
        let answered = self.seen.answered.lock().unwrap();
        answered.iter().filter(|(_, at)| at.last().is_some_and(|at| *at > t)).map(|(id, _)| *id).collect()
    }

    pub async fn stop(self) -> Arc<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a load task panicked");
        }
        self.seen
    }
}

impl Seen {
    /// Calls answered, by instance.
    pub fn answered_counts(&self) -> HashMap<InstanceId, usize> {
        self.answered.lock().unwrap().iter().map(|(id, at)| (*id, at.len())).collect()
    }

    pub fn assert_none_failed(&self, what: &str) {
        let failed = self.failed.load(Ordering::Relaxed);
        let ok = self.ok.load(Ordering::Relaxed);
        eprintln!(
            "{what}: {ok} calls succeeded, {failed} failed, slowest {:?}",
            *self.slowest.lock().unwrap()
        );
        assert_eq!(
            failed,
            0,
            "{what}: {failed} of {} calls failed: {:#?}",
            ok + failed,
            self.failures.lock().unwrap()
        );
    }
}
