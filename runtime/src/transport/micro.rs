//! The NATS micro service protocol for one served component: answers to
//! `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS`, and each endpoint's counters.
//!
//! Rotor speaks the protocol itself rather than through async-nats's service
//! API, which costs a mutex, a map lookup and a string copy on every request
//! and hides the subscription: owning the subscription lets a reply go out
//! as a plain publish, and lets shutdown drain what was already received.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::service::endpoint;
use async_nats::service::error::Error as MicroError;
use bytes::Bytes;
use futures::StreamExt;

use super::{ServiceSpec, StatsData};
use crate::wire::WIRE_VERSION;

/// The queue group every Rotor endpoint listens in, the NATS micro default,
/// so that instances of a component share its requests.
pub(super) const QUEUE_GROUP: &str = "q";

/// What one micro endpoint (one subject) has answered.
#[derive(Default)]
pub(super) struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
    nanos: AtomicU64,
    last_error: Mutex<Option<MicroError>>,
}

impl Counters {
    /// Counts one reply, sent `elapsed` after its request arrived; `error`
    /// is its code and message when it is a failure.
    pub(super) fn record(&self, elapsed: Duration, error: Option<MicroError>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.nanos.fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
        if let Some(error) = error {
            self.errors.fetch_add(1, Ordering::Relaxed);
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
        }
    }
}

/// One subject of one endpoint, as the micro protocol lists it.
pub(super) struct MicroEndpoint {
    /// The micro endpoint name: the subject without the service prefix.
    pub name: String,
    pub subject: String,
    /// The Rotor endpoint number.
    pub number: usize,
    /// `true` for the per-instance subject.
    pub addressed: bool,
    metadata: HashMap<String, String>,
    pub counters: Arc<Counters>,
}

/// A served component as a NATS micro service.
pub(super) struct Micro {
    name: String,
    id: String,
    version: String,
    description: String,
    metadata: HashMap<String, String>,
    started: async_nats::datetime::DateTime,
    pub endpoints: Vec<MicroEndpoint>,
    data: StatsData,
}

impl Micro {
    pub(super) fn new(spec: &ServiceSpec) -> Micro {
        let prefix = format!("{}.", spec.name);
        let mut endpoints = Vec::new();
        for (number, ep) in spec.endpoints.iter().enumerate() {
            // The first subject is the queue group's; any other, this instance's.
            for (nth, subject) in ep.subjects.iter().enumerate() {
                endpoints.push(MicroEndpoint {
                    name: subject.strip_prefix(&prefix).unwrap_or(subject).to_string(),
                    subject: subject.clone(),
                    number,
                    addressed: nth > 0,
                    metadata: HashMap::from([
                        ("rotor.endpoint".to_string(), ep.name.clone()),
                        ("rotor.request".to_string(), ep.request_type.clone()),
                        ("rotor.response".to_string(), ep.response_type.clone()),
                    ]),
                    counters: Arc::default(),
                });
            }
        }
        Micro {
            name: spec.name.clone(),
            id: new_id(),
            version: spec.version.clone(),
            description: format!("Rotor component {}/{}", spec.namespace, spec.component),
            metadata: HashMap::from([
                ("rotor.namespace".to_string(), spec.namespace.clone()),
                ("rotor.component".to_string(), spec.component.clone()),
                ("rotor.instance".to_string(), spec.instance.to_string()),
                ("rotor.wire".to_string(), WIRE_VERSION.to_string()),
            ]),
            started: async_nats::datetime::now(),
            endpoints,
            data: spec.stats.clone(),
        }
    }

    /// The nine subjects the protocol answers on: each verb for every
    /// service, for this name, and for this instance.
    fn verb_subjects(&self) -> Vec<(Verb, String)> {
        [Verb::Ping, Verb::Info, Verb::Stats]
            .into_iter()
            .flat_map(|verb| {
                let base = format!("$SRV.{}", verb.as_str());
                [base.clone(), format!("{base}.{}", self.name), format!("{base}.{}.{}", self.name, self.id)]
                    .map(|subject| (verb, subject))
            })
            .collect()
    }

    fn answer(&self, verb: Verb) -> Result<Bytes, serde_json::Error> {
        let json = match verb {
            Verb::Ping => serde_json::to_vec(&async_nats::service::PingResponse {
                kind: "io.nats.micro.v1.ping_response".into(),
                name: self.name.clone(),
                id: self.id.clone(),
                version: self.version.clone(),
                metadata: self.metadata.clone(),
            }),
            Verb::Info => serde_json::to_vec(&async_nats::service::Info {
                kind: "io.nats.micro.v1.info_response".into(),
                name: self.name.clone(),
                id: self.id.clone(),
                description: self.description.clone(),
                version: self.version.clone(),
                metadata: self.metadata.clone(),
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
            Verb::Stats => serde_json::to_vec(&async_nats::service::Stats {
                kind: "io.nats.micro.v1.stats_response".into(),
                name: self.name.clone(),
                id: self.id.clone(),
                version: self.version.clone(),
                started: self.started,
                endpoints: self.endpoints.iter().map(|ep| self.endpoint_stats(ep)).collect(),
            }),
        };
        json.map(Bytes::from)
    }

    fn endpoint_stats(&self, ep: &MicroEndpoint) -> endpoint::Stats {
        let c = &ep.counters;
        let requests = c.requests.load(Ordering::Relaxed);
        let nanos = c.nanos.load(Ordering::Relaxed);
        endpoint::Stats {
            name: ep.name.clone(),
            subject: ep.subject.clone(),
            requests: requests as usize,
            errors: c.errors.load(Ordering::Relaxed) as usize,
            processing_time: Duration::from_nanos(nanos),
            average_processing_time: Duration::from_nanos(nanos.checked_div(requests).unwrap_or(0)),
            last_error: c.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            data: Some((self.data)(ep.number)),
            queue_group: QUEUE_GROUP.into(),
        }
    }

    /// Subscribes to the verbs and answers them until `stop`.
    pub(super) async fn serve_verbs(
        self: Arc<Self>,
        client: async_nats::Client,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<(), async_nats::SubscribeError> {
        let mut subscriptions = Vec::new();
        for (verb, subject) in self.verb_subjects() {
            subscriptions.push(client.subscribe(subject).await?.map(move |m| (verb, m)));
        }
        let mut requests = futures::stream::select_all(subscriptions);
        tokio::spawn(async move {
            loop {
                let (verb, request) = tokio::select! {
                    next = requests.next() => match next {
                        Some(next) => next,
                        None => break,
                    },
                    () = stop.cancelled() => break,
                };
                let Some(reply) = request.reply else { continue };
                match self.answer(verb) {
                    Ok(answer) => {
                        if let Err(e) = client.publish(reply, answer).await {
                            tracing::debug!(error = %e, "could not answer a $SRV request");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not encode a $SRV answer"),
                }
            }
        });
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Verb {
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

/// A service instance id in the style of NATS's own (22 characters of
/// `[0-9A-Za-z]`): unique per served component, not per runtime.
fn new_id() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..22).map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char).collect()
}
