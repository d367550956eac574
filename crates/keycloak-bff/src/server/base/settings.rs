//! Runtime settings: a TOML file (`Leptos.toml` by default) edited by the operator, every key
//! overridable by an environment variable `APP_<SECTION>_<KEY>` (e.g. `APP_KEYCLOAK_ISSUER_URL`).
//!
//! This library owns three sections: `[auth]` (how the app presents sign-in), `[keycloak]` (the
//! realm and this client) and `[session]` (the session store and its timing), and the `[[apis]]`
//! tables (remote API routes, `super::remote_api`; read from the file only). The app may add its
//! own `[app]` section, read into a type of its choice ([`Settings::app`]). Unknown keys and
//! sections in the file, and unknown keys in `APP_<SECTION>_*` variables of a known section, are
//! rejected with a message naming them; other `APP_*` variables belong to other programs
//! (Kubernetes' service links, a platform's `APP_ENV`) and are ignored. An
//! environment value is read as the type the setting has (a number, a flag, a list or text),
//! never guessed from how the value looks: an all-digit client secret stays text. The client
//! secret is read only from `APP_KEYCLOAK_CLIENT_SECRET` or from the file named by
//! `keycloak.client_secret_file`, never from the settings file itself.

use super::remote_api::{ApiSection, RemoteApi};
use crate::config::UiConfig;
use keycloak_bff_core::cookie;
use keycloak_bff_core::level::AcrLevels;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

pub const ENV_PREFIX: &str = "APP_";
/// Names another settings file instead of `./Leptos.toml`.
pub const ENV_SETTINGS_FILE: &str = "APP_SETTINGS_FILE";

pub use super::settings_error::SettingsError;

fn invalid(msg: impl Into<String>) -> SettingsError {
    SettingsError::Invalid(msg.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
/// Where sessions are kept (`session.store`).
pub enum StoreKind {
    /// A SQLite file (`session.sqlite_file`): sessions survive restarts (the default).
    Sqlite,
    /// In memory: every restart signs everybody out. For tests and throw-away runs.
    Memory,
    /// Redis (`session.redis_url`): shared by every replica of the app.
    Redis,
}

/// An app without settings of its own: the `[app]` section must then be absent or empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoAppSettings {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings<A> {
    #[serde(default)]
    app: A,
    #[serde(default)]
    auth: AuthSection,
    #[serde(default)]
    keycloak: KeycloakSection,
    #[serde(default)]
    session: SessionSection,
    #[serde(default)]
    apis: Vec<ApiSection>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct AuthSection {
    public_url: String,
    brand: String,
    route_prefix: String,
    channel: String,
    metrics_addr: String,
    silent_sso: bool,
    silent_sso_skip: Vec<String>,
    static_paths: Vec<String>,
    step_up_max_age_secs: u64,
    step_up_allows_impersonation: bool,
}

impl Default for AuthSection {
    fn default() -> Self {
        let ui = UiConfig::default();
        Self {
            public_url: "http://localhost:3000".into(),
            brand: "Sign in".into(),
            route_prefix: ui.route_prefix,
            channel: ui.channel,
            metrics_addr: DEFAULT_METRICS_ADDR.into(),
            silent_sso: true,
            silent_sso_skip: vec!["/api/".into(), "/health/".into()],
            static_paths: vec![
                "/favicon.ico".into(),
                "/favicon.svg".into(),
                "/robots.txt".into(),
            ],
            step_up_max_age_secs: 300,
            step_up_allows_impersonation: false,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct KeycloakSection {
    issuer_url: String,
    internal_url: Option<String>,
    client_id: String,
    #[serde(skip_serializing)]
    client_secret: Option<SecretString>,
    client_secret_file: Option<PathBuf>,
    http_timeout_secs: u64,
    leeway_secs: u64,
    algorithms: Vec<String>,
    bearer_clients: Vec<String>,
    acr_levels: Vec<String>,
    token_relay_origins: Vec<String>,
    allow_insecure_http: bool,
    directory_client_id: Option<String>,
    #[serde(skip_serializing)]
    directory_client_secret: Option<SecretString>,
    dpop: bool,
    dpop_key_file: Option<PathBuf>,
    #[serde(skip_serializing)]
    dpop_key: Option<SecretString>,
}

impl Default for KeycloakSection {
    fn default() -> Self {
        Self {
            issuer_url: String::new(),
            internal_url: None,
            client_id: String::new(),
            client_secret: None,
            client_secret_file: None,
            http_timeout_secs: 5,
            leeway_secs: 30,
            algorithms: vec!["RS256".into()],
            bearer_clients: Vec::new(),
            acr_levels: Vec::new(),
            token_relay_origins: Vec::new(),
            allow_insecure_http: false,
            directory_client_id: None,
            directory_client_secret: None,
            dpop: false,
            dpop_key_file: None,
            dpop_key: None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SessionSection {
    store: StoreKind,
    sqlite_file: PathBuf,
    redis_url: String,
    redis_prefix: String,
    redis_timeout_ms: u64,
    redis_ca_file: Option<PathBuf>,
    cookie_name: String,
    pending_login_ttl_secs: u64,
    max_pending_logins: u64,
    refresh_margin_secs: u64,
    expiry_warning_secs: u64,
    frontchannel_logout: bool,
    persistent_cookie: bool,
    keep_alive: keycloak_bff_core::refresh::KeepAlive,
    max_event_streams: u64,
    max_event_streams_per_user: u64,
    max_event_stream_age_secs: u64,
    #[serde(skip_serializing)]
    secret: Option<SecretString>,
    #[serde(skip_serializing)]
    previous_secret: Option<SecretString>,
}

impl Default for SessionSection {
    fn default() -> Self {
        Self {
            store: StoreKind::Sqlite,
            sqlite_file: "data/sessions.sqlite3".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_prefix: String::new(),
            redis_timeout_ms: 500,
            redis_ca_file: None,
            max_event_streams: 20_000,
            max_event_streams_per_user: 16,
            max_event_stream_age_secs: 3_600,
            cookie_name: "kc_session".into(),
            pending_login_ttl_secs: 600,
            max_pending_logins: 5,
            refresh_margin_secs: 30,
            expiry_warning_secs: 120,
            frontchannel_logout: false,
            persistent_cookie: false,
            keep_alive: keycloak_bff_core::refresh::KeepAlive::Activity,
            secret: None,
            previous_secret: None,
        }
    }
}

/// The library's settings plus the app's own `[app]` section, parsed and checked at start-up.
#[derive(Debug, Clone)]
pub struct Settings<A = NoAppSettings> {
    /// The app's own `[app]` section.
    pub app: A,
    /// Everything the library needs; hand it to [`crate::server::KeycloakAuth::new`].
    pub auth: AuthSettings,
}

/// Everything the library needs, checked.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// The URL browsers use to reach the app; redirects and the origin check derive from it,
    /// never from request headers.
    pub public_url: Url,
    /// The app's name on the pages the library renders itself (sign-in errors).
    pub brand: String,
    /// The address of `/metrics` and the detailed `/health/ready`, apart from the app's own so
    /// that the public never reaches them (default `127.0.0.1:9310`, loopback; port 0 picks a
    /// free one); `None` (`"off"`): not served at all. Never on the app's address.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// The auth routes' prefix, the browser's session channel, the expiry warning.
    pub ui: UiConfig,
    /// Sign a visitor in without a click when Keycloak already knows them: the first page a
    /// browser opens (once per browser session) goes through a `prompt=none` authorization
    /// request (`server::web::silent_sso`).
    pub silent_sso: bool,
    /// Path prefixes a navigation to which never goes to Keycloak for a silent sign-in
    /// (`auth.silent_sso_skip`, default `["/api/", "/health/"]`: JSON and probes). The auth
    /// routes and `/pkg/` are never redirected either. Leptos's server-function prefix (`/api`)
    /// is compiled into the browser bundle, which is why it is a default and not derived.
    pub silent_sso_skip: Vec<String>,
    /// Exact paths served like the site's `/pkg/` files (cacheable, no page headers):
    /// `auth.static_paths`, default `["/favicon.ico", "/favicon.svg", "/robots.txt"]`.
    pub static_paths: Vec<String>,
    /// The `[keycloak]` section: the realm and the client.
    pub keycloak: KeycloakSettings,
    /// The `[session]` section: the store, the cookie, limits and secrets.
    pub session: SessionSettings,
    /// The remote API routes (`[[apis]]`, or [`AuthSettings::with_api`]): calls the browser
    /// makes under the app's origin, forwarded to other APIs with the user's or the app's token.
    pub apis: Vec<RemoteApi>,
}

#[derive(Debug, Clone)]
/// The `[keycloak]` section: the realm, the client and how tokens are checked.
pub struct KeycloakSettings {
    /// `http://localhost:8080/realms/demo`: the `iss` of every token, and the discovery base.
    pub issuer_url: Url,
    /// Where the app itself reaches Keycloak (`http://keycloak:8080`, say) when that differs from
    /// the public issuer: discovery, keys, token and logout calls go there; `iss` and the
    /// browser's redirects stay on the public issuer.
    pub internal_url: Option<Url>,
    /// The client's id in the realm (`keycloak.client_id`).
    pub client_id: String,
    /// The client's secret, from `APP_KEYCLOAK_CLIENT_SECRET` (never from the file).
    pub client_secret: SecretString,
    /// The time limit of one call to Keycloak (`keycloak.http_timeout_secs`).
    pub http_timeout: Duration,
    /// Clock skew allowed in token checks, seconds (`keycloak.leeway_secs`).
    pub leeway_secs: i64,
    /// Signature algorithms accepted, pinned here and never taken from a token.
    pub algorithms: Vec<String>,
    /// Other clients of the realm whose access tokens the JSON API accepts (service accounts the
    /// operator trusts); tokens this client obtained are always accepted.
    pub bearer_clients: Vec<String>,
    /// Accept `http://` URLs of Keycloak on hosts other than loopback (never in production).
    pub allow_insecure_http: bool,
    /// Origins besides Keycloak's own (the issuer's and `internal_url`'s) that the signed-in
    /// user's access token may be sent to by `AsUser` (`https://api.example.com`; plain http
    /// only on loopback). Empty by default: the token goes to Keycloak only.
    pub token_relay_origins: Vec<String>,
    /// The service account that reads the realm's users for a user directory
    /// ([`crate::server::Directory`]), if the app has one.
    pub directory: Option<ServiceAccountSettings>,
    /// DPoP (RFC 9449, `keycloak.dpop`): Keycloak binds the app's tokens to its key, and every
    /// call with them carries a proof of that key; a stolen token alone is useless. Needs
    /// Keycloak 26.4 or later; the client's "Require DPoP bound tokens" makes Keycloak insist.
    pub dpop: bool,
    /// The app's DPoP key, a P-256 private key in PEM (`APP_KEYCLOAK_DPOP_KEY`, or the file
    /// `keycloak.dpop_key_file`); replicas share it. Without one, a key is made for each process
    /// (a session's token bound to another process's key is refreshed before use).
    pub dpop_key: Option<SecretString>,
}

/// A confidential client with a service account (client-credentials grant).
#[derive(Clone)]
pub struct ServiceAccountSettings {
    /// The service account's client id.
    pub client_id: String,
    /// Its secret (from the environment, never from the file).
    pub client_secret: SecretString,
}

impl std::fmt::Debug for ServiceAccountSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountSettings")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl KeycloakSettings {
    /// `url` as the app itself calls it: on `internal_url` when it points at the public issuer's
    /// origin, unchanged otherwise.
    pub fn internal(&self, url: &Url) -> Url {
        let Some(internal) = &self.internal_url else {
            return url.clone();
        };
        if url.origin() != self.issuer_url.origin() {
            return url.clone();
        }
        let mut moved = url.clone();
        let _ = moved.set_scheme(internal.scheme());
        let _ = moved.set_host(internal.host_str());
        let _ = moved.set_port(internal.port());
        moved
    }

    /// The origins the signed-in user's access token may be sent to: Keycloak's own (the
    /// issuer's, and `internal_url`'s) and `token_relay_origins`.
    pub fn token_relay_allowed(&self) -> Vec<String> {
        let mut origins = vec![self.issuer_url.origin().ascii_serialization()];
        if let Some(internal) = &self.internal_url {
            origins.push(internal.origin().ascii_serialization());
        }
        origins.extend(self.token_relay_origins.iter().cloned());
        origins
    }

    /// Refuses a plain-http URL of Keycloak on a host that is not loopback, unless
    /// `keycloak.allow_insecure_http` is set: the client secret, the codes and the tokens would
    /// travel in clear, and anyone on the path could substitute the signing keys.
    pub fn check_transport(&self, what: &str, url: &Url) -> Result<(), String> {
        if url.scheme() == "https" || self.allow_insecure_http || is_loopback(url) {
            return Ok(());
        }
        Err(format!(
            "{what} {url} is plain http on a host that is not loopback: the client secret and the \
             keys would travel in clear. Use https, or set keycloak.allow_insecure_http = true \
             (APP_KEYCLOAK_ALLOW_INSECURE_HTTP) for a test network"
        ))
    }
}

/// `localhost`, `127.0.0.0/8` or `::1`.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[derive(Clone)]
/// The `[session]` section.
pub struct SessionSettings {
    /// Where sessions are kept.
    pub store: StoreKind,
    /// The SQLite file of `store = "sqlite"`.
    pub sqlite_file: PathBuf,
    /// `redis://host:port/db`, for `store = "redis"`.
    pub redis_url: String,
    /// The start of every Redis key and of the events channel (`session.redis_prefix`; by
    /// default `kcbff:<client id>:`): two apps on one Redis never share sessions.
    pub redis_prefix: String,
    /// Each Redis command's time limit (`session.redis_timeout_ms`, default 500 ms): during an
    /// outage a request gets its 503 within it, whatever Keycloak's timeout.
    pub redis_timeout: std::time::Duration,
    /// With `rediss://`: the CA certificates (PEM) Redis's certificate must chain to, instead of
    /// the system's (`session.redis_ca_file`).
    pub redis_ca_file: Option<PathBuf>,
    /// Event streams (`<prefix>/events`) this process holds at most
    /// (`session.max_event_streams`, default 20,000); more get 503 and the pages' timers.
    pub max_event_streams: usize,
    /// Event streams one user holds at most across every replica
    /// (`session.max_event_streams_per_user`, default 16: a browser holds one, whatever its
    /// tabs); more get 429.
    pub max_event_streams_per_user: usize,
    /// How long an event stream stays open at most, ± 10 %
    /// (`session.max_event_stream_age_secs`, default 3,600); the browser then opens a new one.
    pub max_event_stream_age_secs: u64,
    /// The session cookie's base name (`__Host-` is added over https).
    pub cookie_name: String,
    /// How long a started sign-in may take, seconds.
    pub pending_login_ttl_secs: i64,
    /// Started sign-ins one browser may hold at once.
    pub max_pending_logins: usize,
    /// Refresh the access token this many seconds before it expires.
    pub refresh_margin_secs: i64,
    /// Serve `<prefix>/frontchannel-logout`, for realms whose Keycloak cannot reach the app's
    /// back channel. Off by default: back-channel logout is the reliable one.
    pub frontchannel_logout: bool,
    /// Whether the session cookie outlives the browser (`Max-Age` at the end of Keycloak's
    /// session). Off by default: the cookie is a browser-session cookie, gone when the browser
    /// closes (a shared computer, a kiosk), while the server-side session still ends with
    /// Keycloak's. Turning it on weakens that: a closed browser stays signed in.
    pub persistent_cookie: bool,
    /// The key that encrypts a browser's pending sign-ins (state, nonce, PKCE verifier) in
    /// cookies of their own, so that starting a sign-in writes nothing on the server. Set it
    /// (`APP_SESSION_SECRET`, at least 32 bytes) when several replicas serve the app or pending
    /// sign-ins should survive a restart; without it each process makes its own.
    pub secret: Option<SecretString>,
    /// The secret before the current one (`APP_SESSION_PREVIOUS_SECRET`), while it is rotated:
    /// tokens it sealed are still read; new ones are sealed with the current one.
    pub previous_secret: Option<SecretString>,
}

/// `Debug` without secrets: the Redis URL's user and password are shown as `***` (a URL such as
/// `redis://:password@host` must not reach a log), the session secret by `secrecy`'s redaction.
impl std::fmt::Debug for SessionSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSettings")
            .field("store", &self.store)
            .field("sqlite_file", &self.sqlite_file)
            .field("redis_url", &without_credentials(&self.redis_url))
            .field("redis_prefix", &self.redis_prefix)
            .field("redis_timeout", &self.redis_timeout)
            .field("redis_ca_file", &self.redis_ca_file)
            .field("max_event_streams", &self.max_event_streams)
            .field(
                "max_event_streams_per_user",
                &self.max_event_streams_per_user,
            )
            .field("max_event_stream_age_secs", &self.max_event_stream_age_secs)
            .field("cookie_name", &self.cookie_name)
            .field("pending_login_ttl_secs", &self.pending_login_ttl_secs)
            .field("max_pending_logins", &self.max_pending_logins)
            .field("refresh_margin_secs", &self.refresh_margin_secs)
            .field("frontchannel_logout", &self.frontchannel_logout)
            .field("persistent_cookie", &self.persistent_cookie)
            .field("secret", &self.secret)
            .field("previous_secret", &self.previous_secret)
            .finish()
    }
}

/// `url` with whatever stands between `://` and the last `@` (user and password) as `***`.
fn without_credentials(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

impl<A: DeserializeOwned + Serialize + Default> Settings<A> {
    /// Reads `APP_SETTINGS_FILE` or `./Leptos.toml`, then the `APP_*` variables of the process.
    pub fn load() -> Result<Self, SettingsError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let path = env
            .get(ENV_SETTINGS_FILE)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("Leptos.toml"));
        let text = std::fs::read_to_string(&path).map_err(|source| SettingsError::Read {
            path: path.clone(),
            source,
        })?;
        Self::from_parts(&text, &env)
    }

    /// Builds settings from the text of a settings file and a set of environment variables.
    pub fn from_parts(
        file_text: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<Self, SettingsError> {
        let mut table: toml::Table =
            toml::from_str(file_text).map_err(|e| invalid(format!("settings file: {e}")))?;
        if let Some(toml::Value::Table(kc)) = table.get("keycloak") {
            if kc.contains_key("client_secret") {
                return Err(invalid(
                    "keycloak.client_secret must not be written in the settings file: set \
                     APP_KEYCLOAK_CLIENT_SECRET or keycloak.client_secret_file",
                ));
            }
            if kc.contains_key("dpop_key") {
                return Err(invalid(
                    "keycloak.dpop_key must not be written in the settings file: set \
                     APP_KEYCLOAK_DPOP_KEY or keycloak.dpop_key_file",
                ));
            }
            if kc.contains_key("directory_client_secret") {
                return Err(invalid(
                    "keycloak.directory_client_secret must not be written in the settings file: \
                     set APP_KEYCLOAK_DIRECTORY_CLIENT_SECRET",
                ));
            }
        }
        if let Some(toml::Value::Table(session)) = table.get("session") {
            if session.contains_key("secret") || session.contains_key("previous_secret") {
                return Err(invalid(
                    "session.secret and session.previous_secret must not be written in the \
                     settings file: set APP_SESSION_SECRET (APP_SESSION_PREVIOUS_SECRET)",
                ));
            }
        }
        overlay_env(&mut table, env, &schema::<A>()?)?;
        let parsed: FileSettings<A> = table
            .try_into()
            .map_err(|e: toml::de::Error| invalid(e.message().to_owned()))?;
        Ok(Settings {
            auth: validate(parsed.auth, parsed.keycloak, parsed.session, parsed.apis)?,
            app: parsed.app,
        })
    }
}

/// The shortest `session.secret` accepted (the key is derived from it).
pub const MIN_SESSION_SECRET_LEN: usize = 32;

/// The three sections checked and turned into [`AuthSettings`]; each section by its own function.
fn validate(
    a: AuthSection,
    k: KeycloakSection,
    s: SessionSection,
    apis: Vec<ApiSection>,
) -> Result<AuthSettings, SettingsError> {
    let public_url = parse_base_url("auth.public_url", &a.public_url)?;
    if public_url.path() != "/" {
        return Err(invalid(
            "auth.public_url must not have a path (serve the app at the root)",
        ));
    }
    let client_id = k.client_id.clone();
    let settings = AuthSettings {
        public_url,
        brand: a.brand.clone(),
        metrics_addr: metrics_addr(&a.metrics_addr)?,
        ui: ui_config(&a, &s, &k)?,
        silent_sso: a.silent_sso,
        silent_sso_skip: paths("auth.silent_sso_skip", &a.silent_sso_skip)?,
        static_paths: paths("auth.static_paths", &a.static_paths)?,
        keycloak: keycloak_settings(k)?,
        session: session_settings(s, &client_id)?,
        apis: Vec::new(),
    };
    let settings = apis.into_iter().try_fold(settings, |settings, api| {
        settings.with_api(RemoteApi::from_section(api)?)
    })?;
    settings
        .keycloak
        .check_transport("keycloak.issuer_url", &settings.keycloak.issuer_url)
        .map_err(invalid)?;
    if let Some(internal) = &settings.keycloak.internal_url {
        settings
            .keycloak
            .check_transport("keycloak.internal_url", internal)
            .map_err(invalid)?;
    }
    Ok(settings)
}

/// A list of paths of the app's URL space: each starts with `/`.
fn paths(name: &str, list: &[String]) -> Result<Vec<String>, SettingsError> {
    list.iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .map(|p| {
            if p.starts_with('/') {
                Ok(p)
            } else {
                Err(invalid(format!(
                    "{name}: {p:?} must be a path starting with /"
                )))
            }
        })
        .collect()
}

/// Where metrics are served when `auth.metrics_addr` is not set: loopback, out of the public's
/// reach.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9310";

/// `auth.metrics_addr`: the operators' own address for `/metrics`, or `"off"`.
fn metrics_addr(text: &str) -> Result<Option<std::net::SocketAddr>, SettingsError> {
    match text.trim() {
        "off" => Ok(None),
        addr => addr.parse().map(Some).map_err(|e| {
            invalid(format!(
                "auth.metrics_addr {addr:?} is neither an address such as 127.0.0.1:9310 nor \"off\": {e}"
            ))
        }),
    }
}

/// What the browser side needs: the route prefix (a path of plain segments), the tabs' channel,
/// the expiry warning and the step-up window.
fn ui_config(
    a: &AuthSection,
    s: &SessionSection,
    k: &KeycloakSection,
) -> Result<UiConfig, SettingsError> {
    let clock_leeway_secs = k.leeway_secs.min(300) as i64;
    let acr_levels = AcrLevels::new(k.acr_levels.clone())
        .map_err(|e| invalid(format!("keycloak.acr_levels: {e}")))?;
    let route_prefix = a.route_prefix.trim_end_matches('/').to_owned();
    let prefix_ok = route_prefix.starts_with('/')
        && route_prefix.len() > 1
        && route_prefix[1..].split('/').all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        });
    if !prefix_ok {
        return Err(invalid(format!(
            "auth.route_prefix {:?} must be a path such as \"/auth\"",
            a.route_prefix
        )));
    }
    if a.channel.trim().is_empty() {
        return Err(invalid("auth.channel is empty"));
    }
    Ok(UiConfig {
        route_prefix,
        channel: a.channel.clone(),
        expiry_warning_secs: s.expiry_warning_secs.min(86_400) as i64,
        step_up_max_age_secs: a.step_up_max_age_secs.clamp(10, 86_400) as i64,
        clock_leeway_secs,
        step_up_allows_impersonation: a.step_up_allows_impersonation,
        keep_alive: s.keep_alive,
        acr_levels,
    })
}

/// `[keycloak]`: the realm, this client and its secret, the service account of the directory,
/// the accepted algorithms and the HTTP timeout.
fn keycloak_settings(k: KeycloakSection) -> Result<KeycloakSettings, SettingsError> {
    if k.issuer_url.trim().is_empty() {
        return Err(invalid("keycloak.issuer_url is required"));
    }
    let issuer_url =
        Url::parse(&k.issuer_url).map_err(|e| invalid(format!("keycloak.issuer_url: {e}")))?;
    if !matches!(issuer_url.scheme(), "http" | "https") {
        return Err(invalid("keycloak.issuer_url must be http or https"));
    }
    if k.client_id.trim().is_empty() {
        return Err(invalid("keycloak.client_id is required"));
    }
    check_algorithms(&k.algorithms)?;
    if k.http_timeout_secs == 0 || k.http_timeout_secs > 120 {
        return Err(invalid(
            "keycloak.http_timeout_secs must be between 1 and 120",
        ));
    }
    let client_secret =
        match (k.client_secret, &k.client_secret_file) {
            (Some(s), _) => s,
            (None, Some(path)) => read_secret_file("keycloak.client_secret_file", path)?,
            (None, None) => return Err(invalid(
                "no client secret: set APP_KEYCLOAK_CLIENT_SECRET or keycloak.client_secret_file",
            )),
        };
    let dpop_key = match (k.dpop_key, &k.dpop_key_file) {
        (Some(key), _) => Some(key),
        (None, Some(path)) => Some(read_secret_file("keycloak.dpop_key_file", path)?),
        (None, None) => None,
    };
    if dpop_key.is_some() && !k.dpop {
        return Err(invalid(
            "a DPoP key is given (APP_KEYCLOAK_DPOP_KEY or keycloak.dpop_key_file) but \
             keycloak.dpop is off: set keycloak.dpop = true (APP_KEYCLOAK_DPOP), or remove the key",
        ));
    }
    Ok(KeycloakSettings {
        issuer_url,
        internal_url: internal_url(k.internal_url.as_deref())?,
        client_id: k.client_id,
        client_secret,
        http_timeout: Duration::from_secs(k.http_timeout_secs),
        leeway_secs: k.leeway_secs.min(300) as i64,
        algorithms: k.algorithms,
        bearer_clients: k.bearer_clients,
        token_relay_origins: relay_origins(&k.token_relay_origins, k.allow_insecure_http)?,
        allow_insecure_http: k.allow_insecure_http,
        directory: directory_account(k.directory_client_id.as_deref(), k.directory_client_secret)?,
        dpop: k.dpop,
        dpop_key,
    })
}

/// `keycloak.internal_url`: an origin the server calls Keycloak at, if not the issuer's.
fn internal_url(text: Option<&str>) -> Result<Option<Url>, SettingsError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let url = Url::parse(text).map_err(|e| invalid(format!("keycloak.internal_url: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.path() != "/" || url.query().is_some() {
        return Err(invalid(
            "keycloak.internal_url must be an origin such as http://keycloak:8080",
        ));
    }
    Ok(Some(url))
}

/// `keycloak.token_relay_origins`: each an origin (`https://api.example.com`, no path), https
/// unless on loopback (or `allow_insecure_http`): the user's token must not travel in clear.
fn relay_origins(list: &[String], allow_insecure_http: bool) -> Result<Vec<String>, SettingsError> {
    list.iter()
        .map(|text| {
            let bad = || {
                invalid(format!(
                    "keycloak.token_relay_origins: {text:?} is not an origin such as https://api.example.com"
                ))
            };
            let url = Url::parse(text.trim()).map_err(|_| bad())?;
            if !matches!(url.scheme(), "http" | "https")
                || url.path() != "/"
                || url.query().is_some()
                || !url.username().is_empty()
            {
                return Err(bad());
            }
            if url.scheme() == "http" && !allow_insecure_http && !is_loopback(&url) {
                return Err(invalid(format!(
                    "keycloak.token_relay_origins: {text:?} is plain http on a host that is not \
                     loopback: the user's token would travel in clear"
                )));
            }
            Ok(url.origin().ascii_serialization())
        })
        .collect()
}

/// Only asymmetric signature algorithms, at least one (catalogue T02: no `none`, no HMAC).
fn check_algorithms(algorithms: &[String]) -> Result<(), SettingsError> {
    let allowed = [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
    ];
    if algorithms.is_empty() {
        return Err(invalid("keycloak.algorithms is empty"));
    }
    match algorithms.iter().find(|alg| !allowed.contains(&alg.as_str())) {
        Some(alg) => Err(invalid(format!(
            "keycloak.algorithms: {alg:?} is not an asymmetric signature algorithm this app accepts ({})",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

/// The directory's service account: both its id and its secret, or neither.
fn directory_account(
    id: Option<&str>,
    secret: Option<SecretString>,
) -> Result<Option<ServiceAccountSettings>, SettingsError> {
    match (id.map(str::trim), secret) {
        (None | Some(""), None) => Ok(None),
        (Some(id), Some(secret)) if !id.is_empty() && !secret.expose_secret().is_empty() => {
            Ok(Some(ServiceAccountSettings {
                client_id: id.to_owned(),
                client_secret: secret,
            }))
        }
        (None | Some(""), Some(_)) => Err(invalid(
            "APP_KEYCLOAK_DIRECTORY_CLIENT_SECRET is set without keycloak.directory_client_id",
        )),
        _ => Err(invalid(
            "keycloak.directory_client_id needs its secret in APP_KEYCLOAK_DIRECTORY_CLIENT_SECRET",
        )),
    }
}

/// `session.redis_prefix`, or `kcbff:<client id>:` (characters other than letters, digits, `.`,
/// `_` and `-` of the client id as `_`): no glob character, no space, at most 100 bytes.
fn redis_prefix(set: &str, client_id: &str) -> Result<String, SettingsError> {
    if set.is_empty() {
        let id: String = client_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        return Ok(format!("kcbff:{id}:"));
    }
    let fine = set.len() <= 100
        && set
            .chars()
            .all(|c| c.is_ascii_graphic() && !"*?[]\\".contains(c));
    if fine {
        Ok(set.to_owned())
    } else {
        Err(invalid(format!(
            "session.redis_prefix {set:?} must be at most 100 visible characters, none of * ? [ ] \\"
        )))
    }
}

/// `[session]`: the store, the cookie, the timing of sign-ins and refreshes, the secret.
fn session_settings(s: SessionSection, client_id: &str) -> Result<SessionSettings, SettingsError> {
    if !cookie::is_valid_name(&s.cookie_name) {
        return Err(invalid(format!(
            "session.cookie_name {:?} is not a valid cookie name",
            s.cookie_name
        )));
    }
    let secret = match s.secret {
        Some(secret) if secret.expose_secret().len() < MIN_SESSION_SECRET_LEN => {
            return Err(invalid(format!(
                "session.secret (APP_SESSION_SECRET) must be at least \
                 {MIN_SESSION_SECRET_LEN} bytes"
            )))
        }
        secret => secret,
    };
    if s.store == StoreKind::Redis && secret.is_none() {
        return Err(invalid(
            "session.store = \"redis\" needs APP_SESSION_SECRET (at least 32 bytes), the same on \
             every replica: without it each replica seals sign-ins with a key of its own, and \
             callbacks that reach another replica fail",
        ));
    }
    Ok(SessionSettings {
        store: s.store,
        sqlite_file: s.sqlite_file,
        redis_prefix: redis_prefix(&s.redis_prefix, client_id)?,
        redis_timeout: std::time::Duration::from_millis(s.redis_timeout_ms.clamp(50, 10_000)),
        redis_ca_file: s.redis_ca_file,
        redis_url: s.redis_url,
        max_event_streams: s.max_event_streams.clamp(1, 1_000_000) as usize,
        max_event_streams_per_user: s.max_event_streams_per_user.clamp(1, 1_000) as usize,
        max_event_stream_age_secs: s.max_event_stream_age_secs.clamp(1, 86_400),
        cookie_name: s.cookie_name,
        pending_login_ttl_secs: s.pending_login_ttl_secs.clamp(30, 3600) as i64,
        max_pending_logins: s.max_pending_logins.clamp(1, 20) as usize,
        refresh_margin_secs: s.refresh_margin_secs.min(3600) as i64,
        frontchannel_logout: s.frontchannel_logout,
        persistent_cookie: s.persistent_cookie,
        secret,
        previous_secret: s.previous_secret,
    })
}

impl AuthSettings {
    /// The library's settings alone, for an app without an `[app]` section of its own: reads
    /// `APP_SETTINGS_FILE` or `./Leptos.toml`, then the `APP_*` variables of the process.
    pub fn load() -> Result<Self, SettingsError> {
        Settings::<NoAppSettings>::load().map(|s| s.auth)
    }

    /// The issuer exactly as Keycloak writes it in `iss` (no trailing slash).
    pub fn issuer(&self) -> String {
        self.keycloak
            .issuer_url
            .as_str()
            .trim_end_matches('/')
            .to_owned()
    }

    /// `https://app.example` (scheme, host and port), for the origin check.
    pub fn public_origin(&self) -> String {
        self.public_url.origin().ascii_serialization()
    }

    /// Whether the public URL is https (cookies are then `Secure` and `__Host-`).
    pub fn public_url_is_https(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// Adds a remote API route, checked against the others and the paths the app and the
    /// library serve (the auth routes, `/api/` of server functions, `/pkg/`, `/health/`).
    pub fn with_api(mut self, api: RemoteApi) -> Result<Self, SettingsError> {
        let reserved = [
            self.ui.route_prefix.clone(),
            "/api".to_owned(),
            "/pkg".to_owned(),
            "/health".to_owned(),
        ];
        api.check(&self.apis, &reserved)?;
        self.apis.push(api);
        Ok(self)
    }

    /// An absolute URL of the app for `path` (which starts with `/`).
    pub fn absolute(&self, path: &str) -> String {
        format!("{}{}", self.public_origin(), path)
    }
}

fn parse_base_url(key: &str, value: &str) -> Result<Url, SettingsError> {
    let url = Url::parse(value).map_err(|e| invalid(format!("{key}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(invalid(format!("{key} must be an http(s) URL with a host")));
    }
    Ok(url)
}

/// The secret in the file `path` (the setting `key` names it), trimmed.
fn read_secret_file(key: &str, path: &Path) -> Result<SecretString, SettingsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(format!("{key} {}: {e}", path.display())))?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(invalid(format!("{key} {} is empty", path.display())));
    }
    Ok(SecretString::from(secret.to_owned()))
}

/// The type of every setting that has a default, by section and key: the defaults serialized.
/// A key without a default (the issuer, the client id, the secret, the secret file) is text.
fn schema<A: Serialize + Default>() -> Result<toml::Table, SettingsError> {
    let mut schema = toml::Table::new();
    let sections = [
        ("app", toml::Value::try_from(A::default())),
        ("auth", toml::Value::try_from(AuthSection::default())),
        (
            "keycloak",
            toml::Value::try_from(KeycloakSection::default()),
        ),
        ("session", toml::Value::try_from(SessionSection::default())),
    ];
    for (name, value) in sections {
        let value = value.map_err(|e| invalid(format!("[{name}] defaults: {e}")))?;
        schema.insert(name.to_owned(), value);
    }
    Ok(schema)
}

/// An environment value read as the type of the setting it overrides.
fn typed_value(
    name: &str,
    value: &str,
    like: Option<&toml::Value>,
) -> Result<toml::Value, SettingsError> {
    let not = |what: &str| invalid(format!("{name}={value:?} is not {what}"));
    Ok(match like {
        Some(toml::Value::Integer(_)) => {
            toml::Value::Integer(value.trim().parse().map_err(|_| not("a whole number"))?)
        }
        Some(toml::Value::Float(_)) => {
            toml::Value::Float(value.trim().parse().map_err(|_| not("a number"))?)
        }
        Some(toml::Value::Boolean(_)) => {
            toml::Value::Boolean(value.trim().parse().map_err(|_| not("true or false"))?)
        }
        Some(toml::Value::Array(_)) => toml::Value::Array(
            value
                .split(',')
                .map(|s| toml::Value::String(s.trim().to_owned()))
                .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
                .collect(),
        ),
        _ => toml::Value::String(value.to_owned()),
    })
}

/// Writes every `APP_<SECTION>_<KEY>` variable over the file's table, typed by `schema`.
fn overlay_env(
    table: &mut toml::Table,
    env: &BTreeMap<String, String>,
    schema: &toml::Table,
) -> Result<(), SettingsError> {
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if name == ENV_SETTINGS_FILE {
            continue;
        }
        let lower = rest.to_ascii_lowercase();
        // The sections are the schema's: one list of them, in `schema`.
        let Some((section, key)) = schema.keys().find_map(|s| {
            lower
                .strip_prefix(s.as_str())
                .and_then(|k| k.strip_prefix('_'))
                .map(|k| (s.clone(), k.to_owned()))
        }) else {
            // Not a section of these settings: another program's variable. Kubernetes sets
            // APP_SERVICE_HOST, APP_PORT and APP_PORT_3000_TCP* in every pod of a namespace with
            // a Service named `app`; platforms set APP_ENV and APP_URL. Refusing them would stop
            // the app for something it never reads (a typo inside a section still stops it).
            tracing::debug!(variable = %name, "not a setting (no such section); ignored");
            continue;
        };
        let like = schema
            .get(&section)
            .and_then(toml::Value::as_table)
            .and_then(|t| t.get(&key));
        let value = typed_value(name, value, like)?;
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match entry {
            toml::Value::Table(t) => {
                t.insert(key, value);
            }
            _ => {
                return Err(invalid(format!(
                    "[{section}] in the settings file is not a table"
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const FILE: &str = r#"
        [auth]
        public_url = "http://localhost:3000"
        [keycloak]
        issuer_url = "http://localhost:8080/realms/demo"
        client_id = "demo-app"
    "#;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(file: &str, vars: &BTreeMap<String, String>) -> Result<Settings, SettingsError> {
        Settings::from_parts(file, vars)
    }

    fn err(file: &str, vars: &[(&str, &str)]) -> String {
        match parse(file, &env(vars)) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_file_with_a_secret_from_the_environment_gives_defaults_for_the_rest() {
        let s = parse(FILE, &env(&[("APP_KEYCLOAK_CLIENT_SECRET", "s3cr:et%")]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.auth.issuer(), "http://localhost:8080/realms/demo");
        assert_eq!(s.auth.keycloak.client_secret.expose_secret(), "s3cr:et%");
        assert_eq!(s.auth.session.store, StoreKind::Sqlite);
        assert_eq!(s.auth.session.refresh_margin_secs, 30);
        assert_eq!(s.auth.keycloak.algorithms, vec!["RS256"]);
        assert_eq!(s.auth.public_origin(), "http://localhost:3000");
    }

    #[test]
    fn the_redis_store_needs_the_session_secret_and_gets_a_namespace_of_the_client_id() {
        let redis = [
            ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
            ("APP_SESSION_STORE", "redis"),
        ];
        let e = err(FILE, &redis);
        assert!(e.contains("APP_SESSION_SECRET"), "{e}");
        let secret = "s".repeat(MIN_SESSION_SECRET_LEN);
        let mut vars = redis.to_vec();
        vars.push(("APP_SESSION_SECRET", &secret));
        let s = parse(FILE, &env(&vars)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.auth.session.redis_prefix, "kcbff:demo-app:");
        assert_eq!(
            s.auth.session.redis_timeout,
            std::time::Duration::from_millis(500)
        );
        vars.push(("APP_KEYCLOAK_CLIENT_ID", "my app/v2"));
        vars.push(("APP_SESSION_REDIS_TIMEOUT_MS", "999999"));
        let s = parse(FILE, &env(&vars)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.auth.session.redis_prefix, "kcbff:my_app_v2:");
        assert_eq!(
            s.auth.session.redis_timeout,
            std::time::Duration::from_secs(10)
        );
        vars.push(("APP_SESSION_REDIS_PREFIX", "prod:*"));
        let e = err(FILE, &vars);
        assert!(e.contains("session.redis_prefix"), "{e}");
    }

    #[test]
    fn an_open_page_keeps_the_session_alive_only_after_activity_unless_always_is_asked_for() {
        use keycloak_bff_core::refresh::KeepAlive;
        let s = parse(FILE, &env(&[("APP_KEYCLOAK_CLIENT_SECRET", "x")]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.auth.ui.keep_alive, KeepAlive::Activity);
        let s = parse(
            FILE,
            &env(&[
                ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                ("APP_SESSION_KEEP_ALIVE", "always"),
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.auth.ui.keep_alive, KeepAlive::Always);
        let e = err(
            FILE,
            &[
                ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                ("APP_SESSION_KEEP_ALIVE", "sometimes"),
            ],
        );
        assert!(e.contains("keep_alive") || e.contains("sometimes"), "{e}");
    }

    #[test]
    fn the_app_url_space_the_library_skips_is_a_setting_with_defaults_and_paths_only() {
        let s = parse(FILE, &env(&[("APP_KEYCLOAK_CLIENT_SECRET", "x")]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.auth.silent_sso_skip, vec!["/api/", "/health/"]);
        assert_eq!(
            s.auth.static_paths,
            vec!["/favicon.ico", "/favicon.svg", "/robots.txt"]
        );
        let file = r#"
            [auth]
            public_url = "http://localhost:3000"
            silent_sso_skip = ["/api/", "/rpc/"]
            static_paths = ["/icon.png"]
            [keycloak]
            issuer_url = "http://localhost:8080/realms/demo"
            client_id = "demo-app"
        "#;
        let s = parse(file, &env(&[("APP_KEYCLOAK_CLIENT_SECRET", "x")]));
        let s = s.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.auth.silent_sso_skip, vec!["/api/", "/rpc/"]);
        assert_eq!(s.auth.static_paths, vec!["/icon.png"]);
        let e = err(
            FILE,
            &[
                ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                ("APP_AUTH_SILENT_SSO_SKIP", "/api/,rpc"),
            ],
        );
        assert!(
            e.contains("auth.silent_sso_skip") && e.contains("rpc"),
            "{e}"
        );
    }

    #[test]
    fn metrics_are_on_loopback_unless_the_operator_names_an_address_or_turns_them_off() {
        let s = parse(FILE, &env(&[("APP_KEYCLOAK_CLIENT_SECRET", "x")]))
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = s.auth.metrics_addr.unwrap_or_else(|| panic!("served"));
        assert!(addr.ip().is_loopback(), "{addr}");
        let s = parse(
            FILE,
            &env(&[
                ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                ("APP_AUTH_METRICS_ADDR", "off"),
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.auth.metrics_addr, None);
        let e = err(
            FILE,
            &[
                ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                ("APP_AUTH_METRICS_ADDR", "metrics.example"),
            ],
        );
        assert!(e.contains("auth.metrics_addr"), "{e}");
    }

    #[test]
    fn the_features_of_issue_12_have_their_defaults_and_their_variables() {
        let s = parse(FILE, &env(&[("APP_KEYCLOAK_CLIENT_SECRET", "x")]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(s.auth.silent_sso);
        assert!(!s.auth.session.frontchannel_logout);
        assert_eq!(s.auth.ui.expiry_warning_secs, 120);
        assert_eq!(s.auth.ui.step_up_max_age_secs, 300);
        assert!(s.auth.keycloak.directory.is_none());
        let s = parse(
            FILE,
            &env(&[
                ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                ("APP_AUTH_SILENT_SSO", "false"),
                ("APP_AUTH_STEP_UP_MAX_AGE_SECS", "60"),
                ("APP_SESSION_EXPIRY_WARNING_SECS", "30"),
                ("APP_SESSION_FRONTCHANNEL_LOGOUT", "true"),
                ("APP_KEYCLOAK_DIRECTORY_CLIENT_ID", "user-directory"),
                ("APP_KEYCLOAK_DIRECTORY_CLIENT_SECRET", "12345"),
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!s.auth.silent_sso && s.auth.session.frontchannel_logout);
        assert_eq!(
            (
                s.auth.ui.expiry_warning_secs,
                s.auth.ui.step_up_max_age_secs
            ),
            (30, 60)
        );
        let directory = s
            .auth
            .keycloak
            .directory
            .unwrap_or_else(|| panic!("no directory"));
        assert_eq!(directory.client_id, "user-directory");
        assert_eq!(directory.client_secret.expose_secret(), "12345");
        assert!(!format!("{directory:?}").contains("12345"));
    }

    #[test]
    fn a_directory_client_needs_its_secret_from_the_environment_only() {
        let e = err(
            FILE,
            &[
                ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                ("APP_KEYCLOAK_DIRECTORY_CLIENT_ID", "user-directory"),
            ],
        );
        assert!(e.contains("APP_KEYCLOAK_DIRECTORY_CLIENT_SECRET"), "{e}");
        let file = format!("{FILE}\ndirectory_client_secret = \"s\"\n");
        let e = err(&file, &[("APP_KEYCLOAK_CLIENT_SECRET", "x")]);
        assert!(e.contains("must not be written"), "{e}");
    }

    #[test]
    fn every_key_can_be_overridden_by_an_environment_variable() {
        let s = parse(
            FILE,
            &env(&[
                ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                ("APP_AUTH_PUBLIC_URL", "https://app.example"),
                ("APP_AUTH_BRAND", "Example"),
                ("APP_AUTH_ROUTE_PREFIX", "/sso"),
                ("APP_AUTH_CHANNEL", "example-session"),
                ("APP_KEYCLOAK_ISSUER_URL", "https://id.example/realms/r"),
                ("APP_KEYCLOAK_CLIENT_ID", "other"),
                ("APP_KEYCLOAK_HTTP_TIMEOUT_SECS", "9"),
                ("APP_KEYCLOAK_LEEWAY_SECS", "10"),
                ("APP_KEYCLOAK_ALGORITHMS", "RS256, PS256"),
                ("APP_KEYCLOAK_BEARER_CLIENTS", "svc-a, svc-b"),
                ("APP_SESSION_STORE", "memory"),
                ("APP_SESSION_SQLITE_FILE", "/var/lib/app/sessions.sqlite3"),
                ("APP_SESSION_COOKIE_NAME", "sid"),
                ("APP_SESSION_PENDING_LOGIN_TTL_SECS", "120"),
                ("APP_SESSION_MAX_PENDING_LOGINS", "3"),
                ("APP_SESSION_REFRESH_MARGIN_SECS", "60"),
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.auth.public_origin(), "https://app.example");
        assert_eq!(s.auth.brand, "Example");
        assert_eq!(s.auth.ui.route_prefix, "/sso");
        assert_eq!(s.auth.ui.channel, "example-session");
        assert_eq!(
            s.auth.session.sqlite_file,
            PathBuf::from("/var/lib/app/sessions.sqlite3")
        );
        assert_eq!(s.auth.issuer(), "https://id.example/realms/r");
        assert_eq!(s.auth.keycloak.client_id, "other");
        assert_eq!(s.auth.keycloak.http_timeout, Duration::from_secs(9));
        assert_eq!(s.auth.keycloak.leeway_secs, 10);
        assert_eq!(s.auth.keycloak.algorithms, vec!["RS256", "PS256"]);
        assert_eq!(s.auth.keycloak.bearer_clients, vec!["svc-a", "svc-b"]);
        assert_eq!(s.auth.session.store, StoreKind::Memory);
        assert_eq!(s.auth.session.cookie_name, "sid");
        assert_eq!(s.auth.session.pending_login_ttl_secs, 120);
        assert_eq!(s.auth.session.max_pending_logins, 3);
        assert_eq!(s.auth.session.refresh_margin_secs, 60);
    }

    #[test]
    fn an_unknown_key_in_the_file_is_rejected_by_name() {
        let file = format!("{FILE}\nrefresh_marginn = 3\n");
        let e = err(&file, &[("APP_KEYCLOAK_CLIENT_SECRET", "x")]);
        assert!(e.contains("refresh_marginn"), "{e}");
        let e = err(
            &format!("{FILE}\n[sesion]\nstore = \"memory\"\n"),
            &[("APP_KEYCLOAK_CLIENT_SECRET", "x")],
        );
        assert!(e.contains("sesion"), "{e}");
    }

    #[test]
    fn an_unknown_environment_variable_is_rejected_by_name() {
        let e = err(
            FILE,
            &[
                ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                ("APP_SESSION_STOR", "memory"),
            ],
        );
        assert!(e.contains("stor"), "{e}");
        let e = err(
            FILE,
            &[
                ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                ("APP_KEYCLOAK_CLIENT_IDD", "demo-app"),
            ],
        );
        assert!(e.contains("client_idd"), "{e}");
    }

    #[test]
    fn token_relay_origins_are_origins_over_https_unless_on_loopback() {
        let with = |list: &str| {
            parse(
                FILE,
                &env(&[
                    ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                    ("APP_KEYCLOAK_TOKEN_RELAY_ORIGINS", list),
                ]),
            )
        };
        let s = with("https://api.example.com/, http://127.0.0.1:4001")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s.auth.keycloak.token_relay_allowed(),
            [
                "http://localhost:8080",
                "https://api.example.com",
                "http://127.0.0.1:4001"
            ]
        );
        for bad in [
            "http://api.example.com",
            "https://api.example.com/v1",
            "api.example.com",
        ] {
            let e = with(bad)
                .map(|_| ())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("token_relay_origins"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_browser_checks_a_recent_sign_in_with_the_servers_own_leeway() {
        let s = parse(
            FILE,
            &env(&[
                ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                ("APP_KEYCLOAK_LEEWAY_SECS", "5"),
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.auth.ui.clock_leeway_secs, 5);
        assert_eq!(s.auth.keycloak.leeway_secs, 5);
    }

    #[test]
    fn variables_other_programs_set_under_app_are_not_settings_and_are_ignored() {
        // What Kubernetes injects for a Service named `app`, and what platforms set.
        let s = parse(
            FILE,
            &env(&[
                ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                ("APP_SERVICE_HOST", "10.0.0.12"),
                ("APP_SERVICE_PORT", "3000"),
                ("APP_PORT", "tcp://10.0.0.12:3000"),
                ("APP_PORT_3000_TCP", "tcp://10.0.0.12:3000"),
                ("APP_PORT_3000_TCP_ADDR", "10.0.0.12"),
                ("APP_PORT_3000_TCP_PROTO", "tcp"),
                ("APP_ENV", "production"),
                ("APP_URL", "https://app.example.com"),
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.auth.keycloak.client_id, "demo-app");
    }

    #[test]
    fn a_dpop_key_comes_from_the_environment_or_its_file_never_from_the_settings_file() {
        let on = [
            ("APP_KEYCLOAK_CLIENT_SECRET", "s"),
            ("APP_KEYCLOAK_DPOP", "true"),
            ("APP_KEYCLOAK_DPOP_KEY", "PEM"),
        ];
        let s = parse(FILE, &env(&on)).unwrap_or_else(|e| panic!("{e}"));
        assert!(s.auth.keycloak.dpop);
        let key = s
            .auth
            .keycloak
            .dpop_key
            .as_ref()
            .map(|k| k.expose_secret().to_owned());
        assert_eq!(key.as_deref(), Some("PEM"));
        assert!(!format!("{s:?}").contains("PEM"), "the key never shows");
        let s = parse(FILE, &env(&on[..2])).unwrap_or_else(|e| panic!("{e}"));
        assert!(s.auth.keycloak.dpop && s.auth.keycloak.dpop_key.is_none());
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("dpop.pem");
        std::fs::write(&path, "FROM FILE\n").unwrap_or_else(|e| panic!("{e}"));
        let file = format!(
            "{FILE}dpop = true\ndpop_key_file = {:?}\n",
            path.display().to_string()
        );
        let s = parse(&file, &env(&on[..1])).unwrap_or_else(|e| panic!("{e}"));
        let key = s
            .auth
            .keycloak
            .dpop_key
            .as_ref()
            .map(|k| k.expose_secret().to_owned());
        assert_eq!(key.as_deref(), Some("FROM FILE"));
        let e = err(
            &format!("{FILE}dpop = true\ndpop_key = \"PEM\"\n"),
            &on[..1],
        );
        assert!(e.contains("APP_KEYCLOAK_DPOP_KEY"), "{e}");
        let e = err(
            FILE,
            &[
                ("APP_KEYCLOAK_CLIENT_SECRET", "s"),
                ("APP_KEYCLOAK_DPOP_KEY", "PEM"),
            ],
        );
        assert!(e.contains("keycloak.dpop is off"), "{e}");
    }

    #[test]
    fn a_client_secret_written_in_the_file_is_refused() {
        let file = FILE.replace(
            "client_id = \"demo-app\"",
            "client_id = \"demo-app\"\nclient_secret = \"oops\"",
        );
        let e = err(&file, &[]);
        assert!(
            e.contains("must not be written in the settings file"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_secret_is_an_error_that_says_where_to_put_it() {
        assert!(err(FILE, &[]).contains("APP_KEYCLOAK_CLIENT_SECRET"));
    }

    #[test]
    fn the_secret_can_come_from_a_file_and_never_shows_in_debug_output() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("secret");
        std::fs::write(&path, "from-file-secret\n").unwrap_or_else(|e| panic!("{e}"));
        let file = format!(
            "{FILE}client_secret_file = {:?}\n",
            path.display().to_string()
        );
        let s = parse(&file, &env(&[])).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s.auth.keycloak.client_secret.expose_secret(),
            "from-file-secret"
        );
        assert!(!format!("{s:?}").contains("from-file-secret"));
    }

    #[test]
    fn a_redis_password_never_shows_in_debug_output() {
        let s = parse(
            FILE,
            &env(&[
                ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                (
                    "APP_SESSION_REDIS_URL",
                    "redis://app:hunter2@redis.internal:6379/0",
                ),
                ("APP_SESSION_SECRET", &"k".repeat(40)),
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("//app"),
            "{shown}"
        );
        assert!(
            shown.contains("redis://***@redis.internal:6379/0"),
            "{shown}"
        );
        assert!(
            !shown.contains(&"k".repeat(40)),
            "the session secret stays hidden"
        );
        assert_eq!(
            without_credentials("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }

    #[test]
    fn symmetric_or_none_algorithms_cannot_be_configured() {
        for alg in ["HS256", "none"] {
            let e = err(
                FILE,
                &[
                    ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                    ("APP_KEYCLOAK_ALGORITHMS", alg),
                ],
            );
            assert!(e.contains("algorithms"), "{e}");
        }
    }

    #[test]
    fn a_public_url_with_a_path_or_without_a_host_is_refused() {
        for url in ["http://localhost:3000/app", "localhost:3000", "ftp://x"] {
            let e = err(
                FILE,
                &[
                    ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                    ("APP_AUTH_PUBLIC_URL", url),
                ],
            );
            assert!(e.contains("public_url"), "{url}: {e}");
        }
    }

    #[test]
    fn an_all_digit_secret_or_client_id_from_the_environment_stays_text() {
        let s = parse(
            FILE,
            &env(&[
                ("APP_KEYCLOAK_CLIENT_SECRET", "0123456789"),
                ("APP_KEYCLOAK_CLIENT_ID", "4711"),
                ("APP_SESSION_COOKIE_NAME", "true"),
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.auth.keycloak.client_secret.expose_secret(), "0123456789");
        assert_eq!(s.auth.keycloak.client_id, "4711");
        assert_eq!(s.auth.session.cookie_name, "true");
    }

    #[test]
    fn a_number_setting_given_text_is_refused_naming_the_variable() {
        let e = err(
            FILE,
            &[
                ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                ("APP_KEYCLOAK_LEEWAY_SECS", "soon"),
            ],
        );
        assert!(e.contains("APP_KEYCLOAK_LEEWAY_SECS"), "{e}");
    }

    #[test]
    fn the_apps_own_section_is_read_into_its_type_and_typed_the_same_way() {
        #[derive(Debug, Default, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        struct MyApp {
            data_dir: PathBuf,
            page_size: u32,
        }
        let s: Settings<MyApp> = Settings::from_parts(
            &format!("{FILE}\n[app]\ndata_dir = \"d\"\n"),
            &env(&[
                ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                ("APP_APP_PAGE_SIZE", "25"),
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.app.data_dir, PathBuf::from("d"));
        assert_eq!(s.app.page_size, 25);
        let e = Settings::<MyApp>::from_parts(
            FILE,
            &env(&[
                ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                ("APP_APP_PAGE_SIZ", "25"),
            ]),
        )
        .map(|_| ())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("page_siz"), "{e}");
    }

    #[test]
    fn the_internal_url_moves_only_the_public_issuers_urls_and_must_be_an_origin() {
        let s = parse(
            FILE,
            &env(&[
                ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                ("APP_KEYCLOAK_ISSUER_URL", "https://sso.example/realms/r"),
                ("APP_KEYCLOAK_INTERNAL_URL", "http://127.0.0.1:8080"),
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let k = &s.auth.keycloak;
        let url = |u: &str| Url::parse(u).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            k.internal(&url(
                "https://sso.example/realms/r/protocol/openid-connect/token"
            ))
            .as_str(),
            "http://127.0.0.1:8080/realms/r/protocol/openid-connect/token"
        );
        assert_eq!(
            k.internal(&url("https://elsewhere.example/x")).as_str(),
            "https://elsewhere.example/x"
        );
        for bad in ["http://127.0.0.1:8080/realms/r", "ftp://kc", "not a url"] {
            let e = err(
                FILE,
                &[
                    ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                    ("APP_KEYCLOAK_INTERNAL_URL", bad),
                ],
            );
            assert!(e.contains("keycloak.internal_url"), "{bad}: {e}");
        }
        let e = err(
            FILE,
            &[
                ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                ("APP_KEYCLOAK_INTERNAL_URL", "http://keycloak.internal:8080"),
            ],
        );
        assert!(e.contains("allow_insecure_http"), "{e}");
    }

    #[test]
    fn a_plain_http_issuer_on_another_host_is_refused_unless_explicitly_allowed() {
        let e = err(
            FILE,
            &[
                ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                ("APP_KEYCLOAK_ISSUER_URL", "http://id.example/realms/r"),
            ],
        );
        assert!(e.contains("allow_insecure_http"), "{e}");
        for issuer in [
            "http://localhost:8080/realms/r",
            "http://127.0.0.2:8080/realms/r",
            "http://[::1]:8080/realms/r",
            "https://id.example/realms/r",
        ] {
            parse(
                FILE,
                &env(&[
                    ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                    ("APP_KEYCLOAK_ISSUER_URL", issuer),
                ]),
            )
            .unwrap_or_else(|e| panic!("{issuer}: {e}"));
        }
        let s = parse(
            FILE,
            &env(&[
                ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                (
                    "APP_KEYCLOAK_ISSUER_URL",
                    "http://keycloak.test-net/realms/r",
                ),
                ("APP_KEYCLOAK_ALLOW_INSECURE_HTTP", "true"),
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(s.auth.keycloak.allow_insecure_http);
    }

    #[test]
    fn a_key_set_or_token_endpoint_in_clear_on_another_host_is_refused() {
        let s = parse(FILE, &env(&[("APP_KEYCLOAK_CLIENT_SECRET", "x")]))
            .unwrap_or_else(|e| panic!("{e}"));
        let jwks = |u: &str| Url::parse(u).unwrap_or_else(|e| panic!("{e}"));
        let k = &s.auth.keycloak;
        assert!(k
            .check_transport("jwks_uri", &jwks("http://evil.example/certs"))
            .is_err());
        assert!(k
            .check_transport("jwks_uri", &jwks("https://id.example/certs"))
            .is_ok());
        assert!(k
            .check_transport("jwks_uri", &jwks("http://127.0.0.1:8080/certs"))
            .is_ok());
    }

    #[test]
    fn remote_api_routes_come_from_apis_tables_and_may_not_take_the_libraries_paths() {
        let with = |tables: &str| {
            parse(
                &format!("{FILE}\n{tables}"),
                &env(&[("APP_KEYCLOAK_CLIENT_SECRET", "s")]),
            )
        };
        let s = with(
            "[[apis]]\npath = \"/remote/orders\"\nupstream = \"http://127.0.0.1:4001/orders\"\n\
             audience = \"orders-api\"\nmethods = [\"GET\", \"POST\"]\n\
             [[apis]]\npath = \"/remote/open\"\nupstream = \"https://open.example/\"\ntoken = \"none\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.auth.apis.len(), 2);
        assert_eq!(s.auth.apis[0].path(), "/remote/orders");
        assert_eq!(s.auth.apis[1].upstream().as_str(), "https://open.example/");
        for (bad, says) in [
            (
                "path = \"/auth/x\"\nupstream = \"http://127.0.0.1:1/x\"",
                "under /auth",
            ),
            (
                "path = \"/pkg/x\"\nupstream = \"http://127.0.0.1:1/x\"",
                "under /pkg",
            ),
            (
                "path = \"/remote/x\"\nupstream = \"http://api.example/x\"",
                "in clear",
            ),
            ("path = \"/remote/x\"", "upstream"),
        ] {
            let e = with(&format!("[[apis]]\n{bad}\n"))
                .map(|_| ())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_route_prefix_must_be_a_plain_absolute_path() {
        for prefix in ["auth", "/", "//evil", "/a b", "/a//b"] {
            let e = err(
                FILE,
                &[
                    ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                    ("APP_AUTH_ROUTE_PREFIX", prefix),
                ],
            );
            assert!(e.contains("route_prefix"), "{prefix}: {e}");
        }
    }
}
