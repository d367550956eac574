//! Calling another API as the signed-in user, from the server: [`AsUser`] takes the session's
//! access token (refreshed first when it is due) and sends it as a bearer token; the token never
//! leaves the server, never reaches a log, and is never handed to the caller. Duende BFF calls
//! this token relay.
//!
//! Its first use is Keycloak's own Account REST API: the user's sessions, and ending one of
//! them or all the others ([`my_sessions`], [`end_my_session`], [`end_my_other_sessions`]).

use crate::error::AppError;
use crate::server::auth::KeycloakAuth;
use crate::server::guard::{fail, use_keycloak_auth};
use crate::server::http::read_limited;
use crate::server::unix_now;
use keycloak_bff_core::account::{is_session_id, sessions_from_devices, AccountSession};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// Larger answers are refused.
const MAX_BODY: usize = 1024 * 1024;

/// The signed-in user of the current request, ready to call APIs with their access token.
pub struct AsUser {
    auth: KeycloakAuth,
    token: SecretString,
    /// Keycloak's session id of this browser (`sid`).
    sid: Option<String>,
}

impl std::fmt::Debug for AsUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsUser").finish_non_exhaustive()
    }
}

impl AsUser {
    /// The user of the current request (a server function or a page), the tokens refreshed
    /// first when they expire within the margin. Signed out: [`AppError::NotSignedIn`].
    pub async fn current() -> Result<Self, AppError> {
        let auth = use_keycloak_auth()?;
        let session = crate::server::guard::request_session()?;
        let signed_in = auth
            .fresh_auth(&session, unix_now())
            .await
            .map_err(fail)?
            .ok_or_else(|| fail(AppError::NotSignedIn))?;
        Ok(AsUser {
            auth,
            token: SecretString::from(signed_in.access_token),
            sid: signed_in.sid,
        })
    }

    /// Keycloak's session id of this browser.
    pub fn keycloak_session(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    /// Sends `method url` with the user's bearer token and `Accept: application/json`; the
    /// answer's status and body (at most 1 MiB). Unreachable: [`AppError::Upstream`].
    pub async fn send(&self, method: Method, url: Url) -> Result<(StatusCode, Vec<u8>), AppError> {
        let host = url.host_str().unwrap_or("?").to_owned();
        let response = self
            .auth
            .oidc()
            .http()
            .request(method, url)
            .bearer_auth(self.token.expose_secret())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, %host, "a call as the user failed");
                fail(AppError::Upstream(format!("{host} could not be reached")))
            })?;
        let status = response.status();
        let body = read_limited(response, MAX_BODY)
            .await
            .map_err(|e| fail(AppError::Upstream(e)))?;
        Ok((status, body))
    }

    /// `GET url` as the user, read as JSON; any answer but 2xx is an error that says so.
    pub async fn get_json(&self, url: Url) -> Result<serde_json::Value, AppError> {
        let (status, body) = self.send(Method::GET, url).await?;
        ensure_success(status)?;
        serde_json::from_slice(&body)
            .map_err(|_| fail(AppError::Upstream("the answer was not JSON".into())))
    }
}

/// 2xx passes; 401 and 403 mean the user's token is not enough there; the rest is the service's.
fn ensure_success(status: StatusCode) -> Result<(), AppError> {
    match status {
        s if s.is_success() => Ok(()),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            tracing::warn!(%status, "a call as the user was refused");
            Err(fail(AppError::Upstream(format!(
                "access refused ({status}); the account may lack the role it needs"
            ))))
        }
        StatusCode::NOT_FOUND => Err(fail(AppError::NotFound)),
        s => Err(fail(AppError::Upstream(format!("answered {s}")))),
    }
}

fn account_url(auth: &KeycloakAuth, path: &str) -> Result<Url, AppError> {
    auth.oidc()
        .realm_url(&format!("/account{path}"))
        .map_err(|_| fail(AppError::Internal))
}

/// The signed-in user's Keycloak sessions (every browser signed in to the realm), the current
/// one first, read from Keycloak's Account REST API as the user.
pub async fn my_sessions() -> Result<Vec<AccountSession>, AppError> {
    let user = AsUser::current().await?;
    let url = account_url(&user.auth, "/sessions/devices")?;
    Ok(sessions_from_devices(&user.get_json(url).await?))
}

/// Ends one of the user's other Keycloak sessions (Keycloak then tells every app of it, this one
/// included, through back-channel logout). The current session is ended by signing out.
pub async fn end_my_session(id: &str) -> Result<(), AppError> {
    if !is_session_id(id) {
        return Err(fail(AppError::BadRequest("not a session id".into())));
    }
    let user = AsUser::current().await?;
    if user.keycloak_session() == Some(id) {
        return Err(fail(AppError::BadRequest(
            "this is the session you are using: sign out instead".into(),
        )));
    }
    let url = account_url(&user.auth, &format!("/sessions/{id}"))?;
    let (status, _) = user.send(Method::DELETE, url).await?;
    ensure_success(status)?;
    tracing::info!("a user ended one of their other sessions");
    Ok(())
}

/// Ends every Keycloak session of the user but the current one.
pub async fn end_my_other_sessions() -> Result<(), AppError> {
    let user = AsUser::current().await?;
    let mut url = account_url(&user.auth, "/sessions")?;
    url.query_pairs_mut().append_pair("current", "false");
    let (status, _) = user.send(Method::DELETE, url).await?;
    ensure_success(status)?;
    tracing::info!("a user ended all their other sessions");
    Ok(())
}
