//! Mounting the library on an app's router: its routes, and the layers every request goes
//! through (security headers, sessions, the origin check, the state for server functions).

use crate::server::auth::KeycloakAuth;
use crate::server::backchannel::backchannel_logout;
use crate::server::health;
use crate::server::middleware::{origin_check, provide_state, security_headers};
use crate::server::routes::{callback, login, logout, refresh};
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;
use keycloak_bff_core::cookie;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

impl KeycloakAuth {
    /// The auth routes under the configured prefix (`login`, `callback`, `logout`, `refresh`,
    /// `backchannel-logout`, their latency measured), and `/health/live`, `/health/ready` and
    /// (unless `auth.metrics_addr` serves it elsewhere) `/metrics`. Merge them into the app's
    /// router (any state).
    pub fn routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let ui = self.ui_config();
        let auth_routes = Router::new()
            .route(&ui.route("/login"), get(login))
            .route(&ui.route("/callback"), get(callback))
            .route(&ui.route("/logout"), post(logout))
            .route(&ui.route("/refresh"), post(refresh))
            .route(&ui.route("/backchannel-logout"), post(backchannel_logout))
            .route_layer(from_fn_with_state(self.clone(), health::measure));
        let mut probes = Router::new()
            .route("/health/live", get(health::live))
            .route("/health/ready", get(health::ready));
        if self.settings().metrics_addr.is_none() {
            probes = probes.route("/metrics", get(health::metrics));
        }
        auth_routes.merge(probes).with_state(self.clone())
    }

    /// Wraps the whole app (call it last, on the router with every route): the session layer
    /// with the cookie policy of the settings, the origin check, security headers, and the state
    /// that server functions and pages read.
    pub fn wrap<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        let settings = self.settings();
        let policy = cookie::policy(
            settings.public_url_is_https(),
            &settings.session.cookie_name,
        );
        let sessions = SessionManagerLayer::new(self.store().clone())
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
        router
            .layer(from_fn_with_state(self.clone(), provide_state))
            .layer(from_fn_with_state(self.clone(), origin_check))
            .layer(sessions)
            .layer(from_fn_with_state(self.clone(), security_headers))
    }
}
