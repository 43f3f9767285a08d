//! Discovery: who serves what. Instances register under a lease; clients
//! watch a key prefix and route to what they see.
//!
//! Two implementations: etcd for real deployments, and [`MemoryDiscovery`]
//! for the embedded mode, with the same semantics (create-only keys, leases
//! that take their keys with them, watches that see every change).

mod memory;

use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use memory::MemoryDiscovery;

use crate::{Error, Guard, InstanceId};

/// The value stored under an instance key: where to reach one endpoint of
/// one instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Namespace of the component.
    pub namespace: String,
    /// Component name.
    pub component: String,
    /// Endpoint name.
    pub endpoint: String,
    /// The instance (lease) id.
    pub instance_id: InstanceId,
    /// How to reach it.
    pub transport: TransportAddress,
}

/// How to reach an instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TransportAddress {
    /// A NATS subject (also used by the in-process transport).
    NatsTcp(String),
}

impl TransportAddress {
    /// The subject to send requests to.
    pub fn subject(&self) -> &str {
        match self {
            TransportAddress::NatsTcp(s) => s,
        }
    }
}

/// The instances under a key prefix, sorted by instance id.
pub type InstanceList = Arc<[InstanceRecord]>;

/// A lease: the identity of one instance. Dropping the guard revokes it,
/// which removes every key registered under it.
#[derive(Debug)]
pub struct Lease {
    /// The lease id, which is the instance id.
    pub id: InstanceId,
    /// Revokes the lease when dropped.
    pub guard: Guard,
}

/// Where instances are registered and found.
pub trait Discovery: Send + Sync + 'static {
    /// A new lease.
    fn grant_lease(&self) -> BoxFuture<'_, Result<Lease, Error>>;

    /// Writes `record` at `key` under `lease`, only if `key` does not exist.
    /// Dropping the returned guard deletes the key.
    fn register(
        &self,
        lease: InstanceId,
        key: String,
        record: InstanceRecord,
    ) -> BoxFuture<'_, Result<Guard, Error>>;

    /// The instances under `prefix`, now and as they change.
    fn watch(&self, prefix: String) -> BoxFuture<'_, Result<watch::Receiver<InstanceList>, Error>>;
}
