//! Authorization for server functions and server-rendered pages: the session → user lookup, and the
//! rule check that answers 401/403 on the HTTP response.

use crate::auth::unix_now;
use crate::error::AppError;
use crate::server::refresh::fresh_auth;
use crate::server::state::AppState;
use crate::user::{Access, KeycloakUser, Rule};
use leptos::prelude::use_context;
use leptos_axum::ResponseOptions;
use tower_sessions::Session;

/// Sets the HTTP status of the current response (page or server function) for `error`.
pub fn set_response_status(error: &AppError) {
    if let Some(response) = use_context::<ResponseOptions>() {
        if let Ok(status) = axum::http::StatusCode::from_u16(error.status_code()) {
            response.set_status(status);
        }
    }
}

/// Sets the status for `error` only when the current request is a call of a server function.
/// While a page renders, server functions run in the page's response: there the page decides its
/// status (a public page stays 200 when Keycloak is down).
pub fn set_status_for(error: &AppError) {
    let server_fn_call = use_context::<axum::http::request::Parts>()
        .is_some_and(|parts| parts.uri.path().starts_with("/api/"));
    if server_fn_call {
        set_response_status(error);
    }
}

/// The signed-in user of the current request, if any, with tokens refreshed when due. On error
/// (Keycloak unavailable with an expired token: 503) the HTTP status is set.
pub async fn request_user() -> Result<Option<KeycloakUser>, AppError> {
    let session: Session = leptos_axum::extract().await.map_err(|e| {
        tracing::error!(error = ?e, "no session layer on this request");
        AppError::Internal
    })?;
    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    let auth = fresh_auth(&state, &session, unix_now())
        .await
        .inspect_err(set_status_for)?;
    Ok(auth.map(|a| a.user))
}

/// The user of the current request if `rule` allows them; otherwise 401 or 403, with the HTTP
/// status set. Every server function that does something protected starts with this: the server
/// never trusts that the UI hid a button.
pub async fn require(rule: &Rule) -> Result<KeycloakUser, AppError> {
    let user = request_user().await?;
    let error = match rule.check(user.as_ref()) {
        Access::Allowed => return user.ok_or(AppError::Internal),
        Access::NotSignedIn => AppError::NotSignedIn,
        Access::Forbidden => AppError::Forbidden,
    };
    set_status_for(&error);
    Err(error)
}

/// Answers the page being rendered with `302 Found` to `href`, whatever the request's `Accept`
/// header says (unlike `leptos_axum::redirect`, which only redirects requests that accept HTML).
pub fn redirect_page(href: &str) {
    if let (Some(response), Ok(value)) = (
        use_context::<ResponseOptions>(),
        axum::http::HeaderValue::from_str(href),
    ) {
        response.insert_header(axum::http::header::LOCATION, value);
        response.set_status(axum::http::StatusCode::FOUND);
    }
}
