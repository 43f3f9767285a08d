//! The engines one or more runtimes share, as serving, clients and the
//! status server see them: a narrow handle, not the runtime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
    /// One watch per key prefix per process, shared by every client.
    watches: Mutex<HashMap<String, watch::Receiver<InstanceList>>>,
}

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

    /// The shared watch of a key prefix, started on first use.
    pub(crate) async fn watch(&self, prefix: &str) -> Result<Option<watch::Receiver<InstanceList>>, Error> {
        let Some(discovery) = &self.discovery else { return Ok(None) };
        if let Some(rx) = self.watches.lock().unwrap_or_else(|p| p.into_inner()).get(prefix) {
            return Ok(Some(rx.clone()));
        }
        let rx = discovery.watch(prefix.to_string()).await?;
        // Two first uses may race; keep whichever landed first.
        let mut watches = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        Ok(Some(watches.entry(prefix.to_string()).or_insert(rx).clone()))
    }
}
