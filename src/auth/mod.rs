//! The auth core: claims, return paths, cookie policy, token checks and pending logins.
//!
//! Plain functions and data with no Leptos or axum types, so that the rules read as a small library
//! and are tested with plain unit tests. Time is always a parameter (`now`, Unix seconds).

pub mod callback;
pub mod claims;
pub mod cookie;
pub mod jwt;
pub mod pending;
pub mod refresh;
pub mod return_to;

/// The current Unix time in seconds, for callers at the edge (the core takes `now` as a parameter).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
