//! The calling side of the direct plane: one persistent connection per
//! instance address, opened on first use and again after it closes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use super::conn::{Conn, Limits, Side};
use super::hello::{self, Speaks};
use super::tls::Connector;

/// How long an address that could not be reached is called over NATS
/// instead before it is tried again.
const UNREACHABLE_FOR: Duration = Duration::from_secs(5);

/// How to reach an instance whose record advertises a direct address.
pub(crate) enum Reach {
    /// Over this connection.
    Direct(Arc<Conn>),
    /// Nothing listens there any more: the instance is gone ("no
    /// responders").
    Gone,
    /// Not reachable from here (or not securely): over NATS.
    Nats,
}

/// Connections by address.
pub(crate) struct DirectPool {
    conns: Mutex<HashMap<String, Arc<OnceCell<Arc<Conn>>>>>,
    unreachable: Mutex<HashMap<String, Instant>>,
    connector: Option<Connector>,
    max_payload: usize,
    connect_timeout: Duration,
    stop: CancellationToken,
}

impl Drop for DirectPool {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl DirectPool {
    pub(crate) fn new(connector: Option<Connector>, max_payload: usize, connect_timeout: Duration) -> Self {
        DirectPool {
            conns: Mutex::default(),
            unreachable: Mutex::default(),
            connector,
            max_payload,
            connect_timeout,
            stop: CancellationToken::new(),
        }
    }

    /// The connection to `address` (`tcp://host:port` or `tls://host:port`).
    pub(crate) async fn reach(&self, address: &str) -> Reach {
        let cell = {
            let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
            match conns.get(address) {
                Some(cell) if cell.get().is_none_or(|c| !c.is_closed()) => cell.clone(),
                _ => {
                    if self.unreachable_now(address) {
                        return Reach::Nats;
                    }
                    // Instances come and go: what is closed is forgotten
                    // here rather than kept for every address ever called.
                    conns.retain(|_, cell| cell.get().is_none_or(|c| !c.is_closed()));
                    let cell = Arc::new(OnceCell::new());
                    conns.insert(address.to_string(), cell.clone());
                    cell
                }
            }
        };
        // Calls that waited on a connect that failed look again before each
        // dials in turn.
        let connected = cell
            .get_or_try_init(|| async {
                if self.unreachable_now(address) {
                    return Err(NotConnected::Unreachable);
                }
                self.connect(address).await
            })
            .await;
        let not = match connected {
            Ok(conn) => return Reach::Direct(conn.clone()),
            Err(not) => not,
        };
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if conns.get(address).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            conns.remove(address);
        }
        match not {
            NotConnected::Refused => Reach::Gone,
            NotConnected::Unreachable => Reach::Nats,
        }
    }

    /// `true` while `address` is called over NATS after it could not be
    /// reached.
    fn unreachable_now(&self, address: &str) -> bool {
        let mut unreachable = self.unreachable.lock().unwrap_or_else(|p| p.into_inner());
        unreachable.retain(|_, at| at.elapsed() < UNREACHABLE_FOR);
        unreachable.contains_key(address)
    }

    async fn connect(&self, address: &str) -> Result<Arc<Conn>, NotConnected> {
        let unreachable = |why: String| {
            tracing::warn!(%address, "calling over NATS for {UNREACHABLE_FOR:?}: the direct address {why}");
            self.unreachable
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(address.to_string(), Instant::now());
            NotConnected::Unreachable
        };
        let (tls, host_port) = match address.split_once("://") {
            Some(("tcp", rest)) => (false, rest),
            Some(("tls", rest)) => (true, rest),
            _ => return Err(unreachable("is not tcp://host:port or tls://host:port".into())),
        };
        let connector = match (tls, &self.connector) {
            (false, None) => None,
            (true, Some(connector)) => Some(connector),
            (true, None) => {
                return Err(unreachable(
                    "asks for TLS: set ROTOR_TCP_TLS_CA, ROTOR_TCP_TLS_CERT and ROTOR_TCP_TLS_KEY".into(),
                ));
            }
            // This process guards its own calls with TLS: it does not send
            // them in plain text because a record asks it to.
            (false, Some(_)) => {
                return Err(unreachable("is plain TCP, and this process calls with TLS only".into()));
            }
        };
        // Dialling, TLS and the hellos together take at most the connect
        // timeout: a peer that accepts and then says nothing holds no call.
        let open = async {
            let socket = match TcpStream::connect(host_port).await {
                Ok(socket) => socket,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Err(NotConnected::Refused);
                }
                Err(e) => return Err(unreachable(format!("cannot be dialled: {e}"))),
            };
            let _ = socket.set_nodelay(true);
            let stop = self.stop.child_token();
            let Some(connector) = connector else {
                return hello(socket, address, self.max_payload, stop).await.map_err(unreachable);
            };
            let host = host_port.rsplit_once(':').map_or(host_port, |(host, _)| host);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            match connector.connect(host, socket).await {
                Ok(tls) => hello(tls, address, self.max_payload, stop).await.map_err(unreachable),
                Err(e) => Err(unreachable(format!("refused the TLS handshake: {e}"))),
            }
        };
        tokio::time::timeout(self.connect_timeout, open).await.unwrap_or_else(|_| {
            Err(unreachable(format!("did not complete a connection within {:?}", self.connect_timeout)))
        })
    }
}

/// Why a connection was not made.
enum NotConnected {
    /// Nothing listens there: the instance is gone.
    Refused,
    /// The address cannot be used from here.
    Unreachable,
}

async fn hello<S>(
    mut io: S,
    address: &str,
    max_payload: usize,
    stop: CancellationToken,
) -> Result<Arc<Conn>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let takes = hello::exchange(&mut io, max_payload, Speaks::First).await?;
    let limits = Limits { receive: max_payload, send: max_payload.min(takes) };
    Ok(Conn::start(io, address.to_string(), Side::Client, limits, stop))
}
