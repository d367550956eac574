//! Server-side sessions: the store behind tower-sessions, and what a session holds.
//!
//! The browser only ever holds the opaque session id in an HttpOnly cookie; tokens live in the
//! store. A session record that cannot be read counts as "no session", never as an error page.

use keycloak_bff_core::pending::PendingLogins;
use keycloak_bff_core::refresh::TokenTimes;
use keycloak_bff_core::KeycloakUser;
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};
use tower_sessions::{Expiry, MemoryStore, Session};
use tower_sessions_sqlx_store::SqliteStore;

pub const AUTH_KEY: &str = "auth";
pub const PENDING_KEY: &str = "pending_logins";

/// The configured session backend.
#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqliteStore),
    Memory(MemoryStore),
}

/// Which app sessions belong to which Keycloak session (`sid`) and user (`sub`), kept up to date
/// on every save and delete, so that back-channel logout finds them without scanning.
#[derive(Clone, Debug)]
enum Index {
    Sqlite(SqlitePool),
    Memory(Arc<Mutex<HashMap<String, Identity>>>),
}

/// The session store: the configured backend plus the `sid`/`sub` index and the list of Keycloak
/// sessions ended by back-channel logout. A session of an ended Keycloak session is never loaded
/// or saved again, even by a request that was in flight when the logout arrived.
#[derive(Clone, Debug)]
pub struct AuthStore {
    backend: Backend,
    index: Index,
    ended_sids: Arc<Mutex<HashMap<String, i64>>>,
}

/// How long an ended `sid` is remembered (longer than any Keycloak session lives).
const ENDED_SID_TTL: i64 = 48 * 3600;

fn store_error(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

/// The Keycloak session (`sid`, if any) and user (`sub`) a session record belongs to.
type Identity = (Option<String>, String);

/// The Keycloak `sid` and `sub` of a session record, if it is signed in.
fn identity(record: &Record) -> Option<Identity> {
    let auth = record.data.get(AUTH_KEY)?;
    let sub = auth.get("user")?.get("subject")?.as_str()?.to_owned();
    let sid = auth.get("sid").and_then(|s| s.as_str()).map(str::to_owned);
    Some((sid, sub))
}

impl AuthStore {
    /// Opens (or creates) the SQLite file at `path` and brings its schema up to date.
    pub async fn sqlite_file(path: &std::path::Path) -> Result<Self, String> {
        Self::sqlite(open_sqlite(path).await?).await
    }

    /// Uses `pool`, bringing its schema up to date (`migrations/` of this crate: the sessions
    /// table of tower-sessions' SQLite store and the `sid`/`sub` index). The pool should hold
    /// only the sessions: its migrations table is this store's.
    pub async fn sqlite(pool: SqlitePool) -> Result<Self, String> {
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| format!("migration: {e}"))?;
        let backend = SqliteStore::new(pool.clone());
        Ok(Self {
            backend: Backend::Sqlite(backend),
            index: Index::Sqlite(pool),
            ended_sids: Arc::default(),
        })
    }

    pub fn memory() -> Self {
        Self {
            backend: Backend::Memory(MemoryStore::default()),
            index: Index::Memory(Arc::default()),
            ended_sids: Arc::default(),
        }
    }

    fn is_ended(&self, record: &Record) -> bool {
        let Some((Some(sid), _)) = identity(record) else {
            return false;
        };
        self.ended_sids
            .lock()
            .map(|ended| ended.contains_key(&sid))
            .unwrap_or(false)
    }

    async fn index_record(&self, record: &Record) -> session_store::Result<()> {
        let id = record.id.to_string();
        match (&self.index, identity(record)) {
            (Index::Sqlite(pool), Some((sid, sub))) => {
                sqlx::query(
                    "INSERT INTO kc_session_index (session_id, sid, sub, expires_at) VALUES (?, ?, ?, ?)
                     ON CONFLICT(session_id) DO UPDATE SET sid = excluded.sid, sub = excluded.sub,
                     expires_at = excluded.expires_at",
                )
                .bind(&id)
                .bind(sid)
                .bind(sub)
                .bind(record.expiry_date.unix_timestamp())
                .execute(pool)
                .await
                .map_err(store_error)?;
            }
            (Index::Sqlite(_), None) => self.unindex(&id).await?,
            (Index::Memory(map), identity) => {
                let mut map = map.lock().map_err(store_error)?;
                match identity {
                    Some(entry) => map.insert(id, entry),
                    None => map.remove(&id),
                };
            }
        }
        Ok(())
    }

    async fn unindex(&self, id: &str) -> session_store::Result<()> {
        match &self.index {
            Index::Sqlite(pool) => {
                sqlx::query("DELETE FROM kc_session_index WHERE session_id = ?")
                    .bind(id)
                    .execute(pool)
                    .await
                    .map_err(store_error)?;
            }
            Index::Memory(map) => {
                map.lock().map_err(store_error)?.remove(id);
            }
        }
        Ok(())
    }

    /// Deletes every app session of the Keycloak session `sid`, or, without a `sid`, of the user
    /// `sub`; remembers the `sid` as ended. Returns how many sessions were deleted.
    pub async fn end_keycloak_session(
        &self,
        sid: Option<&str>,
        sub: Option<&str>,
        now: i64,
    ) -> session_store::Result<usize> {
        if let Some(sid) = sid {
            let mut ended = self.ended_sids.lock().map_err(store_error)?;
            ended.retain(|_, until| *until > now);
            ended.insert(sid.to_owned(), now + ENDED_SID_TTL);
        }
        let ids: Vec<String> = match (&self.index, sid, sub) {
            (_, None, None) => Vec::new(),
            (Index::Sqlite(pool), Some(sid), _) => {
                sqlx::query_scalar("SELECT session_id FROM kc_session_index WHERE sid = ?")
                    .bind(sid)
                    .fetch_all(pool)
                    .await
                    .map_err(store_error)?
            }
            (Index::Sqlite(pool), None, Some(sub)) => {
                sqlx::query_scalar("SELECT session_id FROM kc_session_index WHERE sub = ?")
                    .bind(sub)
                    .fetch_all(pool)
                    .await
                    .map_err(store_error)?
            }
            (Index::Memory(map), sid, sub) => map
                .lock()
                .map_err(store_error)?
                .iter()
                .filter(|(_, (s, u))| match sid {
                    Some(sid) => s.as_deref() == Some(sid),
                    None => Some(u.as_str()) == sub,
                })
                .map(|(id, _)| id.clone())
                .collect(),
        };
        let mut deleted = 0;
        for id in ids {
            if let Ok(parsed) = id.parse::<Id>() {
                self.delete(&parsed).await?;
                deleted += 1;
            } else {
                self.unindex(&id).await?;
            }
        }
        Ok(deleted)
    }

    /// Removes expired sessions and their index rows once (SQLite; the memory store drops
    /// expired sessions when it loads them).
    pub async fn sweep_once(&self, now: i64) -> session_store::Result<()> {
        let (Backend::Sqlite(store), Index::Sqlite(pool)) = (&self.backend, &self.index) else {
            return Ok(());
        };
        store.delete_expired().await?;
        sqlx::query("DELETE FROM kc_session_index WHERE expires_at < ?")
            .bind(now)
            .execute(pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// Removes expired sessions every `period`.
    pub fn spawn_expiry_sweeper(&self, period: std::time::Duration) {
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                if let Err(e) = store.sweep_once(now).await {
                    tracing::warn!(error = %e, "could not delete expired sessions");
                }
            }
        });
    }
}

#[async_trait::async_trait]
impl SessionStore for AuthStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        if self.is_ended(record) {
            return Ok(());
        }
        match &self.backend {
            Backend::Sqlite(s) => s.create(record).await?,
            Backend::Memory(s) => s.create(record).await?,
        }
        self.index_record(record).await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        if self.is_ended(record) {
            return self.delete(&record.id).await;
        }
        match &self.backend {
            Backend::Sqlite(s) => s.save(record).await?,
            Backend::Memory(s) => s.save(record).await?,
        }
        self.index_record(record).await
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let record = match &self.backend {
            Backend::Sqlite(s) => s.load(id).await?,
            Backend::Memory(s) => s.load(id).await?,
        };
        match record {
            Some(r) if self.is_ended(&r) => {
                self.delete(id).await?;
                Ok(None)
            }
            other => Ok(other),
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match &self.backend {
            Backend::Sqlite(s) => s.delete(id).await?,
            Backend::Memory(s) => s.delete(id).await?,
        }
        self.unindex(&id.to_string()).await
    }
}

/// Opens (or creates, with its folder) the SQLite file at `path`: WAL journal, a 5 s busy
/// timeout, a few connections. For the session store, and for an app's own database.
pub async fn open_sqlite(path: &std::path::Path) -> Result<SqlitePool, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .busy_timeout(std::time::Duration::from_secs(5));
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))
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

impl AuthSession {
    pub fn tokens_view(&self) -> TokenTimes {
        TokenTimes {
            access_expires_at: self.access_expires_at,
            has_refresh_token: self.refresh_token.is_some(),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::OffsetDateTime;

    async fn sqlite_store() -> AuthStore {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .expect("in-memory SQLite");
        AuthStore::sqlite(pool).await.expect("store")
    }

    #[tokio::test]
    async fn a_sqlite_file_is_created_with_its_folder_and_reopened_with_its_sessions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/sessions.sqlite3");
        let mut r = signed_in("sid-f", "alice", 600);
        {
            let store = AuthStore::sqlite_file(&path).await.expect("store");
            store.create(&mut r).await.expect("create");
        }
        let store = AuthStore::sqlite_file(&path).await.expect("reopened");
        assert!(store.load(&r.id).await.expect("load").is_some());
        let deleted = store
            .end_keycloak_session(Some("sid-f"), None, 0)
            .await
            .expect("logout");
        assert_eq!(deleted, 1, "the index survived the restart too");
    }

    fn signed_in(sid: &str, sub: &str, expires_in: i64) -> Record {
        let mut data = HashMap::new();
        data.insert(
            AUTH_KEY.to_owned(),
            json!({"user": {"subject": sub}, "sid": sid}),
        );
        Record {
            id: Id::default(),
            data,
            expiry_date: OffsetDateTime::now_utc() + time::Duration::seconds(expires_in),
        }
    }

    async fn both_stores() -> Vec<AuthStore> {
        vec![sqlite_store().await, AuthStore::memory()]
    }

    #[tokio::test]
    async fn back_channel_logout_deletes_every_session_of_the_keycloak_session_and_no_other() {
        for store in both_stores().await {
            let mut a1 = signed_in("sid-a", "alice", 600);
            let mut a2 = signed_in("sid-a", "alice", 600);
            let mut b = signed_in("sid-b", "bob", 600);
            for r in [&mut a1, &mut a2, &mut b] {
                store.create(r).await.expect("create");
            }
            let deleted = store
                .end_keycloak_session(Some("sid-a"), Some("alice"), 0)
                .await
                .expect("logout");
            assert_eq!(deleted, 2);
            assert!(store.load(&a1.id).await.expect("load").is_none());
            assert!(store.load(&a2.id).await.expect("load").is_none());
            assert!(store.load(&b.id).await.expect("load").is_some());
        }
    }

    #[tokio::test]
    async fn without_a_sid_every_session_of_the_user_ends() {
        for store in both_stores().await {
            let mut a1 = signed_in("s1", "alice", 600);
            let mut a2 = signed_in("s2", "alice", 600);
            let mut b = signed_in("s3", "bob", 600);
            for r in [&mut a1, &mut a2, &mut b] {
                store.create(r).await.expect("create");
            }
            let deleted = store
                .end_keycloak_session(None, Some("alice"), 0)
                .await
                .expect("logout");
            assert_eq!(deleted, 2);
            assert!(store.load(&b.id).await.expect("load").is_some());
        }
    }

    #[tokio::test]
    async fn a_request_in_flight_cannot_bring_an_ended_session_back() {
        for store in both_stores().await {
            let mut r = signed_in("sid-x", "alice", 600);
            store.create(&mut r).await.expect("create");
            store
                .end_keycloak_session(Some("sid-x"), None, 0)
                .await
                .expect("logout");
            // A request that loaded the session before the logout saves it afterwards.
            store.save(&r).await.expect("save");
            assert!(store.load(&r.id).await.expect("load").is_none());
        }
    }

    #[tokio::test]
    async fn expired_sessions_and_their_index_rows_are_swept() {
        let store = sqlite_store().await;
        let mut old = signed_in("old", "alice", -10);
        let mut live = signed_in("live", "alice", 600);
        store.create(&mut old).await.expect("create");
        store.create(&mut live).await.expect("create");
        store
            .sweep_once(OffsetDateTime::now_utc().unix_timestamp())
            .await
            .expect("sweep");
        let Index::Sqlite(pool) = &store.index else {
            panic!("sqlite index");
        };
        let rows: Vec<String> = sqlx::query_scalar("SELECT sid FROM kc_session_index")
            .fetch_all(pool)
            .await
            .expect("index");
        assert_eq!(rows, vec!["live"]);
        assert!(store.load(&live.id).await.expect("load").is_some());
    }
}
