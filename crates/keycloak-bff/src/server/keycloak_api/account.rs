//! Calling another API as the signed-in user, from the server: [`AsUser`] holds the session's
//! access token (refreshed first when it was due) and sends it as a bearer token, or, bound to
//! the app's DPoP key (`keycloak.dpop`), as `Authorization: DPoP` with a fresh proof (and once
//! more with the nonce the server asks for); the token never leaves the server, never reaches a
//! log, and is never handed to the caller. Duende BFF calls this token relay.
//!
//! Its first use is Keycloak's own Account REST API: the user's sessions, and ending one of
//! them or all the others ([`AsUser::sessions`], [`AsUser::end_session`],
//! [`AsUser::end_other_sessions`]). The HTTP face builds an [`AsUser`] for the current request
//! (`crate::server::web::account`); this file knows nothing of requests.
//! Catalogue: the token stays on the server (B01); errors name no token (B04); a bound token
//! goes with a proof (P10).

use crate::error::AppError;
use crate::server::base::clock::unix_now;
use crate::server::base::http_client::read_limited;
#[cfg(doc)]
use crate::server::base::settings::KeycloakSettings;
use crate::server::oidc::client::Oidc;
use crate::server::oidc::dpop_key::{with_token, CallToken, DpopKey};
use keycloak_bff_core::account::{
    is_session_id, sessions_from_devices, sign_in_methods, AccountSession, SignInMethod,
};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use std::sync::Arc;
use url::Url;

/// Larger answers are refused.
const MAX_BODY: usize = 1024 * 1024;

/// The signed-in user of the current request, ready to call APIs with their access token.
pub struct AsUser {
    http: reqwest::Client,
    /// The realm's URL as this server calls it (`<issuer>`, `internal_url` applied).
    realm: Url,
    /// The origins the token may go to ([`KeycloakSettings::token_relay_allowed`]).
    allowed: Vec<String>,
    token: CallToken,
    /// The app's DPoP key, which a bound token is proven with.
    dpop: Option<Arc<DpopKey>>,
    /// Keycloak's session id of this browser (`sid`).
    sid: Option<String>,
}

impl std::fmt::Debug for AsUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsUser").finish_non_exhaustive()
    }
}

impl AsUser {
    /// The user whose access token is `token` (of Keycloak session `sid`; `bound` to the app's
    /// DPoP key), calling with the OIDC client's HTTP client. The HTTP face makes one per request
    /// from the session.
    pub(crate) fn new(
        oidc: &Oidc,
        token: String,
        bound: bool,
        sid: Option<String>,
    ) -> Result<Self, AppError> {
        let realm = oidc.realm_url("").map_err(|_| AppError::Internal)?;
        Ok(AsUser {
            http: oidc.http().clone(),
            realm,
            allowed: oidc.keycloak_settings().token_relay_allowed(),
            token: CallToken::new(SecretString::from(token), bound),
            dpop: oidc.dpop_shared(),
            sid,
        })
    }

    /// Keycloak's session id of this browser.
    pub fn keycloak_session(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    /// Sends `method url` with the user's bearer token and `Accept: application/json`; the
    /// answer's status and body (at most 1 MiB). Only to Keycloak's own origins and
    /// `keycloak.token_relay_origins`: any other URL is refused before anything is sent.
    /// Refused or unreachable: [`AppError::Upstream`] with a reason that names no host (the
    /// host goes to the log). Keycloak itself unreachable, or answering 5xx (a restart), is
    /// [`AppError::IdpUnavailable`] (503), as everywhere else in the library: an outage to wait
    /// out, not a broken service (catalogue G: the documented outage answer).
    pub async fn send(&self, method: Method, url: Url) -> Result<(StatusCode, Vec<u8>), AppError> {
        let host = url.host_str().unwrap_or("?").to_owned();
        let origin = url.origin().ascii_serialization();
        if !self.allowed.contains(&origin) {
            tracing::warn!(%origin, "refused to send the user's token to an origin not allowed");
            return Err(AppError::Upstream(
                "this service may not be called as the user".into(),
            ));
        }
        let keycloak = origin == self.realm.origin().ascii_serialization();
        let mut response = self.call(&method, &url, &host, keycloak).await?;
        if let Some(key) = self.dpop.as_deref().filter(|_| self.token.is_bound()) {
            let www = response
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok());
            let nonce = response
                .headers()
                .get("dpop-nonce")
                .and_then(|v| v.to_str().ok());
            let asked = keycloak_bff_core::dpop::nonce_asked(None, www, nonce);
            key.note_answer(&url, response.headers());
            if response.status() == StatusCode::UNAUTHORIZED && asked.is_some() {
                // The server wants its nonce in the proof: once more, with it.
                response = self.call(&method, &url, &host, keycloak).await?;
                key.note_answer(&url, response.headers());
            }
        }
        let status = response.status();
        if keycloak && status.is_server_error() {
            tracing::warn!(%status, "Keycloak's API answered a server error");
            return Err(AppError::IdpUnavailable);
        }
        let body = read_limited(response, MAX_BODY)
            .await
            .map_err(AppError::Upstream)?;
        Ok((status, body))
    }

    /// One call of `method url` with the token (and a fresh proof when it is bound).
    async fn call(
        &self,
        method: &Method,
        url: &Url,
        host: &str,
        keycloak: bool,
    ) -> Result<reqwest::Response, AppError> {
        let request = self
            .http
            .request(method.clone(), url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        let request = with_token(
            request,
            self.dpop.as_deref(),
            &self.token,
            method,
            url,
            unix_now(),
        )
        .map_err(|e| {
            tracing::warn!(error = %e, "a call as the user could not be made");
            AppError::Internal
        })?;
        request.send().await.map_err(|e| {
            tracing::warn!(error = %e, %host, "a call as the user failed");
            if keycloak {
                AppError::IdpUnavailable
            } else {
                AppError::Upstream("the service could not be reached".into())
            }
        })
    }

    /// `GET url` as the user, read as JSON; any answer but 2xx is an error that says so.
    pub async fn get_json(&self, url: Url) -> Result<serde_json::Value, AppError> {
        let (status, body) = self.send(Method::GET, url).await?;
        ensure_success(status)?;
        serde_json::from_slice(&body)
            .map_err(|_| AppError::Upstream("the answer was not JSON".into()))
    }
}

/// 2xx passes; 401 and 403 mean the user's token is not enough there; the rest is the service's.
fn ensure_success(status: StatusCode) -> Result<(), AppError> {
    match status {
        s if s.is_success() => Ok(()),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            tracing::warn!(%status, "a call as the user was refused");
            Err(AppError::Upstream(format!(
                "access refused ({status}); the account may lack the role it needs"
            )))
        }
        StatusCode::NOT_FOUND => Err(AppError::NotFound),
        s => Err(AppError::Upstream(format!("answered {s}"))),
    }
}

impl AsUser {
    /// `<issuer>/account<path>`, as this server calls it.
    fn account_url(&self, path: &str) -> Result<Url, AppError> {
        Url::parse(&format!(
            "{}/account{path}",
            self.realm.as_str().trim_end_matches('/')
        ))
        .map_err(|_| AppError::Internal)
    }

    /// The user's sign-in methods (password, authenticator app, passkeys, security keys) and
    /// their credentials by label, read from Keycloak's Account REST API as the user.
    pub async fn sign_in_methods(&self) -> Result<Vec<SignInMethod>, AppError> {
        let url = self.account_url("/credentials")?;
        Ok(sign_in_methods(&self.get_json(url).await?))
    }

    /// The user's Keycloak sessions (every browser signed in to the realm), the current one
    /// first, read from Keycloak's Account REST API as the user.
    pub async fn sessions(&self) -> Result<Vec<AccountSession>, AppError> {
        let url = self.account_url("/sessions/devices")?;
        Ok(sessions_from_devices(&self.get_json(url).await?))
    }

    /// Ends one of the user's other Keycloak sessions (Keycloak then tells every app of it, this
    /// one included, through back-channel logout). The current session is ended by signing out.
    pub async fn end_session(&self, id: &str) -> Result<(), AppError> {
        if !is_session_id(id) {
            return Err(AppError::BadRequest("not a session id".into()));
        }
        if self.keycloak_session() == Some(id) {
            return Err(AppError::BadRequest(
                "this is the session you are using: sign out instead".into(),
            ));
        }
        let url = self.account_url(&format!("/sessions/{id}"))?;
        let (status, _) = self.send(Method::DELETE, url).await?;
        ensure_success(status)?;
        tracing::info!("a user ended one of their other sessions");
        Ok(())
    }

    /// Ends every Keycloak session of the user but the current one.
    pub async fn end_other_sessions(&self) -> Result<(), AppError> {
        let mut url = self.account_url("/sessions")?;
        url.query_pairs_mut().append_pair("current", "false");
        let (status, _) = self.send(Method::DELETE, url).await?;
        ensure_success(status)?;
        tracing::info!("a user ended all their other sessions");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_user(allowed: &[&str]) -> AsUser {
        AsUser {
            http: reqwest::Client::new(),
            realm: Url::parse("http://127.0.0.1:9/realms/demo").expect("url"),
            allowed: allowed.iter().map(|s| s.to_string()).collect(),
            token: CallToken::new(SecretString::from("user-token"), false),
            dpop: None,
            sid: None,
        }
    }

    #[tokio::test]
    async fn the_users_token_goes_to_no_origin_outside_the_allowed_ones() {
        let user = as_user(&["http://127.0.0.1:9"]);
        for url in [
            "https://evil.example/collect",
            "http://127.0.0.1:10/realms/demo",
            "https://127.0.0.1:9/",
        ] {
            let refused = user
                .send(Method::GET, Url::parse(url).expect("url"))
                .await
                .map(|_| ())
                .err();
            let Some(AppError::Upstream(reason)) = refused else {
                panic!("{url}: {refused:?}");
            };
            assert!(reason.contains("may not be called"), "{reason}");
            assert!(
                !reason.contains("evil") && !reason.contains("127.0.0.1"),
                "{reason}"
            );
        }
        // An allowed origin is called (nothing listens there: unreachable, said without a host).
        let user = as_user(&["http://127.0.0.1:9", "http://127.0.0.1:11"]);
        let unreachable = user
            .send(
                Method::GET,
                Url::parse("http://127.0.0.1:11/x").expect("url"),
            )
            .await
            .map(|_| ())
            .err();
        let Some(AppError::Upstream(reason)) = unreachable else {
            panic!("{unreachable:?}");
        };
        assert_eq!(reason, "the service could not be reached");
    }

    #[tokio::test]
    async fn keycloak_unreachable_is_an_outage_to_wait_out_not_a_broken_service() {
        // The realm's own origin (Keycloak restarting): 503, like a refresh or the directory.
        let user = as_user(&["http://127.0.0.1:9"]);
        let down = user
            .send(
                Method::GET,
                Url::parse("http://127.0.0.1:9/realms/demo/account/sessions/devices").expect("url"),
            )
            .await
            .map(|_| ())
            .err();
        assert!(matches!(down, Some(AppError::IdpUnavailable)), "{down:?}");
        assert_eq!(AppError::IdpUnavailable.status_code(), 503);
    }
}
