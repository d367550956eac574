//! The server side (feature `ssr`), in wings. Each wing imports only the wings listed before it
//! (`scripts/check_layers.py` fails the tests otherwise):
//!
//! 1. [`base`]: settings, the clock, counters, the HTTP client to Keycloak, the allocator.
//! 2. [`session`]: the session store and its backends, the announcements of changed sessions, the
//!    sealed cookies of pending sign-ins.
//! 3. [`oidc`]: the OpenID Connect relying party (discovery, token calls, validation, keys) and the
//!    single-flight refresh.
//! 4. [`keycloak_api`]: Keycloak's Account API as the user, its Admin API as a service account.
//! 5. [`web`]: the HTTP face: [`KeycloakAuth`] (the state), routes, logout channels, the event
//!    stream, middleware, silent single sign-on, the guard, extractors, health, static files,
//!    the router.

pub mod base;
pub mod keycloak_api;
pub mod oidc;
pub mod session;
pub mod web;

pub use base::clock::unix_now;
pub use base::memory::release_free_memory;
pub use base::settings::{AuthSettings, NoAppSettings, Settings, SettingsError, StoreKind};
pub use keycloak_api::account::AsUser;
pub use keycloak_api::directory::Directory;
pub use session::store::open_sqlite;
pub use web::account::{end_my_other_sessions, end_my_session, my_sessions};
pub use web::assets::static_files;
pub use web::directory::search_directory;
pub use web::extract::ApiUser;
pub use web::guard::{fail, request_user, require, require_recent, use_keycloak_auth};
pub use web::router::shutdown_signal;
pub use web::state::{KeycloakAuth, StartupError};
