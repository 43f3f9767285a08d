//! Components' state keys in etcd: reads, writes, compare-and-set on the
//! revision of the last write, and the watch of one key from a revision.

use std::collections::VecDeque;

use bytes::Bytes;
use etcd_client::{Compare, CompareOp, EventType, Txn, TxnOp, TxnOpResponse, WatchOptions};
use futures::stream::{BoxStream, StreamExt};

use super::EtcdDiscovery;
use super::calls::{etcd_error, retried, retried_idempotent, retried_read};
use crate::Error;
use crate::engine::discovery::{KeyChange, Stored};

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.map_or(0, |h| h.revision())
}

impl EtcdDiscovery {
    pub(super) async fn get_value(&self, key: String) -> Result<(Option<Stored>, i64), Error> {
        let resp = retried_read("get", || {
            let (mut client, key) = (self.client.clone(), key.clone());
            async move { client.get(key, None).await }
        })
        .await?;
        let stored = resp
            .kvs()
            .first()
            .map(|kv| Stored { value: Bytes::copy_from_slice(kv.value()), revision: kv.mod_revision() });
        Ok((stored, header_revision(resp.header())))
    }

    pub(super) async fn put_value(&self, key: String, value: Bytes) -> Result<i64, Error> {
        let resp = retried_idempotent("put", || {
            let (mut client, key, value) = (self.client.clone(), key.clone(), value.to_vec());
            async move { client.put(key, value, None).await }
        })
        .await?;
        Ok(header_revision(resp.header()))
    }

    pub(super) async fn delete_value(&self, key: String) -> Result<Option<i64>, Error> {
        let resp = retried_idempotent("delete", || {
            let (mut client, key) = (self.client.clone(), key.clone());
            async move { client.delete(key, None).await }
        })
        .await?;
        Ok((resp.deleted() > 0).then(|| header_revision(resp.header())))
    }

    pub(super) async fn compare_and_put_value(
        &self,
        key: String,
        expected: i64,
        value: Bytes,
    ) -> Result<Result<i64, i64>, Error> {
        // etcd compares an absent key's revision as 0.
        let txn = Txn::new()
            .when([Compare::mod_revision(key.clone(), CompareOp::Equal, expected)])
            .and_then([TxnOp::put(key.clone(), value.to_vec(), None)])
            .or_else([TxnOp::get(key.clone(), None)]);
        let resp = retried("compare-and-set", || {
            let (mut client, txn) = (self.client.clone(), txn.clone());
            async move { client.txn(txn).await }
        })
        .await?;
        if resp.succeeded() {
            return Ok(Ok(header_revision(resp.header())));
        }
        let current = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => Some(get.kvs().first().map_or(0, |kv| kv.mod_revision())),
            _ => None,
        });
        Ok(Err(current.unwrap_or(0)))
    }

    pub(super) async fn watch_value(
        &self,
        key: String,
        after: i64,
    ) -> Result<BoxStream<'static, Result<KeyChange, Error>>, Error> {
        let options = WatchOptions::new().with_start_revision(after + 1);
        let stream = retried_read("watch", || {
            let (mut client, key, options) = (self.client.clone(), key.clone(), options.clone());
            async move { client.watch(key, Some(options)).await }
        })
        .await?;
        let this = self.clone();
        let state = (Some(stream), VecDeque::new());
        let changes = futures::stream::unfold(state, move |(mut stream, mut ready)| {
            let (this, key) = (this.clone(), key.clone());
            async move {
                loop {
                    if let Some(change) = ready.pop_front() {
                        return Some((change, (stream, ready)));
                    }
                    let watch = stream.as_mut()?;
                    let resp = match watch.message().await {
                        Ok(Some(resp)) => resp,
                        Ok(None) => return Some((Err(etcd_error("watch", "stream ended")), (None, ready))),
                        Err(e) => return Some((Err(etcd_error("watch", e)), (None, ready))),
                    };
                    if resp.compact_revision() > 0 {
                        // The changes after `after` are gone: what the key
                        // holds now stands for them, then the caller
                        // watches again from there.
                        let now = match this.get_value(key.clone()).await {
                            Ok((Some(stored), _)) => Ok(KeyChange::Put(stored)),
                            Ok((None, revision)) => Ok(KeyChange::Deleted { revision }),
                            Err(e) => Err(e),
                        };
                        ready.push_back(now);
                        ready
                            .push_back(Err(etcd_error("watch", "compacted; resumed from the current value")));
                        stream = None;
                        continue;
                    }
                    if resp.canceled() {
                        return Some((Err(etcd_error("watch", "cancelled by the server")), (None, ready)));
                    }
                    for event in resp.events() {
                        let Some(kv) = event.kv() else { continue };
                        ready.push_back(Ok(match event.event_type() {
                            EventType::Put => KeyChange::Put(Stored {
                                value: Bytes::copy_from_slice(kv.value()),
                                revision: kv.mod_revision(),
                            }),
                            EventType::Delete => KeyChange::Deleted { revision: kv.mod_revision() },
                        }));
                    }
                }
            }
        });
        Ok(changes.boxed())
    }
}
