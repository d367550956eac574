//! Server-side token refresh: before a server function, a page or an API call uses a session whose
//! access token expires within the margin, the server refreshes it with the refresh token.
//!
//! - Single flight per session: concurrent requests on one session make one call to Keycloak; the
//!   others wait for it and read the rotated tokens from the store (Keycloak may be set to revoke a
//!   refresh token after one use).
//! - The rotated tokens are saved before the response is used.
//! - `invalid_grant` or tokens that do not match the session end the session; an unreachable
//!   Keycloak keeps it, with back-off between attempts. A network blip never signs anyone out.

use crate::error::AppError;
use crate::server::metrics::Metrics;
use crate::server::oidc::{Oidc, OidcError};
use crate::server::store::{auth_session, keep_session_end, AuthSession, AuthStore, AUTH_KEY};
use keycloak_bff_core::refresh::{decide, Backoff, Decision};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tower_sessions::Session;

/// A back-off whose retry time passed this long ago is forgotten (the next failure starts over).
const STALE_BACKOFF_SECS: i64 = 300;

/// Per-session refresh locks and back-off.
pub struct Refresher {
    margin_secs: i64,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    backoff: Mutex<HashMap<String, Backoff>>,
}

/// What a refresh attempt came to, sorted by what it means for the session.
enum Outcome {
    Refreshed(Box<AuthSession>),
    /// Keycloak could not be reached, refused this client, or its tokens could not be checked
    /// yet (a key-set hiccup): not the user's fault, keep the session and back off. `rotated`: the
    /// refresh token Keycloak answered with, which replaced the one it had (the only thing kept
    /// from an answer that could not be checked: it is opaque, and came from the token endpoint).
    KeepAndBackOff {
        rotated: Option<String>,
    },
    /// Keycloak refused the refresh token, or its tokens do not fit the session: end it. The
    /// reason, and its metrics label.
    End(&'static str, &'static str),
}

impl Refresher {
    pub fn new(margin_secs: i64) -> Self {
        Self {
            margin_secs,
            locks: Mutex::default(),
            backoff: Mutex::default(),
        }
    }

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

    /// A session's back-off: in the store when it is shared by replicas, else in this process.
    async fn backoff(&self, store: &AuthStore, key: &str) -> Backoff {
        if store.is_shared() {
            return store.backoff(key).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "could not read a refresh back-off");
                Backoff::default()
            });
        }
        self.backoff
            .lock()
            .ok()
            .and_then(|b| b.get(key).copied())
            .unwrap_or_default()
    }

    /// Records (or clears) a session's back-off, forgetting back-offs that ran out long ago: a
    /// session that ended (signed out, deleted by back-channel logout, expired) leaves nothing.
    async fn set_backoff(&self, store: &AuthStore, key: &str, value: Option<Backoff>, now: i64) {
        if store.is_shared() {
            if let Err(e) = store.set_backoff(key, value, now, STALE_BACKOFF_SECS).await {
                tracing::warn!(error = %e, "could not record a refresh back-off");
            }
            return;
        }
        if let Ok(mut map) = self.backoff.lock() {
            map.retain(|_, b| b.retry_at.saturating_add(STALE_BACKOFF_SECS) > now);
            match value {
                Some(b) => map.insert(key.to_owned(), b),
                None => map.remove(key),
            };
        }
    }

    fn decide(&self, auth: &AuthSession, now: i64, backoff: &Backoff) -> Decision {
        decide(&auth.tokens_view(), now, self.margin_secs, backoff)
    }

    /// The signed-in session with an access token that is usable now, refreshing it first when
    /// it expires within the margin. `Ok(None)`: signed out (or the session just ended).
    /// `Err(IdpUnavailable)`: the token has expired and Keycloak cannot be reached; nothing is
    /// lost.
    ///
    /// `extend`: refresh even a fresh token, to move Keycloak's idle limit (the "Stay signed in"
    /// of the expiry warning). A refresh that another request made meanwhile counts as done.
    pub async fn fresh_auth(
        &self,
        oidc: &Oidc,
        metrics: &Metrics,
        store: &AuthStore,
        session: &Session,
        now: i64,
        extend: bool,
    ) -> Result<Option<AuthSession>, AppError> {
        let Some(auth) = auth_session(session, now).await? else {
            return Ok(None);
        };
        let Some(key) = session.id().map(|id| id.to_string()) else {
            return Ok(Some(auth));
        };
        // Still fresh whatever the back-off: no store round trip on the common path.
        if !extend && self.decide(&auth, now, &Backoff::default()) == Decision::UseAsIs {
            return Ok(Some(auth));
        }
        let extend_from = extend.then_some(auth.generation);

        let lock = self.lock_for(&key);
        let _single_flight = lock.lock().await;
        // Across replicas too (Redis): one refresh per session at a time.
        let shared = store.lock_refresh(&key).await.map_err(|e| {
            tracing::warn!(error = %e, "the session store does not answer");
            AppError::StoreUnavailable
        })?;
        let result = self
            .refresh_locked(oidc, metrics, store, session, &key, now, extend_from)
            .await;
        if let Some(shared) = shared {
            store.unlock_refresh(shared).await;
        }
        result
    }

    /// The rest of [`Refresher::fresh_auth`], under the session's refresh lock. `extend_from`:
    /// the generation of the tokens an extension started from.
    #[allow(clippy::too_many_arguments)]
    async fn refresh_locked(
        &self,
        oidc: &Oidc,
        metrics: &Metrics,
        store: &AuthStore,
        session: &Session,
        key: &str,
        now: i64,
        extend_from: Option<u64>,
    ) -> Result<Option<AuthSession>, AppError> {
        let key = key.to_owned();
        // Another request on this session may have refreshed while we waited: read it again.
        if let Err(e) = session.load().await {
            tracing::error!(error = %e, "could not reload the session");
            return Err(AppError::Internal);
        }
        let Some(auth) = auth_session(session, now).await? else {
            return Ok(None);
        };
        let backoff = self.backoff(store, &key).await;
        let decision = match extend_from {
            // Rotated while this request waited: the session was just extended.
            Some(generation) if generation != auth.generation => Decision::UseAsIs,
            Some(_) if backoff.retry_at > now => Decision::Unavailable,
            Some(_) => Decision::Refresh,
            None => self.decide(&auth, now, &backoff),
        };
        match decision {
            Decision::UseAsIs => {
                metrics.refresh("waited");
                return Ok(Some(auth));
            }
            Decision::Unavailable => return Err(AppError::IdpUnavailable),
            Decision::Refresh => {}
        }
        let Some(refresh_token) = auth.refresh_token.clone() else {
            // Without a refresh token the session lasts as long as its access token.
            if now < auth.access_expires_at {
                return Ok(Some(auth));
            }
            end_session(
                metrics,
                session,
                "access token expired and no refresh token",
                "expired",
            )
            .await;
            return Ok(None);
        };
        match refresh(oidc, metrics, &auth, &refresh_token, now).await {
            Outcome::Refreshed(refreshed) => {
                metrics.refresh("ok");
                self.set_backoff(store, &key, None, now).await;
                save(session, &refreshed).await?;
                tracing::debug!(subject = %refreshed.user.subject, "refreshed the tokens");
                Ok(Some(*refreshed))
            }
            Outcome::KeepAndBackOff { rotated } => {
                metrics.refresh("unavailable");
                let next = backoff.failed(now);
                let auth = match rotated {
                    Some(rotated) => {
                        let kept = AuthSession {
                            refresh_token: Some(rotated),
                            generation: auth.generation.saturating_add(1),
                            ..auth
                        };
                        save(session, &kept).await?;
                        kept
                    }
                    None => auth,
                };
                tracing::info!(
                    retry_in = next.retry_at.saturating_sub(now),
                    "refresh postponed"
                );
                self.set_backoff(store, &key, Some(next), now).await;
                if now < auth.access_expires_at {
                    Ok(Some(auth))
                } else {
                    Err(AppError::IdpUnavailable)
                }
            }
            Outcome::End(why, label) => {
                metrics.refresh(label);
                self.set_backoff(store, &key, None, now).await;
                end_session(metrics, session, why, label).await;
                Ok(None)
            }
        }
    }
}

/// One call to Keycloak's token endpoint with the refresh token, and the validation of its
/// answer, sorted into an [`Outcome`].
async fn refresh(
    oidc: &Oidc,
    metrics: &Metrics,
    auth: &AuthSession,
    refresh_token: &str,
    now: i64,
) -> Outcome {
    let mut rotated = None;
    let result = async {
        let provider = oidc.provider().await?;
        Metrics::count(&metrics.token_refreshes);
        let tokens = oidc.refresh(&provider, refresh_token).await?;
        rotated = tokens.refresh_token.clone();
        oidc.validate_refresh(&provider, tokens, auth, now).await
    }
    .await;
    match result {
        Ok(refreshed) => Outcome::Refreshed(Box::new(refreshed)),
        Err(OidcError::Unavailable(e)) => {
            tracing::warn!(error = %e, "refresh failed: identity provider unavailable");
            Outcome::KeepAndBackOff { rotated }
        }
        Err(OidcError::Rejected { error }) if error == "invalid_grant" => Outcome::End(
            "Keycloak refused the refresh token (invalid_grant)",
            "invalid_grant",
        ),
        Err(OidcError::Rejected { error }) => {
            // invalid_client and the like: this app's configuration, not the user's session.
            tracing::error!(%error, "Keycloak refused the refresh request; check the client settings");
            Outcome::KeepAndBackOff { rotated: None }
        }
        Err(e @ (OidcError::InvalidToken(_) | OidcError::BadResponse(_))) => {
            tracing::warn!(error = %e, "refreshed tokens rejected");
            Outcome::End("refreshed tokens do not match the session", "rejected")
        }
    }
}

/// Saves the rotated tokens before anything uses them: Keycloak has already revoked the old
/// refresh token, so without this save the session would be lost.
async fn save(session: &Session, refreshed: &AuthSession) -> Result<(), AppError> {
    keep_session_end(session, refreshed);
    let saved = match session.insert(AUTH_KEY, refreshed).await {
        Ok(()) => session.save().await,
        Err(e) => Err(e),
    };
    saved.map_err(|e| {
        tracing::error!(error = %e, "could not save the refreshed tokens");
        AppError::Internal
    })
}

async fn end_session(metrics: &Metrics, session: &Session, why: &str, label: &'static str) {
    tracing::info!(reason = why, "ending the session");
    metrics.session_ended(label);
    if let Err(e) = session.flush().await {
        tracing::error!(error = %e, "could not delete an ended session");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn back_offs_of_sessions_that_went_away_are_forgotten() {
        let r = Refresher::new(30);
        let store = AuthStore::memory();
        for i in 0..1_000 {
            r.set_backoff(
                &store,
                &format!("gone-{i}"),
                Some(Backoff::default().failed(0)),
                0,
            )
            .await;
        }
        r.set_backoff(&store, "live", Some(Backoff::default().failed(400)), 400)
            .await;
        let map = r.backoff.lock().map(|m| m.len()).unwrap_or(usize::MAX);
        assert_eq!(map, 1);
        assert_eq!(r.backoff(&store, "live").await.failures, 1);
    }

    #[tokio::test]
    async fn on_redis_every_replica_sees_a_sessions_back_off_until_it_runs_out() {
        let redis =
            crate::server::redis_store::TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
        let timeout = std::time::Duration::from_secs(2);
        let a = AuthStore::redis(&redis.url(), timeout)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let b = AuthStore::redis(&redis.url(), timeout)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (ra, rb) = (Refresher::new(30), Refresher::new(30));
        let now = crate::server::unix_now();
        let failed = Backoff::default().failed(now);
        ra.set_backoff(&a, "s1", Some(failed), now).await;
        assert_eq!(rb.backoff(&b, "s1").await, failed, "replica b waits too");
        rb.set_backoff(&b, "s1", None, now).await;
        assert_eq!(
            ra.backoff(&a, "s1").await,
            Backoff::default(),
            "cleared for a"
        );
    }
}
