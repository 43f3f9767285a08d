//! The NATS transport: every served component is one NATS micro service, so
//! `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` and the standard NATS tools see
//! it (see `micro`); requests are NATS request/reply on queue-group
//! subscriptions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{ConnectOptions, HeaderMap, HeaderName, RequestErrorKind};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::chunked;
use super::listeners::Listeners;
use super::message::{Headers, Message, header};
use super::verbs::{self, SharedVerbs};
use super::{Dispatch, Incoming, Respond, ServiceSpec, Start, Transport, within_limit};
use crate::engine::config::NatsConfig;
use crate::engine::micro::stats::ServiceStats;
use crate::engine::micro::{Counters, MicroEndpoint, MicroService, QUEUE_GROUP};
use crate::{Error, Guard, TransportError};

/// Requests and replies over a NATS connection.
#[derive(Clone, Debug)]
pub struct Nats {
    client: async_nats::Client,
    /// The server's `max_payload`, read once: asking the client for it
    /// clones the whole server info, too slow for every message.
    max_payload: usize,
    /// How many times the connection was lost; see
    /// [`Transport::connection_losses`].
    losses: Arc<Losses>,
    /// What receives the requests of every subscription it serves.
    listeners: Arc<Listeners>,
    /// The `$SRV` subjects its services share.
    verbs: Arc<SharedVerbs>,
}

/// A count of connection losses, as a watch and as a number every call can
/// read without touching the watch's lock.
#[derive(Debug)]
struct Losses {
    watch: watch::Sender<u64>,
    count: std::sync::atomic::AtomicU64,
}

impl Losses {
    fn new() -> Arc<Losses> {
        Arc::new(Losses { watch: watch::Sender::new(0), count: Default::default() })
    }
}

impl Nats {
    /// Connects, giving up after `connect_timeout` with an error that names
    /// the address and where it came from.
    pub async fn connect(config: &NatsConfig, connect_timeout: Duration) -> Result<Nats, Error> {
        let address = config.display_urls();
        let unreachable = |detail: String| Error::Unreachable {
            engine: "NATS",
            address: address.clone(),
            source_of_address: config.source.to_string(),
            detail,
        };
        if config.urls.is_empty() {
            return Err(unreachable("no URL given".into()));
        }
        let losses = Losses::new();
        let mut options = ConnectOptions::new()
            .connection_timeout(connect_timeout)
            .name("rotor")
            .event_callback(count_losses(losses.clone()))
            .reconnect_delay_callback(reconnect_delay);
        // Authentication and TLS, and the checks of the files they name.
        options = config.apply(options).await?;
        let connect = options.connect(config.urls.as_slice());
        let client = match tokio::time::timeout(connect_timeout, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(config.connect_error(&e)),
            Err(_) => return Err(unreachable(format!("no answer within {connect_timeout:?}"))),
        };
        Ok(Nats { losses, ..Nats::from_client(client) })
    }

    /// Wraps an existing connection. Its losses are not seen: a request in
    /// flight when it reconnects waits for its reply until its timeout.
    pub fn from_client(client: async_nats::Client) -> Nats {
        let max_payload = client.server_info().max_payload;
        Nats { client, max_payload, losses: Losses::new(), listeners: Arc::default(), verbs: Arc::default() }
    }

    /// The underlying connection.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }
}

/// How long to wait before reconnection attempt `attempts`: async-nats's
/// default doubles up to 4 s, so that a client could come back seconds after
/// a restarted broker. At most 250 ms here, with jitter so that a fleet does
/// not reconnect in step.
fn reconnect_delay(attempts: usize) -> Duration {
    let doubled = 10u64.saturating_mul(1 << attempts.saturating_sub(1).min(10));
    let base = Duration::from_millis(doubled.min(250));
    base.mul_f64(0.8 + 0.4 * fastrand::f64())
}

/// The connection's event callback: counts each disconnection in `losses`.
fn count_losses(
    losses: Arc<Losses>,
) -> impl Fn(async_nats::Event) -> futures::future::Ready<()> + Send + Sync + 'static {
    move |event| {
        if let async_nats::Event::Disconnected = event {
            let n = losses.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            losses.watch.send_replace(n);
        }
        futures::future::ready(())
    }
}

/// Consumes the headers, so that values move rather than copy.
pub(super) fn to_nats(headers: Headers) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        // async-nats asserts that a value holds no line break and that a
        // name is printable ASCII without ':'; a header that breaks either
        // (one a program set itself) is dropped rather than panic.
        if value.contains(['\r', '\n']) {
            tracing::warn!(header = %name, "dropping a header whose value holds a line break");
            continue;
        }
        // Rotor's own names are referenced, not copied.
        if let std::borrow::Cow::Borrowed(known) = name
            && header::known(known).is_some()
        {
            map.insert(HeaderName::from_static(known), value);
            continue;
        }
        match name.parse::<HeaderName>() {
            Ok(parsed) => map.insert(parsed, value),
            Err(_) => tracing::warn!(header = %name, "dropping a header whose name NATS cannot carry"),
        }
    }
    map
}

fn from_nats(map: Option<&HeaderMap>) -> Headers {
    let mut headers = Headers::new();
    if let Some(map) = map.filter(|m| !m.is_empty()) {
        for (name, values) in map.iter() {
            if let Some(value) = values.first() {
                // Rotor's own names are borrowed rather than copied for every message.
                let name: &str = name.as_ref();
                match header::known(name) {
                    Some(known) => headers.insert(known, value.as_str()),
                    None => headers.insert(name.to_string(), value.as_str()),
                }
            }
        }
    }
    headers
}

/// Sends the reply to one request and counts it in the endpoint's
/// `$SRV.STATS` figures.
pub(super) struct NatsResponder {
    /// Shared: cloning a NATS client allocates (its sender boxes a future).
    pub(super) client: Arc<async_nats::Client>,
    pub(super) to: async_nats::Subject,
    counters: Arc<Counters>,
    arrived: Instant,
    /// The largest message NATS carries: a larger reply goes in chunks.
    max_payload: usize,
}

impl Respond for NatsResponder {
    fn respond(self: Box<Self>, reply: Message) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(async move {
            self.counters.record(self.arrived.elapsed(), &reply);
            if reply.size() > self.max_payload {
                return chunked::offer(&self.client, self.to, reply, self.max_payload).await;
            }
            // Without headers it is a plain PUB, the cheapest message NATS has.
            let sent = if reply.headers.is_empty() {
                self.client.publish(self.to, reply.payload).await
            } else {
                self.client.publish_with_headers(self.to, to_nats(reply.headers), reply.payload).await
            };
            sent.map_err(|e| TransportError::Disconnected(format!("could not send a reply: {e}")))
        })
    }
}

/// How long a stopped endpoint waits for NATS to confirm its unsubscribe,
/// handing over what arrives meanwhile. Bounded, so that shutdown does not
/// wait on a NATS server that is down.
const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// Hands every request on one subscription to `dispatch` until `stop`,
/// then unsubscribes and still hands over what had already arrived.
fn listen(
    listeners: &Listeners,
    client: Arc<async_nats::Client>,
    mut requests: async_nats::Subscriber,
    ep: &MicroEndpoint,
    dispatch: Dispatch,
    stop: CancellationToken,
    max_payload: usize,
) {
    let (endpoint, addressed, counters) = (ep.number, ep.addressed, ep.counters.clone());
    let max_request = ep.max_request;
    let deliver = move |request: async_nats::Message| {
        let Some(to) = request.reply else {
            tracing::debug!(subject = %request.subject, "ignoring a request without a reply subject");
            return;
        };
        let responder = Box::new(NatsResponder {
            client: client.clone(),
            to,
            counters: counters.clone(),
            arrived: Instant::now(),
            max_payload,
        });
        let message = Message { headers: from_nats(request.headers.as_ref()), payload: request.payload };
        if message.headers.get(header::UPLOAD).is_some() {
            let dispatch = dispatch.clone();
            return chunked::receive(message, *responder, max_request, move |message, responder| {
                let responder = Box::new(responder);
                dispatch(Incoming { endpoint, addressed, message, responder, peer: None }, Start::OnTask);
            });
        }
        dispatch(Incoming { endpoint, addressed, message, responder, peer: None }, Start::OnTask);
    };
    listeners.run(async move {
        let stopped = stop.cancelled();
        tokio::pin!(stopped);
        loop {
            // Stop first: under constant load the requests are always ready.
            // What is already buffered is still handed over below.
            tokio::select! {
                biased;
                () = &mut stopped => break,
                request = requests.next() => match request {
                    Some(request) => deliver(request),
                    None => return,
                },
            }
        }
        if requests.drain().await.is_ok() {
            let rest = async {
                while let Some(request) = requests.next().await {
                    deliver(request);
                }
            };
            let _ = tokio::time::timeout(DRAIN_WAIT, rest).await;
        }
    });
}

impl Nats {
    /// One request and its one reply, each within NATS's `max_payload`.
    pub(super) async fn request_once(
        &self,
        subject: &str,
        message: Message,
        timeout: Duration,
    ) -> Result<Message, TransportError> {
        let (size, limit) = (message.size(), self.max_payload);
        let mut request = async_nats::Request::new().payload(message.payload).timeout(Some(timeout));
        // Without headers it is a plain PUB, and the reply's parse is the cheapest.
        if !message.headers.is_empty() {
            request = request.headers(to_nats(message.headers));
        }
        // A `Subject` made here is handed over; from a `String` async-nats would copy it.
        match self.client.send_request(async_nats::Subject::from(subject), request).await {
            Ok(reply) => Ok(Message { headers: from_nats(reply.headers.as_ref()), payload: reply.payload }),
            Err(e) => Err(match e.kind() {
                RequestErrorKind::NoResponders => {
                    TransportError::NoResponders { subject: subject.to_string(), instance: None }
                }
                RequestErrorKind::TimedOut => {
                    TransportError::Timeout { subject: subject.to_string(), after: timeout, instance: None }
                }
                RequestErrorKind::MaxPayloadExceeded => {
                    TransportError::Oversize { what: "request".into(), size, limit }
                }
                _ => TransportError::Disconnected(e.to_string()),
            }),
        }
    }

    /// Every reply to one request on `subject` that arrives within
    /// `timeout`: a micro verb asked of every instance at once.
    async fn gather(
        &self,
        subject: String,
        timeout: Duration,
    ) -> Result<BoxStream<'static, async_nats::Message>, Error> {
        let disconnected = |e: String| Error::Transport(TransportError::Disconnected(e));
        let inbox = self.client.new_inbox();
        let replies = self.client.subscribe(inbox.clone()).await.map_err(|e| disconnected(e.to_string()))?;
        self.client
            .publish_with_reply(subject, inbox, "".into())
            .await
            .map_err(|e| disconnected(e.to_string()))?;
        Ok(replies.take_until(tokio::time::sleep(timeout)).boxed())
    }
}

impl Transport for Nats {
    fn bind(&self, spec: ServiceSpec, dispatch: Dispatch) -> BoxFuture<'_, Result<Guard, Error>> {
        Box::pin(async move {
            let bind_error = |e: async_nats::SubscribeError| Error::Bind {
                service: spec.name.clone(),
                detail: e.to_string(),
            };
            let micro = Arc::new(MicroService::new(&spec));
            let stop = CancellationToken::new();
            // The guard cancels `stop`, on success and on a half-done bind alike.
            let guard = Guard::new({
                let stop = stop.clone();
                move || stop.cancel()
            });
            let mut subscriptions = Vec::new();
            for ep in &micro.endpoints {
                let subscriber = self
                    .client
                    .queue_subscribe(ep.subject.clone(), QUEUE_GROUP.to_string())
                    .await
                    .map_err(bind_error)?;
                subscriptions.push(subscriber);
            }
            verbs::serve(&self.verbs, micro.clone(), self.client.clone(), stop.clone())
                .await
                .map_err(bind_error)?;
            let client = Arc::new(self.client.clone());
            for (subscriber, ep) in subscriptions.into_iter().zip(&micro.endpoints) {
                let (dispatch, stop) = (dispatch.clone(), stop.clone());
                listen(&self.listeners, client.clone(), subscriber, ep, dispatch, stop, self.max_payload);
            }
            Ok(guard)
        })
    }

    fn request<'a>(
        &'a self,
        subject: &'a str,
        message: Message,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Message, TransportError>> {
        Box::pin(async move {
            within_limit("request", &message, self.max_message())?;
            let started = Instant::now();
            let reply = if message.size() > self.max_payload {
                chunked::upload(self, subject, message, timeout).await?
            } else {
                self.request_once(subject, message, timeout).await?
            };
            chunked::download(self, subject, reply, started + timeout, timeout).await
        })
    }

    fn max_payload(&self) -> usize {
        self.max_payload
    }

    fn max_message(&self) -> usize {
        super::MAX_MESSAGE
    }

    fn inbox(&self) -> String {
        self.client.new_inbox()
    }

    fn connection_losses(&self) -> watch::Receiver<u64> {
        self.losses.watch.subscribe()
    }

    fn connection_loss_count(&self) -> u64 {
        self.losses.count.load(std::sync::atomic::Ordering::SeqCst)
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
            within_limit("message", &message, self.max_payload())?;
            // Without headers it is a plain PUB, the cheapest message NATS has.
            let sent = if message.headers.is_empty() {
                self.client.publish(subject, message.payload).await
            } else {
                self.client.publish_with_headers(subject, to_nats(message.headers), message.payload).await
            };
            sent.map_err(|e| TransportError::Disconnected(format!("could not publish: {e}")))
        })
    }

    fn info_stream(
        &self,
        service: String,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<BoxStream<'static, bytes::Bytes>, Error>> {
        Box::pin(async move {
            let replies = self.gather(format!("$SRV.INFO.{service}"), timeout).await?;
            Ok(replies.map(|m| m.payload).boxed())
        })
    }

    fn stats_stream(
        &self,
        service: String,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<BoxStream<'static, ServiceStats>, Error>> {
        Box::pin(async move {
            let replies = self.gather(format!("$SRV.STATS.{service}"), timeout).await?;
            let stats = replies.filter_map(|m| {
                let stats = serde_json::from_slice::<ServiceStats>(&m.payload).inspect_err(
                    |e| tracing::warn!(error = %e, "ignoring a $SRV.STATS reply that does not decode"),
                );
                std::future::ready(stats.ok())
            });
            Ok(stats.boxed())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_nats_cannot_carry_is_dropped_not_a_panic() {
        let mut headers = Headers::new();
        headers.insert(header::TIMEOUT_MS, "5");
        headers.insert("X-Fine".to_string(), "yes");
        for bad in ["has space", "colon:", "näme", "ctrl\u{1}"] {
            headers.insert(bad.to_string(), "v");
        }
        headers.insert("X-Broken".to_string(), "line\r\nbreak");
        let map = to_nats(headers);
        assert_eq!(map.len(), 2, "{map:?}");
        assert_eq!(map.get(header::TIMEOUT_MS).map(|v| v.as_str()), Some("5"));
        assert_eq!(map.get("X-Fine").map(|v| v.as_str()), Some("yes"));
    }
}
