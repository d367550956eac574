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
//! | `streams:h(id)`, `ustreams:h(sub)` | the leases of the open event streams of a session, of a user (sorted by their end) | with their last lease |
//!
//! Every save and delete of a session publishes its `h(id)` on the events channel; each replica
//! subscribes and wakes its own open pages' event streams ([`SessionEvents`], keyed by the same
//! `h(id)`: [`Backend::event_key`]).
//!
//! Writes that must not race are Lua scripts: a record is saved only if it still exists and its
//! token set is not older than the stored one; a lock is released only by its holder.
//!
//! High availability with Redis Sentinel: `redis+sentinel://host:port,host:port/<service>[/db]`
//! (or `rediss+sentinel://` with TLS) asks the sentinels for the current master, and again after
//! every reconnection, so a failover costs the requests of its few seconds a 503 (never a
//! sign-out). Redis replicates asynchronously: a write the master acknowledged may die with it.
//! So with Sentinel, a write that matters (a record, a sign-out, a refresh lock, an ended
//! `sid`, a used logout token) counts as done only once a replica has it (`WAIT`); the request
//! fails (503) otherwise. A master left without any replica (its replica died) carries on
//! alone, with a warning in the log: refusing every write would sign nobody out either, but it
//! would stop every sign-in. Catalogue: E03 across a failover.

use super::{expires_at, identity, token_rank, Backend, Saved, LOCK_TTL_MS};
use crate::server::session::events::SessionEvents;
use fred::clients::{Client, Pool, SubscriberClient};
use fred::interfaces::{
    ClientLike, EventInterface, KeysInterface, LuaInterface, PubsubInterface, ServerInterface,
    SetsInterface, SortedSetsInterface,
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
    #[cfg_attr(not(any(test, feature = "test-support")), allow(dead_code))] // tests only
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

/// Takes an event stream's lease `ARGV[1]` until `ARGV[2]` (ms) in both sorted sets (session,
/// user) or in neither: leases that ended by `ARGV[3]` are dropped first; 1 when the session's
/// set holds `ARGV[4]` leases, 2 when the user's holds `ARGV[5]`, 0 when taken.
const TAKE_STREAM_SCRIPT: &str = r#"
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[3])
  if redis.call('ZCARD', key) >= tonumber(ARGV[3 + i]) then return i end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, ARGV[2], ARGV[1])
  if redis.call('PTTL', key) < tonumber(ARGV[2]) - tonumber(ARGV[3]) then
    redis.call('PEXPIREAT', key, ARGV[2])
  end
end
return 0
"#;

/// Keeps lease `ARGV[1]` until `ARGV[2]` (ms) where it is still held.
const RENEW_STREAM_SCRIPT: &str = r#"
for _, key in ipairs(KEYS) do
  if redis.call('ZADD', key, 'XX', 'CH', ARGV[2], ARGV[1]) == 1 then
    if redis.call('PTTL', key) < tonumber(ARGV[3]) then redis.call('PEXPIREAT', key, ARGV[2]) end
  end
end
return 1
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
    /// Behind Sentinel: how long a write waits for a replica to have it (milliseconds), see
    /// [`RedisBackend::confirm`]. `None`: a single Redis, nothing to wait for.
    replica_wait_ms: Option<i64>,
    /// The master was last seen without any replica (warned once per spell).
    alone: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// When that was last checked (milliseconds since the Unix epoch): while alone, writes do
    /// not wait for a replica that is not there, and the check is made again once a second.
    alone_checked_ms: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

/// The schemes of a Redis behind Sentinel, in this library's form.
const SENTINEL_SCHEMES: [(&str, &str); 2] = [
    ("redis+sentinel", "redis-sentinel"),
    ("rediss+sentinel", "rediss-sentinel"),
];

/// `session.redis_url` in `fred`'s form, and whether it names a Redis behind Sentinel.
///
/// `redis://` and `rediss://` pass as they are. `redis+sentinel://[[user]:password@]host:port
/// [,host:port…]/<service>[/<database>]` lists the sentinels (port 26379 when left out) and
/// the name of the monitored master; the credentials are those of Redis, and of the sentinels
/// too. No message repeats the URL: it may hold a password.
fn fred_url(url: &str) -> Result<(String, bool), String> {
    let shape = "session.redis_url: a Sentinel URL is \
                 redis+sentinel://[:password@]host:port[,host:port...]/<master name>[/<db>]";
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok((url.to_owned(), false));
    };
    let Some((_, fred_scheme)) = SENTINEL_SCHEMES.iter().find(|(ours, _)| *ours == scheme) else {
        return Ok((url.to_owned(), false));
    };
    let (authority, path) = rest.split_once('/').ok_or_else(|| shape.to_owned())?;
    let (credentials, hosts) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let mut sentinels = Vec::new();
    for host in hosts.split(',') {
        let (name, port) = match host.rsplit_once(':') {
            Some((name, port)) => (name, port.parse::<u16>().map_err(|_| shape.to_owned())?),
            None => (host, 26379),
        };
        let plain =
            |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '[' | ']' | ':');
        if name.is_empty() || !name.chars().all(plain) {
            return Err(shape.to_owned());
        }
        sentinels.push(format!("{name}:{port}"));
    }
    let mut segments = path.split('/');
    let service = segments.next().unwrap_or_default();
    let database = segments.next().filter(|db| !db.is_empty()).unwrap_or("0");
    let named = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if service.is_empty()
        || !service.chars().all(named)
        || database.parse::<u8>().is_err()
        || segments.next().is_some()
    {
        return Err(shape.to_owned());
    }
    let (first, others) = sentinels.split_first().ok_or_else(|| shape.to_owned())?;
    let mut fred =
        format!("{fred_scheme}://{credentials}{first}/{database}?sentinelServiceName={service}");
    for other in others {
        fred.push_str("&node=");
        fred.push_str(other);
    }
    Ok((fred, true))
}

/// The `connected_slaves` of `INFO replication`.
fn connected_replicas(info: &str) -> Option<u64> {
    info.lines()
        .find_map(|line| line.trim().strip_prefix("connected_slaves:"))
        .and_then(|n| n.trim().parse().ok())
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
        let (url, sentinel) = fred_url(options.url)?;
        let mut config = Config::from_url(&url).map_err(|_| {
            "session.redis_url is not a Redis URL (redis://host:port/db, rediss:// with TLS, \
             redis+sentinel://host:port,host:port/<master name>/db behind Sentinel)"
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
        // Within the command's own time limit (WAIT is one command): half of it, so that its
        // answer ("no replica has it") comes back well before the client gives up on the command
        // on a loaded machine, and the error says what happened rather than "timed out".
        let wait = i64::try_from(timeout.as_millis() / 2).unwrap_or(250).max(1);
        Ok(Self {
            pool,
            subscriber,
            names,
            replica_wait_ms: sentinel.then_some(wait),
            alone: std::sync::Arc::default(),
            alone_checked_ms: std::sync::Arc::default(),
        })
    }

    /// After a write on `client`: behind Sentinel, the write is done only once a replica has it
    /// (`WAIT 1`), so that a failover cannot lose it; an error otherwise (the request answers
    /// 503, as in any Redis outage). A master with no replica at all carries on alone, warned,
    /// and its writes do not wait (`WAIT` would hold the connection for nothing) until a look
    /// at its replicas, once a second, finds one again.
    async fn confirm(&self, client: &Client) -> session_store::Result<()> {
        use std::sync::atomic::Ordering;
        let Some(wait_ms) = self.replica_wait_ms else {
            return Ok(());
        };
        if self.alone.load(Ordering::Relaxed) {
            let now_ms = i64::try_from(crate::server::base::clock::unix_nanos() / 1_000_000)
                .unwrap_or(i64::MAX);
            if now_ms - self.alone_checked_ms.load(Ordering::Relaxed) < 1_000 {
                return Ok(());
            }
            self.alone_checked_ms.store(now_ms, Ordering::Relaxed);
            if self.replicas(client).await? == Some(0) {
                return Ok(());
            }
            self.alone.store(false, Ordering::Relaxed);
            tracing::warn!("redis: the master has a replica again; writes wait for it");
        }
        let copies: i64 = client.wait(1, wait_ms).await.map_err(backend_error)?;
        if copies >= 1 {
            return Ok(());
        }
        if self.replicas(client).await? == Some(0) {
            if !self.alone.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "redis: the master has no replica; writes go on unreplicated until one is \
                     back (a failover now would lose them)"
                );
            }
            return Ok(());
        }
        Err(backend_error("no replica confirmed a write in time"))
    }

    /// How many replicas the master has connected now (`None`: it did not say).
    async fn replicas(&self, client: &Client) -> session_store::Result<Option<u64>> {
        let info: String = client
            .info(Some(fred::types::InfoKind::Replication))
            .await
            .map_err(backend_error)?;
        Ok(connected_replicas(&info))
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

    /// The sorted sets of the event-stream leases of session `id` and of user `sub`.
    fn stream_keys(&self, id: &str, sub: &str) -> [String; 2] {
        let n = &self.names;
        [
            n.of_session("streams", id),
            n.key("ustreams", &n.hash("sub", sub)),
        ]
    }

    /// Indexes a signed-in session under its Keycloak session and user, until it expires.
    async fn index(&self, client: &Client, record: &Record, now: i64) -> session_store::Result<()> {
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
            client
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
        let client = self.pool.next();
        loop {
            let id = record.id.to_string();
            let created: i64 = client
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
                self.index(client, record, now).await?;
                return self.confirm(client).await;
            }
            record.id = Id::default();
        }
    }

    /// Atomic: written only over a record that exists and whose token set is not newer.
    async fn save(&self, record: &Record, now: i64) -> session_store::Result<Saved> {
        let rank = token_rank(record);
        let name = self.names.session(&record.id.to_string());
        let json = stored_json(record)?;
        let client = self.pool.next();
        let answer: i64 = client
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
                self.index(client, record, now).await?;
                self.confirm(client).await?;
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
        let client = self.pool.next();
        let existed: i64 = client.del(n.key("s", &name)).await.map_err(backend_error)?;
        client
            .del::<i64, _>(vec![n.key("g", &name), n.key("backoff", &name)])
            .await
            .map_err(backend_error)?;
        if existed > 0 {
            self.confirm(client).await?;
            client
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
        let client = self.pool.next();
        client
            .set::<(), _, _>(
                self.names.key("ended", &self.names.hash("sid", sid)),
                "1",
                Some(Expiration::EX(ttl_secs.max(1))),
                None,
                false,
            )
            .await
            .map_err(backend_error)?;
        self.confirm(client).await
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
    async fn first_use_of_jti(
        &self,
        jti: &str,
        until: i64,
        now: i64,
    ) -> session_store::Result<bool> {
        let client = self.pool.next();
        let set: Option<String> = client
            .set(
                self.names.key("jti", &self.names.hash("jti", jti)),
                "1",
                Some(Expiration::EXAT(until.max(now + 1))),
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(backend_error)?;
        if set.is_some() {
            self.confirm(client).await?;
        }
        Ok(set.is_some())
    }

    /// Takes the refresh lock of session `id` with `token`; false when another holds it.
    async fn try_lock(&self, id: &str, token: &str) -> session_store::Result<bool> {
        let client = self.pool.next();
        let set: Option<String> = client
            .set(
                self.names.of_session("lock", id),
                token,
                Some(Expiration::PX(LOCK_TTL_MS)),
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(backend_error)?;
        if set.is_some() {
            // A lock a failover could lose would let another replica spend the same token.
            if let Err(e) = self.confirm(client).await {
                let _ = self.unlock(id, token).await;
                return Err(e);
            }
        }
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

    async fn take_stream(
        &self,
        id: &str,
        sub: &str,
        lease: &str,
        limits: super::streams::StreamLimits,
        until_ms: i64,
        now_ms: i64,
    ) -> session_store::Result<super::streams::StreamRoom> {
        use super::streams::StreamRoom;
        let answer: i64 = self
            .pool
            .eval(
                TAKE_STREAM_SCRIPT,
                self.stream_keys(id, sub).to_vec(),
                vec![
                    lease.to_owned(),
                    until_ms.to_string(),
                    now_ms.to_string(),
                    limits.per_session.to_string(),
                    limits.per_user.to_string(),
                ],
            )
            .await
            .map_err(backend_error)?;
        Ok(match answer {
            0 => StreamRoom::Taken,
            1 => StreamRoom::SessionFull,
            _ => StreamRoom::UserFull,
        })
    }

    async fn renew_stream(
        &self,
        id: &str,
        sub: &str,
        lease: &str,
        until_ms: i64,
    ) -> session_store::Result<()> {
        self.pool
            .eval::<i64, _, _, _>(
                RENEW_STREAM_SCRIPT,
                self.stream_keys(id, sub).to_vec(),
                vec![
                    lease.to_owned(),
                    until_ms.to_string(),
                    super::streams::LEASE_TTL_MS.to_string(),
                ],
            )
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    async fn release_stream(&self, id: &str, sub: &str, lease: &str) -> session_store::Result<()> {
        for key in self.stream_keys(id, sub) {
            self.pool
                .zrem::<i64, _, _>(key, lease)
                .await
                .map_err(backend_error)?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::test_support::{TestRedis, TestSentinel};

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
        use crate::server::session::store::test_records::signed_in;
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
    fn a_sentinel_url_lists_its_sentinels_and_master_and_other_urls_pass_as_they_are() {
        let ok = |url: &str| fred_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(
            ok("redis+sentinel://10.0.0.1:26379,10.0.0.2,sentinel-3:26380/kcbff"),
            (
                "redis-sentinel://10.0.0.1:26379/0?sentinelServiceName=kcbff\
                 &node=10.0.0.2:26379&node=sentinel-3:26380"
                    .to_owned(),
                true
            )
        );
        assert_eq!(
            ok("rediss+sentinel://:pa@ss@s1:1/main-redis/3"),
            (
                "rediss-sentinel://:pa@ss@s1:1/3?sentinelServiceName=main-redis".to_owned(),
                true
            )
        );
        for plain in ["redis://127.0.0.1:6379/2", "rediss://:secret@redis:6380"] {
            assert_eq!(ok(plain), (plain.to_owned(), false));
        }
        for bad in [
            "redis+sentinel://s1:26379",
            "redis+sentinel://s1:26379/",
            "redis+sentinel://s1:port/kcbff",
            "redis+sentinel://:hunter2@s1,/kcbff",
            "redis+sentinel://s1/kcbff/db",
            "redis+sentinel://s1/kc?bff",
        ] {
            let e = fred_url(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(e.contains("redis+sentinel://"), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn the_replicas_of_a_master_are_read_from_its_replication_info() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=…\r\n";
        assert_eq!(connected_replicas(info), Some(2));
        assert_eq!(
            connected_replicas("role:master\r\nconnected_slaves:0\r\n"),
            Some(0)
        );
        assert_eq!(connected_replicas("role:slave\r\n"), None);
    }

    #[tokio::test]
    async fn behind_sentinel_a_write_no_replica_confirms_is_an_error_not_a_success() {
        use crate::server::session::store::test_records::signed_in;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let sentinel = TestSentinel::start(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let url = sentinel.url();
        // Four seconds per command: the replica's silence (WAIT, half of it) answers well before
        // the client's own time limit, even on a loaded machine (at 500 ms the client once timed
        // out first in CI, and the error said "timed out" instead of naming the replica), and a
        // replica that is only slow confirms in time (at one second, 500 ms for WAIT, the
        // confirmation of the first write once came too late in CI, with the test command's
        // other tests and builds beside it).
        let backend = RedisBackend::connect(RedisOptions::for_tests(
            &url,
            std::time::Duration::from_millis(4_000),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let now = crate::server::base::clock::unix_now();
        let mut record = signed_in("sid-1", "alice", 600);
        backend
            .create(&mut record, now)
            .await
            .unwrap_or_else(|e| panic!("a replica confirms: {e}"));
        sentinel.freeze_replica(true);
        let frozen = backend.save(&record, now).await;
        let lock = backend.try_lock(&record.id.to_string(), "holder").await;
        sentinel.freeze_replica(false);
        assert!(
            matches!(frozen, Err(session_store::Error::Backend(ref e)) if e.contains("replica")),
            "{frozen:?}"
        );
        assert!(lock.is_err(), "{lock:?}");
        assert!(
            backend
                .try_lock(&record.id.to_string(), "another")
                .await
                .unwrap_or_else(|e| panic!("{e}")),
            "the unconfirmed lock was let go"
        );
        assert!(matches!(backend.save(&record, now).await, Ok(Saved::Done)));
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
