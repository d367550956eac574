//! Server-side sessions: the store behind tower-sessions, and what a session holds.
//!
//! The browser only ever holds the opaque session id in an HttpOnly cookie; tokens live in the
//! store. [`AuthStore`] is the one store the library uses; it keeps the rules that hold whatever
//! the backend, and leaves where records live to one [`Backend`] (a file each, as
//! tower-sessions' stores do): [`sqlite`] (one process), [`redis`] (any number of replicas) and
//! [`memory`] (tests), with the same behaviour.
//!
//! The rules kept here: a session of a Keycloak session ended by back-channel logout is never
//! loaded or saved again, even by a request in flight when the logout arrived (catalogue D02);
//! an older token set never replaces a newer one (D03, [`keep_newer_tokens`]); a late write never
//! brings back a session that was deleted (D04); every save and delete is announced to the
//! session's open pages. A record that cannot be decoded counts as "no session"; a store that
//! does not answer is [`AppError::StoreUnavailable`] (503), never a sign-out (E03).
//!
//! A session in use is decoded once: [`AuthStore::auth_session`] keeps what it decoded with the
//! very record (the backend read cache's allocation) it came from, and decodes again when that
//! record is replaced (a save, a refresh) or gone; the ended-session and end checks run on every
//! read.

use crate::error::AppError;
use crate::server::base::clock::{now_utc, unix_now};
use crate::server::session::events::SessionEvents;
use keycloak_bff_core::jwt::LogoutTarget;
use keycloak_bff_core::refresh::{Backoff, TokenTimes};
use keycloak_bff_core::KeycloakUser;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::Arc;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};
use tower_sessions::{Expiry, Session};

mod last_saved;
pub mod memory;
mod orphans;
#[cfg(feature = "redis")]
pub mod redis;
pub mod seal;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod streams;

#[cfg(feature = "sqlite")]
pub use sqlite::open_sqlite;

/// The key of the signed-in part ([`AuthSession`]) in a session record.
pub const AUTH_KEY: &str = "auth";

/// How long an ended `sid` is remembered (longer than any Keycloak session lives).
const ENDED_SID_TTL: i64 = 48 * 3600;

/// How long a refresh lock of a shared store lives unless released (a holder that died
/// mid-refresh loses it then).
pub const LOCK_TTL_MS: i64 = 15_000;

/// How often a live holder renews its refresh lock (a third of its lifetime).
pub const LOCK_RENEW_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// What a conditional save came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Saved {
    /// Written (and indexed).
    Done,
    /// The record no longer exists (signed out, ended, expired): nothing was written.
    Gone,
    /// The stored token set is newer: merge and try again.
    Stale,
}

/// Where session records, their `sid`/`sub` index and the back-channel logout guard live. One
/// implementation per file; [`AuthStore`] holds the rules they share. Every method is one step
/// that the backend makes atomic as far as it can (Redis: a Lua script).
#[async_trait::async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Record `id` if it exists and has not expired at `now`.
    async fn load(&self, id: &Id, now: i64) -> session_store::Result<Option<Record>>;
    /// Writes a new record, moving it to a fresh id while its id is taken, and indexes it.
    async fn create(&self, record: &mut Record, now: i64) -> session_store::Result<()>;
    /// Writes `record` over the stored one only if that still exists and its token set is not
    /// newer ([`token_rank`]), and indexes it.
    async fn save(&self, record: &Record, now: i64) -> session_store::Result<Saved>;
    /// Deletes record `id` and its index entries; whether it existed.
    async fn delete(&self, id: &str) -> session_store::Result<bool>;
    /// The ids of the sessions of Keycloak session `sid`, or else of user `sub`.
    async fn sessions_of(
        &self,
        sid: Option<&str>,
        sub: Option<&str>,
    ) -> session_store::Result<Vec<String>>;
    /// Remembers Keycloak session `sid` as ended until `until`.
    async fn remember_ended(&self, sid: &str, until: i64, now: i64) -> session_store::Result<()>;
    /// Whether Keycloak session `sid` was ended.
    async fn is_ended(&self, sid: &str) -> session_store::Result<bool>;
    /// Records a one-time id (a logout token's `jti`, a DPoP proof's) until `until`; false when
    /// it was used before (or the guard is full).
    async fn first_use_of_jti(
        &self,
        jti: &str,
        until: i64,
        now: i64,
    ) -> session_store::Result<bool>;
    /// Removes what expired by `now` (a backend whose entries expire by themselves does nothing).
    async fn sweep(&self, now: i64) -> session_store::Result<()>;
    /// How many session records it holds (expired ones not yet swept included).
    #[cfg_attr(not(any(test, feature = "test-support")), allow(dead_code))] // tests only
    async fn count(&self) -> session_store::Result<usize>;
    /// Whether it answers now (the readiness probe).
    async fn is_ready(&self) -> bool;

    /// Whether several processes share it. Then it announces saves and deletes to every process
    /// itself, and the refresh lock and back-off below live in it.
    fn is_shared(&self) -> bool {
        false
    }
    /// What announcements of session `id` are keyed by (the id itself, unless the backend
    /// names sessions otherwise).
    fn event_key(&self, id: &str) -> String {
        id.to_owned()
    }
    /// Record `id` as this process's read cache holds it, shared (not copied), when the backend
    /// keeps one that is always up to date (SQLite: written through by its only process); `None`
    /// means "not held here", never "no such session".
    fn cached(&self, _id: &Id, _now: i64) -> Option<Arc<Record>> {
        None
    }
    /// Takes session `id`'s refresh lock with `token`; false while another holder has it.
    async fn try_lock(&self, _id: &str, _token: &str) -> session_store::Result<bool> {
        Ok(true)
    }
    /// Gives session `id`'s refresh lock [`LOCK_TTL_MS`] more if `token` still holds it; false
    /// when it does not.
    async fn renew_lock(&self, _id: &str, _token: &str) -> session_store::Result<bool> {
        Ok(true)
    }
    /// Releases session `id`'s refresh lock if `token` still holds it.
    async fn unlock(&self, _id: &str, _token: &str) -> session_store::Result<()> {
        Ok(())
    }
    /// Takes a lease on one more event stream of session `id` and user `sub` (see
    /// [`streams`]), unless either holds its limit of live leases. Only shared backends are
    /// asked (a store of one process counts in [`streams::LocalLeases`]).
    async fn take_stream(
        &self,
        _id: &str,
        _sub: &str,
        _lease: &str,
        _limits: streams::StreamLimits,
        _until_ms: i64,
        _now_ms: i64,
    ) -> session_store::Result<streams::StreamRoom> {
        Ok(streams::StreamRoom::Taken)
    }

    async fn renew_stream(
        &self,
        _id: &str,
        _sub: &str,
        _lease: &str,
        _until_ms: i64,
    ) -> session_store::Result<()> {
        Ok(())
    }

    async fn release_stream(
        &self,
        _id: &str,
        _sub: &str,
        _lease: &str,
    ) -> session_store::Result<()> {
        Ok(())
    }

    /// Session `id`'s refresh back-off (JSON), if one is kept.
    async fn backoff(&self, _id: &str) -> session_store::Result<Option<String>> {
        Ok(None)
    }
    /// Keeps (or with `None` clears) session `id`'s refresh back-off for `ttl_secs`.
    async fn set_backoff(
        &self,
        _id: &str,
        _json: Option<&str>,
        _ttl_secs: i64,
    ) -> session_store::Result<()> {
        Ok(())
    }
}

/// The session store: the configured [`Backend`] and the rules every backend shares.
#[derive(Clone, Debug)]
pub struct AuthStore {
    backend: Arc<dyn Backend>,
    /// Announced on every save and delete of a session (with a shared backend, by every replica).
    events: SessionEvents,
    /// Seals the tokens of every record before the backend sees it ([`seal`]).
    sealer: Arc<seal::Sealer>,
    /// The event streams' leases, when the backend is not shared.
    leases: streams::LocalLeases,
    /// The signed-in sessions last decoded from the backend's cached records
    /// ([`AuthStore::auth_session`]).
    decoded: Arc<Decoded>,
    /// Refresh locks whose release the store did not answer, released once it does.
    orphans: orphans::OrphanLocks,
    /// The records this process has just written: the same record saved again is not written
    /// again (the session layer saves what a handler saved).
    last_saved: Arc<last_saved::LastSaved>,
    /// How many records were written to the backend (tests count them).
    #[cfg(test)]
    writes: Arc<std::sync::atomic::AtomicUsize>,
}

/// A session decoded: the record it was decoded from, and what it holds.
type DecodedSession = (Arc<Record>, Arc<AuthSession>);

/// How many decoded sessions are kept (the backend's read cache holds as many records).
const DECODED_SESSIONS: usize = 256;

/// Sessions in use, decoded: each with the very record (the backend cache's allocation) it was
/// decoded from, so that a read finds out whether the record changed since by comparing
/// pointers, without copying or decoding it. Holding the record also keeps its allocation from
/// being reused by another record meanwhile.
#[derive(Default)]
struct Decoded {
    sessions: std::sync::Mutex<std::collections::HashMap<Id, DecodedSession>>,
    /// How many records were decoded (tests count them).
    #[cfg(test)]
    count: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Decoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoded").finish_non_exhaustive()
    }
}

/// A session's refresh lock held across replicas; see [`AuthStore::lock_refresh`].
pub struct RefreshLock {
    id: String,
    token: String,
    /// Renews the lock while its holder lives (see [`AuthStore::lock_refresh`]); stopped when
    /// the lock is released or dropped.
    renewal: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for RefreshLock {
    fn drop(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
    }
}

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

/// How new a record's token set is: 0 without one, else one more than its rotation count.
fn token_rank(record: &Record) -> u64 {
    record.data.get(AUTH_KEY).map_or(0, |auth| {
        auth.get("generation")
            .and_then(|g| g.as_u64())
            .unwrap_or(0)
            .saturating_add(1)
    })
}

/// Whether `incoming` may be written over `stored`: its token set is not older.
fn may_replace(incoming: &Record, stored: &Record) -> bool {
    token_rank(stored) <= token_rank(incoming)
}

/// The record to write when `incoming` replaces `stored` (catalogue D03): a request that read the
/// session before another one rotated its tokens must not put the spent tokens back. The newer
/// token set (and its end) is kept; the rest of the incoming record is written as it is.
fn keep_newer_tokens<'a>(incoming: &'a Record, stored: &Record) -> Cow<'a, Record> {
    if may_replace(incoming, stored) {
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
    fn with(backend: impl Backend + 'static, events: SessionEvents, sealer: seal::Sealer) -> Self {
        Self {
            backend: Arc::new(backend),
            events,
            sealer: Arc::new(sealer),
            leases: streams::LocalLeases::default(),
            decoded: Arc::default(),
            orphans: orphans::OrphanLocks::default(),
            last_saved: Arc::default(),
            #[cfg(test)]
            writes: Arc::default(),
        }
    }

    /// The signed-in session of `session`, as [`auth_session`] reads it; but a session in use
    /// whose record is unchanged since this process last decoded it (the backend's read cache
    /// still holds that very record) is neither copied, opened nor decoded again. A session this
    /// request changed, a record not held by the backend's cache (Redis, a session not read
    /// lately), one of an ended Keycloak session or one past its end take [`auth_session`]'s way.
    /// Shared, not copied: the requests of a session in use get the same decoded session.
    pub async fn auth_session(
        &self,
        session: &Session,
        now: i64,
    ) -> Result<Option<Arc<AuthSession>>, AppError> {
        if let Some(auth) = self.decoded_auth(session, now).await {
            return Ok(Some(auth));
        }
        Ok(auth_session(session, now).await?.map(Arc::new))
    }

    async fn decoded_auth(&self, session: &Session, now: i64) -> Option<Arc<AuthSession>> {
        if session.is_modified() {
            return None;
        }
        let id = session.id()?;
        let record = self.backend.cached(&id, now)?;
        let known = self.decoded.sessions.lock().ok().and_then(|decoded| {
            decoded
                .get(&id)
                .filter(|(seen, _)| Arc::ptr_eq(seen, &record))
                .map(|(_, auth)| Arc::clone(auth))
        });
        let auth = match known {
            Some(auth) => auth,
            None => self.decode(id, record)?,
        };
        // As a load does: a session of an ended Keycloak session is not read (the load that
        // follows deletes it).
        if let Some(sid) = &auth.sid {
            if self.backend.is_ended(sid).await.unwrap_or(true) {
                return None;
            }
        }
        (now < auth.user.session_expires_at).then_some(auth)
    }

    /// Forgets what was decoded of session `id`, which was deleted: its tokens leave this
    /// process's memory with it.
    fn forget_decoded(&self, id: &str) {
        if let (Ok(id), Ok(mut decoded)) = (id.parse::<Id>(), self.decoded.sessions.lock()) {
            decoded.remove(&id);
        }
    }

    /// Opens and decodes `record` (session `id`), and remembers it with what it holds.
    fn decode(&self, id: Id, record: Arc<Record>) -> Option<Arc<AuthSession>> {
        let mut opened = self.sealer.open(Record::clone(&record)).ok()?;
        let auth: AuthSession = serde_json::from_value(opened.data.remove(AUTH_KEY)?).ok()?;
        let auth = Arc::new(auth);
        #[cfg(test)]
        self.decoded
            .count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut decoded) = self.decoded.sessions.lock() {
            if decoded.len() >= DECODED_SESSIONS && !decoded.contains_key(&id) {
                decoded.clear();
            }
            decoded.insert(id, (record, Arc::clone(&auth)));
        }
        Some(auth)
    }

    /// Takes a lease for one more event stream of session `id` (user `sub`), within `limits`
    /// across every replica; see [`streams`].
    pub async fn take_stream(
        &self,
        id: &Id,
        sub: &str,
        limits: streams::StreamLimits,
        now_ms: i64,
    ) -> session_store::Result<Result<streams::StreamLease, streams::StreamRoom>> {
        let (id, lease) = (id.to_string(), Id::default().to_string());
        let until_ms = now_ms + streams::LEASE_TTL_MS;
        let room = if self.backend.is_shared() {
            self.backend
                .take_stream(&id, sub, &lease, limits, until_ms, now_ms)
                .await?
        } else {
            let keys = [
                (format!("s:{id}"), limits.per_session),
                (format!("u:{sub}"), limits.per_user),
            ];
            self.leases.take(&keys, &lease, until_ms, now_ms)
        };
        match room {
            streams::StreamRoom::Taken => Ok(Ok(streams::StreamLease {
                store: self.clone(),
                id,
                sub: sub.to_owned(),
                lease,
            })),
            full => Ok(Err(full)),
        }
    }

    async fn renew_stream(
        &self,
        id: &str,
        sub: &str,
        lease: &str,
        until_ms: i64,
    ) -> session_store::Result<()> {
        if self.backend.is_shared() {
            return self.backend.renew_stream(id, sub, lease, until_ms).await;
        }
        self.leases
            .renew(&[format!("s:{id}"), format!("u:{sub}")], lease, until_ms);
        Ok(())
    }

    async fn release_stream(&self, id: &str, sub: &str, lease: &str) -> session_store::Result<()> {
        if self.backend.is_shared() {
            return self.backend.release_stream(id, sub, lease).await;
        }
        self.leases
            .release(&[format!("s:{id}"), format!("u:{sub}")], lease);
        Ok(())
    }

    /// Seals tokens with `sealer` from now on (say, one from `session.secret`).
    pub fn sealed_with(self, sealer: seal::Sealer) -> Self {
        Self {
            sealer: Arc::new(sealer),
            ..self
        }
    }

    /// Opens (or creates) the SQLite file at `path` and brings its schema up to date.
    #[cfg(feature = "sqlite")]
    pub async fn sqlite_file(path: &std::path::Path) -> Result<Self, String> {
        let lock = sqlite::lock_for_this_process(path)?;
        // Without session.secret, tokens are sealed with a key kept beside the file.
        let sealer = seal::Sealer::from_key_file(&std::path::PathBuf::from(format!(
            "{}.key",
            path.display()
        )))?;
        let backend = sqlite::SqliteBackend::open(open_sqlite(path).await?, unix_now()).await?;
        Ok(Self::with(
            backend.holding(lock),
            SessionEvents::default(),
            sealer,
        ))
    }

    /// Uses `pool`, bringing its schema up to date (`migrations/` of this crate: the sessions
    /// table of tower-sessions' SQLite store, the `sid`/`sub` index, the back-channel logout
    /// guard). The pool should hold only the sessions: its migrations table is this store's.
    #[cfg(feature = "sqlite")]
    #[cfg_attr(not(any(test, feature = "test-support")), allow(dead_code))] // tests only
    pub async fn sqlite(pool: sqlx::SqlitePool) -> Result<Self, String> {
        let backend = sqlite::SqliteBackend::open(pool, unix_now()).await?;
        Ok(Self::with(
            backend,
            SessionEvents::default(),
            seal::Sealer::random()?,
        ))
    }

    /// Sessions in Redis at `url`, shared with every replica; each command gives up after
    /// `timeout` (Redis down: "unavailable", never a hang).
    #[cfg(feature = "redis")]
    pub async fn redis(options: redis::RedisOptions<'_>) -> Result<Self, String> {
        // Every replica seals with the key of the secret they share.
        let sealer = seal::Sealer::from_secret(options.secret, None)?;
        let backend = redis::RedisBackend::connect(options).await?;
        let events = SessionEvents::default();
        backend.forward_events(events.clone()).await?;
        Ok(Self::with(backend, events, sealer))
    }

    /// Sessions in this process's memory: gone at restart, swept like the others.
    pub fn memory() -> Result<Self, String> {
        Ok(Self::with(
            memory::MemoryBackend::default(),
            SessionEvents::default(),
            seal::Sealer::random()?,
        ))
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

    /// Where the saves and deletes of sessions are announced, by [`AuthStore::event_key`].
    pub fn events(&self) -> &SessionEvents {
        &self.events
    }

    /// What the announcements of session `id` are keyed by: subscribe to [`AuthStore::events`]
    /// with it.
    pub fn event_key(&self, id: &tower_sessions::session::Id) -> String {
        self.backend.event_key(&id.to_string())
    }

    /// Whether the store answers now (the readiness probe).
    pub async fn is_ready(&self) -> bool {
        self.backend.is_ready().await
    }

    /// Whether the store is shared by several processes (Redis): then per-session bookkeeping
    /// such as the refresh back-off lives in it too.
    pub fn is_shared(&self) -> bool {
        self.backend.is_shared()
    }

    /// Waits for the refresh lock of session `id` across every replica (Redis: a key with an
    /// expiry, so that a holder that dies loses it after [`LOCK_TTL_MS`]). A store of one
    /// process needs none beyond the process's own lock: `None` at once.
    pub async fn lock_refresh(
        &self,
        id: &str,
        longest_wait: std::time::Duration,
    ) -> session_store::Result<Option<RefreshLock>> {
        if !self.backend.is_shared() {
            return Ok(None);
        }
        let token = Id::default().to_string();
        // Longer than a refresh may take (its holder renews the lock meanwhile), and than the
        // lock of a holder that died lives.
        let ttl = std::time::Duration::from_millis(LOCK_TTL_MS.unsigned_abs());
        let deadline = std::time::Instant::now() + longest_wait.max(ttl) + LOCK_RENEW_EVERY;
        loop {
            let taken = self.backend.try_lock(id, &token).await.inspect_err(|_| {
                // The take may have reached the store (or a replica that a failover promotes)
                // without its answer reaching this process: release it once the store is back.
                self.orphans.release_later(&self.backend, id, &token);
            })?;
            if taken {
                let renewal = self.renew_while_held(id, &token);
                return Ok(Some(RefreshLock {
                    id: id.to_owned(),
                    token,
                    renewal: Some(renewal),
                }));
            }
            if std::time::Instant::now() > deadline {
                return Err(store_error("waited too long for the refresh lock"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Renews the lock `token` holds on session `id` every [`LOCK_RENEW_EVERY`], so that a
    /// refresh slower than [`LOCK_TTL_MS`] (Keycloak answering late, a key refetch) keeps it: a
    /// waiter never takes it over while its holder lives, and never spends the refresh token the
    /// holder is rotating. A holder that dies stops renewing, and its lock ends after the TTL.
    fn renew_while_held(&self, id: &str, token: &str) -> tokio::task::JoinHandle<()> {
        let (backend, id, token) = (self.backend.clone(), id.to_owned(), token.to_owned());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(LOCK_RENEW_EVERY).await;
                match backend.renew_lock(&id, &token).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => tracing::warn!(error = %e, "could not renew a refresh lock"),
                }
            }
        })
    }

    /// Releases a lock taken by [`AuthStore::lock_refresh`] (if it is still this holder's).
    pub async fn unlock_refresh(&self, mut lock: RefreshLock) {
        if let Some(renewal) = lock.renewal.take() {
            renewal.abort();
        }
        if let Err(e) = self.backend.unlock(&lock.id, &lock.token).await {
            tracing::warn!(
                error = %e,
                "could not release a refresh lock; it is released once the store answers"
            );
            self.orphans
                .release_later(&self.backend, &lock.id, &lock.token);
        }
    }

    /// The refresh back-off of session `id` kept in a shared store.
    pub async fn backoff(&self, id: &str) -> session_store::Result<Backoff> {
        Ok(self
            .backend
            .backoff(id)
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
        match value {
            Some(b) => {
                let json = serde_json::to_string(&b).map_err(store_error)?;
                let ttl = b.retry_at.saturating_sub(now).saturating_add(keep_secs);
                self.backend.set_backoff(id, Some(&json), ttl).await
            }
            None => self.backend.set_backoff(id, None, 0).await,
        }
    }

    async fn is_ended(&self, record: &Record) -> session_store::Result<bool> {
        match identity(record) {
            Some((Some(sid), _)) => self.backend.is_ended(&sid).await,
            _ => Ok(false),
        }
    }

    /// Counts a write to the backend (tests only).
    fn count_write(&self) {
        #[cfg(test)]
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Tells this process's open pages of a change, unless the backend tells every process.
    fn announce(&self, id: &str) {
        if !self.backend.is_shared() {
            self.events.announce(id);
        }
    }

    /// Records the use of a logout token's `jti` until `replay_until`; false when it was used
    /// before (a replay, even across a restart with SQLite), or when the guard is full.
    pub async fn first_use_of_logout_token(
        &self,
        target: &LogoutTarget,
        now: i64,
    ) -> session_store::Result<bool> {
        self.backend
            .first_use_of_jti(&target.jti, target.replay_until, now)
            .await
    }

    /// Records the use of a DPoP proof (`id`: its key's thumbprint and its `jti`) until `until`
    /// in the shared store, so that a proof accepted by one replica is refused by every other;
    /// false for a replay. A store of one process leaves that to the process's memory (`Ok(true)`).
    pub async fn first_use_of_dpop_proof(
        &self,
        id: &str,
        until: i64,
        now: i64,
    ) -> session_store::Result<bool> {
        if !self.backend.is_shared() {
            return Ok(true);
        }
        self.backend
            .first_use_of_jti(&format!("dpop:{id}"), until, now)
            .await
    }

    /// Deletes every app session of the Keycloak session `sid`, or, without a `sid`, of the user
    /// `sub`; remembers the `sid` as ended (a request in flight cannot bring its sessions back).
    /// Returns how many sessions were deleted. For a logout Keycloak signed (back-channel).
    pub async fn end_app_sessions_of(
        &self,
        sid: Option<&str>,
        sub: Option<&str>,
        now: i64,
    ) -> session_store::Result<usize> {
        if let Some(sid) = sid {
            self.remember_ended(sid, now).await?;
        }
        let ids = self.backend.sessions_of(sid, sub).await?;
        self.delete_all(ids).await
    }

    /// Like [`AuthStore::end_app_sessions_of`] for an unauthenticated request (front-channel
    /// logout): a `sid` that no app session is bound to is not remembered, so that anyone's
    /// made-up `sid`s cost a look-up and store nothing.
    pub async fn end_app_sessions_of_bound_sid(
        &self,
        sid: &str,
        now: i64,
    ) -> session_store::Result<usize> {
        let ids = self.backend.sessions_of(Some(sid), None).await?;
        if ids.is_empty() {
            return Ok(0);
        }
        self.remember_ended(sid, now).await?;
        self.delete_all(ids).await
    }

    async fn remember_ended(&self, sid: &str, now: i64) -> session_store::Result<()> {
        self.backend
            .remember_ended(sid, now.saturating_add(ENDED_SID_TTL), now)
            .await
    }

    /// Deletes the sessions `ids`; how many existed.
    async fn delete_all(&self, ids: Vec<String>) -> session_store::Result<usize> {
        let mut deleted = 0;
        for id in ids {
            // The index may still name sessions that went away.
            let existed = self.backend.delete(&id).await?;
            self.forget_decoded(&id);
            if existed {
                deleted += 1;
                self.announce(&id);
            }
        }
        Ok(deleted)
    }

    /// Removes expired sessions, their index entries, and logout-guard entries that no longer
    /// matter, once, whatever the backend.
    pub async fn sweep_once(&self, now: i64) -> session_store::Result<()> {
        self.backend.sweep(now).await
    }

    /// How many session records the store holds (expired ones not yet swept included).
    #[cfg_attr(not(any(test, feature = "test-support")), allow(dead_code))] // tests only
    pub async fn len(&self) -> session_store::Result<usize> {
        self.backend.count().await
    }

    /// Removes expired sessions every `period`.
    pub fn spawn_expiry_sweeper(&self, period: std::time::Duration) {
        // It does not keep the store alive: once the app is gone (its SQLite file unlocked), so
        // is the sweep.
        let backend = Arc::downgrade(&self.backend);
        let (events, sealer) = (self.events.clone(), self.sealer.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let Some(backend) = backend.upgrade() else {
                    return;
                };
                let store = AuthStore {
                    backend,
                    events: events.clone(),
                    sealer: sealer.clone(),
                    leases: streams::LocalLeases::default(),
                    decoded: Arc::default(),
                    orphans: orphans::OrphanLocks::default(),
                    last_saved: Arc::default(),
                    #[cfg(test)]
                    writes: Arc::default(),
                };
                if let Err(e) = store.sweep_once(unix_now()).await {
                    tracing::warn!(error = %e, "could not delete expired sessions");
                }
            }
        });
    }
}

#[async_trait::async_trait]
impl SessionStore for AuthStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        if self.is_ended(record).await? {
            return Ok(());
        }
        let mut sealed = self.sealer.seal(record).map_err(store_error)?;
        let now = unix_now();
        self.backend.create(&mut sealed, now).await?;
        self.count_write();
        // The backend may have moved it to a fresh id.
        record.id = sealed.id;
        self.last_saved.remember(record, now);
        Ok(())
    }

    /// Writes over a record that still exists, never bringing back one that was deleted
    /// meanwhile (signed out, ended by back-channel logout, expired), and never replacing a newer
    /// token set with an older one ([`keep_newer_tokens`]): a stale write is merged with what
    /// another request (or replica) wrote, and tried again. The record this process has just
    /// written, saved again unchanged (by the session layer after the handler), is not written
    /// again ([`last_saved`]).
    async fn save(&self, incoming: &Record) -> session_store::Result<()> {
        if self.last_saved.take_if_unchanged(incoming, unix_now()) {
            return Ok(());
        }
        if self.is_ended(incoming).await? {
            return self.delete(&incoming.id).await;
        }
        let mut record: Cow<'_, Record> =
            Cow::Owned(self.sealer.seal(incoming).map_err(store_error)?);
        for _ in 0..5 {
            let now = unix_now();
            match self.backend.save(&record, now).await? {
                Saved::Done => {
                    self.count_write();
                    self.last_saved.remember(incoming, now);
                    self.announce(&record.id.to_string());
                    return Ok(());
                }
                Saved::Gone => {
                    self.last_saved.forget(&incoming.id);
                    tracing::debug!("a late write to a session that is gone was dropped");
                    return Ok(());
                }
                Saved::Stale => {
                    let Some(stored) = self.backend.load(&record.id, now).await? else {
                        return Ok(());
                    };
                    record = Cow::Owned(keep_newer_tokens(&record, &stored).into_owned());
                }
            }
        }
        Err(store_error("the session kept changing while being saved"))
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match self.backend.load(id, unix_now()).await? {
            Some(r) if self.is_ended(&r).await? => {
                self.delete(id).await?;
                Ok(None)
            }
            Some(r) => self
                .sealer
                .open(r)
                .map(Some)
                .map_err(session_store::Error::Decode),
            None => Ok(None),
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.last_saved.forget(id);
        let id = id.to_string();
        self.backend.delete(&id).await?;
        self.forget_decoded(&id);
        self.announce(&id);
        Ok(())
    }
}

/// The most ended Keycloak sessions a process keeps in memory (with the memory and SQLite
/// stores). Only sessions that had app sessions get here, and each is forgotten after 48 h.
const MAX_ENDED_SIDS: usize = 100_000;

/// Remembers `sid` as ended until `until` in `ended`, without scanning it on every insert: only
/// at the cap are the expired entries dropped, and if it is still full, the one that expires
/// first (the periodic sweep drops expired ones too).
fn keep_ended(ended: &mut std::collections::HashMap<String, i64>, sid: &str, until: i64, now: i64) {
    if ended.len() >= MAX_ENDED_SIDS && !ended.contains_key(sid) {
        ended.retain(|_, until| *until > now);
        if ended.len() >= MAX_ENDED_SIDS {
            if let Some(first) = ended
                .iter()
                .min_by_key(|(_, u)| **u)
                .map(|(s, _)| s.clone())
            {
                ended.remove(&first);
            }
        }
    }
    ended.insert(sid.to_owned(), until);
}

/// The expiry of `record` in Unix seconds.
fn expires_at(record: &Record) -> i64 {
    record.expiry_date.unix_timestamp()
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
    /// When Keycloak last issued tokens for this session (Unix seconds): what its idle limit
    /// counts from.
    #[serde(default)]
    pub refreshed_at: i64,
    /// The DPoP key its access token is bound to (`cnf.jkt`), if any: the app's own key when
    /// `keycloak.dpop` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
    /// When the user set off to delete their account on Keycloak's page, if they did: the
    /// session then checks that the account still exists at its next uses
    /// (`core::account_action::deletion_check_due`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_requested_at: Option<i64>,
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
/// lifetime) instead of the session layer's default, a short inactivity expiry for sessions
/// that are not signed in.
pub fn keep_session_end(session: &Session, auth: &AuthSession) {
    let end = time::OffsetDateTime::from_unix_timestamp(auth.user.session_expires_at)
        .unwrap_or_else(|_| now_utc());
    session.set_expiry(Some(Expiry::AtDateTime(end)));
}

// A signed-in record for the backends' tests (all of them, whichever features are on).
#[cfg(test)]
pub(super) mod test_records {
    use super::AUTH_KEY;
    use serde_json::json;
    use std::collections::HashMap;
    use time::OffsetDateTime;
    use tower_sessions::session::{Id, Record};

    pub(crate) fn signed_in(sid: &str, sub: &str, expires_in: i64) -> Record {
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
}

// The three backends side by side: with both backends' features (the test command has them).
#[cfg(test)]
#[cfg(all(feature = "sqlite", feature = "redis"))]
mod tests {
    use super::test_records::signed_in;
    use super::*;
    use crate::server::test_support::TestRedis;
    use serde_json::json;
    use time::OffsetDateTime;

    async fn sqlite_pool() -> sqlx::SqlitePool {
        sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .expect("in-memory SQLite")
    }

    async fn sqlite_store() -> AuthStore {
        AuthStore::sqlite(sqlite_pool().await).await.expect("store")
    }

    fn full_auth(access_token: &str, generation: u64, session_end: i64) -> AuthSession {
        AuthSession {
            user: KeycloakUser {
                subject: "alice".into(),
                realm_roles: vec!["reader".into(), "writer".into()],
                session_expires_at: session_end,
                ..Default::default()
            },
            access_token: access_token.into(),
            access_expires_at: unix_now() + 60,
            refresh_token: Some(format!("refresh-{generation}")),
            id_token: "id".into(),
            sid: Some("sid-d".into()),
            generation,
            refreshed_at: 0,
            dpop_jkt: None,
            deletion_requested_at: None,
        }
    }

    fn record_of(id: Id, auth: &AuthSession) -> Record {
        let mut data = std::collections::HashMap::new();
        data.insert(
            AUTH_KEY.to_owned(),
            serde_json::to_value(auth).expect("JSON"),
        );
        Record {
            id,
            data,
            expiry_date: OffsetDateTime::now_utc() + time::Duration::seconds(600),
        }
    }

    fn decoded(store: &AuthStore) -> usize {
        store
            .decoded
            .count
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// What a request of the session reads (a fresh `Session`, as the session layer makes).
    async fn read(store: &AuthStore, id: Id) -> Option<String> {
        let session = Session::new(Some(id), Arc::new(store.clone()), None);
        store
            .auth_session(&session, unix_now())
            .await
            .expect("read")
            .map(|a| a.access_token.clone())
    }

    #[tokio::test]
    async fn a_session_in_use_is_decoded_once_until_its_record_changes_and_never_read_stale() {
        let store = sqlite_store().await;
        let end = unix_now() + 600;
        let mut r = record_of(Id::default(), &full_auth("access-1", 1, end));
        store.create(&mut r).await.expect("create");
        let id = r.id;

        assert_eq!(read(&store, id).await.as_deref(), Some("access-1"));
        assert_eq!(read(&store, id).await.as_deref(), Some("access-1"));
        assert_eq!(
            decoded(&store),
            1,
            "the second request did not decode it again"
        );

        // A refresh saved new tokens: the next request reads them.
        store
            .save(&record_of(id, &full_auth("access-2", 2, end)))
            .await
            .expect("save");
        assert_eq!(read(&store, id).await.as_deref(), Some("access-2"));
        assert_eq!(decoded(&store), 2);

        // What this request itself changed wins over the store's.
        let session = Session::new(Some(id), Arc::new(store.clone()), None);
        session
            .insert(AUTH_KEY, full_auth("access-3", 3, end))
            .await
            .expect("insert");
        let mine = store
            .auth_session(&session, unix_now())
            .await
            .expect("read");
        assert_eq!(
            mine.map(|a| a.access_token.clone()).as_deref(),
            Some("access-3")
        );

        // Its Keycloak session ended (as another replica's logout would leave it): not read.
        store
            .backend
            .remember_ended("sid-d", unix_now() + 600, unix_now())
            .await
            .expect("ended");
        assert_eq!(read(&store, id).await, None);
    }

    #[tokio::test]
    async fn the_requests_of_a_session_in_use_share_one_decoded_copy_not_one_each() {
        let store = sqlite_store().await;
        let mut r = record_of(Id::default(), &full_auth("access-1", 1, unix_now() + 600));
        store.create(&mut r).await.expect("create");
        let request = || async {
            let session = Session::new(Some(r.id), Arc::new(store.clone()), None);
            store
                .auth_session(&session, unix_now())
                .await
                .expect("read")
                .expect("signed in")
        };
        let (first, second) = (request().await, request().await);
        assert!(
            Arc::ptr_eq(&first, &second),
            "the second request got a copy of its own"
        );
    }

    #[tokio::test]
    async fn a_decoded_session_past_its_end_or_deleted_is_signed_out() {
        let store = sqlite_store().await;
        let mut r = record_of(Id::default(), &full_auth("access-1", 1, unix_now() + 600));
        store.create(&mut r).await.expect("create");
        assert_eq!(read(&store, r.id).await.as_deref(), Some("access-1"));
        store.delete(&r.id).await.expect("delete");
        let held = store
            .decoded
            .sessions
            .lock()
            .map(|d| d.contains_key(&r.id))
            .unwrap_or(true);
        assert!(
            !held,
            "a deleted session's tokens leave the process's memory"
        );
        assert_eq!(read(&store, r.id).await, None, "deleted");

        let mut ended = record_of(Id::default(), &full_auth("access-9", 1, unix_now() - 1));
        store.create(&mut ended).await.expect("create");
        assert_eq!(read(&store, ended.id).await, None, "past Keycloak's end");
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
            .end_app_sessions_of(Some("sid-d"), None, 0)
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
        // The file's process lock is free once the first store is gone; but a test beside this
        // one that starts a redis-server at that moment forks this process, and the child holds
        // the lock's file (and so the lock) until it runs redis-server. Give that a moment.
        let mut reopened = AuthStore::sqlite_file(&path).await;
        for _ in 0..20 {
            if reopened.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            reopened = AuthStore::sqlite_file(&path).await;
        }
        let store = reopened.expect("reopened");
        assert!(store.load(&r.id).await.expect("load").is_some());
        let deleted = store
            .end_app_sessions_of(Some("sid-f"), None, 0)
            .await
            .expect("logout");
        assert_eq!(deleted, 1, "the index survived the restart too");
    }

    /// The three backends, the Redis one on a throw-away server that lives as long as the guard.
    async fn all_stores() -> (Vec<AuthStore>, TestRedis) {
        let redis = TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
        let store = redis_store(&redis.url()).await;
        (
            vec![
                sqlite_store().await,
                AuthStore::memory().expect("memory"),
                store,
            ],
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
                .end_app_sessions_of(Some("sid-a"), Some("alice"), 0)
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
                .end_app_sessions_of(None, Some("alice"), 0)
                .await
                .expect("logout");
            assert_eq!(deleted, 2);
            assert!(store.load(&b.id).await.expect("load").is_some());
        }
    }

    fn writes(store: &AuthStore) -> usize {
        store.writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// What a sign-in or a refresh does with its session: the handler saves it (to answer 503
    /// if that fails), then the session layer saves it again after the answer, unchanged.
    async fn save_as_handler_then_layer(session: &Session, auth: &AuthSession) {
        session.insert(AUTH_KEY, auth).await.expect("insert");
        keep_session_end(session, auth);
        session.save().await.expect("the handler's save");
        assert!(session.is_modified(), "the layer will save it again");
        session.save().await.expect("the layer's save");
    }

    #[tokio::test]
    async fn a_sign_in_or_refresh_writes_its_session_once_not_once_more_after_the_answer() {
        let (stores, _redis) = all_stores().await;
        for (store, kind) in stores.into_iter().zip(["sqlite", "memory", "redis"]) {
            let end = unix_now() + 600;
            let shared: Arc<AuthStore> = Arc::new(store.clone());
            let signing_in = Session::new(None, shared.clone(), None);
            save_as_handler_then_layer(&signing_in, &full_auth("access-1", 0, end)).await;
            assert_eq!(writes(&store), 1, "{kind}: the sign-in was written twice");
            let id = signing_in.id().expect("an id");

            let refreshing = Session::new(Some(id), shared.clone(), None);
            save_as_handler_then_layer(&refreshing, &full_auth("access-2", 1, end)).await;
            assert_eq!(writes(&store), 2, "{kind}: the refresh was written twice");
            assert_eq!(read(&store, id).await.as_deref(), Some("access-2"));

            // A change after the handler's save is written.
            let changing = Session::new(Some(id), shared, None);
            changing
                .insert(AUTH_KEY, full_auth("access-3", 2, end))
                .await
                .expect("insert");
            changing.save().await.expect("save");
            changing
                .insert(AUTH_KEY, full_auth("access-4", 3, end))
                .await
                .expect("insert");
            changing.save().await.expect("save");
            assert_eq!(writes(&store), 4, "{kind}");
            assert_eq!(read(&store, id).await.as_deref(), Some("access-4"));
        }
    }

    #[tokio::test]
    async fn a_session_saved_again_after_another_request_deleted_it_stays_deleted() {
        let (stores, _redis) = all_stores().await;
        for (store, kind) in stores.into_iter().zip(["sqlite", "memory", "redis"]) {
            let shared: Arc<AuthStore> = Arc::new(store.clone());
            let session = Session::new(None, shared, None);
            let auth = full_auth("access-1", 0, unix_now() + 600);
            session.insert(AUTH_KEY, &auth).await.expect("insert");
            keep_session_end(&session, &auth);
            session.save().await.expect("save");
            let id = session.id().expect("an id");
            store.delete(&id).await.expect("signed out elsewhere");
            session.save().await.expect("the layer's save");
            assert!(store.load(&id).await.expect("load").is_none(), "{kind}");
        }
    }

    #[tokio::test]
    async fn a_request_in_flight_cannot_bring_an_ended_session_back() {
        let (stores, _redis) = all_stores().await;
        for store in stores {
            let mut r = signed_in("sid-x", "alice", 600);
            store.create(&mut r).await.expect("create");
            store
                .end_app_sessions_of(Some("sid-x"), None, 0)
                .await
                .expect("logout");
            // A request that loaded the session before the logout saves it afterwards.
            store.save(&r).await.expect("save");
            assert!(store.load(&r.id).await.expect("load").is_none());
        }
    }

    #[tokio::test]
    async fn expired_sessions_and_their_index_rows_are_swept() {
        let pool = sqlite_pool().await;
        let store = AuthStore::sqlite(pool.clone()).await.expect("store");
        let mut old = signed_in("old", "alice", -10);
        let mut live = signed_in("live", "alice", 600);
        store.create(&mut old).await.expect("create");
        store.create(&mut live).await.expect("create");
        store
            .sweep_once(OffsetDateTime::now_utc().unix_timestamp())
            .await
            .expect("sweep");
        let rows: Vec<String> = sqlx::query_scalar("SELECT sid FROM kc_session_index")
            .fetch_all(&pool)
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
                .end_app_sessions_of(None, Some("alice"), 0)
                .await
                .expect("index");
            assert_eq!(gone, 0, "nor its index row");
        }
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
                .end_app_sessions_of(Some("sid-r"), None, now)
                .await
                .expect("logout");
        }
        let pool = open_sqlite(&path).await.expect("reopened");
        let store = AuthStore::sqlite(pool.clone()).await.expect("reopened");
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
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM kc_logout_jti")
            .fetch_one(&pool)
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
        let (a, b) = two_redis_stores(&redis.url()).await;
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
            a.end_app_sessions_of(Some("sid-r"), None, now)
                .await
                .expect("end"),
            1
        );
        assert!(
            b.load(&r.id).await.expect("load").is_none(),
            "gone on b too"
        );
        let restarted = redis_store(&redis.url()).await;
        assert!(!restarted
            .first_use_of_logout_token(&target, now)
            .await
            .expect("replay"));
        let mut late = signed_in("sid-r", "alice", 600);
        restarted.create(&mut late).await.expect("late create");
        assert!(restarted.load(&late.id).await.expect("load").is_none());
    }

    /// One replica's store on the Redis at `url`.
    async fn redis_store(url: &str) -> AuthStore {
        AuthStore::redis(redis::RedisOptions::for_tests(
            url,
            std::time::Duration::from_secs(2),
        ))
        .await
        .expect("redis store")
    }

    /// Two replicas' stores on the Redis at `url`.
    async fn two_redis_stores(url: &str) -> (AuthStore, AuthStore) {
        (redis_store(url).await, redis_store(url).await)
    }

    #[tokio::test]
    async fn one_replica_at_a_time_holds_a_sessions_refresh_lock() {
        let redis = TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
        let (a, b) = two_redis_stores(&redis.url()).await;
        let held = take_lock(&a, "s1").await;
        let waiting = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let lock = take_lock(&b, "s1").await;
            (started.elapsed(), b, lock)
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "b waits while a holds the lock");
        a.unlock_refresh(held).await;
        let (waited, b, lock) = waiting.await.expect("task");
        assert!(waited >= std::time::Duration::from_millis(300));
        b.unlock_refresh(lock).await;
        // Another session's lock is independent.
        let other = take_lock(&a, "s2").await;
        a.unlock_refresh(other).await;
    }

    #[tokio::test]
    async fn a_live_holder_keeps_its_refresh_lock_past_its_lifetime() {
        let redis = TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
        let (a, b) = two_redis_stores(&redis.url()).await;
        let held = take_lock(&a, "s1").await;
        // A slow refresh: longer than the lock's lifetime, its holder alive all along.
        tokio::time::sleep(lock_ttl() + std::time::Duration::from_secs(2)).await;
        let waited = tokio::time::timeout(
            std::time::Duration::from_millis(300),
            b.lock_refresh("s1", std::time::Duration::from_secs(1)),
        )
        .await;
        assert!(waited.is_err(), "b must not take a lock whose holder lives");
        a.unlock_refresh(held).await;
        let lock = take_lock(&b, "s1").await;
        b.unlock_refresh(lock).await;
    }

    /// How long a refresh lock lives unless renewed.
    fn lock_ttl() -> std::time::Duration {
        std::time::Duration::from_millis(LOCK_TTL_MS.unsigned_abs())
    }

    /// Takes session `key`'s refresh lock on the Redis store `store`, waiting for it if held.
    async fn take_lock(store: &AuthStore, key: &str) -> RefreshLock {
        store
            .lock_refresh(key, std::time::Duration::from_secs(1))
            .await
            .expect("lock")
            .expect("redis lock")
    }

    /// How long replica b waits for session s1's refresh lock (which it then releases).
    async fn wait_for_the_lock(b: &AuthStore) -> std::time::Duration {
        let started = std::time::Instant::now();
        let lock = take_lock(b, "s1").await;
        let waited = started.elapsed();
        b.unlock_refresh(lock).await;
        waited
    }

    #[tokio::test]
    async fn a_refresh_lock_whose_holder_died_is_taken_over_at_its_expiry() {
        let redis = TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
        let (a, b) = two_redis_stores(&redis.url()).await;
        // Replica a takes the lock and dies without releasing it: its renewal stops with it.
        let held = a
            .lock_refresh("s1", std::time::Duration::from_secs(1))
            .await
            .expect("lock");
        drop(held);
        drop(a);
        let waited = wait_for_the_lock(&b).await;
        // Not before the lock's expiry: nobody else refreshed while the dead holder "held" it.
        assert!(
            waited + std::time::Duration::from_millis(500) >= lock_ttl(),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn a_refresh_lock_held_through_a_store_outage_is_released_once_the_store_is_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut redis = TestRedis::start_persistent(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let (a, b) = two_redis_stores(&redis.url()).await;
        let held = take_lock(&a, "s1").await;
        // Redis goes away while a holds the lock, and comes back with it (as a promoted replica
        // does): a's release finds no store.
        redis.stop();
        a.unlock_refresh(held).await;
        assert_eq!(a.orphans.len(), 1, "the release is left for later");
        redis.restart().unwrap_or_else(|e| panic!("{e}"));
        let waited = wait_for_the_lock(&b).await;
        assert!(
            waited < lock_ttl() / 3,
            "b waited {waited:?} for a lock its holder gave up during the outage"
        );
        assert_eq!(a.orphans.len(), 0);
    }

    #[tokio::test]
    async fn a_refresh_lock_whose_take_went_unanswered_is_released_once_the_store_answers() {
        let redis = TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
        let (a, b) = two_redis_stores(&redis.url()).await;
        // A stuck Redis: a's take times out unanswered, and the Redis carries it out on waking.
        redis.pause();
        let taken = a
            .lock_refresh("s1", std::time::Duration::from_secs(1))
            .await;
        assert!(taken.is_err(), "no answer is an error");
        redis.resume();
        let waited = wait_for_the_lock(&b).await;
        assert!(
            waited < lock_ttl() / 3,
            "b waited {waited:?} for a lock a took without knowing it"
        );
    }

    #[tokio::test]
    async fn an_unreachable_redis_stops_start_up_quickly_without_repeating_its_password() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let url = format!("redis://:s3cret-pw@127.0.0.1:{port}");
        let connect = AuthStore::redis(
            crate::server::session::store::redis::RedisOptions::for_tests(
                &url,
                std::time::Duration::from_millis(500),
            ),
        );
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
        let store = AuthStore::redis(
            crate::server::session::store::redis::RedisOptions::for_tests(
                &redis.url(),
                std::time::Duration::from_millis(500),
            ),
        )
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
