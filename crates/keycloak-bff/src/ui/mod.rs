//! The browser side (also rendered on the server): the user in context, gated components, the
//! session watcher, and calls to the app's remote API routes.

pub mod actions;
pub mod context;
pub mod failure;
pub mod gates;
#[cfg(feature = "hydrate")]
mod notices;
pub mod remote;
mod session_route;
pub mod step_up;
pub mod watch;
#[cfg(any(feature = "hydrate", test))]
mod wire;
