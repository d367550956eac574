//! Keycloak for Leptos + axum apps, as a backend-for-frontend (BFF).
//!
//! The browser signs in with the OpenID Connect code flow (PKCE, `state`, `nonce`) on Keycloak's
//! own pages; the tokens stay in a server-side session and the browser only holds an opaque,
//! HttpOnly cookie. Server functions and routes ask for the [`KeycloakUser`] and check a [`Rule`];
//! components read the same user from context and show or hide UI by roles and groups.
//!
//! # Add Keycloak to your Leptos app
//! (The README's section of that name has every line, and `examples/minimal` is what it makes.)
//!
//! 1. **A client in Keycloak**: `keycloak-bff client create` (this crate's binary) makes it through
//!    the Admin REST API, or `keycloak-bff client check` names every setting of an existing one that
//!    differs, in the admin console's words (front-channel logout off, PKCE S256, the back-channel
//!    logout URL, the `groups` mapper…).
//! 2. **The dependency**, with the app's features: `keycloak-bff/ssr` in `ssr`,
//!    `keycloak-bff/hydrate` in `hydrate`.
//! 3. **The settings**: `[auth] public_url`, `[keycloak] issuer_url` and `client_id` in
//!    `Leptos.toml`; the secret in `APP_KEYCLOAK_CLIENT_SECRET`. Sessions go to
//!    `data/sessions.sqlite3` unless `[session] store` says otherwise.
//! 4. **The server**: [`server::KeycloakAuth::new`], its [`routes`](server::KeycloakAuth::routes)
//!    merged into the app's router, and the finished router served with
//!    [`serve`](server::KeycloakAuth::serve), which puts the library's layers around every route
//!    (an example is on [`server::KeycloakAuth`]).
//! 5. **The UI and the server functions**: [`provide_user`] in the root component,
//!    [`SessionWatch`] inside the router, the gates, and the same rules enforced on the server:
//!
//! ```no_run
//! use keycloak_bff::{login_href, logout_action, provide_user, AppError, HasRealmRole};
//! use keycloak_bff::{KeycloakUser, Protected, Rule, SessionWatch, SignedIn};
//! use leptos::prelude::*;
//!
//! /// Who may publish: the realm role `editor`. The page and the server function use the same rule.
//! fn publishers() -> Rule {
//!     Rule::realm_role("editor")
//! }
//!
//! #[server]
//! async fn publish(text: String) -> Result<(), AppError> {
//!     let user: KeycloakUser = keycloak_bff::server::require(&publishers()).await?;
//!     leptos::logging::log!("{} publishes {} bytes", user.username, text.len());
//!     Ok(())
//! }
//!
//! #[component]
//! fn App() -> impl IntoView {
//!     provide_user();
//!     view! {
//!         <SessionWatch/>
//!         <SignedIn fallback=|| view! { <a rel="external" href=login_href("/")>"Sign in"</a> }>
//!             <form method="post" action=logout_action()><button>"Sign out"</button></form>
//!         </SignedIn>
//!         <HasRealmRole role="admin"><p>"Only admins see this."</p></HasRealmRole>
//!         <Protected rule=publishers()>
//!             <button on:click=|_| { leptos::task::spawn_local(async { let _ = publish("hi".into()).await; }); }>
//!                 "Publish"
//!             </button>
//!         </Protected>
//!     }
//! }
//! ```
//!
//! # What is where
//! Browser and server (features `hydrate` and `ssr`):
//! - [`provide_user`], [`use_user`], [`current_user`]: the user in context.
//! - [`SignedIn`], [`Authorized`], [`HasRealmRole`], [`HasClientRole`], [`InGroup`], [`Protected`]
//!   (with `step_up` for a recent sign-in): gated UI; [`SessionWatch`]: the session checks and
//!   their notices, the expiry warning with "Stay signed in".
//! - [`login_href`], [`logout_action`], [`step_up_href`]: the library's URLs, from the settings.
//! - [`step_up_for`], [`take_stepped_up`]: an action refused for want of a recent sign-in, completed
//!   after Keycloak asked for the password again.
//! - [`call_remote`]: a call from the browser to one of the app's remote API routes (the server
//!   adds the user's token; the browser never holds one), answered as a [`RemoteAnswer`].
//! - [`AppError`]: the one error type that crosses the wire, with one mapping to HTTP status.
//!
//! Server only (feature `ssr`): [`server`] (start-up, the guard of server functions, the
//! [`server::ApiUser`] extractor of a JSON API, Keycloak's APIs as the user or a service
//! account). Its inside is private; everything an app may name is re-exported there, and
//! `public-api.txt` in the crate lists the whole public API.
//!
//! The pure rules (claims, token checks, return paths, refresh timing) are in
//! [`keycloak_bff_core`], re-exported as [`core`].

#![warn(clippy::too_many_lines)]
// Every public item is documented; `test-support` re-exports internals, which are not the API.
#![cfg_attr(not(any(test, feature = "test-support")), warn(missing_docs))]

mod config;
mod error;
mod ui;

#[cfg(feature = "ssr")]
pub mod server;

pub use config::UiConfig;
pub use error::AppError;
pub use keycloak_bff_core as core;
pub use keycloak_bff_core::account_action::{AccountAction, ActionOutcome};
pub use keycloak_bff_core::{Access, KeycloakUser, ReturnTo, Rule};
pub use ui::actions::{
    account_action_href, account_action_outcome, AccountActionLink, AccountActionNotice,
};
pub use ui::context::{
    current_path, current_user, level_href, login_href, logout_action, now_secs, provide_user,
    step_up_href, use_session_state, use_ui_config, use_user, SessionState, UserState, WithUser,
};
pub use ui::failure::{report_failures, FAILURE_NOTICE_ID};
pub use ui::gates::{
    set_page_status, AtLevel, Authorized, ErrorNotice, Forbidden, HasClientRole, HasRealmRole,
    InGroup, LevelPrompt, Protected, SignInNeeded, SignedIn, StepUpNeeded,
};
pub use ui::remote::{call_remote, RemoteAnswer};
pub use ui::step_up::{needs_step_up, step_up_for, take_stepped_up};
pub use ui::watch::SessionWatch;
