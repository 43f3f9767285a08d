//! etcd discovery: one lease per runtime kept alive at a third of its TTL,
//! create-only registrations under it, and prefix watches that resync after
//! any break.
//!
//! Losing the lease (etcd restarted without its data, or keep-alives failing
//! for longer than the TTL) does not stop the process: the keeper takes a new
//! lease and writes every registration again under it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity, PutOptions,
    TlsOptions, Txn, TxnOp, WatchOptions,
};
use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::listing::Listing;
use super::{Discovery, InstanceList, InstanceRecord, Lease, LeaseState, key_of};
use crate::engine::config::{ClientCertificate, EtcdConfig, redact_url};
use crate::{Error, Guard, InstanceId};

/// The interval of the HTTP/2 pings on the connection to etcd: twice etcd's
/// default `--grpc-keepalive-min-time`.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a ping may go unanswered before the connection counts as dead.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one etcd call may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between attempts to reach etcd again.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Discovery in etcd.
#[derive(Clone)]
pub struct EtcdDiscovery {
    client: Client,
    ttl: Duration,
}

fn etcd_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Discovery(format!("etcd {what}: {e}"))
}

async fn timed<T, E: std::fmt::Display>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, Error> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(etcd_error(what, e)),
        Err(_) => Err(etcd_error(what, format!("no answer within {CALL_TIMEOUT:?}"))),
    }
}

/// Like [`timed`], for a call that is sent again, at once, when it reached
/// no member. etcd-client 0.21 balances calls at random over lazy
/// connections to every endpoint and keeps a member that is down in
/// rotation: with one of three down, one call in three fails at once
/// (`Unavailable: tcp connect error`) while two members would answer.
/// Nothing was sent, so this is safe for any call, a transaction too.
async fn retried<T, F, Fut>(what: &str, mut call: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
    let mut sent = 1;
    loop {
        match tokio::time::timeout_at(deadline, call()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) if sent < SENDS && reached_no_member(&e) => {
                tracing::debug!(what, error = %e, "an etcd member is unreachable; sending the call to another");
                sent += 1;
                tokio::time::sleep(RETRY_SOON).await;
            }
            Ok(Err(e)) => return Err(etcd_error(what, e)),
            Err(_) => return Err(etcd_error(what, format!("no answer within {CALL_TIMEOUT:?}"))),
        }
    }
}

/// How many times in all a call that reaches no member is sent: with one
/// member of three down, all fail one time in 3^16; with etcd down, the
/// call gives up within a third of a second.
const SENDS: usize = 16;

/// The pause before a call that reached no member is sent again.
const RETRY_SOON: Duration = Duration::from_millis(20);

/// `true` when a call failed because the client could not connect to the
/// member it was given to, so that nothing was sent. etcd's own
/// `Unavailable` answers (no leader, leader changed, a request timed out)
/// carry no I/O error and may follow a transaction that was applied: they
/// are not sent again.
fn reached_no_member(e: &etcd_client::Error) -> bool {
    use std::io::ErrorKind::{
        AddrNotAvailable, ConnectionRefused, HostUnreachable, NetworkUnreachable, TimedOut,
    };
    // gRPC status codes (tonic is not a dependency of its own here).
    const UNAVAILABLE: i32 = 14;
    let source = match e {
        etcd_client::Error::GRpcStatus(status) if status.code() as i32 == UNAVAILABLE => {
            std::error::Error::source(status)
        }
        etcd_client::Error::TransportError(e) => std::error::Error::source(e),
        _ => return false,
    };
    let mut next = source;
    while let Some(source) = next {
        if let Some(io) = source.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ConnectionRefused | TimedOut | HostUnreachable | NetworkUnreachable | AddrNotAvailable
            );
        }
        next = source.source();
    }
    false
}

impl EtcdDiscovery {
    /// Connects to etcd and checks that it answers within `connect_timeout`.
    pub async fn connect(
        config: &EtcdConfig,
        connect_timeout: Duration,
        ttl: Duration,
    ) -> Result<Self, Error> {
        let address = config.display_endpoints();
        let unreachable = |detail: String| Error::Unreachable {
            engine: "etcd",
            address: address.clone(),
            source_of_address: config.source.to_string(),
            detail,
        };
        if config.endpoints.is_empty() {
            return Err(unreachable("no endpoint given".into()));
        }
        let mut options = ConnectOptions::new()
            .with_connect_timeout(connect_timeout)
            // HTTP/2 pings no more often than etcd allows by default
            // (--grpc-keepalive-min-time 5 s): etcd closes a connection that
            // pings sooner, and every watch on it with it.
            // Not on a connection without a stream either: etcd counts
            // those pings against it too.
            .with_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)
            .with_keep_alive_while_idle(false);
        if let Some((user, password)) = &config.user {
            options = options.with_user(user.clone(), password.clone());
        }
        if config.tls_ca.is_some() || config.client_cert.is_some() {
            if let Some(plain) = config.endpoints.iter().find(|e| !e.starts_with("https://")) {
                return Err(Error::Config(format!(
                    "etcd TLS is configured (ROTOR_ETCD_TLS_CA or ROTOR_ETCD_TLS_CERT) but the endpoint {} \
                     ({}) is not https://",
                    redact_url(plain),
                    config.source
                )));
            }
            let read = |path: &std::path::Path, what: &str| {
                std::fs::read(path).map_err(|e| {
                    Error::Config(format!("cannot read the etcd {what} {}: {e}", path.display()))
                })
            };
            let mut tls = TlsOptions::new();
            if let Some(ca) = &config.tls_ca {
                tls = tls.ca_certificate(Certificate::from_pem(read(ca, "TLS CA (ROTOR_ETCD_TLS_CA)")?));
            }
            if let Some(ClientCertificate { cert, key }) = &config.client_cert {
                tls = tls.identity(Identity::from_pem(
                    read(cert, "client certificate (ROTOR_ETCD_TLS_CERT)")?,
                    read(key, "client key (ROTOR_ETCD_TLS_KEY)")?,
                ));
            }
            options = options.with_tls(tls);
        }
        let connect = async {
            let mut client = Client::connect(&config.endpoints, Some(options)).await?;
            // Connecting may be lazy; a read proves the server answers. The
            // key is under the instances' prefix, so that a user allowed
            // that prefix alone may connect.
            // A member that is down fails the read at once; another
            // answers the next one.
            let mut tries = 0;
            loop {
                match client.get("instances/", None).await {
                    Ok(_) => break,
                    Err(e) if reached_no_member(&e) && tries < SENDS => {
                        tries += 1;
                        tokio::time::sleep(RETRY_SOON).await;
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok::<_, etcd_client::Error>(client)
        };
        let client = match tokio::time::timeout(connect_timeout, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(connect_error(config, address.clone(), &e)),
            Err(_) => return Err(unreachable(format!("no answer within {connect_timeout:?}"))),
        };
        Ok(EtcdDiscovery { client, ttl })
    }

    /// The underlying etcd client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn list_at(&self, prefix: &str) -> Result<(BTreeMap<String, InstanceRecord>, i64), Error> {
        let resp = retried("get", || {
            let mut client = self.client.clone();
            async move { client.get(prefix, Some(GetOptions::new().with_prefix())).await }
        })
        .await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        let mut map = BTreeMap::new();
        for kv in resp.kvs() {
            if let Some(record) = parse(kv.key(), kv.value()) {
                map.insert(String::from_utf8_lossy(kv.key()).into_owned(), record);
            }
        }
        Ok((map, revision))
    }
}

/// An error with its sources, which hold what tonic's own message leaves out
/// (the TLS handshake's reason, for one).
fn with_sources(e: &etcd_client::Error) -> String {
    let mut detail = e.to_string();
    let mut next: Option<&dyn std::error::Error> = match e {
        etcd_client::Error::TransportError(e) => std::error::Error::source(e),
        etcd_client::Error::IoError(e) => std::error::Error::source(e),
        _ => None,
    };
    while let Some(source) = next {
        let text = source.to_string();
        if !detail.ends_with(&text) {
            detail = format!("{detail}: {text}");
        }
        next = source.source();
    }
    detail
}

fn uses_tls(config: &EtcdConfig) -> bool {
    config.tls_ca.is_some()
        || config.client_cert.is_some()
        || config.endpoints.iter().any(|e| e.starts_with("https://"))
}

/// [`Error::Refused`] when etcd turned this client away (password, role,
/// certificate), [`Error::Unreachable`] otherwise.
fn connect_error(config: &EtcdConfig, address: String, e: &etcd_client::Error) -> Error {
    // gRPC status codes (tonic is not a dependency of its own here).
    const INVALID_ARGUMENT: i32 = 3;
    const PERMISSION_DENIED: i32 = 7;
    const UNAUTHENTICATED: i32 = 16;
    let detail = with_sources(e);
    let lower = detail.to_ascii_lowercase();
    let hint = match e {
        etcd_client::Error::GRpcStatus(status)
            if matches!(status.code() as i32, UNAUTHENTICATED | INVALID_ARGUMENT)
                && (lower.contains("auth") || lower.contains("user")) =>
        {
            Some(if config.user.is_some() {
                "check ROTOR_ETCD_USER and ROTOR_ETCD_PASSWORD".to_string()
            } else {
                "etcd has authentication enabled: set ROTOR_ETCD_USER and ROTOR_ETCD_PASSWORD".to_string()
            })
        }
        etcd_client::Error::GRpcStatus(status) if status.code() as i32 == PERMISSION_DENIED => Some(
            "the user may not read the instances/ prefix: grant its role readwrite on it \
             (`etcdctl role grant-permission ROLE --prefix=true readwrite instances/`)"
                .to_string(),
        ),
        _ if lower.contains("invalid peer certificate") => Some(match &config.tls_ca {
            None => {
                "etcd's certificate is not trusted: set ROTOR_ETCD_TLS_CA (EtcdConfig::tls_ca) to the CA \
                     that signed it"
                    .to_string()
            }
            Some(ca) => format!(
                "etcd's certificate is not signed by {} (ROTOR_ETCD_TLS_CA), or not for this address",
                ca.display()
            ),
        }),
        // An etcd that verifies clients may close the connection on one
        // without a certificate before it says why (TLS 1.3 checks the
        // client's certificate after the client thinks the handshake done).
        _ if ["certificate", "handshake", "tls", "alert"].iter().any(|w| lower.contains(w))
            || (uses_tls(config)
                && ["broken pipe", "connection reset", "connection closed"]
                    .iter()
                    .any(|w| lower.contains(w))) =>
        {
            Some(match &config.client_cert {
                None => {
                    "etcd closed the connection in TLS set-up: an etcd started with --client-cert-auth needs \
                         ROTOR_ETCD_TLS_CERT and ROTOR_ETCD_TLS_KEY (EtcdConfig::client_cert), a certificate \
                         signed by a CA in its --trusted-ca-file"
                        .to_string()
                }
                Some(cert) => format!(
                    "etcd closed the connection in TLS set-up: it does not accept {} (ROTOR_ETCD_TLS_CERT), \
                     which must be signed by a CA in its --trusted-ca-file",
                    cert.cert.display()
                ),
            })
        }
        _ => None,
    };
    let source_of_address = config.source.to_string();
    match hint {
        Some(hint) => Error::Refused { engine: "etcd", address, source_of_address, detail, hint },
        None => Error::Unreachable { engine: "etcd", address, source_of_address, detail },
    }
}

fn parse(key: &[u8], value: &[u8]) -> Option<InstanceRecord> {
    match serde_json::from_slice(value) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(key = %String::from_utf8_lossy(key), error = %e, "ignoring an instance record that does not decode");
            None
        }
    }
}

fn sorted(map: &BTreeMap<String, InstanceRecord>) -> InstanceList {
    let mut list: Vec<InstanceRecord> = map.values().cloned().collect();
    list.sort_by_key(|r| r.instance_id);
    list.into()
}

/// Writes `record` at its key under `lease`, only if the key is new.
async fn put_create(client: &Client, record: &InstanceRecord) -> Result<(), Error> {
    let key = key_of(record);
    let value = serde_json::to_vec(record).expect("an instance record encodes");
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key.clone(), value, Some(PutOptions::new().with_lease(record.instance_id.0)))]);
    let resp = retried("create-only put", || {
        let (mut client, txn) = (client.clone(), txn.clone());
        async move { client.txn(txn).await }
    })
    .await?;
    if resp.succeeded() {
        Ok(())
    } else {
        Err(Error::AlreadyRegistered { key, instance: record.instance_id })
    }
}

impl Discovery for EtcdDiscovery {
    fn grant_lease(&self) -> BoxFuture<'_, Result<Arc<dyn Lease>, Error>> {
        Box::pin(async move {
            let id = grant(&self.client, self.ttl).await?;
            let (state, _) = watch::channel(LeaseState { id, live: true });
            let inner = Arc::new(LeaseInner {
                client: self.client.clone(),
                ttl: self.ttl,
                state,
                registrations: Mutex::default(),
                ops: tokio::sync::Mutex::new(()),
                next: AtomicU64::new(0),
            });
            let keeper = tokio::spawn(keep(Arc::downgrade(&inner)));
            tracing::debug!(lease = %id, ttl = ?self.ttl, "etcd lease granted");
            Ok(Arc::new(EtcdLease { inner, keeper }) as Arc<dyn Lease>)
        })
    }

    fn watch(&self, prefix: String) -> BoxFuture<'_, Result<watch::Receiver<InstanceList>, Error>> {
        Box::pin(async move {
            let (map, revision) = self.list_at(&prefix).await?;
            let listing = Listing::new(map);
            let (tx, rx) = watch::channel(listing.list());
            let this = self.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = this.follow(prefix, listing, revision, &tx) => {}
                    () = tx.closed() => {}
                }
            });
            Ok(rx)
        })
    }

    fn list(&self, prefix: String) -> BoxFuture<'_, Result<Vec<InstanceRecord>, Error>> {
        Box::pin(async move { Ok(sorted(&self.list_at(&prefix).await?.0).to_vec()) })
    }

    fn reserve_service(&self, service: String, owner: String) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let key = rotor_names::service_key(&service);
            // Written if absent, read if not, in one transaction: of two
            // pairs racing, one writes and the other reads what it wrote.
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key.clone(), owner.clone(), None)])
                .or_else([TxnOp::get(key.clone(), None)]);
            let resp = retried("service reservation", || {
                let (mut client, txn) = (self.client.clone(), txn.clone());
                async move { client.txn(txn).await }
            })
            .await
            .map_err(|e| match e.to_string().contains("permission denied") {
                true => Error::Discovery(format!(
                    "{e}: the etcd user may not write {key}; grant its role readwrite on the \
                         services/ prefix too (`etcdctl role grant-permission ROLE --prefix=true \
                         readwrite services/`)"
                )),
                false => e,
            })?;
            if resp.succeeded() {
                return Ok(());
            }
            let holder = resp
                .op_responses()
                .into_iter()
                .find_map(|op| match op {
                    etcd_client::TxnOpResponse::Get(get) => {
                        get.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
                    }
                    _ => None,
                })
                .unwrap_or_default();
            super::reservation(service, owner, holder)
        })
    }
}

impl EtcdDiscovery {
    /// Applies watch events to `listing` for ever; after any break, reads
    /// the prefix again (etcd may have restarted, even without its data)
    /// and watches from there. Routing keeps the last records meanwhile,
    /// and across the resync for one TTL (see [`Listing`]).
    async fn follow(
        &self,
        prefix: String,
        mut listing: Listing,
        mut revision: i64,
        tx: &watch::Sender<InstanceList>,
    ) {
        loop {
            if let Err(e) = self.follow_once(&prefix, &mut listing, &mut revision, tx).await {
                tracing::debug!(%prefix, error = %e, "etcd watch interrupted; resyncing");
            }
            loop {
                tokio::time::sleep(RETRY_PAUSE).await;
                match self.list_at(&prefix).await {
                    Ok((fresh, rev)) => {
                        listing.resync(fresh, self.ttl);
                        revision = rev;
                        tx.send_replace(listing.list());
                        break;
                    }
                    Err(e) => tracing::debug!(%prefix, error = %e, "etcd unreachable; retrying"),
                }
            }
        }
    }

    async fn follow_once(
        &self,
        prefix: &str,
        listing: &mut Listing,
        revision: &mut i64,
        tx: &watch::Sender<InstanceList>,
    ) -> Result<(), Error> {
        let options = WatchOptions::new().with_prefix().with_start_revision(*revision + 1);
        let mut stream = retried("watch", || {
            let (mut client, options) = (self.client.clone(), options.clone());
            async move { client.watch(prefix, Some(options)).await }
        })
        .await?;
        loop {
            let expiry = listing.next_expiry();
            let next = tokio::select! {
                next = stream.message() => next,
                () = sleep_until(expiry) => {
                    if listing.expire(Instant::now()) {
                        tx.send_replace(listing.list());
                    }
                    continue;
                }
            };
            let Some(resp) = next.map_err(|e| etcd_error("watch", e))? else {
                return Err(etcd_error("watch", "stream ended"));
            };
            if resp.canceled() || resp.compact_revision() > 0 {
                return Err(etcd_error("watch", "cancelled by the server"));
            }
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                match event.event_type() {
                    EventType::Put => {
                        if let Some(record) = parse(kv.key(), kv.value()) {
                            listing.put(key, record);
                        }
                    }
                    EventType::Delete => listing.delete(&key),
                }
                *revision = (*revision).max(kv.mod_revision());
            }
            if !resp.events().is_empty() {
                tx.send_replace(listing.list());
            }
        }
    }
}

/// Sleeps until `at`, or for ever without it.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn grant(client: &Client, ttl: Duration) -> Result<InstanceId, Error> {
    let secs = ttl.as_secs().max(2) as i64;
    let resp = retried("lease grant", || {
        let mut client = client.clone();
        async move { client.lease_grant(secs, None).await }
    })
    .await?;
    Ok(InstanceId(resp.id()))
}

struct EtcdLease {
    inner: Arc<LeaseInner>,
    keeper: JoinHandle<()>,
}

struct LeaseInner {
    client: Client,
    ttl: Duration,
    state: watch::Sender<LeaseState>,
    /// What to write again under a new lease, by registration number.
    registrations: Mutex<HashMap<u64, InstanceRecord>>,
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

    fn registrations(&self) -> std::sync::MutexGuard<'_, HashMap<u64, InstanceRecord>> {
        self.registrations.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Lease for EtcdLease {
    fn id(&self) -> InstanceId {
        self.inner.id()
    }

    fn changes(&self) -> watch::Receiver<LeaseState> {
        self.inner.state.subscribe()
    }

    fn register(&self, mut record: InstanceRecord) -> BoxFuture<'_, Result<Guard, Error>> {
        Box::pin(async move {
            let _ops = self.inner.ops.lock().await;
            record.instance_id = self.inner.id();
            // Remembered before the write: a write that lands after a
            // timeout is still renewed and deleted like any other.
            let number = self.inner.next.fetch_add(1, Ordering::Relaxed);
            self.inner.registrations().insert(number, record.clone());
            if let Err(e) = put_create(&self.inner.client, &record).await {
                self.inner.registrations().remove(&number);
                if !matches!(e, Error::AlreadyRegistered { .. }) {
                    // It may have landed all the same.
                    let key = key_of(&record);
                    let _ = retried("delete", || {
                        let (mut client, key) = (self.inner.client.clone(), key.clone());
                        async move { client.delete(key, None).await }
                    })
                    .await;
                }
                return Err(e);
            }
            let inner = Arc::downgrade(&self.inner);
            let runtime = tokio::runtime::Handle::try_current().ok();
            Ok(Guard::new(move || {
                let (Some(inner), Some(runtime)) = (inner.upgrade(), runtime) else { return };
                runtime.spawn(async move {
                    let _ops = inner.ops.lock().await;
                    let Some(record) = inner.registrations().remove(&number) else { return };
                    let key = key_of(&record);
                    let delete = retried("delete", || {
                        let (mut client, key) = (inner.client.clone(), key.clone());
                        async move { client.delete(key, None).await }
                    });
                    if let Err(e) = delete.await {
                        tracing::warn!(error = %e, "could not delete a registration; it goes with the lease");
                    }
                });
            }))
        })
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
                    tracing::warn!(old = %id, new = %lease.id(), endpoints = count, "re-registered under a new etcd lease");
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
    let records: Vec<(u64, InstanceRecord)> = lease
        .registrations()
        .iter()
        .map(|(n, r)| (*n, InstanceRecord { instance_id: new, ..r.clone() }))
        .collect();
    for (_, record) in &records {
        if let Err(e) = put_create(&lease.client, record).await {
            // Start again from scratch next time; this lease takes its keys along.
            let _ = retried("lease revoke", || {
                let mut client = lease.client.clone();
                async move { client.lease_revoke(new.0).await }
            })
            .await;
            return Err(e);
        }
    }
    let mut registrations = lease.registrations();
    for (number, record) in records.iter() {
        registrations.insert(*number, record.clone());
    }
    drop(registrations);
    lease.state.send_replace(LeaseState { id: new, live: true });
    Ok(records.len())
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

/// etcd's answer to a lease it does not have (`etcdserver: requested lease
/// not found`), as opposed to a failure to reach it.
fn is_lease_not_found(e: &Error) -> bool {
    e.to_string().contains("lease not found")
}
