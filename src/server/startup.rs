//! Builds the app on any address, so that `main` and the tests start it the same way.

use crate::app::{shell, App};
use crate::auth::cookie;
use crate::server::configuration::{Settings, StoreKind};
use crate::server::middleware::{origin_check, security_headers};
use crate::server::oidc::Oidc;
use crate::server::session::AppStore;
use crate::server::state::AppState;
use crate::server::{api, db, logout, routes};
use axum::routing::{get, post};
use axum::Router;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("session store: {0}")]
    Store(String),
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The app's SQLite database under `app.data_dir`: notes, and sessions unless they are kept in
/// memory.
async fn database(settings: &Settings) -> Result<sqlx::SqlitePool, StartupError> {
    std::fs::create_dir_all(&settings.data_dir)
        .map_err(|e| StartupError::Store(format!("{}: {e}", settings.data_dir.display())))?;
    let path = settings.data_dir.join("kc-leptos.sqlite3");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .busy_timeout(std::time::Duration::from_secs(5));
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .map_err(|e| StartupError::Store(format!("{}: {e}", path.display())))?;
    db::migrate(&pool)
        .await
        .map_err(|e| StartupError::Store(format!("migration: {e}")))?;
    Ok(pool)
}

async fn session_store(
    settings: &Settings,
    pool: &sqlx::SqlitePool,
) -> Result<AppStore, StartupError> {
    match settings.session.store {
        StoreKind::Memory => Ok(AppStore::memory()),
        StoreKind::Sqlite => AppStore::sqlite(pool.clone())
            .await
            .map_err(StartupError::Store),
    }
}

/// The whole app as a router, without a socket, and its state.
pub async fn build_router(
    settings: Settings,
    leptos_options: LeptosOptions,
) -> Result<(Router, AppState), StartupError> {
    let pool = database(&settings).await?;
    let store = session_store(&settings, &pool).await?;
    store.spawn_expiry_sweeper(std::time::Duration::from_secs(60));
    let policy = cookie::policy(
        settings.public_url_is_https(),
        &settings.session.cookie_name,
    );
    let sessions = SessionManagerLayer::new(store.clone())
        .with_name(policy.name)
        .with_secure(policy.secure)
        .with_http_only(policy.http_only)
        .with_same_site(if policy.same_site_lax {
            SameSite::Lax
        } else {
            SameSite::Strict
        })
        .with_path(policy.path)
        .with_expiry(Expiry::OnInactivity(
            tower_sessions::cookie::time::Duration::minutes(
                settings.session.pending_login_ttl_secs / 60 + 1,
            ),
        ));
    let oidc = Oidc::new(settings.keycloak.clone())?;
    let state = AppState {
        leptos_options: leptos_options.clone(),
        settings: Arc::new(settings),
        oidc: Arc::new(oidc),
        store,
        db: pool,
        refresher: Arc::default(),
        metrics: Arc::default(),
        logout_replays: Arc::default(),
    };
    let routes = generate_route_list(App);
    let context_state = state.clone();
    let app_state = state.clone();
    let router = Router::new()
        .route("/auth/login", get(routes::login))
        .route("/auth/callback", get(routes::callback))
        .route("/auth/logout", post(routes::logout))
        .route("/auth/refresh", post(routes::refresh))
        .route("/auth/backchannel-logout", post(logout::backchannel_logout))
        .merge(api::router())
        .leptos_routes_with_context(
            &state,
            routes,
            move || provide_context(context_state.clone()),
            {
                let options = leptos_options.clone();
                move || shell(options.clone())
            },
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            origin_check,
        ))
        .layer(sessions)
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state);
    Ok((router, app_state))
}

/// The app bound to a socket.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
}

impl Application {
    /// Binds `leptos_options.site_addr` (port 0 picks a free port) and builds the app.
    pub async fn build(
        settings: Settings,
        leptos_options: LeptosOptions,
    ) -> Result<Self, StartupError> {
        let addr = leptos_options.site_addr;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        let (router, state) = build_router(settings, leptos_options).await?;
        Ok(Self {
            listener,
            router,
            state,
        })
    }

    /// The app's state: its metrics, store and settings (for tests and embedding).
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
