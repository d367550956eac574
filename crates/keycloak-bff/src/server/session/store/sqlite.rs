//! The SQLite backend of [`AuthStore`](super::AuthStore) (`session.store = "sqlite"`, the
//! default): one file, one process. Records are tower-sessions' SQLite rows; beside them the
//! `sid`/`sub` index, the Keycloak sessions ended by back-channel logout and the logout tokens
//! already used (`migrations/` of this crate), so all of it survives a restart (catalogue D05).
//!
//! Reads of the sessions in use skip SQLite: a [`RecordCache`] of recently used records, written
//! through on every save and delete. The ended `sid`s are cached in memory too (read on every
//! load). This process is the only writer of the file, which is what makes both caches true, so
//! a file opened by path is locked for this process alone (`<file>.lock`): a second process (a
//! rolling deploy, a second replica) stops at start-up with a message that names Redis, instead
//! of serving sessions that another process has ended or refreshed.

use super::{expires_at, identity, may_replace, store_error, Backend, Saved};
use sqlx::SqlitePool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};
use tower_sessions_sqlx_store::SqliteStore;

/// How many records are kept in memory (about 10 KB each once decoded): the sessions in use
/// right now. More would cost memory for sessions that are idle anyway.
const CACHED_RECORDS: usize = 256;

/// The most recently used records. A record read from SQLite is kept only if nothing was written
/// meanwhile (`epoch`), so the cache never holds an older token set or a deleted session.
#[derive(Debug, Default)]
struct RecordCache {
    /// Shared: a reader that only looks (`Backend::cached`) takes no copy.
    records: HashMap<Id, Arc<Record>>,
    epoch: u64,
}

impl RecordCache {
    fn get(&self, id: &Id, now: i64) -> Option<Arc<Record>> {
        self.records
            .get(id)
            .filter(|r| expires_at(r) > now)
            .cloned()
    }

    fn keep(&mut self, record: &Record, now: i64) {
        if self.records.len() >= CACHED_RECORDS && !self.records.contains_key(&record.id) {
            self.records.retain(|_, r| expires_at(r) > now);
            if self.records.len() >= CACHED_RECORDS {
                // Any one: the cache only saves reads.
                if let Some(old) = self.records.keys().next().copied() {
                    self.records.remove(&old);
                }
            }
        }
        self.records.insert(record.id, Arc::new(record.clone()));
    }

    /// A write: `record` is the newest (or `None`: deleted), and reads in flight are stale.
    fn wrote(&mut self, id: &Id, record: Option<&Record>, now: i64) {
        self.epoch = self.epoch.wrapping_add(1);
        match record {
            Some(record) => self.keep(record, now),
            None => {
                self.records.remove(id);
            }
        }
    }
}

/// Sessions in one SQLite file.
#[derive(Debug)]
pub struct SqliteBackend {
    store: SqliteStore,
    pool: SqlitePool,
    cache: Mutex<RecordCache>,
    /// Ended `sid`s until when they matter: a cache of `kc_ended_sid`.
    ended_sids: Mutex<HashMap<String, i64>>,
    /// This process's lock on the file (when opened by path), held as long as the backend lives.
    _lock: Option<std::fs::File>,
}

impl SqliteBackend {
    /// Brings the schema of `pool` up to date and reads the ended `sid`s that still matter.
    pub async fn open(pool: SqlitePool, now: i64) -> Result<Self, String> {
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| format!("migration: {e}"))?;
        let ended: Vec<(String, i64)> =
            sqlx::query_as("SELECT sid, until_at FROM kc_ended_sid WHERE until_at > ?")
                .bind(now)
                .fetch_all(&pool)
                .await
                .map_err(|e| format!("ended sessions: {e}"))?;
        Ok(Self {
            store: SqliteStore::new(pool.clone()),
            pool,
            cache: Mutex::default(),
            ended_sids: Mutex::new(ended.into_iter().collect()),
            _lock: None,
        })
    }

    /// Keeps `lock` (see [`lock_for_this_process`]) as long as the backend lives.
    pub fn holding(self, lock: std::fs::File) -> Self {
        Self {
            _lock: Some(lock),
            ..self
        }
    }

    fn cache(&self) -> session_store::Result<MutexGuard<'_, RecordCache>> {
        self.cache.lock().map_err(store_error)
    }

    async fn execute(&self, sql: &str, binds: &[&str]) -> session_store::Result<u64> {
        let mut query = sqlx::query(sql);
        for b in binds {
            query = query.bind(*b);
        }
        Ok(query
            .execute(&self.pool)
            .await
            .map_err(store_error)?
            .rows_affected())
    }

    async fn index(&self, record: &Record) -> session_store::Result<()> {
        let id = record.id.to_string();
        let Some((sid, sub)) = identity(record) else {
            self.execute("DELETE FROM kc_session_index WHERE session_id = ?", &[&id])
                .await?;
            return Ok(());
        };
        sqlx::query(
            "INSERT INTO kc_session_index (session_id, sid, sub, expires_at) VALUES (?, ?, ?, ?)
             ON CONFLICT(session_id) DO UPDATE SET sid = excluded.sid, sub = excluded.sub,
             expires_at = excluded.expires_at",
        )
        .bind(&id)
        .bind(sid)
        .bind(sub)
        .bind(expires_at(record))
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    /// The record as stored: from the cache, or read from SQLite and kept unless something was
    /// written meanwhile.
    async fn read(&self, id: &Id, now: i64) -> session_store::Result<Option<Record>> {
        let epoch = {
            let cache = self.cache()?;
            if let Some(record) = cache.get(id, now) {
                return Ok(Some(Record::clone(&record)));
            }
            cache.epoch
        };
        let record = self.store.load(id).await?;
        if let Some(record) = &record {
            let mut cache = self.cache()?;
            if cache.epoch == epoch {
                cache.keep(record, now);
            }
        }
        Ok(record.filter(|r| expires_at(r) > now))
    }
}

#[async_trait::async_trait]
impl Backend for SqliteBackend {
    async fn load(&self, id: &Id, now: i64) -> session_store::Result<Option<Record>> {
        self.read(id, now).await
    }

    fn cached(&self, id: &Id, now: i64) -> Option<Arc<Record>> {
        self.cache().ok()?.get(id, now)
    }

    async fn create(&self, record: &mut Record, now: i64) -> session_store::Result<()> {
        self.store.create(record).await?;
        self.cache()?.wrote(&record.id, Some(record), now);
        self.index(record).await
    }

    async fn save(&self, record: &Record, now: i64) -> session_store::Result<Saved> {
        match self.read(&record.id, now).await? {
            None => return Ok(Saved::Gone),
            Some(stored) if !may_replace(record, &stored) => return Ok(Saved::Stale),
            Some(_) => {}
        }
        self.store.save(record).await?;
        self.cache()?.wrote(&record.id, Some(record), now);
        self.index(record).await?;
        Ok(Saved::Done)
    }

    async fn delete(&self, id: &str) -> session_store::Result<bool> {
        let parsed = id.parse::<Id>().ok();
        // Out of the cache first, and again once gone from SQLite: a read in between does not
        // keep what it read (the epoch moved).
        if let Some(parsed) = &parsed {
            self.cache()?.wrote(parsed, None, 0);
        }
        let existed = self
            .execute("DELETE FROM tower_sessions WHERE id = ?", &[id])
            .await?
            > 0;
        if let Some(parsed) = &parsed {
            self.cache()?.wrote(parsed, None, 0);
        }
        self.execute("DELETE FROM kc_session_index WHERE session_id = ?", &[id])
            .await?;
        Ok(existed)
    }

    async fn sessions_of(
        &self,
        sid: Option<&str>,
        sub: Option<&str>,
    ) -> session_store::Result<Vec<String>> {
        let (sql, key) = match (sid, sub) {
            (Some(sid), _) => ("SELECT session_id FROM kc_session_index WHERE sid = ?", sid),
            (None, Some(sub)) => ("SELECT session_id FROM kc_session_index WHERE sub = ?", sub),
            (None, None) => return Ok(Vec::new()),
        };
        sqlx::query_scalar(sql)
            .bind(key)
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)
    }

    async fn remember_ended(&self, sid: &str, until: i64, now: i64) -> session_store::Result<()> {
        {
            let mut ended = self.ended_sids.lock().map_err(store_error)?;
            super::keep_ended(&mut ended, sid, until, now);
        }
        sqlx::query(
            "INSERT INTO kc_ended_sid (sid, until_at) VALUES (?, ?)
             ON CONFLICT(sid) DO UPDATE SET until_at = excluded.until_at",
        )
        .bind(sid)
        .bind(until)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn is_ended(&self, sid: &str) -> session_store::Result<bool> {
        Ok(self
            .ended_sids
            .lock()
            .map_err(store_error)?
            .contains_key(sid))
    }

    async fn first_use_of_jti(
        &self,
        jti: &str,
        until: i64,
        now: i64,
    ) -> session_store::Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO kc_logout_jti (jti, until_at) VALUES (?, ?)
             ON CONFLICT(jti) DO UPDATE SET until_at = excluded.until_at
             WHERE kc_logout_jti.until_at <= ?",
        )
        .bind(jti)
        .bind(until)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn sweep(&self, now: i64) -> session_store::Result<()> {
        if let Ok(mut ended) = self.ended_sids.lock() {
            ended.retain(|_, until| *until > now);
        }
        self.store.delete_expired().await?;
        self.cache()?.records.retain(|_, r| expires_at(r) > now);
        for sql in [
            "DELETE FROM kc_session_index WHERE expires_at < ?",
            "DELETE FROM kc_logout_jti WHERE until_at <= ?",
            "DELETE FROM kc_ended_sid WHERE until_at <= ?",
        ] {
            sqlx::query(sql)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }

    async fn count(&self) -> session_store::Result<usize> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tower_sessions")
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    async fn is_ready(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

/// Opens (or creates, with its folder) the SQLite file at `path`: WAL journal, a 5 s busy
/// timeout, a few connections. For the session store, and for an app's own database.
/// Locks `<path>.lock` for this process alone (an exclusive advisory lock, released when the
/// returned file is closed, also by a crash); another process holding it is an error that says
/// what to do.
pub fn lock_for_this_process(path: &std::path::Path) -> Result<std::fs::File, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let lock_path = std::path::PathBuf::from(format!("{}.lock", path.display()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("{}: {e}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "session.sqlite_file {} is in use by another process: SQLite serves one process; \
             several processes (replicas, a rolling deploy) share sessions through Redis \
             (session.store = \"redis\")",
            path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("{}: {e}", lock_path.display())),
    }
}

/// Opens (or creates) a SQLite database file with the settings the library uses for its own (WAL, a
/// busy timeout), for an app's own data beside the sessions.
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
