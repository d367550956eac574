//! The auth routes: `GET /auth/login`, `GET /auth/callback`, `POST /auth/logout`, and the plain
//! server-rendered pages for their errors. Bad input gets a 4xx page with a plain message; an
//! unreachable Keycloak gets 503; nothing here panics or signs out a good session.

use crate::auth::pending::PendingLogin;
use crate::auth::unix_now;
use crate::auth::{callback, return_to};
use crate::server::oidc::OidcError;
use crate::server::session::{
    auth_session, keep_session_end, pending_logins, AuthSession, AUTH_KEY, PENDING_KEY,
};
use crate::server::state::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use tower_sessions::Session;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A small, complete page in the app's style, for answers outside the Leptos router.
pub fn message_page(
    status: StatusCode,
    title: &str,
    message: &str,
    actions: &[(&str, &str)],
) -> Response {
    let links: String = actions
        .iter()
        .map(|(href, label)| {
            format!(
                r#"<a class="button" rel="external" href="{}">{}</a>"#,
                escape(href),
                escape(label)
            )
        })
        .collect();
    let body = format!(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"/><meta name="viewport" content="width=device-width, initial-scale=1"/><title>{title} · kc-leptos</title><link rel="stylesheet" href="/pkg/kc-leptos.css"/></head><body><header class="topbar"><a class="brand" href="/">kc-leptos</a></header><main class="page"><section class="card notice" data-status="{code}"><h1>{title}</h1><p>{message}</p><div class="actions">{links}</div></section></main></body></html>"#,
        title = escape(title),
        message = escape(message),
        code = status.as_u16(),
    );
    (status, [(header::CACHE_CONTROL, "no-store")], Html(body)).into_response()
}

fn login_href(return_to: &str) -> String {
    format!(
        "/auth/login?return_to={}",
        url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect::<String>()
    )
}

pub fn idp_unavailable(return_to: &str) -> Response {
    message_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Identity provider unavailable",
        "Sign-in is handled by Keycloak, which cannot be reached right now. Nothing is lost: \
         try again in a moment.",
        &[(&login_href(return_to), "Try again"), ("/", "Home")],
    )
}

fn internal_error() -> Response {
    message_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The server could not finish this request. Please try again.",
        &[("/", "Home")],
    )
}

#[derive(Deserialize)]
pub struct LoginQuery {
    return_to: Option<String>,
}

/// Starts the authorization code flow: PKCE S256, `state` and `nonce` are kept server-side in the
/// browser's pre-login session, and used once.
pub async fn login(
    State(state): State<AppState>,
    session: Session,
    query: Result<Query<LoginQuery>, QueryRejection>,
) -> Response {
    let return_to = return_to::sanitize(query.ok().and_then(|q| q.0.return_to).as_deref());
    let provider = match state.oidc.provider().await {
        Ok(p) => p,
        Err(_) => return idp_unavailable(&return_to),
    };
    let request = match state
        .oidc
        .authorization_request(&provider, &state.redirect_uri())
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the authorization request");
            return internal_error();
        }
    };
    let now = unix_now();
    let mut pending = pending_logins(&session).await;
    pending.push(
        PendingLogin {
            state: request.state,
            nonce: request.nonce,
            pkce_verifier: request.pkce_verifier,
            return_to,
            created_at: now,
        },
        now,
        state.settings.session.pending_login_ttl_secs,
        state.settings.session.max_pending_logins,
    );
    if let Err(e) = session.insert(PENDING_KEY, &pending).await {
        tracing::error!(error = %e, "cannot store the pending login");
        return internal_error();
    }
    // A signed-in browser that starts another login keeps its session's end.
    if let Some(auth) = auth_session(&session, now).await {
        keep_session_end(&session, &auth);
    }
    Redirect::to(request.url.as_str()).into_response()
}

fn sign_in_failed(message: &str, return_to: &str) -> Response {
    message_page(
        StatusCode::BAD_REQUEST,
        "Sign-in failed",
        message,
        &[(&login_href(return_to), "Sign in again"), ("/", "Home")],
    )
}

/// Finishes the code flow: checks `state` (once), `iss`, exchanges the code with the PKCE verifier,
/// validates the tokens, rotates the session id and stores the tokens server-side.
pub async fn callback(
    State(state): State<AppState>,
    session: Session,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = match callback::parse(&raw.unwrap_or_default()) {
        Ok(q) => q,
        Err(e) => return sign_in_failed(&e.to_string(), "/"),
    };
    let state_param = query.state.as_str();
    let now = unix_now();
    let ttl = state.settings.session.pending_login_ttl_secs;
    let mut pending = pending_logins(&session).await;
    let Some(login) = pending.take(state_param, now, ttl) else {
        tracing::info!("callback with an unknown, expired or used state");
        return sign_in_failed(
            "This sign-in attempt is unknown, has expired or was already used. Please start again.",
            "/",
        );
    };
    // The state is spent whatever happens next.
    let saved = if pending.is_empty() {
        session.remove_value(PENDING_KEY).await.map(|_| ())
    } else {
        session.insert(PENDING_KEY, &pending).await
    };
    if let Err(e) = saved {
        tracing::error!(error = %e, "cannot update the pending logins");
        return internal_error();
    }
    if let Some(error) = query.error.as_deref() {
        let known = matches!(
            error,
            "access_denied"
                | "login_required"
                | "consent_required"
                | "interaction_required"
                | "temporarily_unavailable"
                | "invalid_request"
                | "server_error"
        );
        tracing::info!(
            error = if known { error } else { "other" },
            "Keycloak returned an error"
        );
        return match error {
            "temporarily_unavailable" | "server_error" => idp_unavailable(&login.return_to),
            "access_denied" => {
                sign_in_failed("Sign-in was cancelled or refused.", &login.return_to)
            }
            _ => sign_in_failed("Keycloak could not sign you in.", &login.return_to),
        };
    }
    if let Some(iss) = query.iss.as_deref() {
        if iss != state.oidc.issuer() {
            tracing::warn!("callback iss does not match the configured issuer");
            return sign_in_failed(
                "The sign-in response came from an unexpected issuer.",
                &login.return_to,
            );
        }
    }
    let Some(code) = query.code.as_deref() else {
        return sign_in_failed(
            "The sign-in response had no authorization code.",
            &login.return_to,
        );
    };
    let provider = match state.oidc.provider().await {
        Ok(p) => p,
        Err(_) => return idp_unavailable(&login.return_to),
    };
    let result = async {
        let tokens = state
            .oidc
            .exchange_code(&provider, code, &login.pkce_verifier, &state.redirect_uri())
            .await?;
        state
            .oidc
            .validate_login(&provider, tokens, &login.nonce, now)
            .await
    }
    .await;
    let auth = match result {
        Ok(v) => v,
        Err(OidcError::Unavailable(e)) => {
            tracing::warn!(error = %e, "token exchange failed: identity provider unavailable");
            return idp_unavailable(&login.return_to);
        }
        Err(e) => {
            tracing::warn!(error = %e, "login rejected");
            return sign_in_failed("Keycloak's answer could not be accepted.", &login.return_to);
        }
    };
    // Session fixation: whatever id the browser came with, the signed-in session gets a new one.
    if let Err(e) = session.cycle_id().await {
        tracing::error!(error = %e, "cannot rotate the session id");
        return internal_error();
    }
    tracing::info!(subject = %auth.user.subject, "signed in");
    if let Err(e) = session.insert(AUTH_KEY, &auth).await {
        tracing::error!(error = %e, "cannot store the signed-in session");
        return internal_error();
    }
    keep_session_end(&session, &auth);
    Redirect::to(&login.return_to).into_response()
}

/// Signs out: wipes the local session first, then sends the browser to Keycloak's end-session
/// endpoint with `id_token_hint`, `post_logout_redirect_uri` and `state`. POST only, behind the
/// origin check.
pub async fn logout(State(state): State<AppState>, session: Session) -> Response {
    // Even an expired session's ID token is a valid hint for Keycloak; an unreadable record is
    // simply signed out.
    let auth = session.get::<AuthSession>(AUTH_KEY).await.ok().flatten();
    if let Err(e) = session.flush().await {
        tracing::error!(error = %e, "cannot delete the session");
        return internal_error();
    }
    let Some(auth) = auth else {
        return Redirect::to("/").into_response();
    };
    tracing::info!(subject = %auth.user.subject, "signed out");
    let end_session = match state.oidc.provider().await {
        Ok(p) => p.end_session_endpoint.clone(),
        Err(_) => None,
    };
    let Some(mut url) = end_session else {
        return Redirect::to("/").into_response();
    };
    let logout_state = openidconnect::CsrfToken::new_random();
    url.query_pairs_mut()
        .append_pair("id_token_hint", &auth.id_token)
        .append_pair("post_logout_redirect_uri", &state.settings.absolute("/"))
        .append_pair("client_id", state.oidc.client_id())
        .append_pair("state", logout_state.secret());
    Redirect::to(url.as_str()).into_response()
}

/// The silent refresh: refreshes the session's tokens if they expire within the margin and
/// answers the signed-in user and the new expiry. Same-origin only; never returns a token.
/// 200 signed in, 401 signed out (or the session just ended), 503 Keycloak unavailable.
pub async fn refresh(State(state): State<AppState>, session: Session) -> Response {
    use crate::error::AppError;
    use crate::server::refresh::fresh_auth;
    let json = |status: StatusCode, body: serde_json::Value| {
        (
            status,
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(body),
        )
            .into_response()
    };
    match fresh_auth(&state, &session, unix_now()).await {
        Ok(Some(auth)) => json(
            StatusCode::OK,
            serde_json::json!({
                "signed_in": true,
                "access_expires_at": auth.access_expires_at,
                "session_expires_at": auth.user.session_expires_at,
                "user": auth.user,
            }),
        ),
        Ok(None) => json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({ "signed_in": false }),
        ),
        Err(AppError::IdpUnavailable) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "error": "identity provider unavailable" }),
        ),
        Err(_) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({ "error": "internal error" }),
        ),
    }
}
