//! Counters the library keeps about its sessions (shown to admins, read by tests).

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    /// Calls to Keycloak's token endpoint with a refresh token.
    pub token_refreshes: AtomicU64,
    /// Sessions ended because Keycloak refused the refresh token or sent tokens that do not fit.
    pub sessions_ended_by_refresh: AtomicU64,
    /// Back-channel logout tokens accepted.
    pub backchannel_logouts: AtomicU64,
}

impl Metrics {
    pub(crate) fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
