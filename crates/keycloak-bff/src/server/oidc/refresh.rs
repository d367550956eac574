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
use crate::server::base::metrics::Metrics;
use crate::server::oidc::client::{Oidc, OidcError};
use crate::server::session::store::{
    auth_session, keep_session_end, AuthSession, AuthStore, AUTH_KEY,
};
use keycloak_bff_core::account_action::deletion_check_due;
use keycloak_bff_core::refresh::{decide, keep_alive_due, Backoff, Decision};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tower_sessions::Session;
use tracing::Instrument;

/// A back-off whose retry time passed this long ago is forgotten (the next failure starts over).
const STALE_BACKOFF_SECS: i64 = 300;

/// Per-session refresh locks and back-off, with what a refresh needs: the OpenID Connect client,
/// the counters and the session store. A clone shares all of it (a refresh runs in a task of its
/// own, see [`Refresher::single_flight`]).
#[derive(Clone)]
pub struct Refresher {
    margin_secs: i64,
    /// The expiry warning's lead: a session in use is kept alive before it shows.
    warning_secs: i64,
    oidc: Arc<Oidc>,
    metrics: Arc<Metrics>,
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    backoffs: Arc<Backoffs>,
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

/// Why a request wants the session's tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Goal {
    /// To use them: refreshed only when they expire within the margin.
    Use,
    /// "Stay signed in": refreshed now however fresh, so that Keycloak's idle limit moves. A
    /// refresh another request made since the tokens of `generation` counts as done.
    Extend { generation: u64 },
}

/// The sessions' refresh back-offs: in the store when it is shared by replicas, else in this
/// process (forgetting those that ran out long ago: an ended session leaves nothing).
pub struct Backoffs {
    store: AuthStore,
    local: Mutex<HashMap<String, Backoff>>,
}

impl Backoffs {
    pub fn new(store: AuthStore) -> Self {
        Self {
            store,
            local: Mutex::default(),
        }
    }

    /// Session `key`'s back-off.
    async fn get(&self, key: &str) -> Backoff {
        if self.store.is_shared() {
            return self.store.backoff(key).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "could not read a refresh back-off");
                Backoff::default()
            });
        }
        self.local
            .lock()
            .ok()
            .and_then(|b| b.get(key).copied())
            .unwrap_or_default()
    }

    /// Records (or clears) session `key`'s back-off.
    async fn set(&self, key: &str, value: Option<Backoff>, now: i64) {
        if self.store.is_shared() {
            if let Err(e) = self
                .store
                .set_backoff(key, value, now, STALE_BACKOFF_SECS)
                .await
            {
                tracing::warn!(error = %e, "could not record a refresh back-off");
            }
            return;
        }
        if let Ok(mut map) = self.local.lock() {
            map.retain(|_, b| b.retry_at.saturating_add(STALE_BACKOFF_SECS) > now);
            match value {
                Some(b) => map.insert(key.to_owned(), b),
                None => map.remove(key),
            };
        }
    }
}

impl Refresher {
    /// `warning_secs`: the expiry warning's lead, which a session in use is kept alive ahead of.
    pub fn new(
        margin_secs: i64,
        warning_secs: i64,
        oidc: Arc<Oidc>,
        metrics: Arc<Metrics>,
        store: AuthStore,
    ) -> Self {
        Self {
            margin_secs,
            warning_secs,
            oidc,
            metrics,
            locks: Arc::default(),
            backoffs: Arc::new(Backoffs::new(store)),
        }
    }

    fn store(&self) -> &AuthStore {
        &self.backoffs.store
    }

    /// How long a refresh may take at most: the token call and a refetch of the keys, each
    /// within Keycloak's time limit, and the save. A request waits that long for another's.
    fn longest_refresh(&self) -> std::time::Duration {
        self.oidc.http_timeout() * 2 + std::time::Duration::from_secs(5)
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

    /// The signed-in session with an access token that is usable now, refreshing it first when
    /// it expires within the margin, or, however fresh, when Keycloak's idle end nears (the
    /// session is in use: [`keep_alive_due`]). `Ok(None)`: signed out (or the session just
    /// ended). `Err(IdpUnavailable)`: the token has expired and Keycloak cannot be reached;
    /// nothing is lost.
    pub async fn fresh_auth(
        &self,
        session: &Session,
        now: i64,
    ) -> Result<Option<Arc<AuthSession>>, AppError> {
        // The common path: a session in use, decoded once until it changes.
        let Some(auth) = self.store().auth_session(session, now).await? else {
            return Ok(None);
        };
        // A token bound to another DPoP key than the app's (or to none while the app binds its
        // tokens) cannot be used as it is: a refresh binds the new one to the app's key.
        let stale_binding = keycloak_bff_core::dpop::binding_is_stale(
            auth.dpop_jkt.as_deref(),
            self.oidc.dpop().map(|k| k.thumbprint()),
        );
        if stale_binding
            || deletion_check_due(auth.deletion_requested_at, auth.refreshed_at, now)
            || keep_alive_due(
                now,
                auth.user.session_expires_at,
                auth.refreshed_at,
                self.warning_secs,
            )
        {
            let goal = Goal::Extend {
                generation: auth.generation,
            };
            let auth = Arc::unwrap_or_clone(auth);
            return Ok(self
                .single_flight(session, now, goal, auth)
                .await?
                .map(Arc::new));
        }
        // Still fresh whatever the back-off: no store round trip on the common path.
        if decide(
            &auth.tokens_view(),
            now,
            self.margin_secs,
            &Backoff::default(),
        ) == Decision::UseAsIs
        {
            return Ok(Some(auth));
        }
        let auth = Arc::unwrap_or_clone(auth);
        Ok(self
            .single_flight(session, now, Goal::Use, auth)
            .await?
            .map(Arc::new))
    }

    /// Refreshes now, however fresh the tokens (the "Stay signed in" of the expiry warning), so
    /// that Keycloak's idle limit moves. A refresh that another request made meanwhile counts.
    pub async fn extend(
        &self,
        session: &Session,
        now: i64,
    ) -> Result<Option<AuthSession>, AppError> {
        let Some(auth) = auth_session(session, now).await? else {
            return Ok(None);
        };
        let goal = Goal::Extend {
            generation: auth.generation,
        };
        self.single_flight(session, now, goal, auth).await
    }

    /// One refresh per session at a time: in this process, and across replicas with Redis.
    ///
    /// The refresh runs in a task of its own, to its end, even when the request that wanted it
    /// goes away meanwhile (a tab closed, a page left: the server drops that request's work).
    /// Keycloak rotates the refresh token the moment it answers; a refresh dropped between its
    /// answer and the save would leave the spent token in the session, and the next refresh would
    /// end the session (catalogue D06).
    async fn single_flight(
        &self,
        session: &Session,
        now: i64,
        goal: Goal,
        auth: AuthSession,
    ) -> Result<Option<AuthSession>, AppError> {
        let Some(key) = session.id().map(|id| id.to_string()) else {
            return Ok(Some(auth));
        };
        let (this, session) = (self.clone(), session.clone());
        let work = async move { this.locked_refresh(&session, key, now, goal).await };
        tokio::spawn(work.instrument(tracing::Span::current()))
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "a refresh task failed");
                Err(AppError::Internal)
            })
    }

    /// [`Refresher::single_flight`]'s work: takes the session's locks, refreshes, releases them.
    async fn locked_refresh(
        &self,
        session: &Session,
        key: String,
        now: i64,
        goal: Goal,
    ) -> Result<Option<AuthSession>, AppError> {
        let lock = self.lock_for(&key);
        let _single_flight = lock.lock().await;
        let shared = self
            .store()
            .lock_refresh(&key, self.longest_refresh())
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "the session store does not answer");
                AppError::StoreUnavailable
            })?;
        // The shared lock, just taken (after any wait for another replica's), lives this long
        // from now: the save of rotated tokens may be tried again until shortly before it ends
        // (no other replica can spend the old token until then).
        let deadline = tokio::time::Instant::now() + self.longest_refresh()
            - std::time::Duration::from_secs(1);
        let result = self
            .refresh_locked(session, &key, now, goal, deadline)
            .await;
        if let Some(shared) = shared {
            self.store().unlock_refresh(shared).await;
        }
        result
    }

    /// The rest of a refresh, under the session's refresh lock: read the session again (another
    /// request may have refreshed while this one waited), decide, refresh, and apply the outcome.
    async fn refresh_locked(
        &self,
        session: &Session,
        key: &str,
        now: i64,
        goal: Goal,
        deadline: tokio::time::Instant,
    ) -> Result<Option<AuthSession>, AppError> {
        match session.load().await {
            Ok(()) => {}
            // The store went away while this request waited (an outage, a failover): 503.
            Err(tower_sessions::session::Error::Store(e)) => {
                tracing::warn!(error = %e, "the session store does not answer");
                return Err(AppError::StoreUnavailable);
            }
            Err(e) => {
                tracing::error!(error = %e, "could not reload the session");
                return Err(AppError::Internal);
            }
        }
        let Some(auth) = auth_session(session, now).await? else {
            return Ok(None);
        };
        let backoff = self.backoffs.get(key).await;
        let decision = match goal {
            // Rotated while this request waited: the session was just extended.
            Goal::Extend { generation } if generation != auth.generation => Decision::UseAsIs,
            Goal::Extend { .. } if backoff.retry_at > now => Decision::Unavailable,
            Goal::Extend { .. } => Decision::Refresh,
            Goal::Use => decide(&auth.tokens_view(), now, self.margin_secs, &backoff),
        };
        match decision {
            Decision::UseAsIs => {
                self.metrics.refresh("waited");
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
            self.end(
                session,
                "access token expired and no refresh token",
                "expired",
            )
            .await;
            return Ok(None);
        };
        let outcome = refresh(&self.oidc, &self.metrics, &auth, &refresh_token, now).await;
        let step = Step {
            key,
            backoff,
            now,
            deadline,
        };
        self.apply(outcome, session, auth, step).await
    }

    /// What a refresh attempt's outcome does to the session: saved, kept with a back-off (and the
    /// rotated refresh token, if Keycloak sent one), or ended.
    async fn apply(
        &self,
        outcome: Outcome,
        session: &Session,
        auth: AuthSession,
        step: Step<'_>,
    ) -> Result<Option<AuthSession>, AppError> {
        let Step {
            key,
            backoff,
            now,
            deadline,
        } = step;
        match outcome {
            Outcome::Refreshed(refreshed) => {
                self.metrics.refresh("ok");
                self.backoffs.set(key, None, now).await;
                save(session, &refreshed, deadline).await?;
                tracing::debug!(subject = %refreshed.user.subject, "refreshed the tokens");
                Ok(Some(*refreshed))
            }
            Outcome::KeepAndBackOff { rotated } => {
                self.metrics.refresh("unavailable");
                let next = backoff.failed(now);
                let auth = match rotated {
                    Some(rotated) => {
                        let kept = AuthSession {
                            refresh_token: Some(rotated),
                            generation: auth.generation.saturating_add(1),
                            refreshed_at: now,
                            ..auth
                        };
                        save(session, &kept, deadline).await?;
                        kept
                    }
                    None => auth,
                };
                tracing::info!(
                    retry_in = next.retry_at.saturating_sub(now),
                    "refresh postponed"
                );
                self.backoffs.set(key, Some(next), now).await;
                if now < auth.access_expires_at {
                    Ok(Some(auth))
                } else {
                    Err(AppError::IdpUnavailable)
                }
            }
            Outcome::End(why, label) => {
                self.metrics.refresh(label);
                self.backoffs.set(key, None, now).await;
                if auth.deletion_requested_at.is_some() && label == "invalid_grant" {
                    // The user set off to delete their account and Keycloak no longer knows the
                    // session: every session of theirs in the app ends, on every replica.
                    self.end_every_session_of(&auth.user.subject, now).await;
                }
                self.end(session, why, label).await;
                Ok(None)
            }
        }
    }

    /// Ends every session of the user `subject` in the app (their account was deleted).
    async fn end_every_session_of(&self, subject: &str, now: i64) {
        match self
            .store()
            .end_app_sessions_of(None, Some(subject), now)
            .await
        {
            Ok(ended) => {
                tracing::info!(%subject, ended, "account deleted: every session of the user ended");
                self.metrics.session_ended("account_deleted");
            }
            Err(e) => tracing::warn!(
                error = %e,
                "account deleted, but the user's other sessions could not be ended now"
            ),
        }
    }

    async fn end(&self, session: &Session, why: &str, label: &'static str) {
        tracing::info!(reason = why, "ending the session");
        self.metrics.session_ended(label);
        if let Err(e) = session.flush().await {
            tracing::error!(error = %e, "could not delete an ended session");
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

/// Where a refresh stands when its outcome is applied.
struct Step<'a> {
    key: &'a str,
    backoff: Backoff,
    now: i64,
    /// Until when the save of rotated tokens may be tried again (the refresh lock's end).
    deadline: tokio::time::Instant,
}

/// Saves the rotated tokens before anything uses them: Keycloak has already revoked the old
/// refresh token, so without this save the session would be lost. A store that does not answer
/// (Redis restarting, a failover) is asked again, after 100 ms, 200 ms… up to a second apart,
/// until `deadline`, while this request still holds the session's refresh lock: a store back
/// within seconds loses nothing (the chaos soak's Redis restarts showed the loss). Then 503, the
/// store's outage answer, never 500.
async fn save(
    session: &Session,
    refreshed: &AuthSession,
    deadline: tokio::time::Instant,
) -> Result<(), AppError> {
    keep_session_end(session, refreshed);
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        let saved = match session.insert(AUTH_KEY, refreshed).await {
            Ok(()) => session.save().await,
            Err(e) => Err(e),
        };
        let error = match saved {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let outage = matches!(error, tower_sessions::session::Error::Store(_));
        if !outage || tokio::time::Instant::now() + pause >= deadline {
            tracing::error!(error = %error, "could not save the refreshed tokens");
            return Err(if outage {
                AppError::StoreUnavailable
            } else {
                AppError::Internal
            });
        }
        tracing::warn!(error = %error, "could not save the refreshed tokens yet; trying again");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn back_offs_of_sessions_that_went_away_are_forgotten() {
        let r = Backoffs::new(AuthStore::memory().expect("memory"));
        for i in 0..1_000 {
            r.set(&format!("gone-{i}"), Some(Backoff::default().failed(0)), 0)
                .await;
        }
        r.set("live", Some(Backoff::default().failed(400)), 400)
            .await;
        let map = r.local.lock().map(|m| m.len()).unwrap_or(usize::MAX);
        assert_eq!(map, 1);
        assert_eq!(r.get("live").await.failures, 1);
    }

    #[cfg(feature = "redis")]
    fn signed_in(refresh_token: &str, generation: u64) -> AuthSession {
        AuthSession {
            user: keycloak_bff_core::KeycloakUser {
                session_expires_at: crate::server::base::clock::unix_now() + 3600,
                ..Default::default()
            },
            access_token: format!("access-{generation}"),
            access_expires_at: crate::server::base::clock::unix_now() + 60,
            refresh_token: Some(refresh_token.into()),
            id_token: "i".into(),
            sid: None,
            generation,
            refreshed_at: 0,
            dpop_jkt: None,
            deletion_requested_at: None,
        }
    }

    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn rotated_tokens_are_saved_when_redis_comes_back_within_the_refresh_lock() {
        use crate::server::session::store::redis::RedisOptions;
        use crate::server::test_support::TestRedis;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut redis = TestRedis::start_persistent(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let timeout = std::time::Duration::from_millis(500);
        let store = AuthStore::redis(RedisOptions::for_tests(&redis.url(), timeout))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let session = Session::new(None, std::sync::Arc::new(store.clone()), None);
        let soon = || tokio::time::Instant::now() + std::time::Duration::from_secs(8);
        save(&session, &signed_in("first", 1), soon())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let id = session.id().unwrap_or_else(|| panic!("an id"));
        // Keycloak has answered the refresh (the old token is spent); Redis dies (kill -9) and
        // is back from its append-only file 1.5 s later, while the save is being tried.
        redis.stop();
        let back = tokio::task::spawn_blocking(move || {
            std::thread::sleep(std::time::Duration::from_millis(1500));
            redis.restart().map(|()| redis)
        });
        save(&session, &signed_in("rotated", 2), soon())
            .await
            .unwrap_or_else(|e| panic!("the save gave up: {e}"));
        let _redis = back
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        let stored = store
            .load_auth(&id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("the session is gone"));
        assert_eq!(stored.refresh_token.as_deref(), Some("rotated"));
    }

    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn a_save_the_store_never_takes_is_a_503_by_the_deadline_not_a_500() {
        use crate::server::session::store::redis::RedisOptions;
        use crate::server::test_support::TestRedis;
        let mut redis = TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
        let timeout = std::time::Duration::from_millis(200);
        let store = AuthStore::redis(RedisOptions::for_tests(&redis.url(), timeout))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let session = Session::new(None, std::sync::Arc::new(store), None);
        let soon = |ms| tokio::time::Instant::now() + std::time::Duration::from_millis(ms);
        save(&session, &signed_in("first", 1), soon(5000))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        redis.stop();
        let started = std::time::Instant::now();
        let refused = save(&session, &signed_in("rotated", 2), soon(1500)).await;
        assert!(
            matches!(refused, Err(AppError::StoreUnavailable)),
            "{refused:?}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(3));
    }

    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn on_redis_every_replica_sees_a_sessions_back_off_until_it_runs_out() {
        let redis =
            crate::server::test_support::TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
        let timeout = std::time::Duration::from_secs(2);
        let a = AuthStore::redis(
            crate::server::session::store::redis::RedisOptions::for_tests(&redis.url(), timeout),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let b = AuthStore::redis(
            crate::server::session::store::redis::RedisOptions::for_tests(&redis.url(), timeout),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let (ra, rb) = (Backoffs::new(a), Backoffs::new(b));
        let now = crate::server::base::clock::unix_now();
        let failed = Backoff::default().failed(now);
        ra.set("s1", Some(failed), now).await;
        assert_eq!(rb.get("s1").await, failed, "replica b waits too");
        rb.set("s1", None, now).await;
        assert_eq!(ra.get("s1").await, Backoff::default(), "cleared for a");
    }
}
