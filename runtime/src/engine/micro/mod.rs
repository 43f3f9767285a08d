//! The NATS micro service model, shared by every transport: what a served
//! component listens on ([`ServiceSpec`]), the counters of each subject, and
//! the answers to `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS`. A transport adds
//! framing, not bookkeeping: it subscribes the subjects the model lists and
//! records each reply in the model's counters.
//!
//! Rotor speaks the protocol itself rather than through async-nats's service
//! API, which costs a mutex, a map lookup and a string copy on every request
//! and hides the subscription: owning the subscription lets a reply go out
//! as a plain publish, and lets shutdown drain what was already received.

pub mod stats;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::service::endpoint;
use bytes::Bytes;

use crate::InstanceId;
use crate::engine::transport::message::{Message, header};
use stats::{EndpointStats, ServiceStats};

/// The queue group every Rotor endpoint listens in, the NATS micro default,
/// so that instances of a component share its requests.
pub const QUEUE_GROUP: &str = "q";
/// The `type` of a `$SRV.PING` answer.
pub const PING_RESPONSE: &str = "io.nats.micro.v1.ping_response";
/// The `type` of a `$SRV.INFO` answer.
pub const INFO_RESPONSE: &str = "io.nats.micro.v1.info_response";
/// The `type` of a `$SRV.STATS` answer.
pub const STATS_RESPONSE: &str = "io.nats.micro.v1.stats_response";

/// What a served component listens on.
#[derive(Clone)]
pub struct ServiceSpec {
    /// The NATS micro service name.
    pub name: String,
    /// The component's namespace.
    pub namespace: String,
    /// The component's name.
    pub component: String,
    /// The service version (the crate's version).
    pub version: String,
    /// The instance being served.
    pub instance: InstanceId,
    /// One entry per endpoint, in the order of the component's descriptor.
    pub endpoints: Vec<EndpointSpec>,
    /// More service metadata, beside the namespace, component and instance.
    pub metadata: HashMap<String, String>,
    /// Metadata for `$SRV.INFO` alone, not `$SRV.PING`: the component's
    /// description, which may carry schemas, would make every ping large.
    pub info_metadata: HashMap<String, String>,
    /// The `data` of an endpoint's `$SRV.STATS` entry, by endpoint number.
    pub stats: StatsData,
}

/// Makes the `data` field of one endpoint's statistics, by endpoint number.
pub type StatsData = Arc<dyn Fn(usize) -> serde_json::Value + Send + Sync>;

/// One endpoint of a [`ServiceSpec`].
#[derive(Clone, Debug)]
pub struct EndpointSpec {
    /// Wire name.
    pub name: String,
    /// The queue-group subject, answered by any instance.
    pub queue_subject: String,
    /// The subject of this instance alone; `None` for a static component,
    /// which is reached through the queue group only.
    pub instance_subject: Option<String>,
    /// Request type name, for service metadata.
    pub request_type: String,
    /// Response type name, for service metadata.
    pub response_type: String,
    /// What the instance subject answered, counted by every plane that
    /// serves it: `$SRV.STATS` reports direct-plane calls with the NATS ones.
    pub counters: Arc<Counters>,
    /// The largest request payload it takes, in bytes: a larger one is
    /// refused (`oversize`, 413) before its chunks are read.
    pub max_request: usize,
}

impl EndpointSpec {
    /// Every subject it answers on, each with `true` when it is this
    /// instance's own (the caller then knows who answers).
    pub fn subjects(&self) -> impl Iterator<Item = (&str, bool)> {
        std::iter::once((self.queue_subject.as_str(), false))
            .chain(self.instance_subject.as_deref().map(|s| (s, true)))
    }
}

/// The code and message of a failure reply, as the micro protocol reads
/// them from `Nats-Service-Error-Code` and `Nats-Service-Error`.
fn failure_of(reply: &Message) -> Option<(usize, String)> {
    let code = reply.headers.get(header::SERVICE_ERROR_CODE)?;
    let text = reply.headers.get(header::SERVICE_ERROR).unwrap_or("");
    Some((code.parse().unwrap_or(500), text.to_string()))
}

/// What one micro endpoint (one subject) has answered.
#[derive(Default, Debug)]
pub struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
    nanos: AtomicU64,
    /// `code:message` of the last failure.
    last_error: Mutex<String>,
}

impl Counters {
    /// Counts `reply`, sent `elapsed` after its request arrived.
    pub(crate) fn record(&self, elapsed: Duration, reply: &Message) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.nanos.fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
        if let Some((code, text)) = failure_of(reply) {
            self.errors.fetch_add(1, Ordering::Relaxed);
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = format!("{code}:{text}");
        }
    }
}

/// One subject of one endpoint, as the micro protocol lists it.
pub(crate) struct MicroEndpoint {
    /// The micro endpoint name: the subject without the service prefix.
    pub name: String,
    pub subject: String,
    /// The Rotor endpoint number.
    pub number: usize,
    /// `true` for the per-instance subject.
    pub addressed: bool,
    metadata: HashMap<String, String>,
    pub counters: Arc<Counters>,
    /// The largest request payload the endpoint takes, in bytes.
    pub max_request: usize,
}

/// A served component as a NATS micro service.
pub(crate) struct MicroService {
    pub name: String,
    pub id: String,
    version: String,
    description: String,
    metadata: HashMap<String, String>,
    /// `metadata` and what `$SRV.INFO` adds to it.
    info_metadata: HashMap<String, String>,
    /// RFC 3339, as the protocol has it.
    started: String,
    pub endpoints: Vec<MicroEndpoint>,
    data: StatsData,
}

impl MicroService {
    pub(crate) fn new(spec: &ServiceSpec) -> MicroService {
        let prefix = format!("{}.", spec.name);
        let mut endpoints = Vec::new();
        for (number, ep) in spec.endpoints.iter().enumerate() {
            for (subject, addressed) in ep.subjects() {
                endpoints.push(MicroEndpoint {
                    name: subject.strip_prefix(&prefix).unwrap_or(subject).to_string(),
                    subject: subject.to_string(),
                    number,
                    addressed,
                    max_request: ep.max_request,
                    metadata: HashMap::from([
                        ("rotor.endpoint".to_string(), ep.name.clone()),
                        ("rotor.request".to_string(), ep.request_type.clone()),
                        ("rotor.response".to_string(), ep.response_type.clone()),
                    ]),
                    // The queue group's subject is NATS's alone.
                    counters: if addressed { ep.counters.clone() } else { Arc::default() },
                });
            }
        }
        let started = rfc3339(std::time::SystemTime::now());
        let metadata: HashMap<String, String> = HashMap::from([
            ("rotor.namespace".to_string(), spec.namespace.clone()),
            ("rotor.component".to_string(), spec.component.clone()),
            ("rotor.instance".to_string(), spec.instance.to_string()),
        ])
        .into_iter()
        .chain(spec.metadata.iter().map(|(k, v)| (k.clone(), v.clone())))
        .collect();
        let info_metadata =
            metadata.iter().chain(&spec.info_metadata).map(|(k, v)| (k.clone(), v.clone())).collect();
        MicroService {
            name: spec.name.clone(),
            id: new_id(),
            version: spec.version.clone(),
            description: format!("Rotor component {}/{}", spec.namespace, spec.component),
            metadata,
            info_metadata,
            started,
            endpoints,
            data: spec.stats.clone(),
        }
    }

    /// The nine subjects the protocol answers on: each verb for every
    /// service, for this name, and for this instance; `true` marks the
    /// three that name this instance, the others every instance of a
    /// process may share.
    pub(crate) fn verb_subjects(&self) -> Vec<(Verb, String, bool)> {
        [Verb::Ping, Verb::Info, Verb::Stats]
            .into_iter()
            .flat_map(|verb| {
                let base = format!("$SRV.{}", verb.as_str());
                [
                    (verb, base.clone(), false),
                    (verb, format!("{base}.{}", self.name), false),
                    (verb, format!("{base}.{}.{}", self.name, self.id), true),
                ]
            })
            .collect()
    }

    /// The answer to `verb`, encoded.
    pub(crate) fn answer(&self, verb: Verb) -> Result<Bytes, serde_json::Error> {
        let json = match verb {
            Verb::Ping => serde_json::to_vec(&async_nats::service::PingResponse {
                kind: PING_RESPONSE.into(),
                name: self.name.clone(),
                id: self.id.clone(),
                version: self.version.clone(),
                metadata: self.metadata.clone(),
            }),
            Verb::Info => serde_json::to_vec(&async_nats::service::Info {
                kind: INFO_RESPONSE.into(),
                name: self.name.clone(),
                id: self.id.clone(),
                description: self.description.clone(),
                version: self.version.clone(),
                metadata: self.info_metadata.clone(),
                endpoints: self
                    .endpoints
                    .iter()
                    .map(|ep| endpoint::Info {
                        name: ep.name.clone(),
                        subject: ep.subject.clone(),
                        queue_group: QUEUE_GROUP.into(),
                        metadata: ep.metadata.clone(),
                    })
                    .collect(),
            }),
            Verb::Stats => serde_json::to_vec(&self.stats()),
        };
        json.map(Bytes::from)
    }

    /// The service's statistics now: what `$SRV.STATS` answers.
    pub(crate) fn stats(&self) -> ServiceStats {
        ServiceStats {
            kind: STATS_RESPONSE.into(),
            name: self.name.clone(),
            id: self.id.clone(),
            version: self.version.clone(),
            started: self.started.clone(),
            endpoints: self.endpoints.iter().map(|ep| self.endpoint_stats(ep)).collect(),
        }
    }

    fn endpoint_stats(&self, ep: &MicroEndpoint) -> EndpointStats {
        let c = &ep.counters;
        let requests = c.requests.load(Ordering::Relaxed);
        let nanos = c.nanos.load(Ordering::Relaxed);
        EndpointStats {
            name: ep.name.clone(),
            subject: ep.subject.clone(),
            queue_group: QUEUE_GROUP.into(),
            num_requests: requests,
            num_errors: c.errors.load(Ordering::Relaxed),
            processing_time: nanos,
            average_processing_time: nanos.checked_div(requests).unwrap_or(0),
            last_error: c.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            data: Some((self.data)(ep.number)),
        }
    }
}

/// A request of the micro protocol.
#[derive(Clone, Copy)]
pub(crate) enum Verb {
    Ping,
    Info,
    Stats,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Ping => "PING",
            Verb::Info => "INFO",
            Verb::Stats => "STATS",
        }
    }
}

/// `at` as an RFC 3339 UTC timestamp with microseconds, as the micro
/// protocol's `started` field has it (`2026-12-01T22:50:15.600581Z`).
fn rfc3339(at: std::time::SystemTime) -> String {
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let (days, secs) = ((since.as_secs() / 86_400) as i64, since.as_secs() % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        since.subsec_micros()
    )
}

/// A service instance id in the style of NATS's own (22 characters of
/// `[0-9A-Za-z]`): unique per served component, not per runtime.
fn new_id() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..22).map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::rfc3339;

    #[test]
    fn started_is_an_rfc3339_timestamp() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let at = UNIX_EPOCH + Duration::from_micros(1_796_165_415_600_581);
        assert_eq!(rfc3339(at), "2026-12-01T22:50:15.600581Z");
        let leap_day = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap_day), "2000-02-29T00:00:00.000000Z");
        let stats: async_nats::service::Stats = serde_json::from_value(serde_json::json!({
            "type": super::STATS_RESPONSE, "name": "s", "id": "i", "version": "0.1.0",
            "started": rfc3339(std::time::SystemTime::now()), "endpoints": [],
        }))
        .expect("async-nats reads the timestamp");
        assert_eq!(stats.name, "s");
    }
}
