//! Component state: typed values at keys under a component's path in
//! discovery, which anyone may write and anyone may watch, so that a
//! component takes an action when another changes its configuration.
//!
//! A key `models/active` of component `llm/tokenizer` lives at
//! `components/llm/tokenizer/state/models/active` in etcd (and in the
//! embedded discovery), beside the instance keys under `instances/`. Values
//! are JSON, readable with `etcdctl get`.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::Error;
use crate::engine::discovery::{Discovery, KeyChange, Stored};

/// Pause before a broken watch is opened again.
const RESUME_PAUSE: Duration = Duration::from_millis(250);

/// One state key of a component, holding a `T`: made by
/// [`Component::state`](crate::names::Component::state).
pub struct State<T> {
    discovery: Arc<dyn Discovery>,
    key: String,
    _value: PhantomData<fn() -> T>,
}

impl<T> Clone for State<T> {
    fn clone(&self) -> Self {
        State { discovery: self.discovery.clone(), key: self.key.clone(), _value: PhantomData }
    }
}

impl<T> std::fmt::Debug for State<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("key", &self.key).finish()
    }
}

/// A value with the revision of the write that stored it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// The store's revision of the write; it only grows.
    pub revision: i64,
}

/// One change of a state key, as a watch yields it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change<T> {
    /// The key was written.
    Put(Versioned<T>),
    /// The key was deleted.
    Deleted {
        /// The revision of the delete.
        revision: i64,
    },
}

impl<T> Change<T> {
    /// The revision of the change.
    pub fn revision(&self) -> i64 {
        match self {
            Change::Put(v) => v.revision,
            Change::Deleted { revision } => *revision,
        }
    }
}

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> State<T> {
    pub(crate) fn new(discovery: Arc<dyn Discovery>, key: String) -> Self {
        State { discovery, key, _value: PhantomData }
    }

    /// The key in etcd (or the embedded discovery).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value now, if the key holds one.
    pub async fn get(&self) -> Result<Option<Versioned<T>>, Error> {
        let (stored, _) = self.discovery.get(self.key.clone()).await?;
        stored.map(|stored| decode(&self.key, stored)).transpose()
    }

    /// Writes `value`; the revision of the write.
    pub async fn put(&self, value: &T) -> Result<i64, Error> {
        self.discovery.put(self.key.clone(), encode(&self.key, value)?).await
    }

    /// Deletes the key; the revision of the delete, `None` when it held
    /// nothing.
    pub async fn delete(&self) -> Result<Option<i64>, Error> {
        self.discovery.delete(self.key.clone()).await
    }

    /// Writes `value` only if the key was last written at revision
    /// `expected` (`None`: only if it holds nothing), in one step. `Ok(Ok(revision))`
    /// of the write; `Ok(Err(current))` when another write came first, with
    /// the revision found (`None`: the key holds nothing): read it again and
    /// retry.
    pub async fn compare_and_set(
        &self,
        expected: Option<i64>,
        value: &T,
    ) -> Result<Result<i64, Option<i64>>, Error> {
        let value = encode(&self.key, value)?;
        let outcome = self.discovery.compare_and_put(self.key.clone(), expected.unwrap_or(0), value).await?;
        Ok(outcome.map_err(|current| (current != 0).then_some(current)))
    }

    /// The value now (as a first `Put`, if the key holds one), then every
    /// change, in order, each once. A broken watch (etcd restarted, the
    /// connection lost) is opened again from the last revision it yielded,
    /// so nothing is lost or repeated. An `Err` is a value that does not
    /// decode as `T`; the watch goes on after it.
    pub async fn watch(&self) -> Result<BoxStream<'static, Result<Change<T>, Error>>, Error> {
        let (stored, revision) = self.discovery.get(self.key.clone()).await?;
        let first = stored.map(|stored| decode(&self.key, stored).map(Change::Put));
        Ok(futures::stream::iter(first).chain(self.watch_after(revision)).boxed())
    }

    /// Every change after revision `after`, in order, each once, resumed
    /// across broken watches as [`watch`](Self::watch) is.
    pub fn watch_after(&self, after: i64) -> BoxStream<'static, Result<Change<T>, Error>> {
        let resume =
            Resume { discovery: self.discovery.clone(), key: self.key.clone(), last: after, open: None };
        futures::stream::unfold(resume, |mut resume| async move {
            let change = resume.next().await;
            let key = resume.key.clone();
            Some((decode_change(&key, change), resume))
        })
        .boxed()
    }

    /// A copy of the value kept current by a watch, for reading without a
    /// round trip (a handler reads it at every request). The watch runs
    /// until the last copy of the returned handle is dropped.
    pub async fn follow(&self) -> Result<Followed<T>, Error> {
        // The value now, before this returns; the changes from there on.
        let (stored, revision) = self.discovery.get(self.key.clone()).await?;
        let now = stored.map(|stored| decode(&self.key, stored)).transpose()?;
        let (tx, rx) = watch::channel(now.map(Arc::new));
        let mut changes = self.watch_after(revision);
        let key = self.key.clone();
        tokio::spawn(async move {
            loop {
                let change = tokio::select! {
                    change = changes.next() => change,
                    () = tx.closed() => return,
                };
                match change {
                    Some(Ok(Change::Put(value))) => {
                        let newer = tx.borrow().as_ref().is_none_or(|now| now.revision < value.revision);
                        if newer {
                            tx.send_replace(Some(Arc::new(value)));
                        }
                    }
                    Some(Ok(Change::Deleted { .. })) => {
                        tx.send_replace(None);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(%key, error = %e, "a followed state value does not decode; keeping the last")
                    }
                    None => return,
                }
            }
        });
        Ok(Followed { rx })
    }
}

/// A state value kept current by a watch: made by [`State::follow`].
#[derive(Clone, Debug)]
pub struct Followed<T> {
    rx: watch::Receiver<Option<Arc<Versioned<T>>>>,
}

impl<T> Followed<T> {
    /// The value as last seen, without a round trip; `None` while the key
    /// holds nothing.
    pub fn current(&self) -> Option<Arc<Versioned<T>>> {
        self.rx.borrow().clone()
    }

    /// Waits for the next change, then returns the value as it is then.
    pub async fn changed(&mut self) -> Option<Arc<Versioned<T>>> {
        if self.rx.changed().await.is_err() {
            return None;
        }
        self.rx.borrow_and_update().clone()
    }
}

/// The watch of one key, opened again from the last revision after any
/// break.
struct Resume {
    discovery: Arc<dyn Discovery>,
    key: String,
    last: i64,
    open: Option<BoxStream<'static, Result<KeyChange, Error>>>,
}

impl Resume {
    async fn next(&mut self) -> KeyChange {
        loop {
            let Some(open) = &mut self.open else {
                match self.discovery.watch_key(self.key.clone(), self.last).await {
                    Ok(stream) => self.open = Some(stream),
                    Err(e) => {
                        tracing::debug!(key = %self.key, error = %e, "state watch: discovery unreachable; retrying");
                        tokio::time::sleep(RESUME_PAUSE).await;
                    }
                }
                continue;
            };
            match open.next().await {
                // A change at or before the last one yielded was yielded.
                Some(Ok(change)) if change.revision() <= self.last => {}
                Some(Ok(change)) => {
                    self.last = change.revision();
                    return change;
                }
                Some(Err(e)) => {
                    tracing::debug!(key = %self.key, error = %e, last = self.last, "state watch broke; resuming");
                    self.open = None;
                }
                None => self.open = None,
            }
        }
    }
}

fn encode<T: Serialize>(key: &str, value: &T) -> Result<Bytes, Error> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| Error::Discovery(format!("the value for {key} does not encode as JSON: {e}")))
}

fn decode<T: DeserializeOwned>(key: &str, stored: Stored) -> Result<Versioned<T>, Error> {
    let value = serde_json::from_slice(&stored.value).map_err(|e| {
        Error::Discovery(format!(
            "the value at {key} (revision {}) does not decode as {}: {e}",
            stored.revision,
            std::any::type_name::<T>()
        ))
    })?;
    Ok(Versioned { value, revision: stored.revision })
}

fn decode_change<T: DeserializeOwned>(key: &str, change: KeyChange) -> Result<Change<T>, Error> {
    match change {
        KeyChange::Put(stored) => decode(key, stored).map(Change::Put),
        KeyChange::Deleted { revision } => Ok(Change::Deleted { revision }),
    }
}
