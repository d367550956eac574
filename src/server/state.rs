//! The state every handler, server function and SSR render of the demo can reach.

use axum::extract::FromRef;
use keycloak_bff::server::KeycloakAuth;
use leptos::config::LeptosOptions;

#[derive(Clone)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub auth: KeycloakAuth,
    /// The notes database.
    pub db: sqlx::SqlitePool,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

impl FromRef<AppState> for KeycloakAuth {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}
