//! etcd discovery: one lease per runtime kept alive at a third of its TTL,
//! create-only registrations under it, and prefix watches that resync after
//! any break.
//!
//! Losing the lease (etcd restarted without its data, or keep-alives failing
//! for longer than the TTL) does not stop the process: the keeper takes a new
//! lease and writes every registration again under it.

mod calls;
mod keys;
mod lease;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity, TlsOptions,
    Txn, TxnOp, WatchOptions,
};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tokio::sync::watch;

use super::listing::Listing;
use super::{Discovery, InstanceList, InstanceRecord, KeyChange, Lease, Stored};
use crate::Error;
use crate::engine::config::{ClientCertificate, EtcdConfig, redact_url};
use calls::{RETRY_SOON, SENDS, connect_error, etcd_error, reached_no_member, retried, retried_read};
use lease::EtcdLease;

/// The interval of the HTTP/2 pings on the connection to etcd: twice etcd's
/// default `--grpc-keepalive-min-time`.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a ping may go unanswered before the connection counts as dead.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause between attempts to reach etcd again.
pub(super) const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Discovery in etcd.
#[derive(Clone)]
pub struct EtcdDiscovery {
    client: Client,
    ttl: Duration,
    /// Services this process has reserved, by name, with their owner: a
    /// reservation is never taken back, so each costs one round trip per
    /// process, not one per instance. (An etcd that lost its data lost the
    /// reservation too; the next process to serve the pair writes it again.)
    reserved: Arc<Mutex<HashMap<String, String>>>,
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
        Ok(EtcdDiscovery { client, ttl, reserved: Arc::default() })
    }

    /// The underlying etcd client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn list_at(&self, prefix: &str) -> Result<(BTreeMap<String, InstanceRecord>, i64), Error> {
        let resp = retried_read("get", || {
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

fn parse(key: &[u8], value: &[u8]) -> Option<InstanceRecord> {
    match serde_json::from_slice(value) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(key = %String::from_utf8_lossy(key), error = %e, "ignoring an instance record that does not decode");
            None
        }
    }
}

fn sorted(map: BTreeMap<String, InstanceRecord>) -> InstanceList {
    map.into_values().collect()
}

impl Discovery for EtcdDiscovery {
    fn grant_lease(&self) -> BoxFuture<'_, Result<Arc<dyn Lease>, Error>> {
        Box::pin(
            async move { Ok(Arc::new(EtcdLease::grant(&self.client, self.ttl).await?) as Arc<dyn Lease>) },
        )
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
        Box::pin(async move { Ok(sorted(self.list_at(&prefix).await?.0).to_vec()) })
    }

    fn reserve_service(&self, service: String, owner: String) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let reserved = || self.reserved.lock().unwrap_or_else(|p| p.into_inner());
            if reserved().get(&service) == Some(&owner) {
                return Ok(());
            }
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
                reserved().insert(service, owner);
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
            super::reservation(service.clone(), owner.clone(), holder)?;
            reserved().insert(service, owner);
            Ok(())
        })
    }

    fn get(&self, key: String) -> BoxFuture<'_, Result<(Option<Stored>, i64), Error>> {
        Box::pin(self.get_value(key))
    }

    fn put(&self, key: String, value: Bytes) -> BoxFuture<'_, Result<i64, Error>> {
        Box::pin(self.put_value(key, value))
    }

    fn delete(&self, key: String) -> BoxFuture<'_, Result<Option<i64>, Error>> {
        Box::pin(self.delete_value(key))
    }

    fn compare_and_put(
        &self,
        key: String,
        expected: i64,
        value: Bytes,
    ) -> BoxFuture<'_, Result<Result<i64, i64>, Error>> {
        Box::pin(self.compare_and_put_value(key, expected, value))
    }

    fn watch_key(
        &self,
        key: String,
        after: i64,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Result<KeyChange, Error>>, Error>> {
        Box::pin(self.watch_value(key, after))
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
        let mut stream = retried_read("watch", || {
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
            // The watch may have been opened on an etcd other than the one
            // read from: restarted without its data between the read and
            // the watch. Its revisions started again below ours, and a
            // watch from ours would wait for a revision it has not reached,
            // missing every write meanwhile. Read it again instead.
            if let Some(header) = resp.header()
                && resp.created()
                && header.revision() < *revision
            {
                return Err(etcd_error(
                    "watch",
                    format!(
                        "etcd is at revision {} below the {} read before: it lost its data",
                        header.revision(),
                        *revision
                    ),
                ));
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
