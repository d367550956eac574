//! Server-only code: settings, the OpenID Connect client, sessions, routes and start-up.

pub mod api;
pub mod configuration;
pub mod db;
pub mod guard;
pub mod http;
pub mod keys;
pub mod logout;
pub mod middleware;
pub mod oidc;
pub mod refresh;
pub mod routes;
pub mod session;
pub mod startup;
pub mod state;
pub mod telemetry;
