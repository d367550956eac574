//! What the tests of this crate and of the apps that use it share, behind the `test-support`
//! feature (never in a production build): throw-away Redis servers (plain, persistent, TLS, and
//! Sentinel with a master, a replica and three sentinels), and read access to a few internals a
//! test asserts on (counters, limits, the bearer check).
//!
//! Catalogue: none directly; these start the real Redis the store's fault cases are tested with
//! (Redis restart, failover, TLS).

pub use crate::server::base::metrics::{Counter, Metrics};
pub use crate::server::keycloak_api::directory::Directory;
pub use crate::server::oidc::client::Oidc;
pub use crate::server::session::login_cookies::LoginCookies;
pub use crate::server::session::store::AuthStore;
pub use crate::server::session::store::LOCK_TTL_MS;
pub use crate::server::web::extract::INVALID_TOKEN;
pub use crate::server::web::push::MAX_STREAMS_PER_SESSION;

use crate::server::web::state::KeycloakAuth;

/// The parts of [`KeycloakAuth`] a test looks into (`use` it, then `auth.metrics()` and so on).
pub trait Internals {
    /// The OpenID Connect client (its key set, the bearer check).
    fn oidc(&self) -> &Oidc;
    /// The session store.
    fn store(&self) -> &AuthStore;
    /// The counters `/metrics` serves.
    fn metrics(&self) -> &Metrics;
    /// The user directory, when configured.
    fn directory(&self) -> Option<&Directory>;
    /// The sealed cookies of pending sign-ins (a test plants or opens one).
    fn login_cookies(&self) -> &LoginCookies;
}

impl Internals for KeycloakAuth {
    fn oidc(&self) -> &Oidc {
        KeycloakAuth::oidc(self)
    }
    fn store(&self) -> &AuthStore {
        KeycloakAuth::store(self)
    }
    fn metrics(&self) -> &Metrics {
        KeycloakAuth::metrics(self)
    }
    fn directory(&self) -> Option<&Directory> {
        KeycloakAuth::directory(self)
    }
    fn login_cookies(&self) -> &LoginCookies {
        KeycloakAuth::login_cookies(self)
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
        spawn_listening(command, port)
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
            .stderr(std::process::Stdio::null())
            .status();
    }

    /// Starts it again on the same port (empty, unless it persists).
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.child = Self::spawn(self.port, self.aof_dir.as_deref(), self.tls_dir.as_deref())?;
        Ok(())
    }
}

/// A free port on 127.0.0.1.
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Spawns `command` and waits until something listens on `port`.
fn spawn_listening(
    mut command: std::process::Command,
    port: u16,
) -> Result<std::process::Child, String> {
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

/// `redis-cli -p <port> <args>`'s answer, if it gave one.
fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A throw-away Redis behind Sentinel for tests (and the cluster script's model): a master, one
/// replica and three sentinels (`redis-server --sentinel`, the binary of Debian's
/// `redis-server`), each on a port of its own, watching the master [`TestSentinel::SERVICE`]
/// with a failover after one second of silence. Stopped when dropped.
pub struct TestSentinel {
    servers: Vec<(std::process::Child, u16)>,
    sentinels: Vec<(std::process::Child, u16)>,
}

impl TestSentinel {
    /// The name of the master the sentinels watch.
    pub const SERVICE: &'static str = "kcbff";

    /// Starts them all (configuration files in `dir`) and waits until every sentinel knows the
    /// replica and the two other sentinels, so that a failover can happen.
    pub fn start(dir: &std::path::Path) -> Result<Self, String> {
        let server = |port: u16, replica_of: Option<u16>| {
            // A replica writes what it receives to its folder (`dump.rdb`): one folder each.
            let own = dir.join(format!("redis-{port}"));
            std::fs::create_dir_all(&own).map_err(|e| format!("{}: {e}", own.display()))?;
            let mut command = std::process::Command::new("redis-server");
            command.args(["--bind", "127.0.0.1", "--port", &port.to_string()]);
            command.arg("--dir").arg(&own);
            command.args(["--save", "", "--appendonly", "no", "--loglevel", "warning"]);
            if let Some(master) = replica_of {
                command.args(["--replicaof", "127.0.0.1", &master.to_string()]);
            }
            spawn_listening(command, port)
        };
        let master = free_port()?;
        let replica = free_port()?;
        let mut this = Self {
            servers: Vec::new(),
            sentinels: Vec::new(),
        };
        this.servers.push((server(master, None)?, master));
        this.servers.push((server(replica, Some(master))?, replica));
        for i in 0..3 {
            let port = free_port()?;
            let conf = dir.join(format!("sentinel-{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {s} 127.0.0.1 {master} 2\n\
                     sentinel down-after-milliseconds {s} 1000\n\
                     sentinel failover-timeout {s} 10000\n\
                     sentinel parallel-syncs {s} 1\n",
                    dir = dir.display(),
                    s = Self::SERVICE,
                ),
            )
            .map_err(|e| format!("{}: {e}", conf.display()))?;
            let mut command = std::process::Command::new("redis-server");
            command.arg(&conf).arg("--sentinel");
            this.sentinels.push((spawn_listening(command, port)?, port));
        }
        for _ in 0..300 {
            if this.sentinels.iter().all(|(_, port)| {
                redis_cli(*port, &["SENTINEL", "master", Self::SERVICE]).is_some_and(|a| {
                    let a: Vec<&str> = a.lines().collect();
                    let field = |name: &str| {
                        a.iter()
                            .position(|l| *l == name)
                            .and_then(|i| a.get(i + 1).copied())
                    };
                    field("num-slaves") == Some("1") && field("num-other-sentinels") == Some("2")
                })
            }) && redis_cli(replica, &["INFO", "replication"])
                .is_some_and(|info| info.contains("master_link_status:up"))
            {
                return Ok(this);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Err("the sentinels did not find each other and the replica within 30 s".into())
    }

    /// `redis+sentinel://` with the three sentinels and [`TestSentinel::SERVICE`].
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|(_, port)| format!("127.0.0.1:{port}"))
            .collect();
        format!("redis+sentinel://{}/{}", hosts.join(","), Self::SERVICE)
    }

    /// The port of the master the sentinels name now.
    pub fn master_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|(_, port)| {
            let answer = redis_cli(
                *port,
                &["SENTINEL", "get-master-addr-by-name", Self::SERVICE],
            )?;
            answer.lines().nth(1)?.trim().parse().ok()
        })
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the server that is not the master now: a replica
    /// that stays connected and confirms nothing.
    pub fn freeze_replica(&self, frozen: bool) {
        let master = self.master_port();
        for (child, port) in &self.servers {
            if Some(*port) != master {
                TestRedis::signal(child, if frozen { "-STOP" } else { "-CONT" });
            }
        }
    }

    /// Kills the master (`SIGKILL`, no goodbye): its port, or `None` if no sentinel names one.
    pub fn kill_master(&mut self) -> Option<u16> {
        let port = self.master_port()?;
        let (child, _) = self.servers.iter_mut().find(|(_, p)| *p == port)?;
        let _ = child.kill();
        let _ = child.wait();
        Some(port)
    }
}

impl Drop for TestSentinel {
    fn drop(&mut self) {
        self.freeze_replica(false);
        for (child, _) in self.sentinels.iter_mut().chain(self.servers.iter_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
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
