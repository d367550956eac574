//! Keycloak for Leptos + axum apps, as a backend-for-frontend (BFF).
//!
//! The browser signs in with the OpenID Connect code flow (PKCE, `state`, `nonce`); the tokens stay
//! in a server-side session and the browser only holds an opaque, HttpOnly cookie. Server functions
//! and routes ask for the [`KeycloakUser`] and check a [`Rule`]; components read the same user from
//! context and show or hide UI by roles and groups.
//!
//! Browser and server (features `hydrate` and `ssr`):
//! - [`provide_user`], [`use_user`], [`current_user`]: the user in context.
//! - [`SignedIn`], [`Authorized`], [`HasRealmRole`], [`HasClientRole`], [`InGroup`], [`Protected`]
//!   (with `step_up` for a recent sign-in): gated UI; [`SessionWatch`]: the session checks and
//!   their notices, the expiry warning with "Stay signed in".
//! - [`step_up_for`], [`take_stepped_up`]: an action refused for want of a recent sign-in, completed
//!   after Keycloak asked for the password again.
//! - [`AppError`]: the one error type that crosses the wire, with one mapping to HTTP status.
//!
//! Server only (feature `ssr`): [`server::KeycloakAuth`] (routes, layers, the OIDC client, the
//! session store, refresh, silent single sign-on, front-channel logout), [`server::Settings`],
//! [`server::require`] and [`server::require_recent`] (step-up) for server functions,
//! [`server::ApiUser`], the bearer-or-session extractor of a JSON API,
//! [`server::keycloak_api::account::AsUser`] (call an API as the signed-in user; the user's Keycloak sessions)
//! and [`server::keycloak_api::directory::Directory`] (the realm's users, read by a service account).
//!
//! The pure rules (claims, token checks, return paths, refresh timing) are in
//! [`keycloak_bff_core`], re-exported as [`core`].

#![warn(clippy::too_many_lines)]

pub mod config;
pub mod error;
pub mod ui;

#[cfg(feature = "ssr")]
pub mod server;

pub use config::UiConfig;
pub use error::AppError;
pub use keycloak_bff_core as core;
pub use keycloak_bff_core::{Access, KeycloakUser, ReturnTo, Rule};
pub use ui::context::{
    current_path, current_user, login_href, logout_action, now_secs, provide_user, step_up_href,
    use_session_state, use_ui_config, use_user, SessionState, UserResource, WithUser,
};
pub use ui::gates::{
    set_page_status, Authorized, ErrorNotice, Forbidden, HasClientRole, HasRealmRole, InGroup,
    Protected, SignInNeeded, SignedIn, StepUpNeeded,
};
pub use ui::step_up::{needs_step_up, step_up_for, take_stepped_up};
pub use ui::watch::SessionWatch;
