//! The engines one or more runtimes share, as serving, clients and the
//! status server see them: a narrow handle, not the runtime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::watch;

use crate::engine::config::Config;
use crate::engine::discovery::{Discovery, InstanceList};
use crate::engine::metrics::Metrics;
use crate::engine::transport::Transport;
use crate::status::HealthRegistry;
use crate::{Error, Guard};

/// How requests travel and how instances are found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// In-process transport and in-memory discovery: no servers.
    Embedded,
    /// A transport without discovery: every call goes to the queue group.
    Static,
    /// A transport and a discovery service.
    Distributed,
}

/// What runtimes made by [`Runtime::with_new_lease`](crate::Runtime::with_new_lease) share.
pub(crate) struct Engines {
    pub transport: Arc<dyn Transport>,
    pub discovery: Option<Arc<dyn Discovery>>,
    pub config: Config,
    pub metrics: Arc<Metrics>,
    pub health: Arc<HealthRegistry>,
    pub mode: Mode,
    /// Where the status server listens, and what stops it with the engines.
    pub status: Option<(std::net::SocketAddr, Guard)>,
    /// One watch per key prefix per process, shared by every client that
    /// routes to it, and gone (its discovery task ended) with the last one.
    watches: Mutex<HashMap<String, Weak<Watch>>>,
}

/// The instances under one key prefix, as discovery reports them.
pub(crate) type Watch = watch::Receiver<InstanceList>;

impl Engines {
    pub(crate) fn new(
        transport: Arc<dyn Transport>,
        discovery: Option<Arc<dyn Discovery>>,
        config: Config,
        mode: Mode,
    ) -> Self {
        Engines {
            transport,
            discovery,
            config,
            metrics: Arc::default(),
            health: Arc::default(),
            mode,
            status: None,
            watches: Mutex::default(),
        }
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
        // Two first uses may race; keep whichever landed first.
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
