//! NATS micro service statistics, as `$SRV.STATS` returns them, typed.

use serde::{Deserialize, Serialize};

/// Every `$SRV.STATS` reply for one service name: one entry per live
/// instance (NATS micro service instance).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceSet {
    /// The replies, sorted by service instance id.
    pub services: Vec<ServiceStats>,
}

impl ServiceSet {
    /// Requests over every instance and endpoint.
    pub fn total_requests(&self) -> u64 {
        self.services.iter().flat_map(|s| &s.endpoints).map(|e| e.num_requests).sum()
    }

    /// Errors over every instance and endpoint.
    pub fn total_errors(&self) -> u64 {
        self.services.iter().flat_map(|s| &s.endpoints).map(|e| e.num_errors).sum()
    }
}

/// One service instance's statistics (`io.nats.micro.v1.stats_response`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceStats {
    /// `io.nats.micro.v1.stats_response`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Service name.
    pub name: String,
    /// Service instance id (chosen by NATS, not the discovery lease).
    pub id: String,
    /// Service version.
    #[serde(default)]
    pub version: String,
    /// When the service started (RFC 3339).
    #[serde(default)]
    pub started: String,
    /// Per-endpoint figures.
    pub endpoints: Vec<EndpointStats>,
}

impl ServiceStats {
    /// The Rotor instance (lease) id behind this reply, as the instance
    /// reports it now; from a server that does not report it, read from its
    /// per-instance subjects (`{service}.{endpoint}-{id:x}`), which keep the
    /// first id after a lost lease is replaced. `None` for a static
    /// component, which has none.
    pub fn instance_id(&self) -> Option<crate::InstanceId> {
        if let Some(id) = self.endpoints.iter().find_map(|e| e.rotor()?.instance) {
            return Some(id);
        }
        self.endpoints.iter().find_map(|shared| {
            let prefix = format!("{}-", shared.subject);
            self.endpoints.iter().find_map(|e| {
                let hex = e.subject.strip_prefix(&prefix)?;
                crate::InstanceId::from_hex(hex)
            })
        })
    }
}

/// One endpoint's figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointStats {
    /// Endpoint name.
    pub name: String,
    /// Subject.
    pub subject: String,
    /// Queue group.
    #[serde(default)]
    pub queue_group: String,
    /// Requests answered.
    pub num_requests: u64,
    /// Requests answered with an error.
    pub num_errors: u64,
    /// Total processing time, in nanoseconds.
    #[serde(default)]
    pub processing_time: u64,
    /// Average processing time, in nanoseconds.
    #[serde(default)]
    pub average_processing_time: u64,
    /// The last error, as `code:message`; empty when none.
    #[serde(default)]
    pub last_error: String,
    /// Extra figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl EndpointStats {
    /// Rotor's figures for this endpoint, from `data`: the same numbers as
    /// the serving process's Prometheus metrics.
    pub fn rotor(&self) -> Option<crate::engine::metrics::EndpointData> {
        serde_json::from_value(self.data.clone()?).ok()
    }
}
