//! The serving side of the direct plane: one listening port per runtime,
//! the instance subjects it answers, and a connection task per caller.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::conn::{Conn, Limits, Side};
use super::hello::{self, Speaks};
use super::tls::Acceptor;
use crate::engine::micro::Counters;
use crate::engine::transport::{Dispatch, ServiceSpec};
use crate::{Error, Guard};

/// How long a new connection may take to send its preamble (and finish
/// its TLS handshake) before it is closed.
const HELLO_WITHIN: Duration = Duration::from_secs(5);

/// What a served subject leads to.
type Route = (Dispatch, usize, Arc<Counters>);

/// The instance subjects served over the direct plane.
#[derive(Default)]
pub(crate) struct Routes(RwLock<HashMap<String, Route>>);

impl Routes {
    pub(crate) fn get(&self, subject: &str) -> Option<Route> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).get(subject).cloned()
    }
}

/// A runtime's direct-plane listener. Dropping it stops listening and
/// closes its connections.
pub struct DirectServer {
    routes: Arc<Routes>,
    /// What instance records advertise: `tcp://host:port` or `tls://host:port`.
    advertised: String,
    local: SocketAddr,
    stop: CancellationToken,
}

impl DirectServer {
    /// Listens on `bind`, advertising `advertised` (`host:port`), with TLS
    /// when `acceptor` is set; messages are at most `max_payload` bytes.
    pub(crate) async fn start(
        bind: SocketAddr,
        advertised: Option<String>,
        acceptor: Option<Acceptor>,
        max_payload: usize,
    ) -> Result<Arc<DirectServer>, Error> {
        let listener = TcpListener::bind(bind).await.map_err(|e| {
            Error::Config(format!("the direct plane cannot listen on {bind} (ROTOR_TCP_ADDR): {e}"))
        })?;
        let local = listener.local_addr().map_err(|e| Error::Config(e.to_string()))?;
        let advertised = match advertised {
            Some(a) if a.contains(':') => a,
            Some(host) => format!("{host}:{}", local.port()),
            None if local.ip().is_unspecified() => {
                return Err(Error::Config(format!(
                    "the direct plane listens on {local}, an address other processes cannot dial: set \
                     ROTOR_TCP_ADVERTISE (DirectConfig::advertise) to the host others reach this process at"
                )));
            }
            None => local.to_string(),
        };
        let scheme = if acceptor.is_some() { "tls" } else { "tcp" };
        let advertised = format!("{scheme}://{advertised}");
        let server = Arc::new(DirectServer {
            routes: Arc::default(),
            advertised,
            local,
            stop: CancellationToken::new(),
        });
        tokio::spawn(accept(listener, server.routes.clone(), acceptor, max_payload, server.stop.clone()));
        tracing::info!(address = %local, advertised = %server.advertised, "direct plane listening");
        Ok(server)
    }

    /// The address instance records advertise.
    pub fn advertised(&self) -> &str {
        &self.advertised
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves the instance subjects of `spec` until the guard is dropped.
    pub(crate) fn bind(&self, spec: &ServiceSpec, dispatch: &Dispatch) -> Result<Guard, Error> {
        let mut served = Vec::new();
        {
            let mut routes = self.routes.0.write().unwrap_or_else(|p| p.into_inner());
            for (number, ep) in spec.endpoints.iter().enumerate() {
                let Some(subject) = &ep.instance_subject else { continue };
                if routes.contains_key(subject) {
                    return Err(Error::Bind {
                        service: spec.name.clone(),
                        detail: format!("{subject} is served on the direct plane already"),
                    });
                }
                routes.insert(subject.clone(), (dispatch.clone(), number, ep.counters.clone()));
                served.push(subject.clone());
            }
        }
        let routes = self.routes.clone();
        Ok(Guard::new(move || {
            let mut routes = routes.0.write().unwrap_or_else(|p| p.into_inner());
            for subject in served {
                routes.remove(&subject);
            }
        }))
    }
}

impl Drop for DirectServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept(
    listener: TcpListener,
    routes: Arc<Routes>,
    acceptor: Option<Acceptor>,
    max_payload: usize,
    stop: CancellationToken,
) {
    loop {
        let (socket, peer) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(error = %e, "the direct plane could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (routes, acceptor, stop) = (routes.clone(), acceptor.clone(), stop.child_token());
        tokio::spawn(async move {
            let _ = socket.set_nodelay(true);
            if let Err(why) =
                tokio::time::timeout(HELLO_WITHIN, open(socket, peer, routes, acceptor, max_payload, stop))
                    .await
                    .unwrap_or_else(|_| Err(format!("no preamble within {HELLO_WITHIN:?}")))
            {
                tracing::warn!(%peer, "closing a direct connection: {why}");
            }
        });
    }
}

/// Checks the caller's preamble (after TLS, when set) and starts the
/// connection.
async fn open(
    socket: TcpStream,
    peer: SocketAddr,
    routes: Arc<Routes>,
    acceptor: Option<Acceptor>,
    max_payload: usize,
    stop: CancellationToken,
) -> Result<(), String> {
    match acceptor {
        None => greet(socket, peer, routes, max_payload, stop).await,
        Some(acceptor) => {
            let tls = acceptor.accept(socket).await.map_err(|e| format!("the TLS handshake failed: {e}"))?;
            greet(tls, peer, routes, max_payload, stop).await
        }
    }
}

async fn greet<S>(
    mut io: S,
    peer: SocketAddr,
    routes: Arc<Routes>,
    max_payload: usize,
    stop: CancellationToken,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let takes = hello::exchange(&mut io, max_payload, Speaks::Second).await?;
    let limits = Limits { receive: max_payload, send: max_payload.min(takes) };
    Conn::start(io, peer.to_string(), Side::Server(routes), limits, stop);
    Ok(())
}
