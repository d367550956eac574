//! The session wing: where a signed-in browser's state lives on the server and how its changes
//! are heard. The store (one [`store::Backend`] trait, a file per backend: SQLite, Redis, memory),
//! the announcements of changed sessions ([`events`]) and the sealed cookies of sign-ins in
//! progress ([`login_cookies`]). Imports only [`crate::server::base`].

pub mod events;
pub mod login_cookies;
pub mod store;
