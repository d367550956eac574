//! Server-side sessions: the store behind tower-sessions, and what a session holds.
//!
//! The browser only ever holds the opaque session id in an HttpOnly cookie; tokens live in the
//! store: SQLite (one process), Redis ([`crate::server::redis_store`], any number of replicas) or
//! memory (tests), with the same behaviour. A session record that cannot be decoded counts as "no
//! session"; a store that does not answer is [`AppError::StoreUnavailable`] (503), never a
//! sign-out.

use crate::error::AppError;
use crate::server::events::SessionEvents;
use crate::server::redis_store::{RedisBackend, Saved, LOCK_TTL_MS};
use keycloak_bff_core::jwt::LogoutTarget;
use keycloak_bff_core::refresh::{Backoff, TokenTimes};
use keycloak_bff_core::KeycloakUser;
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};
use tower_sessions::{Expiry, Session};
use tower_sessions_sqlx_store::SqliteStore;

pub const AUTH_KEY: &str = "auth";

/// The configured session backend. The memory backend is this crate's own map, so that its
/// expired records are swept like SQLite's (tower-sessions' `MemoryStore` never frees them).
#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqliteStore, SqlitePool),
    Memory(Arc<Mutex<HashMap<Id, Record>>>),
    Redis(RedisBackend),
}

/// Which app sessions belong to which Keycloak session (`sid`) and user (`sub`), kept up to date
/// on every save and delete, so that back-channel logout finds them without scanning.
#[derive(Clone, Debug, Default)]
struct MemoryIndex {
    sessions: HashMap<String, (Identity, i64)>,
    logout_jtis: HashMap<String, i64>,
}

/// The session store: the configured backend plus the `sid`/`sub` index, the Keycloak sessions
/// ended by back-channel logout and the logout tokens already used. A session of an ended
/// Keycloak session is never loaded or saved again, even by a request that was in flight when the
/// logout arrived. With SQLite, the ended `sid`s and used logout tokens survive a restart.
#[derive(Clone, Debug)]
pub struct AuthStore {
    backend: Backend,
    memory_index: Arc<Mutex<MemoryIndex>>,
    /// Ended `sid`s until when they matter; a cache of `kc_ended_sid` with SQLite.
    ended_sids: Arc<Mutex<HashMap<String, i64>>>,
    /// Announced on every save and delete of a session (with Redis, by every replica).
    events: SessionEvents,
    /// SQLite only: recently used records ([`RecordCache`]).
    cache: Arc<Mutex<RecordCache>>,
}

/// The SQLite backend's most recently used records, kept in this process (the only one that
/// writes the file): reading a session for a page skips SQLite and the decoding of its record.
/// Every save and delete writes through. A record read from SQLite is kept only if nothing was
/// written meanwhile (`epoch`), so the cache never holds an older token set or a deleted session.
#[derive(Debug, Default)]
struct RecordCache {
    records: HashMap<Id, Record>,
    epoch: u64,
}

/// How many records the SQLite backend keeps in memory (about 10 KB each once decoded): the
/// sessions in use right now. More would cost memory for sessions that are idle anyway.
const CACHED_RECORDS: usize = 256;

impl RecordCache {
    fn get(&self, id: &Id, now: time::OffsetDateTime) -> Option<Record> {
        self.records
            .get(id)
            .filter(|r| r.expiry_date > now)
            .cloned()
    }

    fn keep(&mut self, record: &Record) {
        if self.records.len() >= CACHED_RECORDS && !self.records.contains_key(&record.id) {
            let now = time::OffsetDateTime::now_utc();
            self.records.retain(|_, r| r.expiry_date > now);
            if self.records.len() >= CACHED_RECORDS {
                // Any one: the cache only saves reads.
                if let Some(old) = self.records.keys().next().copied() {
                    self.records.remove(&old);
                }
            }
        }
        self.records.insert(record.id, record.clone());
    }

    /// A write: `record` is the newest (or `None`: deleted), and reads in flight are stale.
    fn wrote(&mut self, id: &Id, record: Option<&Record>) {
        self.epoch = self.epoch.wrapping_add(1);
        match record {
            Some(record) => self.keep(record),
            None => {
                self.records.remove(id);
            }
        }
    }
}

/// A session's refresh lock held across replicas; see [`AuthStore::lock_refresh`].
pub struct RefreshLock {
    id: String,
    token: String,
}

/// How long an ended `sid` is remembered (longer than any Keycloak session lives).
const ENDED_SID_TTL: i64 = 48 * 3600;

/// Beyond this many remembered logout tokens, new ones are refused rather than the memory grown
/// without bound under a flood (only tokens Keycloak signed get this far).
const MAX_LOGOUT_JTIS: usize = 100_000;

fn store_error(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

fn unix(t: time::OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

fn now() -> i64 {
    unix(time::OffsetDateTime::now_utc())
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

/// How new a record's token set is: 0 without one, else one more than its rotation count.
fn token_rank(record: &Record) -> u64 {
    record.data.get(AUTH_KEY).map_or(0, |auth| {
        auth.get("generation")
            .and_then(|g| g.as_u64())
            .unwrap_or(0)
            .saturating_add(1)
    })
}

/// The record to write when `incoming` replaces `stored` (catalogue D03): a request that read the
/// session before another one rotated its tokens must not put the spent tokens back. The newer
/// token set (and its end) is kept; the rest of the incoming record is written as it is.
fn keep_newer_tokens<'a>(incoming: &'a Record, stored: &Record) -> Cow<'a, Record> {
    if token_rank(stored) <= token_rank(incoming) {
        return Cow::Borrowed(incoming);
    }
    let mut merged = incoming.clone();
    if let Some(auth) = stored.data.get(AUTH_KEY) {
        merged.data.insert(AUTH_KEY.to_owned(), auth.clone());
    }
    merged.expiry_date = merged.expiry_date.max(stored.expiry_date);
    Cow::Owned(merged)
}

impl AuthStore {
    /// Opens (or creates) the SQLite file at `path` and brings its schema up to date.
    pub async fn sqlite_file(path: &std::path::Path) -> Result<Self, String> {
        Self::sqlite(open_sqlite(path).await?).await
    }

    /// Uses `pool`, bringing its schema up to date (`migrations/` of this crate: the sessions
    /// table of tower-sessions' SQLite store, the `sid`/`sub` index, the back-channel logout
    /// guard). The pool should hold only the sessions: its migrations table is this store's.
    pub async fn sqlite(pool: SqlitePool) -> Result<Self, String> {
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| format!("migration: {e}"))?;
        let now = unix(time::OffsetDateTime::now_utc());
        let ended: Vec<(String, i64)> =
            sqlx::query_as("SELECT sid, until_at FROM kc_ended_sid WHERE until_at > ?")
                .bind(now)
                .fetch_all(&pool)
                .await
                .map_err(|e| format!("ended sessions: {e}"))?;
        Ok(Self {
            backend: Backend::Sqlite(SqliteStore::new(pool.clone()), pool),
            memory_index: Arc::default(),
            ended_sids: Arc::new(Mutex::new(ended.into_iter().collect())),
            events: SessionEvents::default(),
            cache: Arc::default(),
        })
    }

    /// Sessions in Redis at `url`, shared with every replica; each command gives up after
    /// `timeout` (Redis down: "unavailable", never a hang).
    pub async fn redis(url: &str, timeout: std::time::Duration) -> Result<Self, String> {
        let backend = RedisBackend::connect(url, timeout).await?;
        let events = SessionEvents::default();
        backend.forward_events(events.clone()).await?;
        Ok(Self {
            backend: Backend::Redis(backend),
            memory_index: Arc::default(),
            ended_sids: Arc::default(),
            events,
            cache: Arc::default(),
        })
    }

    /// The signed-in part of session `id` as stored now (`None`: gone, or not signed in), read
    /// past any request's copy of it.
    pub async fn load_auth(&self, id: &Id) -> session_store::Result<Option<AuthSession>> {
        Ok(self.load(id).await?.and_then(|record| {
            record
                .data
                .get(AUTH_KEY)
                .and_then(|value| serde_json::from_value(value.clone()).ok())
        }))
    }

    /// Where the saves and deletes of sessions are announced, by session id.
    pub fn events(&self) -> &SessionEvents {
        &self.events
    }

    /// Whether the store answers now (the readiness probe).
    pub async fn is_ready(&self) -> bool {
        match &self.backend {
            Backend::Redis(r) => r.ping().await,
            Backend::Sqlite(_, pool) => sqlx::query("SELECT 1").execute(pool).await.is_ok(),
            Backend::Memory(_) => true,
        }
    }

    /// Waits for the refresh lock of session `id` across every replica (Redis: a key with an
    /// expiry, so that a holder that dies loses it after `LOCK_TTL_MS`). The other stores serve
    /// one process, whose own lock suffices: `None` at once.
    pub async fn lock_refresh(&self, id: &str) -> session_store::Result<Option<RefreshLock>> {
        let Backend::Redis(r) = &self.backend else {
            return Ok(None);
        };
        let token = Id::default().to_string();
        // Longer than the lock lives: a holder that died is outlived, and its lock taken over.
        let wait = std::time::Duration::from_millis(LOCK_TTL_MS.unsigned_abs() + 5_000);
        let deadline = std::time::Instant::now() + wait;
        loop {
            if r.try_lock(id, &token).await? {
                return Ok(Some(RefreshLock {
                    id: id.to_owned(),
                    token,
                }));
            }
            if std::time::Instant::now() > deadline {
                return Err(store_error("waited too long for the refresh lock"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Whether the store is shared by several processes (Redis): then per-session bookkeeping
    /// such as the refresh back-off lives in it too.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Redis(_))
    }

    /// The refresh back-off of session `id` kept in a shared store.
    pub async fn backoff(&self, id: &str) -> session_store::Result<Backoff> {
        let Backend::Redis(r) = &self.backend else {
            return Ok(Backoff::default());
        };
        Ok(r.get_backoff(id)
            .await?
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default())
    }

    /// Records (or clears) the refresh back-off of session `id` in a shared store, kept
    /// `keep_secs` past its retry time.
    pub async fn set_backoff(
        &self,
        id: &str,
        value: Option<Backoff>,
        now: i64,
        keep_secs: i64,
    ) -> session_store::Result<()> {
        let Backend::Redis(r) = &self.backend else {
            return Ok(());
        };
        match value {
            Some(b) => {
                let json = serde_json::to_string(&b).map_err(store_error)?;
                let ttl = b.retry_at.saturating_sub(now).saturating_add(keep_secs);
                r.set_backoff(id, Some(&json), ttl).await
            }
            None => r.set_backoff(id, None, 0).await,
        }
    }

    /// Releases a lock taken by [`AuthStore::lock_refresh`] (if it is still this holder's).
    pub async fn unlock_refresh(&self, lock: RefreshLock) {
        if let Backend::Redis(r) = &self.backend {
            if let Err(e) = r.unlock(&lock.id, &lock.token).await {
                tracing::warn!(error = %e, "could not release a refresh lock; it expires by itself");
            }
        }
    }

    /// Sessions in this process's memory: gone at restart, swept like the others.
    pub fn memory() -> Self {
        Self {
            backend: Backend::Memory(Arc::default()),
            memory_index: Arc::default(),
            ended_sids: Arc::default(),
            events: SessionEvents::default(),
            cache: Arc::default(),
        }
    }

    async fn is_ended(&self, record: &Record) -> session_store::Result<bool> {
        let Some((Some(sid), _)) = identity(record) else {
            return Ok(false);
        };
        if let Backend::Redis(r) = &self.backend {
            return r.is_ended(&sid).await;
        }
        Ok(self
            .ended_sids
            .lock()
            .map(|ended| ended.contains_key(&sid))
            .unwrap_or(false))
    }

    async fn index_record(&self, record: &Record) -> session_store::Result<()> {
        let id = record.id.to_string();
        match (&self.backend, identity(record)) {
            (Backend::Sqlite(_, pool), Some((sid, sub))) => {
                sqlx::query(
                    "INSERT INTO kc_session_index (session_id, sid, sub, expires_at) VALUES (?, ?, ?, ?)
                     ON CONFLICT(session_id) DO UPDATE SET sid = excluded.sid, sub = excluded.sub,
                     expires_at = excluded.expires_at",
                )
                .bind(&id)
                .bind(sid)
                .bind(sub)
                .bind(unix(record.expiry_date))
                .execute(pool)
                .await
                .map_err(store_error)?;
            }
            (Backend::Sqlite(..), None) => self.unindex(&id).await?,
            (Backend::Redis(r), Some((sid, sub))) => {
                r.index(&id, sid.as_deref(), &sub, unix(record.expiry_date), now())
                    .await?
            }
            // Index sets keep ids of sessions that went away until they expire; deleting an id
            // that no longer exists does nothing.
            (Backend::Redis(_), None) => {}
            (Backend::Memory(_), identity) => {
                let mut index = self.memory_index.lock().map_err(store_error)?;
                match identity {
                    Some(entry) => index.sessions.insert(id, (entry, unix(record.expiry_date))),
                    None => index.sessions.remove(&id),
                };
            }
        }
        Ok(())
    }

    async fn unindex(&self, id: &str) -> session_store::Result<()> {
        match &self.backend {
            Backend::Sqlite(_, pool) => {
                sqlx::query("DELETE FROM kc_session_index WHERE session_id = ?")
                    .bind(id)
                    .execute(pool)
                    .await
                    .map_err(store_error)?;
            }
            Backend::Memory(_) => {
                self.memory_index
                    .lock()
                    .map_err(store_error)?
                    .sessions
                    .remove(id);
            }
            Backend::Redis(_) => {}
        }
        Ok(())
    }

    /// Records the use of a logout token's `jti` until `replay_until`; false when it was used
    /// before (a replay, even across a restart with SQLite), or when the guard is full.
    pub async fn first_use_of_logout_token(
        &self,
        target: &LogoutTarget,
        now: i64,
    ) -> session_store::Result<bool> {
        match &self.backend {
            Backend::Sqlite(_, pool) => {
                let inserted = sqlx::query(
                    "INSERT INTO kc_logout_jti (jti, until_at) VALUES (?, ?)
                     ON CONFLICT(jti) DO UPDATE SET until_at = excluded.until_at
                     WHERE kc_logout_jti.until_at <= ?",
                )
                .bind(&target.jti)
                .bind(target.replay_until)
                .bind(now)
                .execute(pool)
                .await
                .map_err(store_error)?;
                Ok(inserted.rows_affected() == 1)
            }
            Backend::Redis(r) => r.first_use(&target.jti, target.replay_until, now).await,
            Backend::Memory(_) => {
                let mut index = self.memory_index.lock().map_err(store_error)?;
                let seen = &mut index.logout_jtis;
                seen.retain(|_, until| *until > now);
                if seen.len() >= MAX_LOGOUT_JTIS {
                    return Ok(false);
                }
                Ok(seen
                    .insert(target.jti.clone(), target.replay_until)
                    .is_none())
            }
        }
    }

    async fn remember_ended(&self, sid: &str, now: i64) -> session_store::Result<()> {
        let until = now.saturating_add(ENDED_SID_TTL);
        if let Backend::Redis(r) = &self.backend {
            return r.remember_ended(sid, ENDED_SID_TTL).await;
        }
        {
            let mut ended = self.ended_sids.lock().map_err(store_error)?;
            ended.retain(|_, until| *until > now);
            ended.insert(sid.to_owned(), until);
        }
        if let Backend::Sqlite(_, pool) = &self.backend {
            sqlx::query(
                "INSERT INTO kc_ended_sid (sid, until_at) VALUES (?, ?)
                 ON CONFLICT(sid) DO UPDATE SET until_at = excluded.until_at",
            )
            .bind(sid)
            .bind(until)
            .execute(pool)
            .await
            .map_err(store_error)?;
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
            self.remember_ended(sid, now).await?;
        }
        let ids: Vec<String> = match (&self.backend, sid, sub) {
            (_, None, None) => Vec::new(),
            (Backend::Sqlite(_, pool), Some(sid), _) => {
                sqlx::query_scalar("SELECT session_id FROM kc_session_index WHERE sid = ?")
                    .bind(sid)
                    .fetch_all(pool)
                    .await
                    .map_err(store_error)?
            }
            (Backend::Sqlite(_, pool), None, Some(sub)) => {
                sqlx::query_scalar("SELECT session_id FROM kc_session_index WHERE sub = ?")
                    .bind(sub)
                    .fetch_all(pool)
                    .await
                    .map_err(store_error)?
            }
            (Backend::Redis(r), sid, sub) => r.indexed(sid, sub).await?,
            (Backend::Memory(_), sid, sub) => self
                .memory_index
                .lock()
                .map_err(store_error)?
                .sessions
                .iter()
                .filter(|(_, ((s, u), _))| match sid {
                    Some(sid) => s.as_deref() == Some(sid),
                    None => Some(u.as_str()) == sub,
                })
                .map(|(id, _)| id.clone())
                .collect(),
        };
        let mut deleted = 0;
        for id in ids {
            if let Backend::Redis(r) = &self.backend {
                // The index sets may still name sessions that went away.
                deleted += usize::from(r.delete(&id).await?);
                continue;
            }
            if let Ok(parsed) = id.parse::<Id>() {
                self.delete(&parsed).await?;
                deleted += 1;
            } else {
                self.unindex(&id).await?;
            }
        }
        Ok(deleted)
    }

    /// Removes expired sessions, their index rows, and logout-guard entries that no longer
    /// matter, once, whatever the backend.
    pub async fn sweep_once(&self, now: i64) -> session_store::Result<()> {
        if let Ok(mut ended) = self.ended_sids.lock() {
            ended.retain(|_, until| *until > now);
        }
        match &self.backend {
            Backend::Sqlite(store, pool) => {
                store.delete_expired().await?;
                if let Ok(mut cache) = self.cache.lock() {
                    cache.records.retain(|_, r| unix(r.expiry_date) > now);
                }
                for sql in [
                    "DELETE FROM kc_session_index WHERE expires_at < ?",
                    "DELETE FROM kc_logout_jti WHERE until_at <= ?",
                    "DELETE FROM kc_ended_sid WHERE until_at <= ?",
                ] {
                    sqlx::query(sql)
                        .bind(now)
                        .execute(pool)
                        .await
                        .map_err(store_error)?;
                }
            }
            Backend::Memory(records) => {
                records
                    .lock()
                    .map_err(store_error)?
                    .retain(|_, r| unix(r.expiry_date) > now);
                let mut index = self.memory_index.lock().map_err(store_error)?;
                index.sessions.retain(|_, (_, expires)| *expires > now);
                index.logout_jtis.retain(|_, until| *until > now);
            }
            // Redis expires every key itself.
            Backend::Redis(_) => {}
        }
        Ok(())
    }

    /// How many session records the store holds (expired ones not yet swept included).
    pub async fn len(&self) -> session_store::Result<usize> {
        match &self.backend {
            Backend::Sqlite(_, pool) => {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tower_sessions")
                    .fetch_one(pool)
                    .await
                    .map_err(store_error)?;
                Ok(usize::try_from(n).unwrap_or(0))
            }
            Backend::Memory(records) => Ok(records.lock().map_err(store_error)?.len()),
            Backend::Redis(r) => r.len().await,
        }
    }

    /// Removes expired sessions every `period`.
    pub fn spawn_expiry_sweeper(&self, period: std::time::Duration) {
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let now = unix(time::OffsetDateTime::now_utc());
                if let Err(e) = store.sweep_once(now).await {
                    tracing::warn!(error = %e, "could not delete expired sessions");
                }
                // What a burst of requests freed goes back to the system.
                crate::server::memory::release_free_memory();
            }
        });
    }

    async fn backend_load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match &self.backend {
            Backend::Sqlite(s, _) => {
                let epoch = {
                    let cache = self.cache.lock().map_err(store_error)?;
                    if let Some(record) = cache.get(id, time::OffsetDateTime::now_utc()) {
                        return Ok(Some(record));
                    }
                    cache.epoch
                };
                let record = s.load(id).await?;
                if let Some(record) = &record {
                    let mut cache = self.cache.lock().map_err(store_error)?;
                    if cache.epoch == epoch {
                        cache.keep(record);
                    }
                }
                Ok(record)
            }
            Backend::Redis(r) => Ok(r
                .load(id)
                .await?
                .filter(|r| r.expiry_date > time::OffsetDateTime::now_utc())),
            Backend::Memory(records) => {
                let now = time::OffsetDateTime::now_utc();
                Ok(records
                    .lock()
                    .map_err(store_error)?
                    .get(id)
                    .filter(|r| r.expiry_date > now)
                    .cloned())
            }
        }
    }
}

#[async_trait::async_trait]
impl SessionStore for AuthStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        if self.is_ended(record).await? {
            return Ok(());
        }
        match &self.backend {
            Backend::Sqlite(s, _) => {
                s.create(record).await?;
                self.cache
                    .lock()
                    .map_err(store_error)?
                    .wrote(&record.id, Some(record));
            }
            Backend::Redis(r) => r.create(record, token_rank(record), now()).await?,
            Backend::Memory(records) => {
                let mut records = records.lock().map_err(store_error)?;
                while records.contains_key(&record.id) {
                    record.id = Id::default();
                }
                records.insert(record.id, record.clone());
            }
        }
        self.index_record(record).await
    }

    /// Writes over a record that still exists, never bringing back one that was deleted
    /// meanwhile (signed out, ended by back-channel logout, expired), and never replacing a newer
    /// token set with an older one ([`keep_newer_tokens`]).
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        if self.is_ended(record).await? {
            return self.delete(&record.id).await;
        }
        if let Backend::Redis(r) = &self.backend {
            // Atomic in Redis: written only over a record that exists and whose token set is not
            // newer; otherwise merged with what another replica wrote, and tried again.
            let mut record = Cow::Borrowed(record);
            for _ in 0..5 {
                match r.save(&record, token_rank(&record), now()).await? {
                    Saved::Done => return self.index_record(&record).await,
                    Saved::Gone => return Ok(()),
                    Saved::Stale => {
                        let Some(stored) = r.load(&record.id).await? else {
                            return Ok(());
                        };
                        record = Cow::Owned(keep_newer_tokens(&record, &stored).into_owned());
                    }
                }
            }
            return Err(store_error("the session kept changing while being saved"));
        }
        let Some(stored) = self.backend_load(&record.id).await? else {
            tracing::debug!("a late write to a session that is gone was dropped");
            return Ok(());
        };
        let record = keep_newer_tokens(record, &stored);
        match &self.backend {
            Backend::Sqlite(s, _) => {
                s.save(&record).await?;
                self.cache
                    .lock()
                    .map_err(store_error)?
                    .wrote(&record.id, Some(&record));
            }
            Backend::Memory(records) => {
                records
                    .lock()
                    .map_err(store_error)?
                    .insert(record.id, record.as_ref().clone());
            }
            Backend::Redis(_) => {}
        }
        self.index_record(&record).await?;
        self.events.announce(&record.id.to_string());
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match self.backend_load(id).await? {
            Some(r) if self.is_ended(&r).await? => {
                self.delete(id).await?;
                Ok(None)
            }
            other => Ok(other),
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match &self.backend {
            Backend::Sqlite(s, _) => {
                // Out of the cache first, and again once gone from SQLite: a read in between
                // does not keep what it read (the epoch moved).
                self.cache.lock().map_err(store_error)?.wrote(id, None);
                s.delete(id).await?;
                self.cache.lock().map_err(store_error)?.wrote(id, None);
            }
            Backend::Memory(records) => {
                records.lock().map_err(store_error)?.remove(id);
            }
            Backend::Redis(r) => {
                // Announced to every replica by Redis.
                r.delete(&id.to_string()).await?;
            }
        }
        self.unindex(&id.to_string()).await?;
        if !matches!(self.backend, Backend::Redis(_)) {
            self.events.announce(&id.to_string());
        }
        Ok(())
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
    /// How many times the tokens were rotated: the store never lets an older token set replace
    /// a newer one (see [`AuthStore`]'s `save`).
    #[serde(default)]
    pub generation: u64,
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
/// example written by an older version) counts as signed out; a store that does not answer is
/// [`AppError::StoreUnavailable`]: nobody is signed out by an outage.
pub async fn auth_session(session: &Session, now: i64) -> Result<Option<AuthSession>, AppError> {
    match session.get::<AuthSession>(AUTH_KEY).await {
        Ok(Some(auth)) if now < auth.user.session_expires_at => Ok(Some(auth)),
        Ok(Some(_)) => {
            tracing::info!("session has reached its end");
            let _ = session.remove_value(AUTH_KEY).await;
            Ok(None)
        }
        Ok(None) => Ok(None),
        Err(tower_sessions::session::Error::Store(session_store::Error::Backend(e))) => {
            tracing::warn!(error = %e, "the session store does not answer");
            Err(AppError::StoreUnavailable)
        }
        Err(e) => {
            tracing::warn!(error = %e, "unreadable session record; treating as signed out");
            Ok(None)
        }
    }
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
    use crate::server::redis_store::TestRedis;
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
    async fn the_sqlite_read_cache_follows_every_save_and_delete() {
        let store = sqlite_store().await;
        let mut r = signed_in("sid-c", "alice", 600);
        store.create(&mut r).await.expect("create");
        assert!(store.load(&r.id).await.expect("load").is_some());
        let mut newer = r.clone();
        newer.data.insert("extra".into(), json!(1));
        store.save(&newer).await.expect("save");
        let loaded = store.load(&r.id).await.expect("load").expect("there");
        assert_eq!(
            loaded.data.get("extra"),
            Some(&json!(1)),
            "the saved record"
        );
        store.delete(&r.id).await.expect("delete");
        assert!(store.load(&r.id).await.expect("load").is_none(), "gone");
        // Ended by back-channel logout: gone from the cache too.
        let mut other = signed_in("sid-d", "alice", 600);
        store.create(&mut other).await.expect("create");
        assert!(store.load(&other.id).await.expect("load").is_some());
        store
            .end_keycloak_session(Some("sid-d"), None, 0)
            .await
            .expect("end");
        assert!(store.load(&other.id).await.expect("load").is_none());
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

    /// The three backends, the Redis one on a throw-away server that lives as long as the guard.
    async fn all_stores() -> (Vec<AuthStore>, TestRedis) {
        let redis = TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
        let store = AuthStore::redis(&redis.url(), std::time::Duration::from_secs(2))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (
            vec![sqlite_store().await, AuthStore::memory(), store],
            redis,
        )
    }

    #[tokio::test]
    async fn back_channel_logout_deletes_every_session_of_the_keycloak_session_and_no_other() {
        let (stores, _redis) = all_stores().await;
        for store in stores {
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
        let (stores, _redis) = all_stores().await;
        for store in stores {
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
        let (stores, _redis) = all_stores().await;
        for store in stores {
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
        let Backend::Sqlite(_, pool) = &store.backend else {
            panic!("sqlite backend");
        };
        let rows: Vec<String> = sqlx::query_scalar("SELECT sid FROM kc_session_index")
            .fetch_all(pool)
            .await
            .expect("index");
        assert_eq!(rows, vec!["live"]);
        assert!(store.load(&live.id).await.expect("load").is_some());
    }

    fn with_generation(mut record: Record, generation: u64, token: &str) -> Record {
        if let Some(auth) = record.data.get_mut(AUTH_KEY) {
            auth["generation"] = json!(generation);
            auth["refresh_token"] = json!(token);
        }
        record
    }

    fn refresh_token_of(record: &Record) -> Option<String> {
        record.data.get(AUTH_KEY)?["refresh_token"]
            .as_str()
            .map(str::to_owned)
    }

    #[tokio::test]
    async fn a_late_write_of_a_session_never_puts_back_a_spent_refresh_token() {
        let (stores, _redis) = all_stores().await;
        for store in stores {
            let mut first = with_generation(signed_in("sid-d", "alice", 600), 0, "spent");
            store.create(&mut first).await.expect("create");
            // Tab A rotates the tokens; tab B read the session before and writes it afterwards.
            let rotated = with_generation(first.clone(), 1, "rotated");
            store.save(&rotated).await.expect("rotate");
            let mut stale = first.clone();
            stale.data.insert("note".into(), json!("written by tab B"));
            store.save(&stale).await.expect("late write");
            let now = store.load(&first.id).await.expect("load").expect("kept");
            assert_eq!(refresh_token_of(&now).as_deref(), Some("rotated"));
            assert_eq!(now.data.get("note"), Some(&json!("written by tab B")));
        }
    }

    #[tokio::test]
    async fn a_late_write_cannot_bring_back_a_session_that_was_signed_out() {
        let (stores, _redis) = all_stores().await;
        for store in stores {
            let mut r = signed_in("sid-o", "alice", 600);
            store.create(&mut r).await.expect("create");
            store.delete(&r.id).await.expect("sign out");
            store.save(&r).await.expect("late write");
            assert!(store.load(&r.id).await.expect("load").is_none());
            let gone = store
                .end_keycloak_session(None, Some("alice"), 0)
                .await
                .expect("index");
            assert_eq!(gone, 0, "nor its index row");
        }
    }

    #[tokio::test]
    async fn the_memory_store_frees_expired_records_when_swept() {
        let store = AuthStore::memory();
        for _ in 0..50 {
            let mut r = signed_in("sid-m", "alice", -5);
            r.data.insert("pre".into(), json!("x"));
            store.create(&mut r).await.expect("create");
        }
        let mut live = signed_in("sid-l", "bob", 600);
        store.create(&mut live).await.expect("create");
        assert_eq!(store.len().await.expect("len"), 51);
        store
            .sweep_once(OffsetDateTime::now_utc().unix_timestamp())
            .await
            .expect("sweep");
        assert_eq!(store.len().await.expect("len"), 1);
        let Ok(index) = store.memory_index.lock() else {
            panic!("index lock");
        };
        assert_eq!(index.sessions.len(), 1, "the index is swept too");
    }

    #[tokio::test]
    async fn used_logout_tokens_and_ended_sessions_are_remembered_across_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sessions.sqlite3");
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let target = LogoutTarget {
            sid: Some("sid-r".into()),
            sub: None,
            jti: "jti-1".into(),
            replay_until: now + 600,
        };
        {
            let store = AuthStore::sqlite_file(&path).await.expect("store");
            assert!(store
                .first_use_of_logout_token(&target, now)
                .await
                .expect("guard"));
            store
                .end_keycloak_session(Some("sid-r"), None, now)
                .await
                .expect("logout");
        }
        let store = AuthStore::sqlite_file(&path).await.expect("reopened");
        assert!(
            !store
                .first_use_of_logout_token(&target, now)
                .await
                .expect("guard"),
            "a replay after a restart is refused"
        );
        // A request that loaded the session before the logout and the restart saves it after.
        let mut late = signed_in("sid-r", "alice", 600);
        store.create(&mut late).await.expect("create");
        assert!(store.load(&late.id).await.expect("load").is_none());
        // Once the token is too old to be accepted anyway, its id is forgotten.
        store.sweep_once(now + 601).await.expect("sweep");
        let Backend::Sqlite(_, pool) = &store.backend else {
            panic!("sqlite backend");
        };
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM kc_logout_jti")
            .fetch_one(pool)
            .await
            .expect("count");
        assert_eq!(left, 0);
    }

    #[tokio::test]
    async fn a_logout_token_is_used_once_in_every_store() {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let target = LogoutTarget {
            sid: None,
            sub: Some("alice".into()),
            jti: "j".into(),
            replay_until: now + 100,
        };
        let (stores, _redis) = all_stores().await;
        for store in stores {
            assert!(store
                .first_use_of_logout_token(&target, now)
                .await
                .expect("1"));
            assert!(!store
                .first_use_of_logout_token(&target, now + 50)
                .await
                .expect("2"));
        }
    }

    #[tokio::test]
    async fn redis_keeps_used_logout_tokens_and_ended_sessions_for_every_replica_and_restart() {
        let redis = TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
        let url = redis.url();
        let connect = || AuthStore::redis(&url, std::time::Duration::from_secs(2));
        let (a, b) = (connect().await.expect("a"), connect().await.expect("b"));
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let target = LogoutTarget {
            sid: Some("sid-r".into()),
            sub: None,
            jti: "jti-r".into(),
            replay_until: now + 600,
        };
        let mut r = signed_in("sid-r", "alice", 600);
        b.create(&mut r).await.expect("create on b");
        assert!(a.first_use_of_logout_token(&target, now).await.expect("a"));
        assert_eq!(
            a.end_keycloak_session(Some("sid-r"), None, now)
                .await
                .expect("end"),
            1
        );
        assert!(
            b.load(&r.id).await.expect("load").is_none(),
            "gone on b too"
        );
        let restarted = connect().await.expect("restarted");
        assert!(!restarted
            .first_use_of_logout_token(&target, now)
            .await
            .expect("replay"));
        let mut late = signed_in("sid-r", "alice", 600);
        restarted.create(&mut late).await.expect("late create");
        assert!(restarted.load(&late.id).await.expect("load").is_none());
    }

    #[tokio::test]
    async fn one_replica_at_a_time_holds_a_sessions_refresh_lock() {
        let redis = TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
        let url = redis.url();
        let connect = || AuthStore::redis(&url, std::time::Duration::from_secs(2));
        let (a, b) = (connect().await.expect("a"), connect().await.expect("b"));
        let held = a
            .lock_refresh("s1")
            .await
            .expect("lock")
            .expect("redis lock");
        let waiting = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let lock = b
                .lock_refresh("s1")
                .await
                .expect("lock")
                .expect("redis lock");
            (started.elapsed(), b, lock)
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "b waits while a holds the lock");
        a.unlock_refresh(held).await;
        let (waited, b, lock) = waiting.await.expect("task");
        assert!(waited >= std::time::Duration::from_millis(300));
        b.unlock_refresh(lock).await;
        // Another session's lock is independent.
        let other = a
            .lock_refresh("s2")
            .await
            .expect("lock")
            .expect("redis lock");
        a.unlock_refresh(other).await;
    }

    #[tokio::test]
    async fn a_refresh_lock_whose_holder_died_is_taken_over_at_its_expiry() {
        let redis = TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
        let url = redis.url();
        let connect = || AuthStore::redis(&url, std::time::Duration::from_secs(2));
        let (a, b) = (connect().await.expect("a"), connect().await.expect("b"));
        // Replica a takes the lock and dies without releasing it.
        let held = a.lock_refresh("s1").await.expect("lock");
        std::mem::forget(held);
        drop(a);
        let started = std::time::Instant::now();
        let lock = b
            .lock_refresh("s1")
            .await
            .expect("taken over")
            .expect("redis lock");
        // Not before the lock's expiry: nobody else refreshed while the dead holder "held" it.
        let waited = started.elapsed();
        let ttl = std::time::Duration::from_millis(LOCK_TTL_MS.unsigned_abs());
        assert!(
            waited + std::time::Duration::from_millis(500) >= ttl,
            "{waited:?}"
        );
        b.unlock_refresh(lock).await;
    }

    #[tokio::test]
    async fn an_unreachable_redis_stops_start_up_quickly_without_repeating_its_password() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let url = format!("redis://:s3cret-pw@127.0.0.1:{port}");
        let connect = AuthStore::redis(&url, std::time::Duration::from_millis(500));
        let result = tokio::time::timeout(std::time::Duration::from_secs(10), connect)
            .await
            .expect("start-up gives up instead of hanging");
        let Err(message) = result else {
            panic!("nothing listens there");
        };
        assert!(!message.contains("s3cret-pw"), "{message}");
        assert!(message.contains("session.redis_url"), "{message}");
    }

    #[tokio::test]
    async fn a_redis_outage_is_an_error_not_a_missing_session_and_heals() {
        let mut redis = TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
        let store = AuthStore::redis(&redis.url(), std::time::Duration::from_millis(500))
            .await
            .expect("store");
        let mut r = signed_in("sid-o", "alice", 600);
        store.create(&mut r).await.expect("create");
        redis.stop();
        assert!(
            store.load(&r.id).await.is_err(),
            "down: an error, not a missing session"
        );
        assert!(!store.is_ready().await);
        redis.restart().expect("restart");
        let mut again = signed_in("sid-o2", "bob", 600);
        let mut healed = false;
        for _ in 0..50 {
            if store.create(&mut again).await.is_ok() {
                healed = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(healed, "the store reconnects by itself");
        assert!(store.is_ready().await);
    }
}
