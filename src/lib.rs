//! kc-leptos: a Leptos full-stack app in which Keycloak owns every user, password, role and group.
//!
//! - [`user`]: `KeycloakUser` and the authorization rules (shared by browser and server).
//! - [`auth_ui`]: the user in context, the components that gate UI, and `current_user()`.
//! - [`app`]: the shell, router and pages.
//! - `auth` (server): the auth core, free of Leptos and axum types.
//! - `server` (server): settings, OpenID Connect, sessions, routes, start-up.

pub mod app;
pub mod auth_ui;
pub mod error;
pub mod notes;
pub mod pages;
pub mod policy;
pub mod session_watch;
pub mod user;

#[cfg(feature = "ssr")]
pub mod auth;
#[cfg(feature = "ssr")]
pub mod server;

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
