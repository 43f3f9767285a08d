//! Reaching the servers: the `ROTOR_*` configuration with the flags laid
//! over it, and connections made with the runtime's own engines, so that a
//! server that is down is reported as every Rotor process reports it (the
//! address, and the variable or flag that gave it).

use std::sync::Arc;
use std::time::Duration;

use rotor_runtime::config::{Config, Source};
use rotor_runtime::discovery::{Discovery, EtcdDiscovery};
use rotor_runtime::transport::Nats;
use rotor_runtime::{Error, Runtime};

use crate::{Failure, Global};

const NATS_VAR: &str = "ROTOR_NATS_URL";
const ETCD_VAR: &str = "ROTOR_ETCD_ENDPOINTS";

/// The configuration, from the environment with the flags laid over it.
pub fn config(global: &Global) -> Result<Config, Failure> {
    let flag = |name: &str| match name {
        NATS_VAR => global.nats_url.clone(),
        ETCD_VAR => global.etcd_endpoints.clone(),
        _ => None,
    };
    // The flags go in as the variables they override, so that the runtime's
    // checks (etcd without NATS, say) see what will really be used.
    let mut config = Config::from_vars(|name| flag(name).or_else(|| std::env::var(name).ok()))?;
    if let (Some(nats), Some(_)) = (&mut config.nats, &global.nats_url) {
        nats.source = Source::Env("--nats-url");
    }
    if let (Some(etcd), Some(_)) = (&mut config.etcd, &global.etcd_endpoints) {
        etcd.source = Source::Env("--etcd-endpoints");
    }
    config.connect_timeout = global.timeout;
    config.request_timeout = global.timeout;
    // The tool serves nothing: a status address or a scrape interval meant
    // for servers in the same environment must not start anything here.
    config.status_addr = None;
    config.stats_scrape_interval = None;
    Ok(config)
}

/// What a command is connected to.
pub struct Connections {
    pub config: Config,
    pub nats: Option<Nats>,
    pub etcd: Option<EtcdDiscovery>,
}

/// Which servers a command needs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Required,
    /// Used when configured (to know which instances to expect).
    IfConfigured,
    Unused,
}

fn not_configured(engine: &str, var: &str, flag: &str) -> Failure {
    Failure::new(format!("{engine} is not configured: set {var} or pass {flag}"))
}

/// Connects to the servers a command needs, both at once.
pub async fn connect(global: &Global, nats: Need, etcd: Need) -> Result<Connections, Failure> {
    let config = config(global)?;
    if nats == Need::Required && config.nats.is_none() {
        return Err(not_configured("NATS", NATS_VAR, "--nats-url"));
    }
    if etcd == Need::Required && config.etcd.is_none() {
        return Err(not_configured("etcd", ETCD_VAR, "--etcd-endpoints"));
    }
    let timeout = config.connect_timeout;
    let nats_future = async {
        match (&config.nats, nats) {
            (Some(c), Need::Required | Need::IfConfigured) => Nats::connect(c, timeout).await.map(Some),
            _ => Ok(None),
        }
    };
    let etcd_future = async {
        match (&config.etcd, etcd) {
            (Some(c), Need::Required | Need::IfConfigured) => {
                EtcdDiscovery::connect(c, timeout, config.lease_ttl).await.map(Some)
            }
            _ => Ok(None),
        }
    };
    let (nats, etcd) = tokio::join!(nats_future, etcd_future);
    Ok(Connections { nats: nats?, etcd: etcd?, config })
}

impl Connections {
    pub fn nats_client(&self) -> &async_nats::Client {
        self.nats.as_ref().expect("connected to NATS: the command asked for it").client()
    }

    /// The instances under `prefix`, from etcd; `None` without etcd.
    pub async fn list(
        &self,
        prefix: String,
    ) -> Result<Option<Vec<rotor_runtime::discovery::InstanceRecord>>, Failure> {
        let Some(etcd) = &self.etcd else { return Ok(None) };
        bounded(self.config.connect_timeout, "etcd to list the instances", etcd.list(prefix)).await.map(Some)
    }

    /// A runtime on these connections, for calls.
    pub async fn runtime(&self) -> Result<Runtime, Failure> {
        let mut builder = Runtime::builder().config(self.config.clone());
        if let Some(nats) = &self.nats {
            builder = builder.transport(Arc::new(nats.clone()));
        }
        builder = match &self.etcd {
            Some(etcd) => builder.discovery(Arc::new(etcd.clone()) as Arc<dyn Discovery>),
            None => builder.without_discovery(),
        };
        Ok(builder.build().await?)
    }
}

/// `future`, or an error saying what did not answer within `timeout`.
pub async fn bounded<T>(
    timeout: Duration,
    what: &str,
    future: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(timeout, future).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(Failure::new(format!("no answer from {what} within {timeout:?}; raise --timeout"))),
    }
}
