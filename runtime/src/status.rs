//! Health of the served endpoints, and the status server: `/metrics`,
//! `/health` and `/live` over HTTP, on `ROTOR_STATUS_ADDR`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::engine::discovery::LeaseState;
use crate::engine::metrics::Metrics;
use crate::{Error, Guard};

/// What one served endpoint is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointState {
    /// Registered (or static) and taking requests.
    Serving,
    /// Shutting down: out of discovery, finishing what it accepted.
    Draining,
    /// The lease is lost: not in discovery until it is replaced.
    LeaseLost,
}

/// One served endpoint, as `/health` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointHealth {
    /// Namespace.
    pub namespace: String,
    /// Component.
    pub component: String,
    /// Endpoint.
    pub endpoint: String,
    /// The instance id, in hex.
    pub instance: String,
    /// Its state.
    pub state: EndpointState,
}

/// The health of every endpoint served in this process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    /// `true` when every served endpoint is serving.
    pub healthy: bool,
    /// Each endpoint.
    pub endpoints: Vec<EndpointHealth>,
}

struct Entry {
    id: u64,
    names: [String; 3],
    lease: watch::Receiver<LeaseState>,
    registered: bool,
    draining: Arc<AtomicBool>,
}

/// The endpoints served in this process, for `/health`.
#[derive(Default)]
pub(crate) struct HealthRegistry {
    entries: Mutex<Vec<Entry>>,
    next: AtomicU64,
}

impl HealthRegistry {
    /// Adds a served component's endpoints; they leave when the guard drops.
    /// `draining` is set by its shutdown.
    pub(crate) fn add(
        self: &Arc<Self>,
        namespace: &str,
        component: &str,
        endpoints: &[&str],
        lease: watch::Receiver<LeaseState>,
        registered: bool,
        draining: Arc<AtomicBool>,
    ) -> Guard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for endpoint in endpoints {
            entries.push(Entry {
                id,
                names: [namespace.to_string(), component.to_string(), endpoint.to_string()],
                lease: lease.clone(),
                registered,
                draining: draining.clone(),
            });
        }
        let this = Arc::downgrade(self);
        Guard::new(move || {
            if let Some(this) = this.upgrade() {
                this.entries.lock().unwrap_or_else(|p| p.into_inner()).retain(|e| e.id != id);
            }
        })
    }

    pub(crate) fn report(&self) -> HealthReport {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let endpoints: Vec<EndpointHealth> = entries
            .iter()
            .map(|e| {
                let lease = *e.lease.borrow();
                let state = if e.draining.load(Ordering::Relaxed) {
                    EndpointState::Draining
                } else if e.registered && !lease.live {
                    EndpointState::LeaseLost
                } else {
                    EndpointState::Serving
                };
                let [namespace, component, endpoint] = e.names.clone();
                EndpointHealth { namespace, component, endpoint, instance: lease.id.to_string(), state }
            })
            .collect();
        HealthReport { healthy: endpoints.iter().all(|e| e.state == EndpointState::Serving), endpoints }
    }
}

/// Serves `/metrics`, `/health` and `/live` on `addr` until the returned
/// guard is dropped.
pub(crate) async fn start(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<HealthRegistry>,
) -> Result<(SocketAddr, Guard), Error> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config(format!("cannot serve status on {addr} (ROTOR_STATUS_ADDR): {e}")))?;
    let bound = listener.local_addr().map_err(|e| Error::Config(e.to_string()))?;
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics.render()) }
            }),
        )
        .route(
            "/health",
            get(move || {
                let health = health.clone();
                async move {
                    let report = health.report();
                    let status =
                        if report.healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                    (status, axum::Json(report)).into_response()
                }
            }),
        )
        .route("/live", get(|| async { "live" }));
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopped.cancelled_owned()).await {
            tracing::warn!(error = %e, "the status server stopped");
        }
    });
    tracing::info!(address = %bound, "status server: /metrics /health /live");
    Ok((bound, Guard::new(move || stop.cancel())))
}
