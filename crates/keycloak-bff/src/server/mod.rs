//! The server side (feature `ssr`). Modules by layer, each importing only the ones above it:
//!
//! 1. [`settings`], [`http`], [`metrics`], [`assets`], [`memory`]: settings, the HTTP client to
//!    Keycloak, counters, the site's static files, the allocator's footprint.
//! 2. [`keys`], [`store`] (with [`redis_store`] and [`events`]), [`login_cookies`]: the key cache, the session store with its
//!    `sid`/`sub` index and the back-channel logout guard (used logout tokens, ended Keycloak
//!    sessions), the announcements of changed sessions, the sealed cookies of pending sign-ins.
//! 3. [`oidc`]: discovery, the authorization request, code exchange, token validation.
//! 4. [`refresh`]: single-flight refresh of a session's tokens.
//! 5. [`auth`]: [`KeycloakAuth`], the state everything below reads.
//! 6. [`routes`], [`backchannel`], [`push`], [`middleware`], [`silent_sso`], [`guard`],
//!    [`extract`], [`health`], [`account`], [`directory`]: the auth routes (with front-channel
//!    logout), the back-channel logout, the session event stream, the origin check and security
//!    headers, silent single sign-on, the guard of server functions and pages, the
//!    bearer-or-session extractor, the probes and metrics, calls to Keycloak's Account API as the
//!    user, and its Admin API as a service account.
//! 7. [`router`]: mounts the routes and layers on an app's router.

pub mod account;
pub mod assets;
pub mod auth;
pub mod backchannel;
pub mod directory;
pub mod events;
pub mod extract;
pub mod guard;
pub mod health;
pub mod http;
pub mod keys;
pub mod login_cookies;
pub mod memory;
pub mod metrics;
pub mod middleware;
pub mod oidc;
pub mod push;
pub mod redis_store;
pub mod refresh;
pub mod router;
pub mod routes;
pub mod settings;
pub mod silent_sso;
pub mod store;

pub use auth::{KeycloakAuth, StartupError};
pub use extract::ApiUser;
pub use guard::{fail, request_user, require, require_recent, use_keycloak_auth};
pub use router::shutdown_signal;
pub use settings::{AuthSettings, NoAppSettings, Settings, SettingsError, StoreKind};

/// The current Unix time in seconds, for callers at the edge (the core takes `now` as a parameter).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
