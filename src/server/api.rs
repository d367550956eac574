//! The JSON API under `/api/v1/` for other programs: `Authorization: Bearer <access token>` issued
//! by the realm, or the browser session. Same rules as the UI and the server functions; the user
//! directory needs the level `otp` besides (catalogue AA04, RFC 9470's challenge).

use crate::server::state::AppState;
use axum::extract::{DefaultBodyLimit, Query};
use axum::routing::{any, get};
use axum::{Json, Router};
use keycloak_bff::core::directory::DirectoryPage;
use keycloak_bff::server::ApiUser;
use keycloak_bff::{AppError, KeycloakUser};
use serde::Deserialize;

/// `GET /api/v1/me`: who is calling.
async fn me(ApiUser { user, .. }: ApiUser) -> Json<KeycloakUser> {
    Json(user)
}

#[derive(Deserialize)]
struct UsersQuery {
    #[serde(default)]
    search: String,
    #[serde(default)]
    page: u32,
    per_page: Option<u32>,
}

/// `GET /api/v1/users?search=&page=&per_page=`: the user directory for other programs. For
/// admins whose sign-in reached the level `otp` (the password and the authenticator's code);
/// a weaker token or session gets RFC 9470's challenge (`acr_values="otp"`).
async fn users(
    caller: ApiUser,
    query: Result<Query<UsersQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DirectoryPage>, AppError> {
    let Query(q) = query.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let page = caller
        .search_directory(
            &crate::policy::user_directory(),
            crate::policy::STRONG_SIGN_IN,
            &q.search,
            q.page,
            q.per_page,
        )
        .await?;
    Ok(Json(page))
}

async fn not_found() -> AppError {
    AppError::NotFound
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me", get(me))
        .route("/api/v1/users", get(users))
        .merge(crate::notes::rest::router())
        .route("/api/v1/{*rest}", any(not_found))
        .layer(DefaultBodyLimit::max(16 * 1024))
}
