//! The bottom wing: what every other part of the server reads and nothing here depends on them.
//! Settings (file and environment), the one clock, the counters, the HTTP client that talks to
//! Keycloak, and the allocator's footprint. No file here imports another wing.

pub mod clock;
pub mod cookies;
pub mod http_client;
pub mod memory;
pub mod metrics;
pub mod rate_limit;
pub mod remote_api;
pub mod seen;
pub mod settings;
pub mod settings_error;
