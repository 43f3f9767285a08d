//! What the instances of a client's component say about themselves, and
//! whether it is what the client was built for.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::ClientCore;
use crate::describe::{Description, METADATA_KEY};
use crate::{Error, InstanceId};

impl ClientCore {
    pub(crate) fn expecting(mut self, expected: Description) -> Self {
        self.expected = Some(Arc::new(expected));
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
