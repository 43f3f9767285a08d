//! The connections runtimes share: one NATS connection, one etcd client
//! and one watch per key prefix for every runtime a process builds with the
//! same server settings.
//!
//! A process that makes many runtimes (a gateway with one per tenant, a
//! test with one per client) paid for each a NATS connection, an etcd
//! connection and a watch of every prefix it routed to: 50 runtimes held 50
//! of each. Shared, they hold one of each, and the last runtime to go
//! closes them. A runtime still takes a lease only when it first serves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;

use crate::Error;
use crate::engine::config::{Config, EtcdConfig, NatsConfig};
use crate::engine::discovery::{Discovery, InstanceList};
use crate::engine::transport::Transport;

/// The instances under one key prefix, as discovery reports them.
pub(crate) type Watch = watch::Receiver<InstanceList>;

/// A transport, a discovery, and the watches made on it.
pub(crate) struct Connections {
    pub transport: Arc<dyn Transport>,
    pub discovery: Option<Arc<dyn Discovery>>,
    /// One watch per key prefix, shared by every client that routes to it,
    /// and gone (its discovery task ended) with the last one.
    watches: Mutex<HashMap<String, Weak<Watch>>>,
    /// Closed once the tokio runtime they were made on has shut down, and
    /// with it their connection tasks: then they are not shared any more.
    made_on: Option<tokio::sync::oneshot::Sender<()>>,
}

/// What makes two builds share their connections.
struct Key {
    nats: Option<NatsConfig>,
    etcd: Option<EtcdConfig>,
    lease_ttl: Duration,
}

impl Key {
    fn of(config: &Config) -> Key {
        Key { nats: config.nats.clone(), etcd: config.etcd.clone(), lease_ttl: config.lease_ttl }
    }

    /// The same servers, credentials and TLS, wherever they were set.
    fn same(&self, other: &Key) -> bool {
        let nats = |a: &NatsConfig, b: &NatsConfig| {
            (&a.urls, &a.auth, &a.tls_ca, &a.client_cert) == (&b.urls, &b.auth, &b.tls_ca, &b.client_cert)
        };
        let etcd = |a: &EtcdConfig, b: &EtcdConfig| {
            (&a.endpoints, &a.user, &a.tls_ca, &a.client_cert)
                == (&b.endpoints, &b.user, &b.tls_ca, &b.client_cert)
        };
        self.lease_ttl == other.lease_ttl
            && both(&self.nats, &other.nats, nats)
            && both(&self.etcd, &other.etcd, etcd)
    }
}

/// Both absent, or both present and `same`.
fn both<T>(a: &Option<T>, b: &Option<T>, same: impl Fn(&T, &T) -> bool) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// The connections of this process, by the settings they were made with.
static SHARED: Mutex<Vec<(Key, Weak<Connections>)>> = Mutex::new(Vec::new());

fn shared() -> std::sync::MutexGuard<'static, Vec<(Key, Weak<Connections>)>> {
    SHARED.lock().unwrap_or_else(|p| p.into_inner())
}

impl Connections {
    /// Connections of their own, not shared: given engines, or the
    /// embedded mode, where each runtime is a world of its own.
    pub(crate) fn own(transport: Arc<dyn Transport>, discovery: Option<Arc<dyn Discovery>>) -> Arc<Self> {
        Arc::new(Connections { transport, discovery, watches: Mutex::default(), made_on: None })
    }

    /// Whether the tokio runtime they were made on still runs them.
    fn usable(&self) -> bool {
        self.made_on.as_ref().is_none_or(|made_on| !made_on.is_closed())
    }

    /// The connections to the servers `config` names: those of an earlier
    /// build with the same settings while any runtime holds them, or new
    /// ones made by `connect`.
    pub(crate) async fn shared<F>(config: &Config, connect: F) -> Result<Arc<Self>, Error>
    where
        F: Future<Output = Result<(Arc<dyn Transport>, Option<Arc<dyn Discovery>>), Error>>,
    {
        let key = Key::of(config);
        let found = |all: &[(Key, Weak<Connections>)]| {
            all.iter().find_map(|(k, c)| c.upgrade().filter(|c| k.same(&key) && c.usable()))
        };
        if let Some(connections) = found(&shared()) {
            return Ok(connections);
        }
        let (transport, discovery) = connect.await?;
        let mut all = shared();
        // Two first builds may race; keep whichever landed first.
        if let Some(connections) = found(&all) {
            return Ok(connections);
        }
        all.retain(|(_, c)| c.upgrade().is_some_and(|c| c.usable()));
        // A task of this runtime holds the receiver: it is dropped, and the
        // sender closed, when the runtime shuts down.
        let (made_on, runtime_runs) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = runtime_runs.await;
        });
        let connections =
            Arc::new(Connections { transport, discovery, watches: Mutex::default(), made_on: Some(made_on) });
        all.push((key, Arc::downgrade(&connections)));
        Ok(connections)
    }

    fn watches(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<Watch>>> {
        self.watches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The shared watch of a key prefix, started on first use.
    pub(crate) async fn watch(&self, prefix: &str) -> Result<Option<Arc<Watch>>, Error> {
        let Some(discovery) = &self.discovery else { return Ok(None) };
        if let Some(shared) = self.watches().get(prefix).and_then(Weak::upgrade) {
            return Ok(Some(shared));
        }
        let fresh = Arc::new(discovery.watch(prefix.to_string()).await?);
        let mut watches = self.watches();
        if let Some(shared) = watches.get(prefix).and_then(Weak::upgrade) {
            return Ok(Some(shared));
        }
        // Forget the watches nobody shares any more, so that the map does
        // not grow with every name a gateway ever routed to.
        watches.retain(|_, w| w.strong_count() > 0);
        watches.insert(prefix.to_string(), Arc::downgrade(&fresh));
        Ok(Some(fresh))
    }
}
