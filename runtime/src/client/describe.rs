//! What the instances of a client's component say about themselves, and
//! whether it is what the client was built for.

use std::sync::Arc;
use std::time::Duration;

use std::collections::HashSet;

use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::ClientCore;
use crate::describe::{Description, METADATA_KEY};
use crate::engine::discovery::{Discovery, InstanceList, InstanceRecord};
use crate::{Error, InstanceId};

impl ClientCore {
    /// Records what the client was built for, and checks every instance it
    /// finds against it from then on (see [`check_published`]).
    pub(crate) fn expecting(mut self, expected: Description) -> Self {
        let expected = Arc::new(expected);
        self.expected = Some(expected.clone());
        let discovery = self.shared.engines.discovery.clone();
        let listed = self.shared.routes.first().and_then(|r| r.instances.as_deref().cloned());
        if let (Some(discovery), Some(listed)) = (discovery, listed) {
            let stop = CancellationToken::new();
            tokio::spawn(check_published(discovery, listed, expected, stop.clone()));
            self.checker = Some(Arc::new(stop.drop_guard()));
        }
        self
    }

    /// What the client was built for: the description of the component its
    /// types (or contract) declare. `None` for a client from run-time names.
    pub fn expected(&self) -> Option<&Description> {
        self.expected.as_deref()
    }

    /// The description each instance of the component publishes
    /// (`$SRV.INFO`, metadata `rotor.descriptor`), with its instance id, as
    /// the instances answer within `timeout`.
    pub async fn describe(&self, timeout: Duration) -> Result<Vec<(Option<InstanceId>, Description)>, Error> {
        let Some(route) = self.shared.routes.first() else { return Ok(Vec::new()) };
        let answers = self.shared.engines.transport.info_stream(route.service.clone(), timeout).await?;
        let answers: Vec<bytes::Bytes> = answers.collect().await;
        let mut out = Vec::new();
        for answer in answers {
            let Ok(info) = serde_json::from_slice::<serde_json::Value>(&answer) else { continue };
            let metadata = &info["metadata"];
            let instance = metadata["rotor.instance"].as_str().and_then(InstanceId::from_hex);
            let Some(text) = metadata[METADATA_KEY].as_str() else { continue };
            match serde_json::from_str::<Description>(text) {
                Ok(description) => out.push((instance, description)),
                Err(e) => {
                    tracing::warn!(service = %route.service, error = %e, "ignoring a description that does not decode")
                }
            }
        }
        Ok(out)
    }

    /// The description each instance the client routes to published in
    /// discovery (`components/{namespace}/{component}/descriptor/{id}`),
    /// read from the store: unlike [`describe`](Self::describe), no
    /// instance is asked and nothing is waited for. An instance that
    /// published none (its etcd role may not write `components/`) is left
    /// out. Empty without discovery.
    pub async fn published(&self) -> Result<Vec<(InstanceId, Description)>, Error> {
        let Some(discovery) = &self.shared.engines.discovery else { return Ok(Vec::new()) };
        let Some(listed) = self.shared.routes.first().and_then(|r| r.instances.as_deref()) else {
            return Ok(Vec::new());
        };
        let ids = self.instances();
        let records: Vec<InstanceRecord> =
            listed.borrow().iter().filter(|r| ids.contains(&r.instance_id)).cloned().collect();
        let mut out = Vec::new();
        for record in records {
            if let Some(description) = read_published(discovery.as_ref(), &record).await? {
                out.push((record.instance_id, description));
            }
        }
        Ok(out)
    }

    /// Compares what the client was built for with what every instance
    /// that answers within `timeout` publishes. `Err(ContractMismatch)`
    /// names each endpoint that differs and how (also logged at warn): a
    /// client built from one version of a request type and a server of
    /// another.
    pub async fn verify_contract(&self, timeout: Duration) -> Result<(), Error> {
        let Some(expected) = &self.expected else { return Ok(()) };
        let mut differences = Vec::new();
        for (instance, published) in self.describe(timeout).await? {
            for difference in expected.differences(&published) {
                let at = instance.map_or_else(|| "an instance".to_string(), |id| format!("instance {id}"));
                differences.push(format!("{at}: {difference}"));
            }
        }
        if differences.is_empty() {
            return Ok(());
        }
        let component = format!("{}/{}", expected.namespace, expected.component);
        tracing::warn!(%component, differences = %differences.join("; "), "the served contract differs from this client's");
        Err(Error::ContractMismatch { component, differences })
    }
}

/// The description `record`'s instance published, if it did and it decodes.
async fn read_published(
    discovery: &dyn Discovery,
    record: &InstanceRecord,
) -> Result<Option<Description>, Error> {
    let key = rotor_names::descriptor_key(&record.namespace, &record.component, record.instance_id.0);
    let (stored, _) = discovery.get(key.clone()).await?;
    let Some(stored) = stored else { return Ok(None) };
    match serde_json::from_slice(&stored.value) {
        Ok(description) => Ok(Some(description)),
        Err(e) => {
            tracing::warn!(%key, error = %e, "ignoring a published description that does not decode");
            Ok(None)
        }
    }
}

/// Reads the published description of each kind that appears in `listed`
/// (by the fingerprint in its records: one read for a fleet of equal
/// instances), and logs at warn where it differs from what the client was
/// built for, naming an instance, the endpoint and the difference; until
/// `stop`. A client built from one version of a contract learns of a
/// server of another before its first call fails to decode.
async fn check_published(
    discovery: Arc<dyn Discovery>,
    mut listed: watch::Receiver<InstanceList>,
    expected: Arc<Description>,
    stop: CancellationToken,
) {
    let mut checked = HashSet::new();
    loop {
        let mut new: Vec<(String, InstanceRecord)> = Vec::new();
        // A fleet runs few kinds: most records have the fingerprint of the
        // one before, which a comparison passes without hashing.
        let mut last: Option<&str> = None;
        for record in listed.borrow_and_update().iter() {
            // Records without one come from servers that publish nothing
            // to compare.
            let Some(fingerprint) = record.descriptor.as_deref() else { continue };
            if last == Some(fingerprint) {
                continue;
            }
            last = Some(fingerprint);
            if !checked.contains(fingerprint) && !new.iter().any(|(f, _)| f == fingerprint) {
                new.push((fingerprint.to_string(), record.clone()));
            }
        }
        for (fingerprint, record) in new {
            let published = tokio::select! {
                read = read_published(discovery.as_ref(), &record) => read,
                () = stop.cancelled() => return,
            };
            match published {
                Ok(published) => {
                    checked.insert(fingerprint);
                    let differences = published.map(|p| expected.differences(&p)).unwrap_or_default();
                    if !differences.is_empty() {
                        tracing::warn!(component = %format!("{}/{}", expected.namespace, expected.component),
                            instance = %record.instance_id, differences = %differences.join("; "),
                            "an instance serves a contract that differs from this client's");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "could not read a published description"),
            }
        }
        // A walk is O(instances): at most one per pause, so that a cold
        // start of N instances, a change each, costs N/pause walks and not
        // N (a fifth of a following client's CPU at N = 1,000). A warning
        // may come a pause later.
        tokio::select! {
            () = tokio::time::sleep(CHECK_PAUSE) => {}
            () = stop.cancelled() => return,
        }
        tokio::select! {
            changed = listed.changed() => if changed.is_err() { return },
            () = stop.cancelled() => return,
        }
    }
}

/// The least time between two walks of the instance list for descriptions
/// not yet read.
const CHECK_PAUSE: Duration = Duration::from_millis(100);
