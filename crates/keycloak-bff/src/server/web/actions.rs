//! Account actions (Keycloak's application-initiated actions): `GET <prefix>/action/<name>` sends
//! the signed-in user into one of Keycloak's own pages (change the password, set up an
//! authenticator app, add a passkey or a security key, update the profile, delete the account)
//! through an authorization request with `kc_action`, and the callback brings the outcome back to
//! the page the user came from (`?account_action=<name>&outcome=success|cancelled|error`).
//!
//! The action names are an allow-list (`core::account_action`); a signed-out browser signs in
//! first and then goes on to the action. On the callback (`routes.rs`, `finish_action`), the outcome counts only for a sign-in
//! that asked for that action (sealed in its sign-in cookie), and the tokens that come back replace
//! the session's (its claims refreshed: a new `amr`, say).
//!
//! Deleting the account does not come back on the callback: Keycloak shows its own "deleted"
//! page, whose link leads to the app's home page. So the session notes when its user set off to
//! delete the account, and checks at its next uses (a refresh, at most every 2 s for 10 minutes)
//! that Keycloak still knows it; a refresh refused then ends every session of that user in the
//! app (`server/oidc/refresh.rs`), and every open tab learns it through the event stream. Nothing
//! ends on the word of a query parameter alone.
//!
//! Catalogue: AA01 (an action outside the allow-list), AA02 (a forged `kc_action_status`), AA03
//! (a deleted account's other sessions).

use crate::error::AppError;
use crate::server::base::clock::unix_now;
use crate::server::session::store::{auth_session, AuthSession, AUTH_KEY};
use crate::server::web::routes::{message_page, start_sign_in};
use crate::server::web::state::KeycloakAuth;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use keycloak_bff_core::account_action::AccountAction;
use keycloak_bff_core::step_up::Prompt;
use keycloak_bff_core::ReturnTo;
use serde::Deserialize;
use tower_sessions::Session;

/// The query of `<prefix>/action/<name>`.
#[derive(Deserialize)]
pub struct ActionQuery {
    return_to: Option<String>,
}

/// `GET <prefix>/action/<name>?return_to=…`: to Keycloak's page for the action `name`.
pub async fn account_action(
    State(auth): State<KeycloakAuth>,
    session: Session,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: Result<Query<ActionQuery>, QueryRejection>,
) -> Response {
    let return_to = ReturnTo::new(query.ok().and_then(|q| q.0.return_to).as_deref());
    let Some(action) = AccountAction::from_name(&name) else {
        tracing::info!("an account action outside the allow-list was asked for");
        return message_page(
            &auth,
            &AppError::NotFound,
            "No such account action",
            "This account action does not exist.",
            &[(return_to.as_str(), "Back")],
        );
    };
    let now = unix_now();
    match auth_session(&session, now).await {
        Ok(Some(signed_in)) if action.ends_the_account() => {
            let marked = AuthSession {
                deletion_requested_at: Some(now),
                ..signed_in
            };
            let saved = match session.insert(AUTH_KEY, &marked).await {
                Ok(()) => session.save().await,
                Err(e) => Err(e),
            };
            if let Err(e) = saved {
                tracing::warn!(error = %e, "could not note the account deletion in the session");
                return AppError::StoreUnavailable.into_response();
            }
        }
        Ok(Some(_)) => {}
        Ok(None) => {
            // Signed out: sign in first, and come back to the action.
            let ui = auth.ui_config();
            let here = ui.action_href(action, return_to.as_str());
            return Redirect::to(&ui.login_href(&here)).into_response();
        }
        Err(e) => return e.into_response(),
    }
    start_sign_in(
        &auth,
        &headers,
        return_to,
        Prompt::Normal,
        Some(action),
        None,
    )
    .await
}
