//! Mounting the library on an app's router: its routes, and the layers every request goes
//! through (security headers, sessions, the origin check, the state for server functions).

use crate::server::web::actions::account_action;
use crate::server::web::logout::{backchannel_logout, frontchannel_logout};
use crate::server::web::middleware::{InnerLayers, OuterLayers};
use crate::server::web::push::events;
use crate::server::web::routes::{callback, extend, login, logout, refresh};
use crate::server::web::state::KeycloakAuth;
use crate::server::web::{health, latency};
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use keycloak_bff_core::cookie;
use tower_layer::Layer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

impl KeycloakAuth {
    /// The auth routes under the configured prefix (`login`, `callback`, `logout`, `refresh`,
    /// `extend`, `backchannel-logout`, with `session.frontchannel_logout` also
    /// `frontchannel-logout`, their latency measured, and the session event stream `events`), and
    /// the public probes `/health/live` and `/health/ready` (a word each; the detail and
    /// `/metrics` are on `auth.metrics_addr` only). Merge them into the app's router (any state).
    pub fn routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let ui = self.ui_config();
        let mut auth_routes = Router::new()
            .route(&ui.route("/login"), get(login))
            .route(&ui.route("/action/{name}"), get(account_action))
            .route(&ui.route("/callback"), get(callback))
            .route(&ui.route("/logout"), post(logout))
            .route(&ui.route("/refresh"), post(refresh))
            .route(&ui.route("/extend"), post(extend))
            .route(&ui.route("/backchannel-logout"), post(backchannel_logout))
            .route_layer(from_fn_with_state(self.clone(), latency::measure))
            // Not measured: a stream lasts as long as the page.
            .route(&ui.route("/events"), get(events));
        if self.settings().session.frontchannel_logout {
            auth_routes =
                auth_routes.route(&ui.route("/frontchannel-logout"), get(frontchannel_logout));
        }
        let probes = Router::new()
            .route("/health/live", get(health::live))
            .route("/health/ready", get(health::ready));
        self.serve_operator_routes();
        auth_routes
            .merge(probes)
            .with_state(self.clone())
            .merge(crate::server::web::remote::remote_routes(self))
    }

    /// Serves `/metrics` and the detailed `/health/ready` on their own listener
    /// (`auth.metrics_addr`, bound by [`KeycloakAuth::new`]), never on the app's router; the first
    /// call of [`KeycloakAuth::routes`] starts it.
    fn serve_operator_routes(&self) {
        let Some(listener) = self.take_metrics_listener() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(
                "metrics not served: KeycloakAuth::routes was called outside a runtime"
            );
            return;
        };
        let addr = listener.local_addr().ok();
        let router = health::operator_routes().with_state(self.clone());
        // It ends with the app (`close_event_streams`, at the shutdown of `serve_until`), and
        // lets go of the state: a SQLite file is then free for the next process.
        let mut closing = self.closing();
        let task = runtime.spawn(async move {
            let stopped = async move {
                let _ = closing.wait_for(|closing| *closing).await;
            };
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        });
        self.keep_operator_task(task);
        if let Some(addr) = addr {
            tracing::info!(%addr, "metrics and detailed readiness served");
        }
    }

    /// The library's layers around the whole app: the session layer with the cookie policy of
    /// the settings, the origin check, silent sign-on, the canonical host, security headers, and
    /// the state that server functions and pages read. Applied where the app is served
    /// ([`KeycloakAuth::serve`], [`KeycloakAuth::serve_until`], [`KeycloakAuth::into_make_service`])
    /// to the finished router, so that no route can be added after them and skip them
    /// (axum applies a layer to the routes present when it is added).
    fn layered(&self, router: Router) -> Router {
        let settings = self.settings();
        let policy = cookie::policy(
            settings.public_url_is_https(),
            &settings.session.cookie_name,
        );
        let sessions = SessionManagerLayer::new(self.store().clone())
            .with_name(policy.name)
            .with_secure(policy.secure)
            .with_http_only(policy.http_only)
            .with_same_site(SameSite::Lax)
            .with_path(policy.path)
            .with_expiry(Expiry::OnInactivity(
                tower_sessions::cookie::time::Duration::minutes(
                    settings.session.pending_login_ttl_secs / 60 + 1,
                ),
            ));
        // Around the router as one service, not with `Router::layer`: that puts each layer
        // around every route in a box of its own, and a layer clones what is under it for
        // every request. Around the router, a clone is a few `Arc` counts. The layers on either
        // side of the session layer are one hand-written service each (see `OuterLayers`).
        let app = InnerLayers::new(self.clone(), router.with_state(()));
        let app = OuterLayers::new(self.clone(), sessions.layer(app));
        // Served inside a router, which a connection clones as one `Arc`. Served as it is, each
        // connection held a copy of the layers (the session layer's settings are owned strings):
        // 10,000 open streams took 256.8 MB against 254.0 (docs/performance.md).
        Router::new().fallback_service(app)
    }
}

impl KeycloakAuth {
    /// Serves `router` (the whole app, its state given) on `listener` with the library's layers
    /// around every route, until Ctrl-C or SIGTERM; see [`KeycloakAuth::serve_until`].
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        router: Router,
    ) -> std::io::Result<()> {
        self.serve_until(listener, router, shutdown_signal()).await
    }

    /// Serves `router` (the whole app) on `listener`, with the library's layers around every one
    /// of its routes, until `shutdown` completes, then lets requests in flight finish. Every
    /// accepted connection gets `TCP_NODELAY`: without it, a kept-alive response
    /// written in two segments (headers, then a file) waits ~40 ms for the client's delayed ACK.
    /// When shutdown begins, the open event streams end (browsers reconnect by themselves), or
    /// the server would wait for them for ever. It returns once the operators' listener has
    /// stopped too: nothing it started holds the app's state any more, so a SQLite session file
    /// is free for the next process (or the next app in the same one).
    pub async fn serve_until(
        &self,
        listener: tokio::net::TcpListener,
        router: Router,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        let auth = self.clone();
        let served = axum::serve(listener, self.into_make_service(router))
            .with_graceful_shutdown(async move {
                shutdown.await;
                auth.close_event_streams();
            })
            .await;
        // Ended by an error rather than by `shutdown`: the operators' listener stops with it.
        self.close_event_streams();
        self.operator_task_ended().await;
        served
    }
}

impl KeycloakAuth {
    /// For a serve loop of the app's own: the whole app (`router`, its state given) with the
    /// library's layers around every route, as a service no route can be added to any more.
    /// Call [`KeycloakAuth::close_event_streams`] when the shutdown begins.
    ///
    /// The routes are turned into services once, here. A bare `Router` given to `axum::serve`
    /// does that again for every connection (`with_state`, a clone of every route): about 30 KB
    /// of heap per connection with the demo's 158 routes, and 85 KB of RSS per open connection
    /// (an idle keep-alive one, an event stream) measured with 10,000 of them. Here a connection
    /// costs a clone of one `Arc`.
    pub fn into_make_service(&self, router: Router) -> axum::routing::IntoMakeService<Router> {
        self.layered(router).with_state(()).into_make_service()
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
