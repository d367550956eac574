//! The pure core of a Keycloak backend-for-frontend.
//!
//! Plain functions and data with no web framework, no I/O and no clock, so that every rule reads
//! as a small library and is tested with plain unit tests. Time is always a parameter (`now`, Unix
//! seconds). It compiles for the browser (`wasm32-unknown-unknown`) and the server alike.
//!
//! - [`user`]: `KeycloakUser`, and the authorization model (`Rule`, `Access`).
//! - [`account`]: a user's sessions, read from Keycloak's Account API.
//! - [`client_setup`]: the Keycloak client the library needs, checked setting by setting.
//! - [`directory`]: the realm's users, read from Keycloak's Admin API.
//! - [`silent_sso`]: when a page load may try a silent sign-in.
//! - [`claims`]: Keycloak claims → `KeycloakUser`.
//! - [`dpop`]: DPoP proofs (RFC 9449) on the JSON API, and RFC 7638 key thumbprints.
//! - [`jwt`]: JOSE header checks, and the claim checks of ID, access and logout tokens; `at_hash`.
//! - [`callback`]: the authorization response, parsed and capped.
//! - [`pending`]: logins started and not yet finished.
//! - [`return_to`]: `ReturnTo`, a same-origin return path (its constructor is the sanitiser), and
//!   the sign-in link that comes back to it.
//! - [`refresh`]: when to refresh, and the back-off while Keycloak is unreachable.
//! - [`cookie`]: the session cookie's attributes.
//! - [`csp`]: the Content-Security-Policy and HSTS headers.
//! - [`status`]: the answer of the silent-refresh route, shared by the browser and the server.
//! - [`step_up`]: recent sign-ins for dangerous actions, and the kinds of sign-in (`prompt`).
//! - [`level`]: levels of authentication (`acr`), ranked as the realm ranks them.
//! - [`expiry`]: the warning before Keycloak's session ends, and when extending no longer helps.
//! - [`host`]: a page opened on another loopback name of the public URL goes there first.
//! - [`streams`]: the back-off, jitter and age limits of the session event streams.
//! - [`remote`]: remote API routes: path safety, the same-origin check, the headers that cross.

#![warn(clippy::too_many_lines)]
#![warn(missing_docs)]

pub mod account;
pub mod account_action;
pub mod callback;
pub mod claims;
pub mod client_setup;
pub mod cookie;
pub mod csp;
pub mod directory;
pub mod dpop;
pub mod expiry;
pub mod host;
pub mod jwt;
pub mod level;
pub mod pending;
pub mod refresh;
pub mod remote;
pub mod return_to;
pub mod silent_sso;
pub mod status;
pub mod step_up;
pub mod streams;
pub mod user;

pub use return_to::ReturnTo;
pub use user::{Access, KeycloakUser, Rule};
