//! The Redis backend of [`AuthStore`](super::AuthStore) (`session.store = "redis"`), on the
//! `fred` client: every piece of cross-request state lives in Redis, so that any number of
//! replicas share it. Catalogue: D02–D04 across replicas (the save is one Lua script), F05 (the
//! logout guard survives a replica's restart), E03 (an outage is an error, never a sign-out).
//!
//! Nothing in Redis names a session by its id (the cookie value) or a Keycloak session by its
//! `sid` (a front-channel logout credential): keys, index members and announcements use a keyed
//! hash, `h(x)` (HMAC-SHA256 with a key derived from `session.secret`, 16 bytes in base64url),
//! so that whoever can list keys, `MONITOR` or `SUBSCRIBE` (a dashboard, a read-only user, a log
//! shipper) collects no live session. Every key starts with `session.redis_prefix` (by default
//! `kcbff:<client id>:`), so that two apps on one database never share sessions, and the
//! announcements go on `<prefix>events:<database>`, since pub/sub ignores the database number.
//!
//! | key (after the prefix) | holds | expires |
//! |---|---|---|
//! | `s:h(id)` | the session record (JSON, its `id` left out) | with the record |
//! | `g:h(id)` | the rank of its token set (0 none, 1 + rotations) | with the record |
//! | `sid:h(sid)`, `sub:h(sub)` | the `h(id)` of the sessions of a Keycloak session, of a user | with their last record |
//! | `ended:h(sid)` | a Keycloak session ended by back-channel logout | 48 h |
//! | `jti:h(jti)` | a logout token already used | when it would be refused anyway |
//! | `lock:h(id)` | the refresh lock of a session (its holder's random token) | [`LOCK_TTL_MS`] |
//! | `backoff:h(id)` | the refresh back-off of a session (JSON) | a while after its retry time |
//!
//! Every save and delete of a session publishes its `h(id)` on the events channel; each replica
//! subscribes and wakes its own open pages' event streams ([`SessionEvents`], keyed by the same
//! `h(id)`: [`Backend::event_key`]).
//!
//! Writes that must not race are Lua scripts: a record is saved only if it still exists and its
//! token set is not older than the stored one; a lock is released only by its holder.

use super::{expires_at, identity, token_rank, Backend, Saved, LOCK_TTL_MS};
use crate::server::session::events::SessionEvents;
use fred::clients::{Pool, SubscriberClient};
use fred::interfaces::{
    ClientLike, EventInterface, KeysInterface, LuaInterface, PubsubInterface, SetsInterface,
};
use fred::types::config::Config;
use fred::types::{Expiration, SetOptions};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store;

/// How to reach Redis and name things in it.
pub struct RedisOptions<'a> {
    /// `redis://host:port/db`.
    pub url: &'a str,
    /// Each command's time limit (`session.redis_timeout_ms`), apart from Keycloak's.
    pub timeout: std::time::Duration,
    /// The start of every key, and of the events channel's name (`session.redis_prefix`).
    pub prefix: &'a str,
    /// The key material of the hashes that name sessions (`session.secret`): the same on every
    /// replica.
    pub secret: &'a [u8],
    /// With `rediss://`: the CA certificates (PEM) that Redis's certificate must chain to,
    /// instead of the system's (`session.redis_ca_file`).
    pub ca_file: Option<&'a std::path::Path>,
}

impl<'a> RedisOptions<'a> {
    /// For tests: `url` with a fixed test secret and the prefix `kcbff:test:`.
    pub fn for_tests(url: &'a str, timeout: std::time::Duration) -> Self {
        Self {
            url,
            timeout,
            prefix: "kcbff:test:",
            secret: b"a test secret, never one of a real deployment",
            ca_file: None,
        }
    }
}

/// What things are called in Redis: see the module's documentation.
struct Names {
    prefix: String,
    channel: String,
    key: aws_lc_rs::hmac::Key,
}

/// Marks a name [`RedisBackend::sessions_of`] answers (an `h(id)`), which
/// [`RedisBackend::delete`] takes as it is.
const HASHED: char = '#';

impl Names {
    fn new(prefix: &str, database: u8, secret: &[u8]) -> Self {
        use aws_lc_rs::hmac;
        // A key of its own for naming, derived from the session secret.
        let derive = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let derived = hmac::sign(&derive, b"keycloak-bff: names in redis, v1");
        Self {
            prefix: prefix.to_owned(),
            channel: format!("{prefix}events:{database}"),
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
        }
    }

    /// `h(value)` for values of `kind`.
    fn hash(&self, kind: &str, value: &str) -> String {
        use base64::Engine;
        let mut context = aws_lc_rs::hmac::Context::with_key(&self.key);
        context.update(kind.as_bytes());
        context.update(&[0]);
        context.update(value.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&context.sign().as_ref()[..16])
    }

    /// The name of session `id` (a session id, or a name `sessions_of` answered).
    fn session(&self, id: &str) -> String {
        match id.strip_prefix(HASHED) {
            Some(name) => name.to_owned(),
            None => self.hash("session", id),
        }
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.prefix)
    }

    /// The key of `kind` for session `id`.
    fn of_session(&self, kind: &str, id: &str) -> String {
        self.key(kind, &self.session(id))
    }
}

fn backend_error(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(format!("redis: {e}"))
}

/// Saves a record over one that still exists, unless the stored token set is newer.
/// KEYS: record, rank. ARGV: record JSON, its rank, expiry (Unix seconds), the events channel,
/// the session id. Returns -1 when the record is gone, the stored rank when it is newer, 0 when
/// saved (and announced).
const SAVE_SCRIPT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local stored = tonumber(redis.call('GET', KEYS[2]) or '0')
if stored > tonumber(ARGV[2]) then return stored end
redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'EXAT', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 0
"#;

/// Creates a record unless its id is taken. KEYS: record, rank. ARGV: JSON, rank, expiry.
const CREATE_SCRIPT: &str = r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EXAT', ARGV[3]) then
  redis.call('SET', KEYS[2], ARGV[2], 'EXAT', ARGV[3])
  return 1
end
return 0
"#;

/// Adds a session's name to an index set, which then lives at least until `ARGV[2]` seconds.
/// Past [`INDEX_PRUNE_ABOVE`] members (a user who keeps signing in), the names of sessions that
/// no longer exist (`ARGV[3]` is the record keys' start) are dropped, so a set holds about the
/// sessions that are alive. (It reads record keys it is not given: a single Redis or Sentinel,
/// not Redis Cluster.)
const INDEX_SCRIPT: &str = r#"
redis.call('SADD', KEYS[1], ARGV[1])
local ttl = tonumber(ARGV[2])
if redis.call('TTL', KEYS[1]) < ttl then redis.call('EXPIRE', KEYS[1], ttl) end
if redis.call('SCARD', KEYS[1]) > tonumber(ARGV[4]) then
  for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    if redis.call('EXISTS', ARGV[3] .. name) == 0 then redis.call('SREM', KEYS[1], name) end
  end
end
return 1
"#;

/// An index set is pruned when it holds more names than this.
const INDEX_PRUNE_ABOVE: usize = 32;

/// Extends the lock by `ARGV[2]` ms only if `ARGV[1]` still holds it.
const RENEW_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"#;

/// Deletes the lock only if `ARGV[1]` still holds it.
const UNLOCK_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// Sessions in Redis, shared by every replica.
#[derive(Clone)]
pub struct RedisBackend {
    pool: Pool,
    subscriber: SubscriberClient,
    names: std::sync::Arc<Names>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend").finish_non_exhaustive()
    }
}

/// TLS to Redis whose certificate chains to the CAs of `ca_file` (PEM), for the URL's host name.
fn tls_with_ca(ca_file: &std::path::Path) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let shown = ca_file.display();
    let bad = |e: &dyn std::fmt::Display| format!("session.redis_ca_file {shown}: {e}");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| bad(&e))? {
        roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    }
    if roots.is_empty() {
        return Err(bad(&"no certificate in it"));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS to Redis: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The record as stored: its id left out (written as 0; the key names the session, by its
/// hash, and a load puts back the id it was asked for).
fn stored_json(record: &Record) -> session_store::Result<String> {
    let anonymous = Record {
        id: Id(0),
        ..record.clone()
    };
    serde_json::to_string(&anonymous).map_err(backend_error)
}

fn expiry_secs(record: &Record, now: i64) -> i64 {
    expires_at(record).max(now + 1)
}

impl RedisBackend {
    /// Connects to `options.url` (`redis://host:port/db`), a few connections, reconnecting for
    /// ever with a capped back-off; every command times out after `options.timeout`, so that a
    /// Redis that is down or stuck answers "unavailable" instead of hanging requests.
    pub async fn connect(options: RedisOptions<'_>) -> Result<Self, String> {
        let timeout = options.timeout;
        // The URL may hold a password: no message here repeats it.
        let mut config = Config::from_url(options.url).map_err(|_| {
            "session.redis_url is not a Redis URL (redis://host:port/db, rediss:// with TLS)"
                .to_owned()
        })?;
        match (config.uses_tls(), options.ca_file) {
            // rediss:// with the system's CAs: fred's own rustls set-up.
            (true, None) | (false, None) => {}
            (true, Some(ca_file)) => config.tls = Some(tls_with_ca(ca_file)?.into()),
            (false, Some(_)) => {
                return Err(
                    "session.redis_ca_file is set, but session.redis_url is not rediss://".into(),
                )
            }
        }
        let names = std::sync::Arc::new(Names::new(
            options.prefix,
            config.database.unwrap_or(0),
            options.secret,
        ));
        let perf = fred::types::config::PerformanceConfig {
            default_command_timeout: timeout,
            ..Default::default()
        };
        let connection = fred::types::config::ConnectionConfig {
            connection_timeout: timeout,
            max_command_attempts: 1,
            ..Default::default()
        };
        let policy = fred::types::config::ReconnectPolicy::new_exponential(0, 100, 2_000, 2);
        let pool = Pool::new(
            config.clone(),
            Some(perf.clone()),
            Some(connection.clone()),
            Some(policy.clone()),
            4,
        )
        .map_err(|e| format!("redis: {e}"))?;
        pool.init()
            .await
            .map_err(|e| format!("session.redis_url: cannot connect: {e}"))?;
        let subscriber = fred::types::Builder::from_config(config)
            .set_performance_config(perf)
            .set_connection_config(connection)
            .set_policy(policy)
            .build_subscriber_client()
            .map_err(|e| format!("redis: {e}"))?;
        subscriber
            .init()
            .await
            .map_err(|e| format!("session.redis_url: cannot connect: {e}"))?;
        Ok(Self {
            pool,
            subscriber,
            names,
        })
    }

    /// Subscribes to the announcements of every replica and wakes `events`' subscribers with
    /// them, for as long as the process runs (subscribing again after a reconnection). After a
    /// reconnection every local subscriber is woken: announcements made meanwhile were lost.
    pub async fn forward_events(&self, events: SessionEvents) -> Result<(), String> {
        let mut messages = self.subscriber.message_rx();
        let mut reconnections = self.subscriber.reconnect_rx();
        let _resubscribe = self.subscriber.manage_subscriptions();
        let channel = self.names.channel.clone();
        self.subscriber
            .subscribe(channel.as_str())
            .await
            .map_err(|e| format!("redis: cannot subscribe to {channel}: {e}"))?;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    message = messages.recv() => match message {
                        Ok(message) => {
                            if let Some(id) = message.value.as_str() {
                                events.announce(&id);
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            events.announce_all();
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    },
                    reconnected = reconnections.recv() => match reconnected {
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            events.announce_all();
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    },
                }
            }
        });
        Ok(())
    }

    /// Indexes a signed-in session under its Keycloak session and user, until it expires.
    async fn index(&self, record: &Record, now: i64) -> session_store::Result<()> {
        // Index sets keep ids of sessions that went away until they expire; deleting an id that
        // no longer exists does nothing.
        let Some((sid, sub)) = identity(record) else {
            return Ok(());
        };
        let n = &self.names;
        let id = n.session(&record.id.to_string());
        let ttl = (expires_at(record) - now).max(1).to_string();
        let mut sets = vec![n.key("sub", &n.hash("sub", &sub))];
        if let Some(sid) = sid {
            sets.push(n.key("sid", &n.hash("sid", &sid)));
        }
        let records = n.key("s", "");
        for set in sets {
            self.pool
                .eval::<i64, _, _, _>(
                    INDEX_SCRIPT,
                    vec![set],
                    vec![
                        id.clone(),
                        ttl.clone(),
                        records.clone(),
                        INDEX_PRUNE_ABOVE.to_string(),
                    ],
                )
                .await
                .map_err(backend_error)?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Backend for RedisBackend {
    async fn create(&self, record: &mut Record, now: i64) -> session_store::Result<()> {
        let rank = token_rank(record);
        let exat = expiry_secs(record, now);
        let json = stored_json(record)?;
        loop {
            let id = record.id.to_string();
            let created: i64 = self
                .pool
                .eval(
                    CREATE_SCRIPT,
                    vec![
                        self.names.of_session("s", &id),
                        self.names.of_session("g", &id),
                    ],
                    vec![json.clone(), rank.to_string(), exat.to_string()],
                )
                .await
                .map_err(backend_error)?;
            if created == 1 {
                return self.index(record, now).await;
            }
            record.id = Id::default();
        }
    }

    /// Atomic: written only over a record that exists and whose token set is not newer.
    async fn save(&self, record: &Record, now: i64) -> session_store::Result<Saved> {
        let rank = token_rank(record);
        let name = self.names.session(&record.id.to_string());
        let json = stored_json(record)?;
        let answer: i64 = self
            .pool
            .eval(
                SAVE_SCRIPT,
                vec![self.names.key("s", &name), self.names.key("g", &name)],
                vec![
                    json,
                    rank.to_string(),
                    expiry_secs(record, now).to_string(),
                    self.names.channel.clone(),
                    name,
                ],
            )
            .await
            .map_err(backend_error)?;
        match answer {
            0 => {
                self.index(record, now).await?;
                Ok(Saved::Done)
            }
            -1 => Ok(Saved::Gone),
            _ => Ok(Saved::Stale),
        }
    }

    async fn load(&self, id: &Id, now: i64) -> session_store::Result<Option<Record>> {
        let json: Option<String> = self
            .pool
            .get(self.names.of_session("s", &id.to_string()))
            .await
            .map_err(backend_error)?;
        match json {
            Some(json) => serde_json::from_str::<Record>(&json)
                // Stored without its id: it is the id it was asked for.
                .map(|r| Some(Record { id: *id, ..r }).filter(|r| expires_at(r) > now))
                .map_err(|e| session_store::Error::Decode(e.to_string())),
            None => Ok(None),
        }
    }

    /// Deletes a session; whether it existed.
    async fn delete(&self, id: &str) -> session_store::Result<bool> {
        let name = self.names.session(id);
        let n = &self.names;
        let existed: i64 = self
            .pool
            .del(n.key("s", &name))
            .await
            .map_err(backend_error)?;
        self.pool
            .del::<i64, _>(vec![n.key("g", &name), n.key("backoff", &name)])
            .await
            .map_err(backend_error)?;
        if existed > 0 {
            self.pool
                .next()
                .publish::<i64, _, _>(n.channel.as_str(), name)
                .await
                .map_err(backend_error)?;
        }
        Ok(existed > 0)
    }

    /// The ids indexed under a Keycloak session (`sid`) or else a user (`sub`).
    async fn sessions_of(
        &self,
        sid: Option<&str>,
        sub: Option<&str>,
    ) -> session_store::Result<Vec<String>> {
        let n = &self.names;
        let set = match (sid, sub) {
            (Some(sid), _) => n.key("sid", &n.hash("sid", sid)),
            (None, Some(sub)) => n.key("sub", &n.hash("sub", sub)),
            (None, None) => return Ok(Vec::new()),
        };
        let names: Vec<String> = self.pool.smembers(&set).await.map_err(backend_error)?;
        if !names.is_empty() {
            self.pool
                .srem::<i64, _, _>(&set, names.clone())
                .await
                .map_err(backend_error)?;
        }
        Ok(names.into_iter().map(|h| format!("{HASHED}{h}")).collect())
    }

    async fn remember_ended(&self, sid: &str, until: i64, now: i64) -> session_store::Result<()> {
        let ttl_secs = until.saturating_sub(now);
        self.pool
            .set::<(), _, _>(
                self.names.key("ended", &self.names.hash("sid", sid)),
                "1",
                Some(Expiration::EX(ttl_secs.max(1))),
                None,
                false,
            )
            .await
            .map_err(backend_error)
    }

    async fn is_ended(&self, sid: &str) -> session_store::Result<bool> {
        let n: i64 = self
            .pool
            .exists(self.names.key("ended", &self.names.hash("sid", sid)))
            .await
            .map_err(backend_error)?;
        Ok(n > 0)
    }

    /// Records a logout token's id until `until`; false when it was already there.
    async fn first_use_of_logout_token(
        &self,
        jti: &str,
        until: i64,
        now: i64,
    ) -> session_store::Result<bool> {
        let set: Option<String> = self
            .pool
            .set(
                self.names.key("jti", &self.names.hash("jti", jti)),
                "1",
                Some(Expiration::EXAT(until.max(now + 1))),
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(backend_error)?;
        Ok(set.is_some())
    }

    /// Takes the refresh lock of session `id` with `token`; false when another holds it.
    async fn try_lock(&self, id: &str, token: &str) -> session_store::Result<bool> {
        let set: Option<String> = self
            .pool
            .set(
                self.names.of_session("lock", id),
                token,
                Some(Expiration::PX(LOCK_TTL_MS)),
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(backend_error)?;
        Ok(set.is_some())
    }

    async fn renew_lock(&self, id: &str, token: &str) -> session_store::Result<bool> {
        let renewed: i64 = self
            .pool
            .eval(
                RENEW_SCRIPT,
                vec![self.names.of_session("lock", id)],
                vec![token.to_owned(), LOCK_TTL_MS.to_string()],
            )
            .await
            .map_err(backend_error)?;
        Ok(renewed == 1)
    }

    async fn unlock(&self, id: &str, token: &str) -> session_store::Result<()> {
        self.pool
            .eval::<i64, _, _, _>(
                UNLOCK_SCRIPT,
                vec![self.names.of_session("lock", id)],
                vec![token.to_owned()],
            )
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    async fn backoff(&self, id: &str) -> session_store::Result<Option<String>> {
        self.pool
            .get(self.names.of_session("backoff", id))
            .await
            .map_err(backend_error)
    }

    async fn set_backoff(
        &self,
        id: &str,
        json: Option<&str>,
        ttl_secs: i64,
    ) -> session_store::Result<()> {
        let k = self.names.of_session("backoff", id);
        match json {
            Some(json) => {
                self.pool
                    .set::<(), _, _>(k, json, Some(Expiration::EX(ttl_secs.max(1))), None, false)
                    .await
            }
            None => self.pool.del::<(), _>(k).await,
        }
        .map_err(backend_error)
    }

    /// How many session records Redis holds: counted with `SCAN`, a page at a time, so that
    /// Redis never blocks on it (`KEYS` would walk every key at once).
    async fn count(&self) -> session_store::Result<usize> {
        use fred::types::scan::Scanner;
        use futures_util::StreamExt;
        let client = self.pool.next();
        let mut pages = std::pin::pin!(client.scan(self.names.key("s", "*"), Some(1000), None));
        let mut n = 0;
        while let Some(page) = pages.next().await {
            let page = page.map_err(backend_error)?;
            n += page.results().as_ref().map_or(0, Vec::len);
        }
        Ok(n)
    }

    /// Redis expires every key itself.
    async fn sweep(&self, _now: i64) -> session_store::Result<()> {
        Ok(())
    }

    async fn is_ready(&self) -> bool {
        self.pool.ping::<String>(None).await.is_ok()
    }

    /// Shared: saves and deletes are announced on the events channel, by Redis.
    fn is_shared(&self) -> bool {
        true
    }

    /// Announcements name sessions by their `h(id)`: so do the streams that wait for them.
    fn event_key(&self, id: &str) -> String {
        self.names.session(id)
    }
}

/// A throw-away `redis-server` for tests (of this crate and of apps that use it): its own port,
/// no persistence, stopped when dropped. Needs `redis-server` on `PATH` (Debian's package).
pub struct TestRedis {
    child: std::process::Child,
    port: u16,
    /// With append-only persistence in this folder, if any.
    aof_dir: Option<std::path::PathBuf>,
    /// TLS only, with the CA and certificate in this folder, if any.
    tls_dir: Option<std::path::PathBuf>,
}

impl TestRedis {
    /// Starts one without persistence and waits until it answers.
    pub fn start() -> Result<Self, String> {
        Self::start_in(None, None)
    }

    /// Starts one with append-only persistence in `dir` (a restart keeps its data).
    pub fn start_persistent(dir: &std::path::Path) -> Result<Self, String> {
        Self::start_in(Some(dir.to_owned()), None)
    }

    /// Starts one that speaks only TLS, with a CA and a certificate for `localhost` and
    /// 127.0.0.1 made now with `openssl` in `dir` (`dir/ca.pem` is the CA): see
    /// [`TestRedis::url`], `rediss://localhost:<port>`.
    pub fn start_tls(dir: &std::path::Path) -> Result<Self, String> {
        make_test_certificates(dir)?;
        Self::start_in(None, Some(dir.to_owned()))
    }

    fn start_in(
        aof_dir: Option<std::path::PathBuf>,
        tls_dir: Option<std::path::PathBuf>,
    ) -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let child = Self::spawn(port, aof_dir.as_deref(), tls_dir.as_deref())?;
        Ok(Self {
            child,
            port,
            aof_dir,
            tls_dir,
        })
    }

    fn spawn(
        port: u16,
        aof_dir: Option<&std::path::Path>,
        tls_dir: Option<&std::path::Path>,
    ) -> Result<std::process::Child, String> {
        let mut command = std::process::Command::new("redis-server");
        command.args(["--bind", "127.0.0.1"]);
        match tls_dir {
            Some(dir) => command
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .arg("--tls-cert-file")
                .arg(dir.join("redis.crt"))
                .arg("--tls-key-file")
                .arg(dir.join("redis.key"))
                .arg("--tls-ca-cert-file")
                .arg(dir.join("ca.pem"))
                .args(["--tls-auth-clients", "no"]),
            None => command.args(["--port", &port.to_string()]),
        };
        command.args(["--save", "", "--loglevel", "warning"]);
        match aof_dir {
            Some(dir) => command
                .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
                .arg(dir),
            None => command.args(["--appendonly", "no"]),
        };
        let mut child = command
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server: {e} (install Debian's redis-server)"))?;
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(child);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = child.kill();
        Err(format!("redis-server did not answer on port {port}"))
    }

    pub fn url(&self) -> String {
        match self.tls_dir {
            Some(_) => format!("rediss://localhost:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops it now (a Redis outage); [`TestRedis::restart`] brings it back on the same port.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Freezes it (`SIGSTOP`): connections stay open and nothing answers, a stuck Redis.
    /// [`TestRedis::resume`] thaws it.
    pub fn pause(&self) {
        Self::signal(&self.child, "-STOP");
    }

    pub fn resume(&self) {
        Self::signal(&self.child, "-CONT");
    }

    fn signal(child: &std::process::Child, signal: &str) {
        let _ = std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status();
    }

    /// Starts it again on the same port (empty, unless it persists).
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.child = Self::spawn(self.port, self.aof_dir.as_deref(), self.tls_dir.as_deref())?;
        Ok(())
    }
}

/// A CA (`ca.pem`) and a certificate signed by it for `localhost` and 127.0.0.1
/// (`redis.crt`, `redis.key`) in `dir`, made with `openssl` (P-256 keys, two days).
fn make_test_certificates(dir: &std::path::Path) -> Result<(), String> {
    let run = |args: &[&str]| -> Result<(), String> {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|e| format!("openssl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    std::fs::write(
        dir.join("san.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .map_err(|e| format!("{}: {e}", dir.display()))?;
    run(&[
        &["req", "-x509"][..],
        &key[..],
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=keycloak-bff test CA",
        ][..],
    ]
    .concat())?;
    run(&[
        &["req"][..],
        &key[..],
        &[
            "-keyout",
            "redis.key",
            "-out",
            "redis.csr",
            "-subj",
            "/CN=localhost",
        ][..],
    ]
    .concat())?;
    run(&[
        "x509",
        "-req",
        "-in",
        "redis.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "redis.crt",
        "-days",
        "2",
        "-extfile",
        "san.cnf",
    ])
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.resume();
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_hide_what_they_name_and_differ_by_secret_kind_and_database() {
        let names = Names::new("kcbff:demo-app:", 0, b"one secret of a deployment.......");
        let id = "WfNDGkPnyyOoUGRCEeWtnw";
        let name = names.session(id);
        assert_eq!(name.len(), 22);
        assert!(!name.contains(id));
        assert_eq!(
            names.of_session("s", id),
            format!("kcbff:demo-app:s:{name}")
        );
        assert_eq!(
            names.session(&format!("{HASHED}{name}")),
            name,
            "a name is taken as it is"
        );
        assert_ne!(
            names.hash("sid", id),
            names.hash("sub", id),
            "each kind its own"
        );
        let other = Names::new("kcbff:demo-app:", 0, b"another secret of a deployment..");
        assert_ne!(other.session(id), name);
        assert_eq!(names.channel, "kcbff:demo-app:events:0");
        let staging = Names::new("kcbff:demo-app:", 1, b"one secret of a deployment.......");
        assert_eq!(staging.channel, "kcbff:demo-app:events:1");
        assert_eq!(staging.session(id), name, "the same secret names alike");
    }

    #[tokio::test]
    async fn a_users_index_holds_about_the_sessions_that_still_exist_however_often_they_sign_in() {
        use crate::server::session::store::tests::signed_in;
        let redis = TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
        let url = redis.url();
        let backend = RedisBackend::connect(RedisOptions::for_tests(
            &url,
            std::time::Duration::from_secs(2),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let now = crate::server::base::clock::unix_now();
        for i in 0..3 * INDEX_PRUNE_ABOVE {
            let mut gone = signed_in(&format!("sid-{i}"), "alice", 600);
            backend
                .create(&mut gone, now)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            backend
                .delete(&gone.id.to_string())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let mut alive = signed_in("sid-alive", "alice", 600);
        backend
            .create(&mut alive, now)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let set = backend
            .names
            .key("sub", &backend.names.hash("sub", "alice"));
        let names: i64 = backend
            .pool
            .scard(&set)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            names <= INDEX_PRUNE_ABOVE as i64 + 1,
            "{names} names in the index"
        );
        assert_eq!(backend.count().await.unwrap_or_else(|e| panic!("{e}")), 1);
        let of_alice = backend
            .sessions_of(None, Some("alice"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(of_alice.contains(&format!(
            "{HASHED}{}",
            backend.names.session(&alive.id.to_string())
        )));
    }

    #[test]
    fn a_stored_record_holds_no_session_id() {
        let record = Record {
            id: Id(123_456_789_012_345_678),
            data: Default::default(),
            expiry_date: time::OffsetDateTime::UNIX_EPOCH,
        };
        let json = stored_json(&record).unwrap_or_else(|e| panic!("{e}"));
        assert!(!json.contains(&record.id.to_string()), "{json}");
        assert!(!json.contains("123456789012345678"), "{json}");
    }
}
