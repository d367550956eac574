//! The JSON API under `/api/v1/` for other programs: `Authorization: Bearer <access token>` issued
//! by the realm, or the browser session. Same rules as the UI and the server functions.
//!
//! Answers (RFC 6750): 401 with `WWW-Authenticate: Bearer error="invalid_token"` for a bad token,
//! 403 with `error="insufficient_scope"` for a missing role, a short JSON reason in both; never a
//! 500 for bad input.

use crate::auth::jwt::MAX_TOKEN_BYTES;
use crate::auth::unix_now;
use crate::error::AppError;
use crate::notes::{clean_body, Note};
use crate::policy;
use crate::server::db;
use crate::server::oidc::OidcError;
use crate::server::refresh::fresh_auth;
use crate::server::state::AppState;
use crate::user::{Access, KeycloakUser, Rule};
use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

/// Why an API request was refused.
#[derive(Debug)]
pub enum ApiError {
    /// No credentials at all.
    NoCredentials,
    /// A bearer token that is not acceptable; the reason is safe to show.
    InvalidToken(String),
    /// Authenticated, but the rule does not allow it.
    InsufficientScope,
    /// Keycloak is needed and cannot be reached.
    Unavailable,
    BadRequest(String),
    NotFound,
    Internal,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, challenge, body) = match self {
            ApiError::NoCredentials => (
                StatusCode::UNAUTHORIZED,
                Some(r#"Bearer realm="kc-leptos""#.to_owned()),
                json!({"error": "unauthorized", "error_description": "a bearer token or a session is required"}),
            ),
            ApiError::InvalidToken(reason) => (
                StatusCode::UNAUTHORIZED,
                Some(format!(
                    r#"Bearer realm="kc-leptos", error="invalid_token", error_description="{}""#,
                    reason.replace(['"', '\\'], "")
                )),
                json!({"error": "invalid_token", "error_description": reason}),
            ),
            ApiError::InsufficientScope => (
                StatusCode::FORBIDDEN,
                Some(r#"Bearer realm="kc-leptos", error="insufficient_scope""#.to_owned()),
                json!({"error": "insufficient_scope", "error_description": "a role this request needs is missing"}),
            ),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                json!({"error": "temporarily_unavailable", "error_description": "identity provider unavailable"}),
            ),
            ApiError::BadRequest(reason) => (
                StatusCode::BAD_REQUEST,
                None,
                json!({"error": "invalid_request", "error_description": reason}),
            ),
            ApiError::NotFound => (StatusCode::NOT_FOUND, None, json!({"error": "not_found"})),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
                json!({"error": "server_error"}),
            ),
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::NotSignedIn => ApiError::NoCredentials,
            AppError::Forbidden => ApiError::InsufficientScope,
            AppError::IdpUnavailable => ApiError::Unavailable,
            AppError::BadRequest(m) => ApiError::BadRequest(m),
            AppError::NotFound => ApiError::NotFound,
            AppError::Internal | AppError::ServerFn(_) => ApiError::Internal,
        }
    }
}

/// The caller of an API request: a bearer token's subject, or the browser session's user.
pub struct ApiUser(pub KeycloakUser);

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let now = unix_now();
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            // A request that presents a token is judged by that token alone.
            if value.len() > MAX_TOKEN_BYTES + 16 {
                return Err(ApiError::InvalidToken("token too large".into()));
            }
            let text = value
                .to_str()
                .map_err(|_| ApiError::InvalidToken("malformed Authorization header".into()))?;
            let token = match text.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
                _ => return Err(ApiError::InvalidToken("expected a Bearer token".into())),
            };
            return match state.oidc.validate_bearer(token, now).await {
                Ok(user) => Ok(ApiUser(user)),
                Err(OidcError::Unavailable(_)) => Err(ApiError::Unavailable),
                Err(e) => {
                    tracing::info!(error = %e, "bearer token refused");
                    Err(ApiError::InvalidToken(match e {
                        OidcError::InvalidToken(t) => t.to_string(),
                        _ => "token not accepted".into(),
                    }))
                }
            };
        }
        let session = tower_sessions::Session::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::Internal)?;
        match fresh_auth(state, &session, now).await {
            Ok(Some(auth)) => Ok(ApiUser(auth.user)),
            Ok(None) => Err(ApiError::NoCredentials),
            Err(e) => Err(e.into()),
        }
    }
}

fn require(user: &KeycloakUser, rule: &Rule) -> Result<(), ApiError> {
    match rule.check(Some(user)) {
        Access::Allowed => Ok(()),
        Access::NotSignedIn => Err(ApiError::NoCredentials),
        Access::Forbidden => Err(ApiError::InsufficientScope),
    }
}

fn db_error(e: sqlx::Error) -> ApiError {
    tracing::error!(error = %e, "notes database");
    ApiError::Internal
}

/// `GET /api/v1/me`: who is calling.
async fn me(ApiUser(user): ApiUser) -> Json<KeycloakUser> {
    Json(user)
}

/// `GET /api/v1/notes`: the notes (rule: read notes).
async fn list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> Result<Json<Vec<Note>>, ApiError> {
    require(&user, &policy::read_notes())?;
    Ok(Json(db::list_notes(&state.db).await.map_err(db_error)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewNote {
    body: String,
}

/// `POST /api/v1/notes` with `{"body": "..."}`: creates a note (rule: create notes).
async fn create(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    body: Result<Json<NewNote>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Note>), ApiError> {
    require(&user, &policy::create_notes())?;
    let Json(new) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let text = clean_body(&new.body)?;
    let note = db::create_note(
        &state.db,
        &text,
        &user.subject,
        &user.display_name,
        unix_now(),
    )
    .await
    .map_err(db_error)?;
    Ok((StatusCode::CREATED, Json(note)))
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me", get(me))
        .route("/api/v1/notes", get(list).post(create))
        .route("/api/v1/{*rest}", axum::routing::any(not_found))
        .layer(DefaultBodyLimit::max(16 * 1024))
}
