//! The auth routes under the configured prefix (`/auth` by default): `GET <prefix>/login`,
//! `GET <prefix>/callback`, `POST <prefix>/logout`, `POST <prefix>/refresh`, and the plain
//! server-rendered pages for their errors. Bad input gets a 4xx page with a plain message; an
//! unreachable Keycloak gets 503; nothing here panics or signs out a good session. Every status
//! comes from [`AppError::status_code`].

use crate::error::AppError;
use crate::server::auth::KeycloakAuth;
use crate::server::oidc::{OidcError, Provider};
use crate::server::store::{
    auth_session, keep_session_end, pending_logins, AuthSession, AUTH_KEY, PENDING_KEY,
};
use crate::server::unix_now;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use keycloak_bff_core::callback;
use keycloak_bff_core::pending::PendingLogin;
use keycloak_bff_core::status::SessionStatus;
use keycloak_bff_core::ReturnTo;
use serde::Deserialize;
use tower_sessions::Session;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn status_of(error: &AppError) -> StatusCode {
    StatusCode::from_u16(error.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A small, complete page in the app's style, for answers outside the Leptos router. Its status
/// is `error`'s.
fn message_page(
    auth: &KeycloakAuth,
    error: &AppError,
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
    let status = status_of(error);
    let body = format!(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"/><meta name="viewport" content="width=device-width, initial-scale=1"/><title>{title} · {brand}</title><link rel="stylesheet" href="{css}"/></head><body><header class="topbar"><a class="brand" href="/">{brand}</a></header><main class="page"><section class="card notice" data-status="{code}"><h1>{title}</h1><p>{message}</p><div class="actions">{links}</div></section></main></body></html>"#,
        title = escape(title),
        message = escape(message),
        brand = escape(&auth.settings().brand),
        css = escape(auth.stylesheet()),
        code = status.as_u16(),
    );
    (status, [(header::CACHE_CONTROL, "no-store")], Html(body)).into_response()
}

fn idp_unavailable(auth: &KeycloakAuth, return_to: &ReturnTo) -> Response {
    let again = auth.ui_config().login_href(return_to.as_str());
    message_page(
        auth,
        &AppError::IdpUnavailable,
        "Identity provider unavailable",
        "Sign-in is handled by Keycloak, which cannot be reached right now. Nothing is lost: \
         try again in a moment.",
        &[(&again, "Try again"), ("/", "Home")],
    )
}

fn internal_error(auth: &KeycloakAuth) -> Response {
    message_page(
        auth,
        &AppError::Internal,
        "Something went wrong",
        "The server could not finish this request. Please try again.",
        &[("/", "Home")],
    )
}

fn sign_in_failed(auth: &KeycloakAuth, message: &str, return_to: &ReturnTo) -> Response {
    let again = auth.ui_config().login_href(return_to.as_str());
    message_page(
        auth,
        &AppError::BadRequest(message.to_owned()),
        "Sign-in failed",
        message,
        &[(&again, "Sign in again"), ("/", "Home")],
    )
}

#[derive(Deserialize)]
pub struct LoginQuery {
    return_to: Option<String>,
}

/// Starts the authorization code flow: PKCE S256, `state` and `nonce` are kept server-side in the
/// browser's pre-login session, and used once.
pub async fn login(
    State(auth): State<KeycloakAuth>,
    session: Session,
    query: Result<Query<LoginQuery>, QueryRejection>,
) -> Response {
    let return_to = ReturnTo::new(query.ok().and_then(|q| q.0.return_to).as_deref());
    let oidc = auth.oidc();
    let provider = match oidc.provider().await {
        Ok(p) => p,
        Err(_) => return idp_unavailable(&auth, &return_to),
    };
    let request = match oidc.authorization_request(&provider, &auth.redirect_uri()) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the authorization request");
            return internal_error(&auth);
        }
    };
    let now = unix_now();
    let session_settings = &auth.settings().session;
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
        session_settings.pending_login_ttl_secs,
        session_settings.max_pending_logins,
    );
    if let Err(e) = session.insert(PENDING_KEY, &pending).await {
        tracing::error!(error = %e, "cannot store the pending login");
        return internal_error(&auth);
    }
    // A signed-in browser that starts another login keeps its session's end.
    if let Some(signed_in) = auth_session(&session, now).await {
        keep_session_end(&session, &signed_in);
    }
    Redirect::to(request.url.as_str()).into_response()
}

/// Finishes the code flow: checks `state` (once), `iss`, exchanges the code with the PKCE verifier,
/// validates the tokens, rotates the session id and stores the tokens server-side.
pub async fn callback(
    State(auth): State<KeycloakAuth>,
    session: Session,
    RawQuery(raw): RawQuery,
) -> Response {
    let home = ReturnTo::home();
    let query = match callback::parse(&raw.unwrap_or_default()) {
        Ok(q) => q,
        Err(e) => return sign_in_failed(&auth, &e.to_string(), &home),
    };
    let now = unix_now();
    let login = match take_pending_login(&auth, &session, &query.state, now).await {
        Ok(login) => login,
        Err(response) => return response,
    };
    if let Some(error) = query.error.as_deref() {
        return keycloak_error_page(&auth, error, &login.return_to);
    }
    let provider = match auth.oidc().provider().await {
        Ok(p) => p,
        Err(_) => return idp_unavailable(&auth, &login.return_to),
    };
    if !iss_fits(&auth, &provider, query.iss.as_deref()) {
        return sign_in_failed(
            &auth,
            "The sign-in response came from an unexpected issuer.",
            &login.return_to,
        );
    }
    let Some(code) = query.code.as_deref() else {
        return sign_in_failed(
            &auth,
            "The sign-in response had no authorization code.",
            &login.return_to,
        );
    };
    let signed_in = match redeem(&auth, &provider, code, &login, now).await {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    match start_session(&session, &signed_in).await {
        Ok(()) => Redirect::to(login.return_to.as_str()).into_response(),
        Err(()) => internal_error(&auth),
    }
}

/// The pending login that `state` names, spent whatever happens next; an error page when it is
/// unknown, expired or used (catalogue A01, A02, A04).
async fn take_pending_login(
    auth: &KeycloakAuth,
    session: &Session,
    state: &str,
    now: i64,
) -> Result<PendingLogin, Response> {
    let ttl = auth.settings().session.pending_login_ttl_secs;
    let mut pending = pending_logins(session).await;
    let Some(login) = pending.take(state, now, ttl) else {
        tracing::info!("callback with an unknown, expired or used state");
        return Err(sign_in_failed(
            auth,
            "This sign-in attempt is unknown, has expired or was already used. Please start again.",
            &ReturnTo::home(),
        ));
    };
    let saved = if pending.is_empty() {
        session.remove_value(PENDING_KEY).await.map(|_| ())
    } else {
        session.insert(PENDING_KEY, &pending).await
    };
    match saved {
        Ok(()) => Ok(login),
        Err(e) => {
            tracing::error!(error = %e, "cannot update the pending logins");
            Err(internal_error(auth))
        }
    }
}

/// The page for Keycloak's `error=` (catalogue A05).
fn keycloak_error_page(auth: &KeycloakAuth, error: &str, return_to: &ReturnTo) -> Response {
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
    match error {
        "temporarily_unavailable" | "server_error" => idp_unavailable(auth, return_to),
        "access_denied" => sign_in_failed(auth, "Sign-in was cancelled or refused.", return_to),
        _ => sign_in_failed(auth, "Keycloak could not sign you in.", return_to),
    }
}

/// RFC 9207 (catalogue A06): the response's `iss` is the configured issuer, and is there
/// whenever the provider says it sends it.
fn iss_fits(auth: &KeycloakAuth, provider: &Provider, iss: Option<&str>) -> bool {
    let fits = match iss {
        Some(iss) => iss == auth.oidc().issuer(),
        None => !provider.iss_parameter_supported,
    };
    if !fits {
        tracing::warn!(
            present = iss.is_some(),
            "callback iss does not match the configured issuer"
        );
    }
    fits
}

/// Exchanges the code with the login's PKCE verifier and validates the tokens.
async fn redeem(
    auth: &KeycloakAuth,
    provider: &Provider,
    code: &str,
    login: &PendingLogin,
    now: i64,
) -> Result<AuthSession, Response> {
    let oidc = auth.oidc();
    let result = async {
        let tokens = oidc
            .exchange_code(provider, code, &login.pkce_verifier, &auth.redirect_uri())
            .await?;
        oidc.validate_login(provider, tokens, &login.nonce, now)
            .await
    }
    .await;
    result.map_err(|e| match e {
        OidcError::Unavailable(e) => {
            tracing::warn!(error = %e, "token exchange failed: identity provider unavailable");
            idp_unavailable(auth, &login.return_to)
        }
        e => {
            tracing::warn!(error = %e, "login rejected");
            sign_in_failed(
                auth,
                "Keycloak's answer could not be accepted.",
                &login.return_to,
            )
        }
    })
}

/// Stores the signed-in session under a new id (session fixation: whatever id the browser came
/// with, the signed-in session gets a new one), to end when Keycloak's session does.
async fn start_session(session: &Session, signed_in: &AuthSession) -> Result<(), ()> {
    if let Err(e) = session.cycle_id().await {
        tracing::error!(error = %e, "cannot rotate the session id");
        return Err(());
    }
    tracing::info!(subject = %signed_in.user.subject, "signed in");
    if let Err(e) = session.insert(AUTH_KEY, signed_in).await {
        tracing::error!(error = %e, "cannot store the signed-in session");
        return Err(());
    }
    keep_session_end(session, signed_in);
    Ok(())
}

/// Signs out: wipes the local session first, then sends the browser to Keycloak's end-session
/// endpoint with `id_token_hint`, `post_logout_redirect_uri` and `state`. POST only, behind the
/// origin check.
pub async fn logout(State(auth): State<KeycloakAuth>, session: Session) -> Response {
    // Even an expired session's ID token is a valid hint for Keycloak; an unreadable record is
    // simply signed out.
    let signed_in = session.get::<AuthSession>(AUTH_KEY).await.ok().flatten();
    if let Err(e) = session.flush().await {
        tracing::error!(error = %e, "cannot delete the session");
        return internal_error(&auth);
    }
    let Some(signed_in) = signed_in else {
        return Redirect::to("/").into_response();
    };
    tracing::info!(subject = %signed_in.user.subject, "signed out");
    let end_session = match auth.oidc().provider().await {
        Ok(p) => p.end_session_endpoint.clone(),
        Err(_) => None,
    };
    let Some(mut url) = end_session else {
        return Redirect::to("/").into_response();
    };
    let logout_state = openidconnect::CsrfToken::new_random();
    url.query_pairs_mut()
        .append_pair("id_token_hint", &signed_in.id_token)
        .append_pair("post_logout_redirect_uri", &auth.settings().absolute("/"))
        .append_pair("client_id", auth.oidc().client_id())
        .append_pair("state", logout_state.secret());
    Redirect::to(url.as_str()).into_response()
}

/// The silent refresh: refreshes the session's tokens if they expire within the margin and
/// answers a [`SessionStatus`]. Same-origin only; never returns a token. 200 signed in, 401
/// signed out (or the session just ended), 503 Keycloak unavailable.
pub async fn refresh(State(auth): State<KeycloakAuth>, session: Session) -> Response {
    let (error, status) = match auth.fresh_auth(&session, unix_now()).await {
        Ok(Some(signed_in)) => (
            None,
            SessionStatus::signed_in(signed_in.user, signed_in.access_expires_at),
        ),
        Ok(None) => (Some(AppError::NotSignedIn), SessionStatus::signed_out()),
        Err(AppError::IdpUnavailable) => {
            (Some(AppError::IdpUnavailable), SessionStatus::unavailable())
        }
        Err(e) => (Some(e), SessionStatus::failed()),
    };
    let code = error.as_ref().map_or(StatusCode::OK, status_of);
    (
        code,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(status),
    )
        .into_response()
}
