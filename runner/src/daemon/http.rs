//! `/healthz` and `/metrics` on the configured loopback address.
//!
//! `/healthz` answers 200 with a small JSON document while the daemon works (also while
//! draining), and 503 when no instance can take jobs any more (every runner token was
//! rejected). `/metrics` is the Prometheus text exposition.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::Shared;

async fn healthz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let (ok, body) = shared.health();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)],
        shared.metrics.encode(),
    )
}

/// Binds `addr` now (so a taken port is a startup error) and serves until `shutdown`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serves the endpoints on `listener`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(shared);
    let graceful = async move {
        while !*shutdown.borrow_and_update() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(graceful)
        .await
    {
        tracing::error!(error = %e, "the /metrics and /healthz server stopped");
    }
}
