//! The NATS transport: every served component is one NATS micro service, so
//! `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` and the standard NATS tools see
//! it; requests are NATS request/reply.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::service::ServiceExt;
use async_nats::{ConnectOptions, HeaderMap, RequestErrorKind};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use super::{Dispatch, Incoming, Respond, ServiceSpec, Transport};
use crate::config::{NatsAuth, NatsConfig};
use crate::stats::ServiceStats;
use crate::wire::{Headers, Message, WIRE_VERSION, header};
use crate::{Error, Guard, TransportError};

/// Requests and replies over a NATS connection.
#[derive(Clone, Debug)]
pub struct Nats {
    client: async_nats::Client,
    /// The server's `max_payload`, read once: asking the client for it
    /// clones the whole server info, too slow for every message.
    max_payload: usize,
}

impl Nats {
    /// Connects, giving up after `connect_timeout` with an error that names
    /// the address and where it came from.
    pub async fn connect(config: &NatsConfig, connect_timeout: Duration) -> Result<Nats, Error> {
        let address = config.urls.join(",");
        let unreachable = |detail: String| Error::Unreachable {
            engine: "NATS",
            address: address.clone(),
            source_of_address: config.source.to_string(),
            detail,
        };
        if config.urls.is_empty() {
            return Err(unreachable("no URL given".into()));
        }
        let mut options = ConnectOptions::new().connection_timeout(connect_timeout).name("rotor");
        options = match &config.auth {
            NatsAuth::None => options,
            NatsAuth::Token(token) => options.token(token.clone()),
            NatsAuth::UserPassword { user, password } => {
                options.user_and_password(user.clone(), password.clone())
            }
            NatsAuth::CredsFile(path) => options.credentials_file(path).await.map_err(|e| {
                Error::Config(format!("cannot read NATS credentials file {}: {e}", path.display()))
            })?,
        };
        if let Some(ca) = &config.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        let connect = options.connect(config.urls.as_slice());
        let client = match tokio::time::timeout(connect_timeout, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => return Err(unreachable(format!("no answer within {connect_timeout:?}"))),
        };
        Ok(Nats::from_client(client))
    }

    /// Wraps an existing connection.
    pub fn from_client(client: async_nats::Client) -> Nats {
        let max_payload = client.server_info().max_payload;
        Nats { client, max_payload }
    }

    /// The underlying connection.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }
}

fn to_nats(headers: &Headers) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers.iter() {
        // async-nats asserts that a value holds no line break; one that
        // does (from a caller's own headers) is dropped rather than panic.
        if !value.contains(['\r', '\n']) {
            map.insert(name, value);
        }
    }
    map
}

fn from_nats(map: Option<&HeaderMap>) -> Headers {
    let mut headers = Headers::new();
    if let Some(map) = map.filter(|m| !m.is_empty()) {
        for (name, values) in map.iter() {
            if let Some(value) = values.first() {
                headers.insert(name.to_string(), value.as_str().to_string());
            }
        }
    }
    headers
}

struct Reply(async_nats::service::Request);

impl Respond for Reply {
    fn respond(self: Box<Self>, reply: Message) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(async move {
            let failure = reply.error_kind().map(|kind| {
                let code = reply.headers.get(header::SERVICE_ERROR_CODE).and_then(|c| c.parse().ok());
                async_nats::service::error::Error {
                    code: code.unwrap_or(kind.code() as usize),
                    status: reply.headers.get(header::SERVICE_ERROR).unwrap_or("").to_string(),
                }
            });
            let headers = to_nats(&reply.headers);
            // Errors go through the service API so that its statistics count them.
            let result = match failure {
                None => self.0.respond_with_headers(Ok(reply.payload), headers).await,
                Some(error) => self.0.respond_with_headers(Err(error), headers).await,
            };
            result.map_err(|e| TransportError::Disconnected(format!("could not send a reply: {e}")))
        })
    }
}

/// Adds every endpoint of `spec` to `service`, each forwarding to `dispatch`.
async fn add_endpoints(
    service: &async_nats::service::Service,
    spec: &ServiceSpec,
    prefix: &str,
    dispatch: &Dispatch,
) -> Result<(), async_nats::Error> {
    for (index, ep) in spec.endpoints.iter().enumerate() {
        // The first subject is the queue group's; any other, this instance's.
        for (nth, subject) in ep.subjects.iter().enumerate() {
            let addressed = nth > 0;
            let name = subject.strip_prefix(prefix).unwrap_or(subject);
            let metadata = HashMap::from([
                ("rotor.endpoint".to_string(), ep.name.clone()),
                ("rotor.request".to_string(), ep.request_type.clone()),
                ("rotor.response".to_string(), ep.response_type.clone()),
            ]);
            let mut endpoint =
                service.endpoint_builder().name(name).metadata(metadata).add(subject.clone()).await?;
            let dispatch = dispatch.clone();
            // Ends when the service stops; requests it already
            // received are still dispatched.
            tokio::spawn(async move {
                while let Some(request) = endpoint.next().await {
                    let message = Message {
                        headers: from_nats(request.message.headers.as_ref()),
                        payload: request.message.payload.clone(),
                    };
                    let responder = Box::new(Reply(request));
                    dispatch(Incoming { endpoint: index, addressed, message, responder });
                }
            });
        }
    }
    Ok(())
}

impl Transport for Nats {
    fn bind(&self, spec: ServiceSpec, dispatch: Dispatch) -> BoxFuture<'_, Result<Guard, Error>> {
        Box::pin(async move {
            let bind_error =
                |e: async_nats::Error| Error::Bind { service: spec.name.clone(), detail: e.to_string() };
            let metadata = HashMap::from([
                ("rotor.namespace".to_string(), spec.namespace.clone()),
                ("rotor.component".to_string(), spec.component.clone()),
                ("rotor.instance".to_string(), spec.instance.to_string()),
                ("rotor.wire".to_string(), WIRE_VERSION.to_string()),
            ]);
            // The micro endpoint names (`say`, `say-1f2e`) by endpoint number.
            let prefix = format!("{}.", spec.name);
            let numbers: HashMap<String, usize> = spec
                .endpoints
                .iter()
                .enumerate()
                .flat_map(|(i, ep)| ep.subjects.iter().map(move |s| (s.clone(), i)))
                .map(|(subject, i)| (subject.strip_prefix(&prefix).unwrap_or(&subject).to_string(), i))
                .collect();
            let stats = spec.stats.clone();
            let service = self
                .client
                .service_builder()
                .stats_handler(move |name, _| numbers.get(&name).map(|i| stats(*i)).unwrap_or_default())
                .description(format!("Rotor component {}/{}", spec.namespace, spec.component))
                .metadata(metadata)
                .start(&spec.name, &spec.version)
                .await
                .map_err(bind_error)?;
            if let Err(e) = add_endpoints(&service, &spec, &prefix, &dispatch).await {
                // No half-served component: what was added goes with it.
                let _ = service.stop().await;
                return Err(bind_error(e));
            }
            // The guard runs in `Drop`, which cannot await: stopping is spawned.
            let service = Mutex::new(Some(service));
            let runtime = tokio::runtime::Handle::current();
            let guard = Guard::new(move || {
                if let Some(service) = service.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    runtime.spawn(async move {
                        if let Err(e) = service.stop().await {
                            tracing::warn!(error = %e, "could not stop a NATS service");
                        }
                    });
                }
            });
            Ok(guard)
        })
    }

    fn request(
        &self,
        subject: String,
        message: Message,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Message, TransportError>> {
        Box::pin(async move {
            let size = message.size();
            let limit = self.max_payload();
            if size > limit {
                return Err(TransportError::Oversize { what: "request".into(), size, limit });
            }
            let request = async_nats::Request::new()
                .payload(message.payload)
                .headers(to_nats(&message.headers))
                .timeout(Some(timeout));
            match self.client.send_request(subject.clone(), request).await {
                Ok(reply) => {
                    Ok(Message { headers: from_nats(reply.headers.as_ref()), payload: reply.payload })
                }
                Err(e) => Err(match e.kind() {
                    RequestErrorKind::NoResponders => {
                        TransportError::NoResponders { subject, instance: None }
                    }
                    RequestErrorKind::TimedOut => {
                        TransportError::Timeout { subject, after: timeout, instance: None }
                    }
                    RequestErrorKind::MaxPayloadExceeded => {
                        TransportError::Oversize { what: "request".into(), size, limit }
                    }
                    _ => TransportError::Disconnected(e.to_string()),
                }),
            }
        })
    }

    fn max_payload(&self) -> usize {
        self.max_payload
    }

    fn inbox(&self) -> String {
        self.client.new_inbox()
    }

    fn subscribe(
        &self,
        subject: String,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Message>, TransportError>> {
        Box::pin(async move {
            let subscriber = self
                .client
                .subscribe(subject)
                .await
                .map_err(|e| TransportError::Disconnected(format!("could not subscribe: {e}")))?;
            Ok(subscriber
                .map(|m| Message { headers: from_nats(m.headers.as_ref()), payload: m.payload })
                .boxed())
        })
    }

    fn publish(&self, subject: String, message: Message) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            let size = message.size();
            let limit = self.max_payload();
            if size > limit {
                return Err(TransportError::Oversize { what: "message".into(), size, limit });
            }
            // Without headers it is a plain PUB, the cheapest message NATS has.
            let sent = if message.headers.is_empty() {
                self.client.publish(subject, message.payload).await
            } else {
                self.client.publish_with_headers(subject, to_nats(&message.headers), message.payload).await
            };
            sent.map_err(|e| TransportError::Disconnected(format!("could not publish: {e}")))
        })
    }

    fn scrape_stats(
        &self,
        service: String,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Vec<ServiceStats>, Error>> {
        Box::pin(async move {
            let disconnected = |e: String| Error::Transport(TransportError::Disconnected(e));
            let inbox = self.client.new_inbox();
            let mut replies =
                self.client.subscribe(inbox.clone()).await.map_err(|e| disconnected(e.to_string()))?;
            self.client
                .publish_with_reply(format!("$SRV.STATS.{service}"), inbox, "".into())
                .await
                .map_err(|e| disconnected(e.to_string()))?;
            let mut stats = Vec::new();
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    () = &mut deadline => break,
                    reply = replies.next() => match reply {
                        Some(m) => match serde_json::from_slice::<ServiceStats>(&m.payload) {
                            Ok(s) => stats.push(s),
                            Err(e) => tracing::warn!(error = %e, "ignoring a $SRV.STATS reply that does not decode"),
                        },
                        None => break,
                    },
                }
            }
            stats.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(stats)
        })
    }
}
