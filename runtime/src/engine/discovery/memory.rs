//! In-memory discovery for the embedded mode.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::{self, BoxFuture};
use futures::stream::{BoxStream, StreamExt};
use tokio::sync::{mpsc, watch};

use super::{Discovery, InstanceList, InstanceRecord, KeyChange, KeyFor, Lease, LeaseState, Stored, key_of};
use crate::{Error, Guard, InstanceId};

/// Discovery held in this process: leases, create-only keys and watches, with
/// etcd's semantics and no server.
#[derive(Clone, Default)]
pub struct MemoryDiscovery {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    leases: HashSet<InstanceId>,
    keys: BTreeMap<String, InstanceRecord>,
    /// Service names reserved, with their `namespace/component`.
    services: BTreeMap<String, String>,
    watchers: Vec<(String, watch::Sender<InstanceList>)>,
    /// The last change of each key outside the instance records
    /// (components' state), a delete included, and the store's revision:
    /// it grows by one with each write or delete.
    values: BTreeMap<String, KeyChange>,
    revision: i64,
    key_watchers: Vec<(String, mpsc::UnboundedSender<Result<KeyChange, Error>>)>,
    /// The values attached to a lease, by key, with their lease.
    attached: BTreeMap<String, InstanceId>,
}

impl State {
    fn list(&self, prefix: &str) -> InstanceList {
        self.keys
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Tells every watcher of a prefix that covers `key` of the change
    /// `apply` makes, in O(log n) each.
    fn notify(&mut self, key: &str, apply: impl Fn(&mut InstanceList)) {
        self.watchers.retain(|(_, tx)| !tx.is_closed());
        for (prefix, tx) in &self.watchers {
            if key.starts_with(prefix.as_str()) {
                tx.send_modify(&apply);
            }
        }
    }

    fn remove_key(&mut self, key: &str, lease: InstanceId) {
        if self.keys.get(key).is_some_and(|r| r.instance_id == lease)
            && let Some(record) = self.keys.remove(key)
        {
            self.notify(key, |list| {
                list.remove(&record);
            });
        }
    }

    fn detach(&mut self, key: &str, lease: InstanceId) {
        if self.attached.get(key) == Some(&lease) {
            self.attached.remove(key);
            self.change(key, None);
        }
    }

    fn revoke(&mut self, lease: InstanceId) {
        self.leases.remove(&lease);
        let attached: Vec<String> =
            self.attached.iter().filter(|(_, owner)| **owner == lease).map(|(k, _)| k.clone()).collect();
        for key in attached {
            self.detach(&key, lease);
        }
        let keys: Vec<String> =
            self.keys.iter().filter(|(_, r)| r.instance_id == lease).map(|(k, _)| k.clone()).collect();
        for key in keys {
            self.remove_key(&key, lease);
        }
    }
}

impl State {
    fn stored(&self, key: &str) -> Option<Stored> {
        match self.values.get(key) {
            Some(KeyChange::Put(stored)) => Some(stored.clone()),
            _ => None,
        }
    }

    /// Applies `change` to `key` at the next revision and tells its
    /// watchers, in the order of the revisions.
    fn change(&mut self, key: &str, value: Option<Bytes>) -> i64 {
        self.revision += 1;
        let revision = self.revision;
        let change = match value {
            Some(value) => KeyChange::Put(Stored { value, revision }),
            None => KeyChange::Deleted { revision },
        };
        self.values.insert(key.to_string(), change.clone());
        self.key_watchers.retain(|(watched, tx)| watched != key || tx.send(Ok(change.clone())).is_ok());
        revision
    }
}

impl MemoryDiscovery {
    /// An empty discovery space.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update is a single insert or remove, so the maps stay
        // consistent across a panic; poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct MemoryLease {
    id: InstanceId,
    discovery: MemoryDiscovery,
    state: watch::Sender<LeaseState>,
}

impl Lease for MemoryLease {
    fn id(&self) -> InstanceId {
        self.id
    }

    fn changes(&self) -> watch::Receiver<LeaseState> {
        self.state.subscribe()
    }

    fn register(
        &self,
        attached: Option<(KeyFor, Bytes)>,
        records: Vec<InstanceRecord>,
    ) -> BoxFuture<'_, Result<Vec<Guard>, Error>> {
        let lease = self.id;
        let records: Vec<InstanceRecord> =
            records.into_iter().map(|record| InstanceRecord { instance_id: lease, ..record }).collect();
        let mut state = self.discovery.lock();
        if !state.leases.contains(&lease) {
            return Box::pin(future::ready(Err(Error::LeaseRevoked { instance: lease })));
        }
        // Every key checked before any is written: all or nothing, as etcd.
        for record in &records {
            let key = key_of(record);
            if let Some(owner) = state.keys.get(&key) {
                let taken = Error::AlreadyRegistered { key, instance: owner.instance_id };
                return Box::pin(future::ready(Err(taken)));
            }
        }
        let mut guards = Vec::with_capacity(records.len() + 1);
        if let Some((key, value)) = attached {
            let key = key(lease);
            state.change(&key, Some(value));
            state.attached.insert(key.clone(), lease);
            let discovery = self.discovery.clone();
            guards.push(Guard::new(move || discovery.lock().detach(&key, lease)));
        }
        for record in records {
            let key = key_of(&record);
            state.keys.insert(key.clone(), record.clone());
            state.notify(&key, |list| list.insert(record.clone()));
            let discovery = self.discovery.clone();
            guards.push(Guard::new(move || discovery.lock().remove_key(&key, lease)));
        }
        Box::pin(future::ready(Ok(guards)))
    }

    fn revoke(&self) -> BoxFuture<'_, Result<(), Error>> {
        self.discovery.lock().revoke(self.id);
        self.state.send_modify(|s| s.live = false);
        Box::pin(future::ready(Ok(())))
    }
}

impl Drop for MemoryLease {
    fn drop(&mut self) {
        self.discovery.lock().revoke(self.id);
    }
}

impl Discovery for MemoryDiscovery {
    fn grant_lease(&self) -> BoxFuture<'_, Result<Arc<dyn Lease>, Error>> {
        let mut state = self.lock();
        // Random positive ids, like etcd's, so that ids from two embedded
        // worlds (or two test runs) are unlikely to match by accident.
        let id = loop {
            let id = InstanceId(fastrand::i64(1 << 32..i64::MAX));
            if state.leases.insert(id) {
                break id;
            }
        };
        let (tx, _) = watch::channel(LeaseState { id, live: true });
        let lease: Arc<dyn Lease> = Arc::new(MemoryLease { id, discovery: self.clone(), state: tx });
        Box::pin(future::ready(Ok(lease)))
    }

    fn watch(&self, prefix: String) -> BoxFuture<'_, Result<watch::Receiver<InstanceList>, Error>> {
        let mut state = self.lock();
        let (tx, rx) = watch::channel(state.list(&prefix));
        state.watchers.push((prefix, tx));
        Box::pin(future::ready(Ok(rx)))
    }

    fn list(&self, prefix: String) -> BoxFuture<'_, Result<Vec<InstanceRecord>, Error>> {
        Box::pin(future::ready(Ok(self.lock().list(&prefix).to_vec())))
    }

    fn reserve_service(&self, service: String, owner: String) -> BoxFuture<'_, Result<(), Error>> {
        let holder = self.lock().services.entry(service.clone()).or_insert_with(|| owner.clone()).clone();
        Box::pin(future::ready(super::reservation(service, owner, holder)))
    }

    fn get(&self, key: String) -> BoxFuture<'_, Result<(Option<Stored>, i64), Error>> {
        let state = self.lock();
        Box::pin(future::ready(Ok((state.stored(&key), state.revision))))
    }

    fn put(&self, key: String, value: Bytes) -> BoxFuture<'_, Result<i64, Error>> {
        Box::pin(future::ready(Ok(self.lock().change(&key, Some(value)))))
    }

    fn delete(&self, key: String) -> BoxFuture<'_, Result<Option<i64>, Error>> {
        let mut state = self.lock();
        let deleted = state.stored(&key).is_some().then(|| state.change(&key, None));
        Box::pin(future::ready(Ok(deleted)))
    }

    fn compare_and_put(
        &self,
        key: String,
        expected: i64,
        value: Bytes,
    ) -> BoxFuture<'_, Result<Result<i64, i64>, Error>> {
        let mut state = self.lock();
        let current = state.stored(&key).map_or(0, |s| s.revision);
        let outcome = match current == expected {
            true => Ok(state.change(&key, Some(value))),
            false => Err(current),
        };
        Box::pin(future::ready(Ok(outcome)))
    }

    fn watch_key(
        &self,
        key: String,
        after: i64,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Result<KeyChange, Error>>, Error>> {
        let mut state = self.lock();
        let (tx, rx) = mpsc::unbounded_channel();
        // Only the last change of a key is kept: a watch from before it
        // starts with it.
        if let Some(last) = state.values.get(&key).filter(|last| last.revision() > after) {
            let _ = tx.send(Ok(last.clone()));
        }
        state.key_watchers.push((key, tx));
        let changes = receiver_stream(rx);
        Box::pin(future::ready(Ok(changes)))
    }
}

fn receiver_stream<T: Send + 'static>(mut rx: mpsc::UnboundedReceiver<T>) -> BoxStream<'static, T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}
