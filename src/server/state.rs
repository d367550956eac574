//! The state every handler, server function and SSR render can reach.

use crate::server::configuration::Settings;
use crate::server::logout::ReplayGuard;
use crate::server::oidc::Oidc;
use crate::server::refresh::{Metrics, Refresher};
use crate::server::session::AppStore;
use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub settings: Arc<Settings>,
    pub oidc: Arc<Oidc>,
    pub store: AppStore,
    /// The app's database (notes; sessions too with the SQLite store).
    pub db: sqlx::SqlitePool,
    pub refresher: Arc<Refresher>,
    pub metrics: Arc<Metrics>,
    pub logout_replays: Arc<ReplayGuard>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

impl AppState {
    /// The redirect URI registered in Keycloak: the public URL's `/auth/callback`.
    pub fn redirect_uri(&self) -> String {
        self.settings.absolute("/auth/callback")
    }
}
