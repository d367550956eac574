//! Server-side token refresh: before a server function, a page or an API call uses a session whose
//! access token expires within the margin, the server refreshes it with the refresh token.
//!
//! - Single flight per session: concurrent requests on one session make one call to Keycloak; the
//!   others wait for it and read the rotated tokens from the store (Keycloak may be set to revoke a
//!   refresh token after one use).
//! - The rotated tokens are saved before the response is used.
//! - `invalid_grant` or tokens that do not match the session end the session; an unreachable
//!   Keycloak keeps it, with back-off between attempts. A network blip never signs anyone out.

use crate::auth::refresh::{decide, Backoff, Decision};
use crate::error::AppError;
use crate::server::oidc::OidcError;
use crate::server::session::{auth_session, keep_session_end, AuthSession, AUTH_KEY};
use crate::server::state::AppState;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tower_sessions::Session;

/// Counters the app keeps about its sessions (shown to admins, read by tests).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Calls to Keycloak's token endpoint with a refresh token.
    pub token_refreshes: AtomicU64,
    /// Sessions ended because Keycloak refused the refresh token or sent tokens that do not fit.
    pub sessions_ended_by_refresh: AtomicU64,
    /// Back-channel logout tokens accepted.
    pub backchannel_logouts: AtomicU64,
}

#[derive(Default)]
pub struct Refresher {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    backoff: Mutex<HashMap<String, Backoff>>,
}

impl Refresher {
    fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        match self.locks.lock() {
            Ok(mut locks) => {
                locks.retain(|_, l| Arc::strong_count(l) > 1);
                locks.entry(key.to_owned()).or_default().clone()
            }
            // A poisoned map only loses single flight for this call, never correctness of data.
            Err(_) => Arc::default(),
        }
    }

    fn backoff(&self, key: &str) -> Backoff {
        self.backoff
            .lock()
            .ok()
            .and_then(|b| b.get(key).copied())
            .unwrap_or_default()
    }

    fn set_backoff(&self, key: &str, value: Option<Backoff>) {
        if let Ok(mut map) = self.backoff.lock() {
            match value {
                Some(b) => map.insert(key.to_owned(), b),
                None => map.remove(key),
            };
        }
    }
}

async fn end_session(state: &AppState, session: &Session, why: &str) {
    tracing::info!(reason = why, "ending the session");
    state
        .metrics
        .sessions_ended_by_refresh
        .fetch_add(1, Ordering::Relaxed);
    if let Err(e) = session.flush().await {
        tracing::error!(error = %e, "could not delete an ended session");
    }
}

/// The signed-in session with an access token that is usable now, refreshing it first when it
/// expires within the margin. `Ok(None)`: signed out (or the session just ended).
/// `Err(IdpUnavailable)`: the token has expired and Keycloak cannot be reached; nothing is lost.
pub async fn fresh_auth(
    state: &AppState,
    session: &Session,
    now: i64,
) -> Result<Option<AuthSession>, AppError> {
    let Some(auth) = auth_session(session, now).await else {
        return Ok(None);
    };
    let margin = state.settings.session.refresh_margin_secs;
    let Some(key) = session.id().map(|id| id.to_string()) else {
        return Ok(Some(auth));
    };
    if decide(
        &auth.tokens_view(),
        now,
        margin,
        &state.refresher.backoff(&key),
    ) == Decision::UseAsIs
    {
        return Ok(Some(auth));
    }

    let lock = state.refresher.lock_for(&key);
    let _single_flight = lock.lock().await;
    // Another request on this session may have refreshed while we waited: read the store again.
    if let Err(e) = session.load().await {
        tracing::error!(error = %e, "could not reload the session");
        return Err(AppError::Internal);
    }
    let Some(auth) = auth_session(session, now).await else {
        return Ok(None);
    };
    match decide(
        &auth.tokens_view(),
        now,
        margin,
        &state.refresher.backoff(&key),
    ) {
        Decision::UseAsIs => return Ok(Some(auth)),
        Decision::Unavailable => return Err(AppError::IdpUnavailable),
        Decision::Refresh => {}
    }
    let Some(refresh_token) = auth.refresh_token.clone() else {
        // Without a refresh token the session lasts as long as its access token.
        if now < auth.access_expires_at {
            return Ok(Some(auth));
        }
        end_session(state, session, "access token expired and no refresh token").await;
        return Ok(None);
    };

    let result = async {
        let provider = state.oidc.provider().await?;
        state
            .metrics
            .token_refreshes
            .fetch_add(1, Ordering::Relaxed);
        let tokens = state.oidc.refresh(&provider, &refresh_token).await?;
        state
            .oidc
            .validate_refresh(&provider, tokens, &auth, now)
            .await
    }
    .await;

    match result {
        Ok(refreshed) => {
            state.refresher.set_backoff(&key, None);
            keep_session_end(session, &refreshed);
            let saved = match session.insert(AUTH_KEY, &refreshed).await {
                Ok(()) => session.save().await,
                Err(e) => Err(e),
            };
            if let Err(e) = saved {
                // Keycloak has rotated the refresh token; without saving it the session is lost.
                tracing::error!(error = %e, "could not save the refreshed tokens");
                return Err(AppError::Internal);
            }
            tracing::debug!(subject = %refreshed.user.subject, "refreshed the tokens");
            Ok(Some(refreshed))
        }
        Err(OidcError::Unavailable(e)) => {
            let next = state.refresher.backoff(&key).failed(now);
            tracing::warn!(error = %e, retry_in = next.retry_at - now, "refresh failed: identity provider unavailable");
            state.refresher.set_backoff(&key, Some(next));
            if now < auth.access_expires_at {
                Ok(Some(auth))
            } else {
                Err(AppError::IdpUnavailable)
            }
        }
        Err(OidcError::Rejected { error }) if error == "invalid_grant" => {
            state.refresher.set_backoff(&key, None);
            end_session(
                state,
                session,
                "Keycloak refused the refresh token (invalid_grant)",
            )
            .await;
            Ok(None)
        }
        Err(OidcError::Rejected { error }) => {
            // invalid_client and the like: this app's configuration, not the user's session.
            tracing::error!(%error, "Keycloak refused the refresh request; check the client settings");
            let next = state.refresher.backoff(&key).failed(now);
            state.refresher.set_backoff(&key, Some(next));
            if now < auth.access_expires_at {
                Ok(Some(auth))
            } else {
                Err(AppError::IdpUnavailable)
            }
        }
        Err(e @ (OidcError::InvalidToken(_) | OidcError::BadResponse(_))) => {
            state.refresher.set_backoff(&key, None);
            tracing::warn!(error = %e, "refreshed tokens rejected");
            end_session(state, session, "refreshed tokens do not match the session").await;
            Ok(None)
        }
    }
}
