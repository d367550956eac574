//! Builds the app on any address, so that `main` and the tests start it the same way.

use crate::app::{shell, App};
use crate::server::state::AppState;
use crate::server::{api, Settings};
use axum::Router;
use keycloak_bff::server::open_sqlite;
use keycloak_bff::server::static_files;
use keycloak_bff::server::{KeycloakAuth, StartupError};
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, AxumRouteListing, LeptosRoutes};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpListener;

/// The notes database under `app.data_dir`, its schema brought up to date (`migrations/`).
async fn notes_database(settings: &Settings) -> Result<sqlx::SqlitePool, StartupError> {
    let path = settings.app.data_dir.join("notes.sqlite3");
    let pool = open_sqlite(&path).await.map_err(StartupError::Store)?;
    sqlx::migrate!()
        .run(&pool)
        .await
        .map_err(|e| StartupError::Store(format!("notes migration: {e}")))?;
    Ok(pool)
}

/// The app's routes, generated once per process. Generating them runs the app with every
/// resource in the process suspended (a process-global flag in leptos_server, leptos#4773): a
/// page of another instance of the app rendering at that moment (tests start many) would wait
/// for good. Generated once, before the first instance serves, it cannot overlap a render.
fn route_list() -> Vec<AxumRouteListing> {
    static ROUTES: OnceLock<Vec<AxumRouteListing>> = OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App)).clone()
}

/// The whole app as a router, without a socket, and its state.
pub async fn build_router(
    settings: Settings,
    leptos_options: LeptosOptions,
) -> Result<(Router, AppState), StartupError> {
    let db = notes_database(&settings).await?;
    let auth = KeycloakAuth::new(settings.auth, &leptos_options).await?;
    let state = AppState {
        leptos_options: Arc::new(leptos_options.clone()),
        auth: auth.clone(),
        db,
    };
    let context = state.clone();
    let router = Router::new()
        .merge(auth.routes())
        .merge(static_files(&leptos_options))
        .merge(api::router())
        .leptos_routes_with_context(
            &state,
            route_list(),
            move || provide_context(context.clone()),
            move || shell(leptos_options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell));
    // The library's layers go around it where it is served (`serve_until`): every route counts.
    Ok((router.with_state(state.clone()), state))
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

    /// The app's state: the library's state (its counters, store and settings) and the notes
    /// database (for tests and embedding).
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes ([`KeycloakAuth::serve_until`]: `TCP_NODELAY`, event
    /// streams closed at shutdown).
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let auth = self.state.auth.clone();
        // The demo's own choice (its allocator, not the library's): what a burst of requests
        // freed goes back to the system once a minute (docs/performance.md).
        let trim = tokio::spawn(async {
            let mut minute = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                minute.tick().await;
                keycloak_bff::server::release_free_memory();
            }
        });
        let served = auth.serve_until(self.listener, self.router, shutdown).await;
        trim.abort();
        served
    }
}
