//! Back-channel logout: Keycloak tells the app that a Keycloak session ended (the user signed out
//! elsewhere, an admin ended the session, it timed out), and the app deletes every session bound to
//! it. `POST /auth/backchannel-logout` with a form field `logout_token`.

use crate::auth::jwt::{self, LogoutTarget, TokenError};
use crate::auth::unix_now;
use crate::server::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

/// Larger bodies are refused before parsing (catalogue F05).
pub const MAX_LOGOUT_BODY: usize = 16 * 1024;

/// Logout token ids already used, until they would be refused as too old anyway.
#[derive(Default)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<String, i64>>,
}

impl ReplayGuard {
    /// Records `target.jti`; false when it was seen before (a replay).
    pub fn first_use(&self, target: &LogoutTarget, now: i64) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        seen.retain(|_, until| *until > now);
        if seen.len() > 100_000 {
            return false; // refuse rather than grow without bound under a flood
        }
        seen.insert(target.jti.clone(), target.replay_until)
            .is_none()
    }
}

fn answer(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_TYPE, "application/json"),
        ],
        body,
    )
        .into_response()
}

fn bad_request(why: &str) -> Response {
    tracing::info!(reason = why, "back-channel logout refused");
    answer(
        StatusCode::BAD_REQUEST,
        r#"{"error":"invalid_request","error_description":"invalid logout token"}"#,
    )
}

async fn validate(state: &AppState, token: &str, now: i64) -> Result<LogoutTarget, TokenError> {
    let header = jwt::parse_header(token, &state.settings.keycloak.algorithms)?;
    jwt::check_logout_header(&header)?;
    let provider = state
        .oidc
        .provider()
        .await
        .map_err(|_| TokenError::UnknownKey)?;
    let (_, claims) = state
        .oidc
        .keys
        .verify(
            &provider.jwks_uri,
            token,
            &state.settings.keycloak.algorithms,
        )
        .await?;
    jwt::check_logout_claims(
        &claims,
        state.oidc.issuer(),
        state.oidc.client_id(),
        state.settings.keycloak.leeway_secs,
        now,
    )
}

pub async fn backchannel_logout(State(state): State<AppState>, body: Body) -> Response {
    let body: Bytes = match axum::body::to_bytes(body, MAX_LOGOUT_BODY).await {
        Ok(b) => b,
        Err(_) => return bad_request("body too large or unreadable"),
    };
    let Some(token) = jwt::logout_token_from_form(&body) else {
        return bad_request("exactly one logout_token is required");
    };
    let now = unix_now();
    let target = match validate(&state, &token, now).await {
        Ok(t) => t,
        Err(e) => return bad_request(&e.to_string()),
    };
    if !state.logout_replays.first_use(&target, now) {
        return bad_request("replayed logout token");
    }
    match state
        .store
        .end_keycloak_session(target.sid.as_deref(), target.sub.as_deref(), now)
        .await
    {
        Ok(deleted) => {
            state
                .metrics
                .backchannel_logouts
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(sessions = deleted, "back-channel logout");
            answer(StatusCode::OK, "{}")
        }
        Err(e) => {
            tracing::error!(error = %e, "back-channel logout could not delete sessions");
            answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"error":"server_error"}"#,
            )
        }
    }
}
