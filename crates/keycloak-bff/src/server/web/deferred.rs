//! Endings the session store could not take when they were asked for, finished when it answers
//! again. A sign-out while Redis is down (a restart, a failover) used to leave the session alive on
//! the server: the browser dropped its cookie and the page said so, but a copy of the cookie kept
//! working (the chaos soak found such sign-outs that did not hold). A back-channel logout then was
//! lost outright: Keycloak never sends one again. Now each is tried again in the background, after
//! 1, 2, 4… up to 10 seconds, for up to 15 minutes, and at most [`MAX_PENDING`] at once per process
//! (a flood of sign-outs during an outage costs bounded memory). A process that stops meanwhile
//! loses what it had pending; the page and Keycloak's log say the sign-out was not confirmed.
//! Catalogue: F (sign-out holds), G (an outage signs nobody out, and loses no sign-out).

use crate::server::base::clock::unix_now;
use crate::server::oidc::client::OidcError;
use crate::server::session::store::AuthSession;
use crate::server::web::state::KeycloakAuth;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tower_sessions::session::Id;
use tower_sessions::SessionStore;

/// Endings pending at once in one process; more are not deferred (and logged).
pub const MAX_PENDING: usize = 10_000;
/// How long an ending is tried.
const GIVE_UP_AFTER: Duration = Duration::from_secs(15 * 60);

static PENDING: AtomicUsize = AtomicUsize::new(0);

/// Ends Keycloak's session of `signed_in` from the server: its refresh token and this client's
/// credentials.
pub(crate) async fn end_keycloak_session(
    auth: &KeycloakAuth,
    signed_in: &AuthSession,
) -> Result<(), OidcError> {
    let Some(refresh_token) = signed_in.refresh_token.as_deref() else {
        return Err(OidcError::Unavailable(
            "the session has no refresh token".into(),
        ));
    };
    let oidc = auth.oidc();
    let provider = oidc.provider().await?;
    oidc.end_session(&provider, refresh_token).await
}

/// Ends the app's session `id` (and then Keycloak's, with the refresh token it held) once the
/// store answers: the sign-out of a browser whose store did not answer.
pub fn finish_sign_out_later(auth: &KeycloakAuth, id: Id) {
    let auth = auth.clone();
    retry("a sign-out", move || {
        let auth = auth.clone();
        async move {
            let store = auth.store();
            let signed_in = store.load_auth(&id).await.map_err(|e| e.to_string())?;
            SessionStore::delete(store, &id)
                .await
                .map_err(|e| e.to_string())?;
            if let Some(signed_in) = signed_in {
                tracing::info!(subject = %signed_in.user.subject, "signed out of the app (the sign-out the store could not take earlier)");
                auth.metrics().session_ended("signed_out");
                if let Err(e) = end_keycloak_session(&auth, &signed_in).await {
                    tracing::warn!(error = %e, "signed out of the app later, but Keycloak's session may remain");
                }
            }
            Ok(())
        }
    });
}

/// Ends every app session of Keycloak session `sid` (or user `sub`) once the store answers: a
/// back-channel logout that came while it did not.
pub fn end_sessions_later(auth: &KeycloakAuth, sid: Option<String>, sub: Option<String>) {
    let auth = auth.clone();
    retry("a back-channel logout", move || {
        let (auth, sid, sub) = (auth.clone(), sid.clone(), sub.clone());
        async move {
            let deleted = auth
                .store()
                .end_app_sessions_of(sid.as_deref(), sub.as_deref(), unix_now())
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(
                sessions = deleted,
                "back-channel logout (taken once the store answered again)"
            );
            Ok(())
        }
    });
}

/// Runs `attempt` until it succeeds, with growing pauses, for at most [`GIVE_UP_AFTER`].
fn retry<F, Fut>(what: &'static str, attempt: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    if PENDING.fetch_add(1, Ordering::SeqCst) >= MAX_PENDING {
        PENDING.fetch_sub(1, Ordering::SeqCst);
        tracing::error!(
            what,
            "too many endings wait for the session store; this one is dropped"
        );
        return;
    }
    tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_secs(1);
        loop {
            tokio::time::sleep(pause).await;
            match attempt().await {
                Ok(()) => break,
                Err(e) if started.elapsed() >= GIVE_UP_AFTER => {
                    tracing::error!(what, error = %e, "the session store did not come back in 15 minutes; given up");
                    break;
                }
                Err(e) => {
                    tracing::debug!(what, error = %e, "the session store still does not answer")
                }
            }
            pause = (pause * 2).min(Duration::from_secs(10));
        }
        PENDING.fetch_sub(1, Ordering::SeqCst);
    });
}
