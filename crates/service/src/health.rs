//! The plain-HTTP operations port: `/healthz` (the process serves), `/readyz` (the scanner
//! answers) and `/metrics` (Prometheus). It carries no container data, so it needs no TLS or
//! authentication; the NetworkPolicy limits who reaches it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::metrics::Metrics;
use super::scan_pool::ScanPool;
use scanner_proto::ScanRequest;

/// How long `/readyz` waits for the scanner (kubelet's probe timeout is usually 1 s or more).
const READY_TIMEOUT: Duration = Duration::from_secs(3);

/// A well-formed ID no container has: the scanner answers it with one filtered CRI list
/// and nothing else, which checks the socket, the scanner and its CRI connection.
const PROBE_ID: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Clone)]
pub struct HealthState {
    pub pool: Arc<ScanPool>,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: HealthState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<HealthState>) -> Response {
    let req = ScanRequest {
        container_ids: vec![PROBE_ID.to_owned()],
        list_only: true,
    };
    let socket = s.pool.socket().to_owned();
    let answer = tokio::time::timeout(READY_TIMEOUT, scanner_proto::request(&socket, &req)).await;
    match answer {
        Ok(Ok(resp)) if resp.error.is_none() => (StatusCode::OK, "ok\n").into_response(),
        Ok(Ok(resp)) => not_ready(format!(
            "scanner error: {}",
            resp.error.map(|e| e.to_string()).unwrap_or_default()
        )),
        Ok(Err(e)) => not_ready(format!("scanner unreachable at {}: {e}", socket.display())),
        Err(_) => not_ready(format!("scanner did not answer within {READY_TIMEOUT:?}")),
    }
}

fn not_ready(reason: String) -> Response {
    tracing::debug!(%reason, "not ready");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("not ready: {reason}\n"),
    )
        .into_response()
}

async fn metrics(State(s): State<HealthState>) -> Response {
    match s.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
