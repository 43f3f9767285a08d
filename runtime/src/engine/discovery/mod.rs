//! Discovery: who serves what. Instances register under a lease; clients
//! watch a key prefix and route to what they see.
//!
//! Two implementations: etcd for real deployments (the `etcd` feature), and
//! [`MemoryDiscovery`] for the embedded mode, with the same semantics
//! (create-only keys, leases that take their keys with them, watches that see
//! every change).

#[cfg(feature = "etcd")]
mod etcd;
mod list;
#[cfg(any(test, feature = "etcd"))]
mod listing;
mod memory;

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// What undoes a binding or a registration when dropped.
pub use crate::guard::Guard;
#[cfg(feature = "etcd")]
pub use etcd::EtcdDiscovery;
/// The etcd client Rotor is built with, for programs that read or write its
/// keys themselves.
#[cfg(feature = "etcd")]
pub use etcd_client;
pub use list::InstanceList;
pub use memory::MemoryDiscovery;

use crate::{Error, InstanceId};

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
    /// The instance (lease) id; a number in the record.
    #[serde(with = "crate::instance::as_number")]
    pub instance_id: InstanceId,
    /// How to reach it.
    pub transport: TransportAddress,
    /// A fingerprint of the description the instance published beside its
    /// records ([`fingerprint`](crate::describe::fingerprint)): equal
    /// descriptions have equal fingerprints, so that a client reads one
    /// description per kind, not one per instance. Absent in records of
    /// servers that publish none, and of releases before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub descriptor: Option<String>,
    /// The payload codec when it is not JSON (`msgpack`): what a caller
    /// that knows only the record must encode with. Absent for JSON, so
    /// that JSON records read as they always did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
    /// The instance's direct-plane address (`tcp://host:port`, or
    /// `tls://host:port` for mutual TLS), beside the subject: a client may
    /// call it there instead of through NATS. Absent when the instance does
    /// not listen directly, and in records of releases before it, whose
    /// readers ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<String>,
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

/// A lease: the identity of one instance, and the registrations made under
/// it. Dropping the last handle revokes it, which removes its keys.
pub trait Lease: Send + Sync + 'static {
    /// The lease id, which is the instance id. It changes when a lost lease
    /// is replaced (see [`Lease::changes`]).
    fn id(&self) -> InstanceId;

    /// The lease id now and as it changes, and whether the lease is live.
    fn changes(&self) -> watch::Receiver<LeaseState>;

    /// Writes `attached` (the value at `key(id)`: what an instance
    /// publishes beside its records, its descriptor) and every record (its
    /// `instance_id` set to this lease's id) at its instance key, in one
    /// step, so that they appear together and serving costs one round trip
    /// (etcd: one transaction). A record whose key exists fails the whole
    /// call, and nothing is written. Each stays written: after a lost lease
    /// is replaced, it is written again under the new id. Dropping its
    /// guard (one for each, `attached` first) deletes it.
    fn register(
        &self,
        attached: Option<(KeyFor, Bytes)>,
        records: Vec<InstanceRecord>,
    ) -> BoxFuture<'_, Result<Vec<Guard>, Error>>;

    /// Revokes the lease now, which deletes its keys.
    fn revoke(&self) -> BoxFuture<'_, Result<(), Error>>;
}

/// The key of a value attached to a lease, for the lease's id.
pub type KeyFor = Arc<dyn Fn(InstanceId) -> String + Send + Sync>;

/// What a lease is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseState {
    /// The current lease id.
    pub id: InstanceId,
    /// `true` while the lease is live and every registration is written.
    pub live: bool,
}

/// A value stored at a key of discovery's store (a component's state), with
/// the revision of the write that stored it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The bytes.
    pub value: Bytes,
    /// The store's revision when it was written: it only grows.
    pub revision: i64,
}

/// One change of a watched key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyChange {
    /// The key was written.
    Put(Stored),
    /// The key was deleted, at `revision`.
    Deleted {
        /// The store's revision of the delete.
        revision: i64,
    },
}

impl KeyChange {
    /// The revision of the change.
    pub fn revision(&self) -> i64 {
        match self {
            KeyChange::Put(stored) => stored.revision,
            KeyChange::Deleted { revision } => *revision,
        }
    }
}

/// Where instances are registered and found.
pub trait Discovery: Send + Sync + 'static {
    /// A new lease.
    fn grant_lease(&self) -> BoxFuture<'_, Result<Arc<dyn Lease>, Error>>;

    /// The instances under `prefix`, now and as they change.
    fn watch(&self, prefix: String) -> BoxFuture<'_, Result<watch::Receiver<InstanceList>, Error>>;

    /// The instances under `prefix` now.
    fn list(&self, prefix: String) -> BoxFuture<'_, Result<Vec<InstanceRecord>, Error>>;

    /// Reserves `service` for `owner` (`namespace/component`) at
    /// [`service_key`](rotor_names::service_key), for good: `Ok` when it was
    /// free or is `owner`'s already, [`Error::ServiceTaken`] when another
    /// pair holds it. Atomic, so that of two pairs racing one wins.
    fn reserve_service(&self, service: String, owner: String) -> BoxFuture<'_, Result<(), Error>>;

    /// The value at `key` now, if any, and the store's revision at the
    /// read: a watch from there misses nothing.
    fn get(&self, key: String) -> BoxFuture<'_, Result<(Option<Stored>, i64), Error>>;

    /// Writes `value` at `key`; the revision of the write.
    fn put(&self, key: String, value: Bytes) -> BoxFuture<'_, Result<i64, Error>>;

    /// Deletes `key`; the revision of the delete, `None` when it was absent.
    fn delete(&self, key: String) -> BoxFuture<'_, Result<Option<i64>, Error>>;

    /// Writes `value` at `key` only if the key was last written at revision
    /// `expected` (`0`: only if it is absent), in one step: `Ok(revision)`
    /// of the write, or `Err(current)`, the revision found (`0`: absent).
    fn compare_and_put(
        &self,
        key: String,
        expected: i64,
        value: Bytes,
    ) -> BoxFuture<'_, Result<Result<i64, i64>, Error>>;

    /// Every change of `key` after revision `after`, in order. The stream
    /// ends, with an error, when the watch breaks: the caller opens it again
    /// from the last revision it saw, and misses nothing. When the store no
    /// longer has the changes after `after` (etcd compacted them), it first
    /// yields the key's current value (or its absence) instead.
    fn watch_key(
        &self,
        key: String,
        after: i64,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Result<KeyChange, Error>>, Error>>;
}

/// The outcome of a reservation that found `holder` at `service`'s key.
pub(crate) fn reservation(service: String, owner: String, holder: String) -> Result<(), Error> {
    if holder == owner {
        return Ok(());
    }
    let key = rotor_names::service_key(&service);
    Err(Error::ServiceTaken { service, owner: holder, ours: owner, key })
}

/// The etcd key of a record.
pub(crate) fn key_of(record: &InstanceRecord) -> String {
    rotor_names::instance_key(&record.namespace, &record.component, &record.endpoint, record.instance_id.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record of the release before descriptor fingerprints.
    const EARLIER: &str = r#"{"namespace":"hello","component":"greeter","endpoint":"greeted","instance_id":7587891245693098539,"transport":{"nats_tcp":"hello_greeter.greeted-694d8e8f7e0c1a2b"}}"#;

    #[test]
    fn a_record_of_an_earlier_release_reads_without_a_fingerprint() {
        let record: InstanceRecord = serde_json::from_str(EARLIER).unwrap();
        assert_eq!(record.instance_id, InstanceId(7587891245693098539));
        assert_eq!(record.descriptor, None);
        assert_eq!(record.codec, None, "an earlier server's payloads are JSON");
        assert_eq!(record.direct, None, "an earlier server is reached over NATS");
        assert_eq!(serde_json::to_string(&record).unwrap(), EARLIER, "and is written as it was");
    }

    #[test]
    fn an_earlier_release_reads_a_record_with_a_fingerprint_and_a_codec() {
        /// The record as the earlier release declares it.
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Earlier {
            namespace: String,
            component: String,
            endpoint: String,
            instance_id: i64,
            transport: TransportAddress,
        }
        let mut record: InstanceRecord = serde_json::from_str(EARLIER).unwrap();
        record.descriptor = Some("5f0c1e9a27b4d863".into());
        record.codec = Some("msgpack".into());
        let text = serde_json::to_string(&record).unwrap();
        assert!(text.contains(r#""descriptor":"5f0c1e9a27b4d863""#), "{text}");
        assert!(text.contains(r#""codec":"msgpack""#), "{text}");
        let earlier: Earlier = serde_json::from_str(&text).unwrap();
        assert_eq!(earlier.transport.subject(), "hello_greeter.greeted-694d8e8f7e0c1a2b");
    }

    #[test]
    fn an_earlier_release_reads_a_record_that_advertises_a_direct_address_and_calls_its_subject() {
        /// The record as the release before the direct plane declares it.
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Earlier {
            namespace: String,
            component: String,
            endpoint: String,
            instance_id: i64,
            transport: TransportAddress,
            descriptor: Option<String>,
            codec: Option<String>,
        }
        let mut record: InstanceRecord = serde_json::from_str(EARLIER).unwrap();
        record.direct = Some("tls://10.0.0.5:7000".into());
        let text = serde_json::to_string(&record).unwrap();
        assert!(text.ends_with(r#","direct":"tls://10.0.0.5:7000"}"#), "{text}");
        let earlier: Earlier = serde_json::from_str(&text).unwrap();
        assert_eq!(earlier.transport.subject(), "hello_greeter.greeted-694d8e8f7e0c1a2b");
        let read: InstanceRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(read, record, "and this release reads it back whole");
    }
}
