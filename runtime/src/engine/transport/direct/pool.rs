//! The calling side of the direct plane: one persistent connection per
//! instance address, opened on first use and again after it closes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use super::conn::{Conn, Side};
use super::frame::PREAMBLE;
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
                    if let Some(at) = self.unreachable.lock().unwrap_or_else(|p| p.into_inner()).get(address)
                        && at.elapsed() < UNREACHABLE_FOR
                    {
                        return Reach::Nats;
                    }
                    let cell = Arc::new(OnceCell::new());
                    conns.insert(address.to_string(), cell.clone());
                    cell
                }
            }
        };
        match cell.get_or_try_init(|| self.connect(address)).await {
            Ok(conn) => Reach::Direct(conn.clone()),
            Err(NotConnected::Refused) => Reach::Gone,
            Err(NotConnected::Unreachable) => Reach::Nats,
        }
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
        let connect = TcpStream::connect(host_port);
        let socket = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(socket)) => socket,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(NotConnected::Refused);
            }
            Ok(Err(e)) => return Err(unreachable(format!("cannot be dialled: {e}"))),
            Err(_) => return Err(unreachable(format!("did not answer within {:?}", self.connect_timeout))),
        };
        let _ = socket.set_nodelay(true);
        let stop = self.stop.child_token();
        if !tls {
            return hello(socket, address, self.max_payload, stop).await.map_err(unreachable);
        }
        let Some(connector) = &self.connector else {
            return Err(unreachable(
                "asks for TLS: set ROTOR_TCP_TLS_CA, ROTOR_TCP_TLS_CERT and ROTOR_TCP_TLS_KEY".into(),
            ));
        };
        let host = host_port.rsplit_once(':').map_or(host_port, |(host, _)| host);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match connector.connect(host, socket).await {
            Ok(tls) => hello(tls, address, self.max_payload, stop).await.map_err(unreachable),
            Err(e) => Err(unreachable(format!("refused the TLS handshake: {e}"))),
        }
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
    io.write_all(PREAMBLE).await.map_err(|e| format!("closed on the preamble: {e}"))?;
    let mut hello = [0u8; PREAMBLE.len()];
    io.read_exact(&mut hello).await.map_err(|e| format!("closed before its preamble: {e}"))?;
    if &hello != PREAMBLE {
        return Err("answered another protocol (or version)".into());
    }
    Ok(Conn::start(io, address.to_string(), Side::Client, max_payload, stop))
}
