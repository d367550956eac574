//! The server side (feature `ssr`): what an app's `main` and its server functions use.
//!
//! - Start-up: [`AuthSettings::load`] (or [`Settings::load`] with the app's own section), then
//!   [`KeycloakAuth::new`]; merge [`KeycloakAuth::routes`] into the app's router and serve it with
//!   [`KeycloakAuth::serve`] (or [`KeycloakAuth::serve_until`], or
//!   [`KeycloakAuth::into_make_service`] for an own serve loop): the library's layers go around the
//!   finished router there, so no route can be added past them.
//! - Server functions: [`require`], [`require_recent`] (a recent sign-in), [`require_acr`] (a
//!   level of authentication), [`request_user`], [`fail`]; JSON routes: the [`ApiUser`]
//!   extractor (a bearer token or the session).
//! - Calling Keycloak: [`AsUser`] (the Account API as the signed-in user), [`Directory`] and
//!   [`search_directory`] (the realm's users, read by a service account) and
//!   [`directory_user_detail`] (one user, at a level of authentication), [`my_sessions`],
//!   [`end_my_session`], [`end_my_other_sessions`], [`my_sign_in_methods`].
//! - Calling other APIs as the user: remote API routes ([`RemoteApi`], `[[apis]]` in the
//!   settings), served by [`KeycloakAuth::routes`] with the user's token, one exchanged for the
//!   route's audience, or the app's own ([`UpstreamToken`]).
//! - Opt-in helpers an app may use or replace: [`static_files`], [`open_sqlite`],
//!   [`shutdown_signal`], [`release_free_memory`], [`unix_now`].
//!
//! Inside, the server is in wings; each imports only the wings listed before it
//! (`scripts/check_layers.py` fails the tests otherwise): `base` (settings, the clock, counters,
//! the HTTP client to Keycloak), `session` (the store and its backends, the announcements of
//! changed sessions, the sealed cookies of pending sign-ins), `oidc` (the relying party and the
//! single-flight refresh), `keycloak_api` (the Account API as the user, the Admin API as a service
//! account) and `web` (the state, routes, logout channels, the event stream, middleware, silent
//! single sign-on, the guard, extractors, health, static files, the router). None of them is
//! public: everything an app may name is re-exported here, and `crates/keycloak-bff/public-api.txt`
//! lists it (`scripts/public_api.sh --check` in the test command).

pub(crate) mod base;
pub(crate) mod keycloak_api;
pub(crate) mod oidc;
pub(crate) mod session;
pub(crate) mod web;

/// Throw-away Redis servers and a few internals for tests (feature `test-support`).
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;

pub use base::clock::unix_now;
pub use base::memory::release_free_memory;
pub use base::remote_api::RemoteApi;
pub use base::settings::{
    AuthSettings, KeycloakSettings, NoAppSettings, ServiceAccountSettings, SessionSettings,
    Settings, SettingsError, StoreKind,
};
pub use keycloak_api::account::AsUser;
pub use keycloak_api::directory::Directory;
pub use keycloak_bff_core::remote::UpstreamToken;
#[cfg(feature = "sqlite")]
pub use session::store::open_sqlite;
pub use web::account::{end_my_other_sessions, end_my_session, my_sessions, my_sign_in_methods};
pub use web::assets::static_files;
pub use web::directory::{directory_user_detail, search_directory};
pub use web::extract::ApiUser;
pub use web::guard::{fail, request_user, require, require_acr, require_recent, use_keycloak_auth};
pub use web::router::shutdown_signal;
pub use web::state::{Counters, KeycloakAuth, StartupError};
