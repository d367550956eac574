//! What orchestrators and load balancers ask: `GET /health/live` (the process answers),
//! `GET /health/ready` (the session store answers and Keycloak's discovery document is known;
//! 503 with the part that is not ready), and `GET /metrics` (Prometheus text format), unless
//! `auth.metrics_addr` moves it to an address of its own.

use crate::server::web::state::KeycloakAuth;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

pub async fn live() -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"status": "live"})),
    )
        .into_response()
}

pub async fn ready(State(auth): State<KeycloakAuth>) -> Response {
    let store = auth.store().is_ready().await;
    let keycloak = auth.oidc().provider().await.is_ok();
    let word = |ok: bool| if ok { "ready" } else { "unavailable" };
    let status = if store && keycloak {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "status": word(store && keycloak),
            "store": word(store),
            "keycloak": word(keycloak),
        })),
    )
        .into_response()
}

pub async fn metrics(State(auth): State<KeycloakAuth>) -> Response {
    auth.metrics().response()
}
