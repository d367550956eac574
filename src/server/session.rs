//! Server-side sessions: the store behind tower-sessions, and what a session holds.
//!
//! The browser only ever holds the opaque session id in an HttpOnly cookie; tokens live in the
//! store. A session record that cannot be read counts as "no session", never as an error page.

use crate::auth::pending::PendingLogins;
use crate::user::KeycloakUser;
use serde::{Deserialize, Serialize};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};
use tower_sessions::{Expiry, MemoryStore, Session};
use tower_sessions_sqlx_store::SqliteStore;

pub const AUTH_KEY: &str = "auth";
pub const PENDING_KEY: &str = "pending_logins";

/// The configured session store.
#[derive(Clone, Debug)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Memory(MemoryStore),
}

#[async_trait::async_trait]
impl SessionStore for AnyStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match self {
            AnyStore::Sqlite(s) => s.create(record).await,
            AnyStore::Memory(s) => s.create(record).await,
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self {
            AnyStore::Sqlite(s) => s.save(record).await,
            AnyStore::Memory(s) => s.save(record).await,
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match self {
            AnyStore::Sqlite(s) => s.load(id).await,
            AnyStore::Memory(s) => s.load(id).await,
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match self {
            AnyStore::Sqlite(s) => s.delete(id).await,
            AnyStore::Memory(s) => s.delete(id).await,
        }
    }
}

impl AnyStore {
    /// Removes expired sessions every `period` (SQLite; the memory store drops them on load).
    pub fn spawn_expiry_sweeper(&self, period: std::time::Duration) {
        if let AnyStore::Sqlite(s) = self {
            let s = s.clone();
            tokio::spawn(async move {
                if let Err(e) = s.continuously_delete_expired(period).await {
                    tracing::warn!(error = %e, "expired-session sweeper stopped");
                }
            });
        }
    }
}

/// A signed-in session as stored on the server. `Debug` shows no token.
#[derive(Clone, Serialize, Deserialize)]
pub struct AuthSession {
    pub user: KeycloakUser,
    pub access_token: String,
    pub access_expires_at: i64,
    pub refresh_token: Option<String>,
    pub id_token: String,
    /// Keycloak's session id (`sid`), for back-channel logout.
    pub sid: Option<String>,
}

impl std::fmt::Debug for AuthSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSession")
            .field("subject", &self.user.subject)
            .field("access_expires_at", &self.access_expires_at)
            .field("session_expires_at", &self.user.session_expires_at)
            .finish_non_exhaustive()
    }
}

/// The signed-in session, if any and not past its end. A record that does not deserialize (for
/// example written by an older version) counts as signed out.
pub async fn auth_session(session: &Session, now: i64) -> Option<AuthSession> {
    match session.get::<AuthSession>(AUTH_KEY).await {
        Ok(Some(auth)) if now < auth.user.session_expires_at => Some(auth),
        Ok(Some(_)) => {
            tracing::info!("session has reached its end");
            let _ = session.remove_value(AUTH_KEY).await;
            None
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable session record; treating as signed out");
            None
        }
    }
}

pub async fn pending_logins(session: &Session) -> PendingLogins {
    session
        .get::<PendingLogins>(PENDING_KEY)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Makes the next save of `session` keep the signed-in session's end (Keycloak's refresh token
/// lifetime) instead of the layer's default inactivity expiry for pre-login sessions.
pub fn keep_session_end(session: &Session, auth: &AuthSession) {
    let end = time::OffsetDateTime::from_unix_timestamp(auth.user.session_expires_at)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    session.set_expiry(Some(Expiry::AtDateTime(end)));
}
