//! The engines one or more runtimes share, as serving, clients and the
//! status server see them: a narrow handle, not the runtime.

use std::sync::Arc;

use crate::connections::Connections;
pub(crate) use crate::connections::Watch;
use crate::engine::config::Config;
use crate::engine::discovery::Discovery;
use crate::engine::metrics::Metrics;
use crate::engine::transport::Transport;
use crate::engine::transport::direct::{DirectPool, DirectServer};
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
    /// The direct plane's listener, when the config names one.
    pub direct: Option<Arc<DirectServer>>,
    /// Connections to instances that advertise a direct address; `None`
    /// when calls go over NATS alone.
    pub pool: Option<Arc<DirectPool>>,
    /// The connections and watches, shared with the other runtimes of the
    /// process built with the same server settings.
    connections: Arc<Connections>,
}

impl Engines {
    pub(crate) fn new(connections: Arc<Connections>, config: Config, mode: Mode) -> Self {
        Engines {
            transport: connections.transport.clone(),
            discovery: connections.discovery.clone(),
            config,
            metrics: Arc::default(),
            health: Arc::default(),
            mode,
            status: None,
            direct: None,
            pool: None,
            connections,
        }
    }

    /// The shared watch of a key prefix, started on first use.
    pub(crate) async fn watch(&self, prefix: &str) -> Result<Option<Arc<Watch>>, Error> {
        self.connections.watch(prefix).await
    }
}
