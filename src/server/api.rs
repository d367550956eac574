//! The JSON API under `/api/v1/` for other programs: `Authorization: Bearer <access token>` issued
//! by the realm, or the browser session. Same rules as the UI and the server functions.

use crate::server::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get};
use axum::{Json, Router};
use keycloak_bff::server::ApiUser;
use keycloak_bff::{AppError, KeycloakUser};

/// `GET /api/v1/me`: who is calling.
async fn me(ApiUser(user): ApiUser) -> Json<KeycloakUser> {
    Json(user)
}

async fn not_found() -> AppError {
    AppError::NotFound
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me", get(me))
        .merge(crate::notes::rest::router())
        .route("/api/v1/{*rest}", any(not_found))
        .layer(DefaultBodyLimit::max(16 * 1024))
}
