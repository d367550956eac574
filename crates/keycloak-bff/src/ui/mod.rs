//! The browser side (also rendered on the server): the user in context, gated components, and the
//! session watcher.

pub mod context;
pub mod failure;
pub mod gates;
pub mod step_up;
pub mod watch;
