//! One runtime's etcd lease: kept alive at a third of its TTL, replaced
//! when lost (every registration written again under the new one, the old
//! one revoked), revoked at shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::RETRY_PAUSE;
use super::calls::{etcd_error, is_lease_not_found, retried, timed};
use crate::engine::discovery::{InstanceRecord, KeyFor, Lease, LeaseState, key_of};
use crate::{Error, Guard, InstanceId};

pub(super) async fn grant(client: &Client, ttl: Duration) -> Result<InstanceId, Error> {
    let secs = ttl.as_secs().max(2) as i64;
    let resp = retried("lease grant", || {
        let mut client = client.clone();
        async move { client.lease_grant(secs, None).await }
    })
    .await?;
    Ok(InstanceId(resp.id()))
}

pub(super) struct EtcdLease {
    inner: Arc<LeaseInner>,
    keeper: JoinHandle<()>,
}

struct LeaseInner {
    client: Client,
    ttl: Duration,
    state: watch::Sender<LeaseState>,
    /// What to write again under a new lease, by registration number.
    registrations: Mutex<HashMap<u64, Registration>>,
    next: AtomicU64,
    /// Serializes registering, deregistering and renewing, so that none of
    /// them sees the others half done (a key written under a lease that is
    /// being replaced, or deleted under the old id while renewed under the new).
    ops: tokio::sync::Mutex<()>,
}

impl LeaseInner {
    fn id(&self) -> InstanceId {
        self.state.borrow().id
    }

    fn registrations(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Registration>> {
        self.registrations.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `registrations` together, each remembered first so that a
    /// lost lease's replacement writes it again; a guard for each deletes it.
    async fn add(self: &Arc<Self>, registrations: Vec<Registration>) -> Result<Vec<Guard>, Error> {
        let _ops = self.ops.lock().await;
        let id = self.id();
        let registrations: Vec<Registration> = registrations.iter().map(|r| r.under(id)).collect();
        // Remembered before the write: a write that lands after a
        // timeout is still renewed and deleted like any other.
        let numbers: Vec<u64> = registrations
            .iter()
            .map(|registration| {
                let number = self.next.fetch_add(1, Ordering::Relaxed);
                self.registrations().insert(number, registration.clone());
                number
            })
            .collect();
        if let Err(e) = write(&self.client, &registrations).await {
            for number in &numbers {
                self.registrations().remove(number);
            }
            if !matches!(e, Error::AlreadyRegistered { .. }) {
                // It may have landed all the same.
                for registration in &registrations {
                    let _ = delete(&self.client, registration.key()).await;
                }
            }
            return Err(e);
        }
        Ok(numbers.into_iter().map(|number| self.guard(number)).collect())
    }

    /// Deletes registration `number` when dropped.
    fn guard(self: &Arc<Self>, number: u64) -> Guard {
        let inner = Arc::downgrade(self);
        let runtime = tokio::runtime::Handle::try_current().ok();
        Guard::new(move || {
            let (Some(inner), Some(runtime)) = (inner.upgrade(), runtime) else { return };
            runtime.spawn(async move {
                let _ops = inner.ops.lock().await;
                let Some(registration) = inner.registrations().remove(&number) else { return };
                if let Err(e) = delete(&inner.client, registration.key()).await {
                    tracing::warn!(error = %e, "could not delete a registration; it goes with the lease");
                }
            });
        })
    }
}

/// What a lease keeps written: an instance record (create-only) or a value
/// attached to it.
#[derive(Clone)]
enum Registration {
    Record(InstanceRecord),
    Attached { key: KeyFor, value: Bytes, id: InstanceId },
}

impl Registration {
    /// The same registration under the lease `id`.
    fn under(&self, id: InstanceId) -> Registration {
        match self {
            Registration::Record(r) => Registration::Record(InstanceRecord { instance_id: id, ..r.clone() }),
            Registration::Attached { key, value, .. } => {
                Registration::Attached { key: key.clone(), value: value.clone(), id }
            }
        }
    }

    fn key(&self) -> String {
        match self {
            Registration::Record(r) => key_of(r),
            Registration::Attached { key, id, .. } => key(*id),
        }
    }

    /// The lease it is written under.
    fn id(&self) -> InstanceId {
        match self {
            Registration::Record(r) => r.instance_id,
            Registration::Attached { id, .. } => *id,
        }
    }
}

/// The most registrations written in one transaction: etcd refuses more
/// than 128 operations of a kind in one by default (`--max-txn-ops`).
const WRITES_PER_TXN: usize = 64;

/// Writes `registrations` in as few transactions as etcd takes: records
/// create-only, attached values as they are, each under its lease. A record
/// whose key exists fails its transaction, so none of that transaction is
/// written, with [`Error::AlreadyRegistered`] naming the key.
async fn write(client: &Client, registrations: &[Registration]) -> Result<(), Error> {
    for batch in registrations.chunks(WRITES_PER_TXN) {
        let (mut absent, mut taken_if, mut puts) = (Vec::new(), Vec::new(), Vec::new());
        for registration in batch {
            let key = registration.key();
            let (value, lease) = match registration {
                Registration::Record(r) => {
                    absent.push(Compare::create_revision(key.clone(), CompareOp::Equal, 0));
                    taken_if.push(TxnOp::get(key.clone(), None));
                    (serde_json::to_vec(r).expect("an instance record encodes"), r.instance_id)
                }
                Registration::Attached { value, id, .. } => (value.to_vec(), *id),
            };
            puts.push(TxnOp::put(key, value, Some(PutOptions::new().with_lease(lease.0))));
        }
        let txn = Txn::new().when(absent).and_then(puts).or_else(taken_if);
        let resp = retried("registration", || {
            let (mut client, txn) = (client.clone(), txn.clone());
            async move { client.txn(txn).await }
        })
        .await?;
        if !resp.succeeded() {
            let key = resp
                .op_responses()
                .into_iter()
                .find_map(|op| match op {
                    TxnOpResponse::Get(get) => {
                        get.kvs().first().map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
                    }
                    _ => None,
                })
                .unwrap_or_default();
            let instance = batch[0].id();
            return Err(Error::AlreadyRegistered { key, instance });
        }
    }
    Ok(())
}

async fn delete(client: &Client, key: String) -> Result<(), Error> {
    retried("delete", || {
        let (mut client, key) = (client.clone(), key.clone());
        async move { client.delete(key, None).await }
    })
    .await
    .map(drop)
}

impl EtcdLease {
    /// A new lease of `ttl`, kept alive from now on.
    pub(super) async fn grant(client: &Client, ttl: Duration) -> Result<EtcdLease, Error> {
        let id = grant(client, ttl).await?;
        let (state, _) = watch::channel(LeaseState { id, live: true });
        let inner = Arc::new(LeaseInner {
            client: client.clone(),
            ttl,
            state,
            registrations: Mutex::default(),
            ops: tokio::sync::Mutex::new(()),
            next: AtomicU64::new(0),
        });
        let keeper = tokio::spawn(keep(Arc::downgrade(&inner)));
        tracing::debug!(lease = %id, ?ttl, "etcd lease granted");
        Ok(EtcdLease { inner, keeper })
    }
}

impl Lease for EtcdLease {
    fn id(&self) -> InstanceId {
        self.inner.id()
    }

    fn changes(&self) -> watch::Receiver<LeaseState> {
        self.inner.state.subscribe()
    }

    fn register(
        &self,
        attached: Option<(KeyFor, Bytes)>,
        records: Vec<InstanceRecord>,
    ) -> BoxFuture<'_, Result<Vec<Guard>, Error>> {
        let id = self.inner.id();
        let attached = attached.map(|(key, value)| Registration::Attached { key, value, id });
        let all = attached.into_iter().chain(records.into_iter().map(Registration::Record)).collect();
        Box::pin(self.inner.add(all))
    }

    fn revoke(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            self.keeper.abort();
            self.inner.registrations().clear();
            let id = self.inner.id();
            self.inner.state.send_modify(|s| s.live = false);
            retried("lease revoke", || {
                let mut client = self.inner.client.clone();
                async move { client.lease_revoke(id.0).await }
            })
            .await?;
            tracing::debug!(lease = %id, "etcd lease revoked");
            Ok(())
        })
    }
}

impl Drop for EtcdLease {
    fn drop(&mut self) {
        self.keeper.abort();
        if !self.inner.state.borrow().live {
            return;
        }
        let (id, client) = (self.inner.id(), self.inner.client.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = retried("lease revoke", || {
                    let mut client = client.clone();
                    async move { client.lease_revoke(id.0).await }
                })
                .await;
            });
        }
    }
}

/// Keeps the lease alive; when it is lost, takes a new one and writes every
/// registration again. Ends when the lease handle is dropped.
async fn keep(inner: std::sync::Weak<LeaseInner>) {
    loop {
        let Some(lease) = inner.upgrade() else { return };
        let (client, ttl, id) = (lease.client.clone(), lease.ttl, lease.id());
        drop(lease);
        let why = keep_alive(&client, id, ttl).await;
        let Some(lease) = inner.upgrade() else { return };
        tracing::warn!(lease = %id, reason = %why, "etcd lease lost; taking a new lease and registering again");
        lease.state.send_modify(|s| s.live = false);
        drop(lease);
        loop {
            tokio::time::sleep(RETRY_PAUSE).await;
            let Some(lease) = inner.upgrade() else { return };
            match renew(&lease).await {
                Ok(count) => {
                    tracing::warn!(old = %id, new = %lease.id(), registrations = count, "re-registered under a new etcd lease");
                    // An etcd that was down longer than the TTL, rather than
                    // wiped, still holds the old lease when it returns, and
                    // restarts its TTL: its keys would list this instance
                    // twice, once as a ghost, for another TTL.
                    revoke_replaced(&lease.client, id).await;
                    break;
                }
                Err(e) => tracing::debug!(error = %e, "etcd not ready for a new lease; retrying"),
            }
        }
    }
}

/// Revokes a lease this instance replaced; a lease etcd no longer has is
/// what was hoped for.
async fn revoke_replaced(client: &Client, old: InstanceId) {
    for _ in 0..3 {
        match retried("lease revoke", || {
            let mut client = client.clone();
            async move { client.lease_revoke(old.0).await }
        })
        .await
        {
            Ok(_) => {
                tracing::info!(lease = %old, "revoked the replaced etcd lease, and its keys with it");
                return;
            }
            Err(e) if is_lease_not_found(&e) => return,
            Err(e) => {
                tracing::debug!(lease = %old, error = %e, "could not revoke the replaced lease; retrying");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

/// Takes a new lease and writes every registration under it.
async fn renew(lease: &LeaseInner) -> Result<usize, Error> {
    let _ops = lease.ops.lock().await;
    let new = grant(&lease.client, lease.ttl).await?;
    let (numbers, records): (Vec<u64>, Vec<Registration>) =
        lease.registrations().iter().map(|(n, r)| (*n, r.under(new))).unzip();
    if let Err(e) = write(&lease.client, &records).await {
        // Start again from scratch next time; this lease takes its keys along.
        let _ = retried("lease revoke", || {
            let mut client = lease.client.clone();
            async move { client.lease_revoke(new.0).await }
        })
        .await;
        return Err(e);
    }
    let mut registrations = lease.registrations();
    let count = records.len();
    registrations.extend(numbers.into_iter().zip(records));
    drop(registrations);
    lease.state.send_replace(LeaseState { id: new, live: true });
    Ok(count)
}

/// Keeps `id` alive until it is lost; returns why.
async fn keep_alive(client: &Client, id: InstanceId, ttl: Duration) -> String {
    let interval = ttl / 3;
    let mut last_ok = Instant::now();
    loop {
        let result = async {
            let (mut keeper, mut stream) = retried("keep-alive", || {
                let mut client = client.clone();
                async move { client.lease_keep_alive(id.0).await }
            })
            .await?;
            loop {
                timed("keep-alive", keeper.keep_alive()).await?;
                match timed("keep-alive", stream.message()).await? {
                    Some(resp) if resp.ttl() > 0 => last_ok = Instant::now(),
                    Some(_) => return Ok(()),
                    None => return Err(etcd_error("keep-alive", "stream ended")),
                }
                tokio::time::sleep(interval).await;
            }
        }
        .await;
        match result {
            Ok(()) => return "etcd says the lease has expired".to_string(),
            // An etcd that lost its data does not answer TTL 0: it refuses
            // the lease outright. Waiting out the TTL would leave the
            // instance invisible for that long.
            Err(e) if is_lease_not_found(&e) => return format!("etcd no longer knows the lease ({e})"),
            Err(e) if last_ok.elapsed() >= ttl => {
                return format!("no keep-alive for {:?}, the lease TTL ({e})", last_ok.elapsed());
            }
            Err(e) => {
                tracing::debug!(lease = %id, error = %e, "keep-alive failed; retrying within the TTL");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}
