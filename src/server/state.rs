//! The state every handler, server function and SSR render of the demo can reach.

use axum::extract::FromRef;
use keycloak_bff::server::KeycloakAuth;
use leptos::config::LeptosOptions;
use std::sync::Arc;

/// Cloned for every request that reaches a handler (axum hands each its own copy of the state):
/// every field is a reference count. Leptos's options by value (a dozen strings) took about 5 %
/// of the CPU of `GET /api/v1/me` with a session (`perf`, docs/performance.md).
#[derive(Clone)]
pub struct AppState {
    pub leptos_options: Arc<LeptosOptions>,
    pub auth: KeycloakAuth,
    /// The notes database.
    pub db: sqlx::SqlitePool,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        (*state.leptos_options).clone()
    }
}

impl FromRef<AppState> for KeycloakAuth {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}
