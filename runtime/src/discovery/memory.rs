//! In-memory discovery for the embedded mode.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::future::{self, BoxFuture};
use tokio::sync::watch;

use super::{Discovery, InstanceList, InstanceRecord, Lease};
use crate::{Error, Guard, InstanceId};

/// Discovery held in this process: leases, create-only keys and watches, with
/// etcd's semantics and no server.
#[derive(Clone, Default)]
pub struct MemoryDiscovery {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    leases: Vec<InstanceId>,
    keys: BTreeMap<String, (InstanceId, InstanceRecord)>,
    watchers: Vec<(String, watch::Sender<InstanceList>)>,
}

impl State {
    fn list(&self, prefix: &str) -> InstanceList {
        let mut records: Vec<InstanceRecord> = self
            .keys
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, (_, r))| r.clone())
            .collect();
        records.sort_by_key(|r| r.instance_id);
        records.into()
    }

    /// Tells every watcher of a prefix that covers `key`.
    fn notify(&mut self, key: &str) {
        self.watchers.retain(|(_, tx)| !tx.is_closed());
        let lists: Vec<(usize, InstanceList)> = self
            .watchers
            .iter()
            .enumerate()
            .filter(|(_, (prefix, _))| key.starts_with(prefix.as_str()))
            .map(|(i, (prefix, _))| (i, self.list(prefix)))
            .collect();
        for (i, list) in lists {
            self.watchers[i].1.send_replace(list);
        }
    }

    fn remove_key(&mut self, key: &str, lease: InstanceId) {
        if self.keys.get(key).is_some_and(|(l, _)| *l == lease) {
            self.keys.remove(key);
            self.notify(key);
        }
    }
}

impl MemoryDiscovery {
    /// An empty discovery space.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves the maps consistent (every
        // update is a single insert or remove), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn revoke(&self, lease: InstanceId) {
        let mut state = self.lock();
        state.leases.retain(|l| *l != lease);
        let keys: Vec<String> =
            state.keys.iter().filter(|(_, (l, _))| *l == lease).map(|(k, _)| k.clone()).collect();
        for key in keys {
            state.remove_key(&key, lease);
        }
    }
}

impl Discovery for MemoryDiscovery {
    fn grant_lease(&self) -> BoxFuture<'_, Result<Lease, Error>> {
        let mut state = self.lock();
        // Random positive ids, like etcd's, so that ids from two embedded
        // worlds (or two test runs) are unlikely to match by accident.
        let id = loop {
            let id = InstanceId(fastrand::i64(1 << 32..i64::MAX));
            if !state.leases.contains(&id) {
                break id;
            }
        };
        state.leases.push(id);
        let this = self.clone();
        Box::pin(future::ready(Ok(Lease { id, guard: Guard::new(move || this.revoke(id)) })))
    }

    fn register(
        &self,
        lease: InstanceId,
        key: String,
        record: InstanceRecord,
    ) -> BoxFuture<'_, Result<Guard, Error>> {
        let mut state = self.lock();
        let result = if !state.leases.contains(&lease) {
            Err(Error::Config(format!("lease {lease} is not live; it was revoked")))
        } else if let Some((owner, _)) = state.keys.get(&key) {
            Err(Error::AlreadyRegistered { key, instance: *owner })
        } else {
            state.keys.insert(key.clone(), (lease, record));
            state.notify(&key);
            let this = self.clone();
            Ok(Guard::new(move || this.lock().remove_key(&key, lease)))
        };
        Box::pin(future::ready(result))
    }

    fn watch(&self, prefix: String) -> BoxFuture<'_, Result<watch::Receiver<InstanceList>, Error>> {
        let mut state = self.lock();
        let (tx, rx) = watch::channel(state.list(&prefix));
        state.watchers.push((prefix, tx));
        Box::pin(future::ready(Ok(rx)))
    }
}
