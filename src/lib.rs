//! kc-leptos: the demo app of `keycloak-bff`, a Leptos full-stack app in which Keycloak owns every
//! user, password, role and group.
//!
//! - [`app`]: the shell, router and navigation.
//! - [`pages`]: the pages and their server functions; [`policy`]: the pages' rules.
//! - [`account`]: "My sessions" (Keycloak's Account API, called as the user).
//! - [`directory`]: the user directory for admins (Keycloak's Admin API, a service account).
//! - [`notes`]: the notes board (model, rules, server functions, components, queries, JSON API).
//! - [`orders`]: orders kept by another service (`examples/orders-api`), called through the
//!   remote API route `/remote/orders` with a token exchanged for it.
//! - [`security`]: password, authenticator app, passkeys and deleting the account, on Keycloak's
//!   own pages (the library's account actions).
//! - `server` (server): the app's state, settings and start-up.

pub mod account;
pub mod app;
pub mod directory;
pub mod format;
pub mod notes;
pub mod orders;
pub mod pages;
pub mod policy;
pub mod security;

#[cfg(feature = "ssr")]
pub mod server;

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    // A panic (a page's chunk that failed to load) shows a notice with a Reload link.
    keycloak_bff::report_failures();
    // `hydrate_lazy`: a page loaded as a chunk hydrates once its code has arrived.
    leptos::mount::hydrate_lazy(app::App);
}
