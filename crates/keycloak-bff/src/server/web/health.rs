//! What orchestrators, load balancers and operators ask. On the app's public port:
//! `GET /health/live` (the process answers) and `GET /health/ready` (one word: the session store
//! answers and Keycloak's discovery document is known, or not). On `auth.metrics_addr` only
//! (loopback by default): `GET /metrics` (Prometheus text format) and `GET /health/ready` with
//! the part that is not ready. The refusal counters tell apart what the API's single 401 hides,
//! and the stream gauge counts active users: neither is for the public.

use crate::server::web::state::KeycloakAuth;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

pub async fn live() -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"status": "live"})),
    )
        .into_response()
}

/// Whether the store and Keycloak are ready: `(store, keycloak)`.
async fn readiness(auth: &KeycloakAuth) -> (bool, bool) {
    let store = auth.store().is_ready().await;
    let keycloak = auth.oidc().provider().await.is_ok();
    (store, keycloak)
}

fn status_of(ready: bool) -> StatusCode {
    if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// The public readiness probe: "ready" or "not ready", naming no part.
pub async fn ready(State(auth): State<KeycloakAuth>) -> Response {
    let (store, keycloak) = readiness(&auth).await;
    let ready = store && keycloak;
    (
        status_of(ready),
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"status": if ready { "ready" } else { "not ready" }})),
    )
        .into_response()
}

/// The operators' readiness probe: which part is not ready.
async fn ready_in_detail(State(auth): State<KeycloakAuth>) -> Response {
    let (store, keycloak) = readiness(&auth).await;
    let word = |ok: bool| if ok { "ready" } else { "unavailable" };
    (
        status_of(store && keycloak),
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "status": if store && keycloak { "ready" } else { "not ready" },
            "store": word(store),
            "keycloak": word(keycloak),
        })),
    )
        .into_response()
}

async fn metrics(State(auth): State<KeycloakAuth>) -> Response {
    auth.metrics().response()
}

/// The routes of `auth.metrics_addr`: `/metrics`, `/health/live` and the detailed
/// `/health/ready`.
pub(crate) fn operator_routes() -> Router<KeycloakAuth> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready_in_detail))
}
