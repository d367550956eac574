//! Back-channel logout: Keycloak tells the app that a Keycloak session ended (the user signed out
//! elsewhere, an admin ended the session, it timed out), and the app deletes every session bound to
//! it. `POST <prefix>/backchannel-logout` with a form field `logout_token`.
//!
//! Front-channel logout, an option (`session.frontchannel_logout`) for deployments where Keycloak
//! cannot reach the app: Keycloak's logout page loads `GET <prefix>/frontchannel-logout?iss=…&sid=…`
//! in an iframe of the user's browser, and the app ends the sessions of that Keycloak session.

use crate::error::AppError;
use crate::server::base::clock::unix_now;
use crate::server::keycloak_api::upstream_tokens::UpstreamTokens;
use crate::server::oidc::keys::Source;
use crate::server::web::deferred::end_sessions_later;
use crate::server::web::state::KeycloakAuth;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use keycloak_bff_core::jwt::{self, LogoutTarget, TokenError};

/// Larger bodies are refused before parsing (catalogue F05).
pub const MAX_LOGOUT_BODY: usize = 16 * 1024;

fn refused(auth: &KeycloakAuth, why: &str) -> Response {
    tracing::info!(reason = why, "back-channel logout refused");
    auth.metrics().backchannel("refused");
    AppError::BadRequest("invalid logout token".into()).into_response()
}

async fn validate(auth: &KeycloakAuth, token: &str, now: i64) -> Result<LogoutTarget, TokenError> {
    let oidc = auth.oidc();
    let header = jwt::parse_header(token, oidc.algorithms())?;
    jwt::check_logout_header(&header)?;
    let provider = oidc.provider().await.map_err(|_| TokenError::UnknownKey)?;
    let (_, claims) = oidc
        .keys()
        .verify(
            &provider.jwks_uri,
            token,
            oidc.algorithms(),
            Source::Untrusted,
        )
        .await?;
    jwt::check_logout_claims(
        &claims,
        oidc.issuer(),
        oidc.client_id(),
        oidc.leeway_secs(),
        now,
    )
}

/// Every answer closes the connection: Keycloak keeps back-channel connections in a pool and
/// does not retry a delivery, so a pooled connection to a server that has since gone (a restart,
/// another replica) would lose the next logout ("failed to respond").
pub async fn backchannel_logout(State(auth): State<KeycloakAuth>, body: Body) -> Response {
    let mut response = handle(&auth, body).await;
    response.headers_mut().insert(
        header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

async fn handle(auth: &KeycloakAuth, body: Body) -> Response {
    let body: Bytes = match axum::body::to_bytes(body, MAX_LOGOUT_BODY).await {
        Ok(b) => b,
        Err(_) => return refused(auth, "body too large or unreadable"),
    };
    let Some(token) = jwt::logout_token_from_form(&body) else {
        return refused(auth, "exactly one logout_token is required");
    };
    let now = unix_now();
    let target = match validate(auth, &token, now).await {
        Ok(t) => t,
        Err(e) => return refused(auth, &e.to_string()),
    };
    // Keycloak never sends a logout again: when the store does not answer, the sessions are
    // ended once it does (`deferred`), and Keycloak is told 503 (its log shows the delay).
    match auth.store().first_use_of_logout_token(&target, now).await {
        Ok(true) => {}
        Ok(false) => return refused(auth, "replayed logout token"),
        Err(e) => {
            tracing::error!(error = %e, "back-channel logout could not check the token id; ending its sessions when the store answers");
            end_sessions_later(auth, target.sid.clone(), target.sub.clone());
            return AppError::StoreUnavailable.into_response();
        }
    }
    match auth
        .store()
        .end_app_sessions_of(target.sid.as_deref(), target.sub.as_deref(), now)
        .await
    {
        Ok(deleted) => {
            auth.metrics().backchannel("accepted");
            if let (Some(remote), Some(sid)) = (auth.remote_apis(), target.sid.as_deref()) {
                // Tokens exchanged for the ended Keycloak session go with it.
                remote
                    .tokens
                    .forget(&UpstreamTokens::session_key(Some(sid), ""));
            }
            tracing::info!(sessions = deleted, "back-channel logout");
            (
                StatusCode::OK,
                [(header::CACHE_CONTROL, "no-store")],
                axum::Json(serde_json::json!({})),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "back-channel logout could not delete sessions; ending them when the store answers");
            end_sessions_later(auth, target.sid.clone(), target.sub.clone());
            AppError::StoreUnavailable.into_response()
        }
    }
}

#[derive(serde::Deserialize)]
pub struct FrontChannelQuery {
    iss: Option<String>,
    sid: Option<String>,
}

/// The longest `sid` accepted (Keycloak's are UUID-like).
const MAX_SID_LEN: usize = 255;

/// `GET <prefix>/frontchannel-logout?iss=…&sid=…` (OpenID Connect Front-Channel Logout 1.0):
/// `iss` must be the configured issuer and `sid` must be given; every session of that Keycloak
/// session ends. The answer is a tiny page that only Keycloak's origin may frame, never cached.
pub async fn frontchannel_logout(
    State(auth): State<KeycloakAuth>,
    query: Result<
        axum::extract::Query<FrontChannelQuery>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Response {
    let query = query.map(|q| q.0).ok();
    let iss = query.as_ref().and_then(|q| q.iss.as_deref());
    let sid = query
        .as_ref()
        .and_then(|q| q.sid.as_deref())
        .filter(|s| !s.is_empty() && s.len() <= MAX_SID_LEN);
    if !auth.frontchannel_limiter().admit(unix_now()) {
        tracing::debug!("front-channel logout refused: too many requests");
        auth.metrics().frontchannel("limited");
        return framed(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many front-channel logouts right now.",
        );
    }
    let Some(sid) = sid.filter(|_| iss == Some(auth.oidc().issuer())) else {
        tracing::debug!(
            iss_matches = iss == Some(auth.oidc().issuer()),
            "front-channel logout refused"
        );
        auth.metrics().frontchannel("refused");
        return framed(
            StatusCode::BAD_REQUEST,
            "Front-channel logout refused: iss must be this app's issuer and sid is required.",
        );
    };
    // Unauthenticated (the specification has nothing to check): a sid no app session is bound
    // to is looked up and forgotten, never stored.
    match auth
        .store()
        .end_app_sessions_of_bound_sid(sid, unix_now())
        .await
    {
        Ok(deleted) => {
            auth.metrics().frontchannel("accepted");
            tracing::info!(sessions = deleted, "front-channel logout");
            framed(StatusCode::OK, "Signed out.")
        }
        Err(e) => {
            tracing::error!(error = %e, "front-channel logout could not delete sessions");
            framed(
                StatusCode::SERVICE_UNAVAILABLE,
                "The sessions could not be ended right now.",
            )
        }
    }
}

/// The front-channel logout's answer: a page Keycloak's logout page may frame.
fn framed(status: StatusCode, message: &str) -> Response {
    let mut response = (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::response::Html(format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"/><title>Logout</title></head><body><p>{message}</p></body></html>"
        )),
    )
        .into_response();
    response
        .extensions_mut()
        .insert(crate::server::web::middleware::FramedByIssuer);
    response
}
