//! [`KeycloakAuth`]: the library's state, built once at start-up from [`AuthSettings`], cheap to
//! clone, and reachable from handlers (`State`, through `FromRef`), server functions and pages
//! (the request's extensions).

use crate::config::UiConfig;
use crate::error::AppError;
use crate::server::base::metrics::Metrics;
use crate::server::base::rate_limit::RateLimit;
use crate::server::base::settings::{AuthSettings, StoreKind};
use crate::server::oidc::client::Oidc;
use crate::server::oidc::refresh::Refresher;
use crate::server::session::login_cookies::LoginCookies;
#[cfg(feature = "redis")]
use crate::server::session::store::redis::RedisOptions;
use crate::server::session::store::seal::Sealer;
use crate::server::session::store::{AuthSession, AuthStore};
use leptos::config::LeptosOptions;
use std::sync::Arc;
use tower_sessions::Session;

#[derive(Debug, thiserror::Error)]
/// Why [`KeycloakAuth::new`] could not start.
pub enum StartupError {
    #[error("cannot listen on {addr}: {source}")]
    /// The metrics address could not be bound.
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// What binding said.
        source: std::io::Error,
    },
    #[error("session store: {0}")]
    /// The session store could not be opened.
    Store(String),
    #[error("login cookies: {0}")]
    /// The key of the sign-in cookies could not be made.
    LoginCookies(String),
    #[error("HTTP client: {0}")]
    /// The HTTP client to Keycloak could not be built.
    Http(#[from] reqwest::Error),
    #[error("{0}")]
    /// The remote API routes do not fit together or with the app's own paths.
    RemoteApi(String),
    #[error("DPoP key: {0}")]
    /// The DPoP key (`keycloak.dpop`) could not be read or made.
    Dpop(String),
}

/// How often expired sessions are removed from the store.
const SWEEP_PERIOD: std::time::Duration = std::time::Duration::from_secs(60);

/// Front-channel logouts admitted per second: Keycloak sends one per signed-out session of this
/// app, from the user's browser; far more than that is somebody's flood.
const FRONTCHANNEL_LOGOUTS_PER_SECOND: u32 = 50;

/// The library's state: settings, the OpenID Connect client, the session store, refresh and
/// back-channel logout bookkeeping. Cheap to clone (one `Arc`).
///
/// An app makes one at start-up, merges [`KeycloakAuth::routes`] into its router and serves the
/// finished router with [`KeycloakAuth::serve`]: the library's layers (sessions, the origin
/// check, silent sign-on, the security headers) then go around every route the app has, however
/// and wherever it was added.
///
/// ```no_run
/// use axum::{routing::get, Router};
/// use keycloak_bff::server::{static_files, AuthSettings, KeycloakAuth};
/// use keycloak_bff::{AppError, KeycloakUser};
/// use leptos::config::get_configuration;
///
/// # async fn app() -> Result<(), Box<dyn std::error::Error>> {
/// let leptos_options = get_configuration(None)?.leptos_options;
/// // [auth], [keycloak] and [session] of Leptos.toml; the secret from APP_KEYCLOAK_CLIENT_SECRET.
/// let auth = KeycloakAuth::new(AuthSettings::load()?, &leptos_options).await?;
/// let app = Router::new()
///     .merge(auth.routes()) // <prefix>/login, /callback, /logout, /refresh, /events…
///     .merge(static_files(&leptos_options))
///     // The app's own routes (leptos_routes, a JSON API…), protected like the rest:
///     .route("/api/hello", get(hello))
///     // ApiUser takes any state that gives a KeycloakAuth (axum's FromRef).
///     .with_state(auth.clone());
/// let listener = tokio::net::TcpListener::bind(leptos_options.site_addr).await?;
/// auth.serve(listener, app).await?;
/// # Ok(())
/// # }
///
/// /// A bearer token or the session's user; anything else is a 401 in JSON.
/// async fn hello(keycloak_bff::server::ApiUser { user, .. }: keycloak_bff::server::ApiUser) -> String {
///     format!("hello {}", user.username)
/// }
/// # let _ = |_: KeycloakUser, _: AppError| ();
/// ```
#[derive(Clone)]
pub struct KeycloakAuth(Arc<Inner>);

/// What the library counted since start-up ([`KeycloakAuth::counters`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Calls to Keycloak's token endpoint with a refresh token (by this process).
    pub token_refreshes: u64,
    /// Sessions the server ended itself, every end but a sign-out: Keycloak refused the refresh
    /// token, sent tokens that do not fit, or the access token expired without a refresh token.
    pub sessions_ended_by_server: u64,
    /// Back-channel logout tokens accepted.
    pub backchannel_logouts: u64,
    /// Fetches of Keycloak's key set, successful or not.
    pub key_set_fetches: u64,
    /// Tokens exchanged for the remote API routes' audiences (by this process).
    pub token_exchanges: u64,
    /// Exchanged tokens this process holds now (per session token and audience).
    pub exchanged_tokens_held: u64,
}

struct Inner {
    settings: AuthSettings,
    oidc: Arc<Oidc>,
    store: AuthStore,
    login_cookies: LoginCookies,
    refresher: Refresher,
    metrics: Arc<Metrics>,
    directory: Option<crate::server::keycloak_api::directory::Directory>,
    /// The `jti` of the DPoP proofs the JSON API accepted (a replay is refused).
    dpop_proofs: crate::server::base::seen::Seen,
    /// The remote API routes' HTTP client and tokens, when the app has routes.
    remote_apis: Option<crate::server::keycloak_api::upstream_tokens::RemoteApis>,
    stylesheet: String,
    pkg_prefix: String,
    issuer_origin: String,
    dev_reload_socket: Option<String>,
    /// The Content-Security-Policy of a response without a script nonce (everything but a
    /// page), made once: it is the same for every such response.
    plain_policy: Option<axum::http::HeaderValue>,
    /// Front-channel logouts admitted per second (the route needs no credentials).
    frontchannel_limiter: RateLimit,
    /// Set once the app shuts down: open event streams end, so the server can stop.
    closing: tokio::sync::watch::Sender<bool>,
    /// Where `/metrics` and the detailed readiness are served, once bound.
    metrics_addr: Option<std::net::SocketAddr>,
    /// The operators' listener, bound at start-up (a taken address stops the app there), served
    /// from the first [`KeycloakAuth::routes`] on.
    metrics_listener: std::sync::Mutex<Option<tokio::net::TcpListener>>,
    /// The task serving the operators' listener: [`KeycloakAuth::serve_until`] waits for it, so
    /// that when it returns nothing of the app is held any more (a SQLite file is free).
    operator_task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Without a tracing subscriber nothing the library logs is shown (a wrong client secret is then a
/// silent "Sign-in failed"): says so once on stderr, with the line that fixes it.
fn say_when_nothing_is_logged() {
    static SAID: std::sync::Once = std::sync::Once::new();
    if !tracing::dispatcher::has_been_set() {
        SAID.call_once(|| {
            eprintln!(
                "keycloak-bff: no tracing subscriber is installed, so nothing it logs is shown \
                 (a refused sign-in, a wrong client secret, Keycloak down). Install one at the \
                 start of main, for example with the tracing-subscriber crate: \
                 tracing_subscriber::fmt().with_env_filter(EnvFilter::try_from_default_env()\
                 .unwrap_or_else(|_| \"info\".into())).init();"
            );
        });
    }
}

impl KeycloakAuth {
    /// Opens the session store (`session.store`), prepares the OpenID Connect client (discovery
    /// happens at the first use, so the app starts while Keycloak is down) and starts the sweep
    /// of expired sessions. Needs a Tokio runtime.
    pub async fn new(
        settings: AuthSettings,
        leptos_options: &LeptosOptions,
    ) -> Result<Self, StartupError> {
        say_when_nothing_is_logged();
        // Before the store: a missing key is said without waiting for Redis.
        let dpop = dpop_key(&settings)?;
        let store = open_store(&settings).await?;
        store.spawn_expiry_sweeper(SWEEP_PERIOD);
        let login_cookies = LoginCookies::new(&settings).map_err(StartupError::LoginCookies)?;
        if settings.session.secret.is_none() {
            tracing::info!(
                "no session.secret (APP_SESSION_SECRET): sign-ins in progress end with this \
                 process; set one when several replicas serve the app"
            );
        }
        check_remote_apis(&settings)?;
        let remote_apis = if settings.apis.is_empty() {
            None
        } else {
            Some(
                crate::server::keycloak_api::upstream_tokens::RemoteApis::new(
                    settings.keycloak.http_timeout,
                )
                .map_err(StartupError::RemoteApi)?,
            )
        };
        let metrics = Arc::new(Metrics::default());
        let oidc = Arc::new(
            Oidc::new(settings.keycloak.clone(), metrics.key_set_fetches.clone())?.with_dpop(dpop),
        );
        let metrics_listener = match settings.metrics_addr {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartupError::Bind { addr, source })?,
            ),
            None => None,
        };
        let refresher = Refresher::new(
            settings.session.refresh_margin_secs,
            settings.ui.expiry_warning_secs,
            oidc.clone(),
            metrics.clone(),
            store.clone(),
        );
        let issuer_origin = settings.keycloak.issuer_url.origin().ascii_serialization();
        // `cargo leptos watch` sets LEPTOS_WATCH and serves its reload socket on this port.
        let dev_reload_socket = std::env::var_os("LEPTOS_WATCH").map(|_| {
            let port = leptos_options.reload_port;
            format!("ws://localhost:{port} ws://127.0.0.1:{port}")
        });
        let plain_policy = axum::http::HeaderValue::from_str(&keycloak_bff_core::csp::policy(
            None,
            &issuer_origin,
            dev_reload_socket.as_deref(),
        ))
        .ok();
        let auth = Self(Arc::new(Inner {
            stylesheet: crate::server::web::assets::site_file(leptos_options, "css", "css"),
            pkg_prefix: format!("/{}/", leptos_options.site_pkg_dir),
            issuer_origin,
            dev_reload_socket,
            plain_policy,
            closing: tokio::sync::watch::channel(false).0,
            metrics_addr: metrics_listener.as_ref().and_then(|l| l.local_addr().ok()),
            metrics_listener: std::sync::Mutex::new(metrics_listener),
            operator_task: std::sync::Mutex::new(None),
            frontchannel_limiter: RateLimit::new(FRONTCHANNEL_LOGOUTS_PER_SECOND),
            directory: settings
                .keycloak
                .directory
                .clone()
                .map(crate::server::keycloak_api::directory::Directory::new),
            remote_apis,
            dpop_proofs: crate::server::base::seen::Seen::default(),
            settings,
            oidc,
            store,
            login_cookies,
            refresher,
            metrics,
        }));
        Ok(auth)
    }

    /// The operators' listener, once: [`KeycloakAuth::routes`] serves it.
    pub(crate) fn take_metrics_listener(&self) -> Option<tokio::net::TcpListener> {
        self.0.metrics_listener.lock().ok()?.take()
    }

    /// Keeps the task serving the operators' listener, for [`KeycloakAuth::operator_task_ended`].
    pub(crate) fn keep_operator_task(&self, task: tokio::task::JoinHandle<()>) {
        if let Ok(mut held) = self.0.operator_task.lock() {
            *held = Some(task);
        }
    }

    /// Completes when the task serving the operators' listener has ended (at once when there is
    /// none). It ends after [`KeycloakAuth::close_event_streams`].
    pub(crate) async fn operator_task_ended(&self) {
        let task = self.0.operator_task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "the metrics listener's task failed");
            }
        }
    }

    /// The address `/metrics` is served on (with the port chosen when `auth.metrics_addr` asks
    /// for port 0); `None` when `auth.metrics_addr` is `"off"`.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.0.metrics_addr
    }

    /// Ends every open event stream (`<prefix>/events`) and refuses none: call it when the
    /// server starts shutting down, or a graceful shutdown waits for the browsers to leave.
    /// Browsers reconnect by themselves, to the next process.
    pub fn close_event_streams(&self) {
        self.0.closing.send_replace(true);
    }

    /// Becomes `true` when [`KeycloakAuth::close_event_streams`] is called.
    pub(crate) fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.0.closing.subscribe()
    }

    /// The settings it was made with (read-only: they are fixed at start-up).
    pub fn settings(&self) -> &AuthSettings {
        &self.0.settings
    }

    /// How many front-channel logouts are still admitted this second.
    pub(crate) fn frontchannel_limiter(&self) -> &RateLimit {
        &self.0.frontchannel_limiter
    }

    pub(crate) fn ui_config(&self) -> &UiConfig {
        &self.0.settings.ui
    }

    pub(crate) fn oidc(&self) -> &Oidc {
        &self.0.oidc
    }

    pub(crate) fn store(&self) -> &AuthStore {
        &self.0.store
    }

    pub(crate) fn login_cookies(&self) -> &LoginCookies {
        &self.0.login_cookies
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// What the library counted since start-up: the figures `/metrics` serves, for an app's own
    /// status page.
    pub fn counters(&self) -> Counters {
        let m = &self.0.metrics;
        Counters {
            token_refreshes: Metrics::read(&m.token_refreshes),
            sessions_ended_by_server: Metrics::read(&m.sessions_ended_by_server),
            backchannel_logouts: Metrics::read(&m.backchannel_logouts),
            key_set_fetches: self.0.oidc.keys().fetch_count(),
            token_exchanges: self.remote_apis().map_or(0, |r| r.tokens.exchanges()),
            exchanged_tokens_held: self.remote_apis().map_or(0, |r| r.tokens.held() as u64),
        }
    }

    /// The DPoP proofs already accepted.
    pub(crate) fn dpop_proofs(&self) -> &crate::server::base::seen::Seen {
        &self.0.dpop_proofs
    }

    /// The remote API routes' client and tokens (`None` without routes).
    pub(crate) fn remote_apis(
        &self,
    ) -> Option<&crate::server::keycloak_api::upstream_tokens::RemoteApis> {
        self.0.remote_apis.as_ref()
    }

    /// The user directory, when `keycloak.directory_client_id` names its service account.
    pub(crate) fn directory(&self) -> Option<&crate::server::keycloak_api::directory::Directory> {
        self.0.directory.as_ref()
    }

    /// The user directory, or the error of an app that calls it without configuring its service
    /// account (a 502 with a plain notice).
    pub(crate) fn configured_directory(
        &self,
    ) -> Result<&crate::server::keycloak_api::directory::Directory, crate::error::AppError> {
        self.directory().ok_or_else(|| {
            crate::error::AppError::Upstream(
                "no directory service account is configured (keycloak.directory_client_id)".into(),
            )
        })
    }

    /// The app's stylesheet, for the pages the library renders itself.
    pub(crate) fn stylesheet(&self) -> &str {
        &self.0.stylesheet
    }

    /// Keycloak's origin (forms may post there).
    pub(crate) fn issuer_origin(&self) -> &str {
        &self.0.issuer_origin
    }

    /// The Content-Security-Policy of a response without a script nonce, made at start-up.
    pub(crate) fn plain_policy(&self) -> Option<&axum::http::HeaderValue> {
        self.0.plain_policy.as_ref()
    }

    /// The live-reload socket of `cargo leptos watch`, when it runs.
    pub(crate) fn dev_reload_socket(&self) -> Option<&str> {
        self.0.dev_reload_socket.as_deref()
    }

    /// Where the site's static files are served (`/pkg/`): cached, unlike pages.
    pub(crate) fn pkg_prefix(&self) -> &str {
        &self.0.pkg_prefix
    }

    /// The redirect URI registered in Keycloak: the public URL's `<prefix>/callback`.
    pub(crate) fn redirect_uri(&self) -> String {
        self.0
            .settings
            .absolute(&self.0.settings.ui.route("/callback"))
    }

    /// The signed-in session with an access token usable now, refreshed first when it expires
    /// within the margin (see [`Refresher::fresh_auth`]).
    pub(crate) async fn fresh_auth(
        &self,
        session: &Session,
        now: i64,
    ) -> Result<Option<Arc<AuthSession>>, AppError> {
        self.0.refresher.fresh_auth(session, now).await
    }

    /// Refreshes the session's tokens now, however fresh, so that Keycloak's idle limit moves
    /// (the expiry warning's "Stay signed in"). Keycloak's maximum lifetime never moves.
    pub(crate) async fn extend_session(
        &self,
        session: &Session,
        now: i64,
    ) -> Result<Option<AuthSession>, AppError> {
        self.0.refresher.extend(session, now).await
    }
}

/// The app's DPoP key when `keycloak.dpop` is on: the one given, or one made for this process.
/// Replicas (the Redis store) must share one: a token bound to one replica's key would be
/// refreshed again by every other replica that serves the session.
fn dpop_key(
    settings: &AuthSettings,
) -> Result<Option<Arc<crate::server::oidc::dpop_key::DpopKey>>, StartupError> {
    use crate::server::oidc::dpop_key::DpopKey;
    let keycloak = &settings.keycloak;
    if !keycloak.dpop {
        return Ok(None);
    }
    let key = match &keycloak.dpop_key {
        Some(pem) => DpopKey::from_pem(pem).map_err(StartupError::Dpop)?,
        None if settings.session.store == StoreKind::Redis => {
            return Err(StartupError::Dpop(
                "replicas (session.store = \"redis\") must share one DPoP key: set \
                 APP_KEYCLOAK_DPOP_KEY or keycloak.dpop_key_file (a P-256 private key in PEM, \
                 e.g. from openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256)"
                    .into(),
            ))
        }
        None => {
            tracing::info!(
                "keycloak.dpop: a DPoP key was made for this process; sessions it did not bind \
                 are refreshed at their next use (set APP_KEYCLOAK_DPOP_KEY or \
                 keycloak.dpop_key_file to keep one key)"
            );
            DpopKey::generate().map_err(StartupError::Dpop)?
        }
    };
    tracing::info!(
        thumbprint = key.thumbprint(),
        "the app's tokens are bound to its DPoP key"
    );
    Ok(Some(Arc::new(key)))
}

/// The remote API routes checked again as a set: [`AuthSettings::apis`] is a public field, so a
/// route pushed there by hand has not met [`AuthSettings::with_api`]'s checks.
fn check_remote_apis(settings: &AuthSettings) -> Result<(), StartupError> {
    let mut checked = settings.clone();
    checked.apis.clear();
    for api in &settings.apis {
        checked = checked
            .with_api(api.clone())
            .map_err(|e| StartupError::RemoteApi(e.to_string()))?;
    }
    Ok(())
}

/// `session.store = "sqlite"` (the default) in a build without the feature.
#[cfg(not(feature = "sqlite"))]
const MISSING_SQLITE: &str = "session.store = \"sqlite\" (the default) needs keycloak-bff's \
feature `sqlite` (on by default): enable it, or set session.store to \"memory\" or \"redis\"";
/// `session.store = "redis"` in a build without the feature.
#[cfg(not(feature = "redis"))]
const MISSING_REDIS: &str = "session.store = \"redis\" needs keycloak-bff's feature `redis`: \
add \"keycloak-bff/redis\" to the app's ssr feature";

/// The session store of `session.store`, sealing tokens with a key of `session.secret` when one
/// is set (every replica the same; the previous secret still opens what it sealed).
async fn open_store(settings: &AuthSettings) -> Result<AuthStore, StartupError> {
    let store = match settings.session.store {
        StoreKind::Memory => AuthStore::memory().map_err(StartupError::Store)?,
        #[cfg(feature = "sqlite")]
        StoreKind::Sqlite => AuthStore::sqlite_file(&settings.session.sqlite_file)
            .await
            .map_err(StartupError::Store)?,
        #[cfg(not(feature = "sqlite"))]
        StoreKind::Sqlite => return Err(StartupError::Store(MISSING_SQLITE.into())),
        #[cfg(not(feature = "redis"))]
        StoreKind::Redis => return Err(StartupError::Store(MISSING_REDIS.into())),
        #[cfg(feature = "redis")]
        StoreKind::Redis => {
            use secrecy::ExposeSecret;
            let session = &settings.session;
            let secret = session.secret.as_ref().ok_or_else(|| {
                StartupError::Store("the Redis store needs session.secret".into())
            })?;
            AuthStore::redis(RedisOptions {
                url: &session.redis_url,
                timeout: session.redis_timeout,
                prefix: &session.redis_prefix,
                secret: secret.expose_secret().as_bytes(),
                ca_file: session.redis_ca_file.as_deref(),
            })
            .await
            .map_err(StartupError::Store)?
        }
    };
    // With session.secret, tokens at rest are sealed with a key of it (every replica the
    // same; the previous secret still opens what it sealed).
    let store = match &settings.session.secret {
        Some(secret) => {
            use secrecy::ExposeSecret;
            let previous = settings.session.previous_secret.as_ref();
            store.sealed_with(
                Sealer::from_secret(
                    secret.expose_secret().as_bytes(),
                    previous.map(|p| p.expose_secret().as_bytes()),
                )
                .map_err(StartupError::Store)?,
            )
        }
        None => store,
    };
    Ok(store)
}
