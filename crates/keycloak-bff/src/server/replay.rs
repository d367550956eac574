//! Logout token ids already used (catalogue F05), until they would be refused as too old anyway.

use keycloak_bff_core::jwt::LogoutTarget;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<String, i64>>,
}

impl ReplayGuard {
    /// Records `target.jti`; false when it was seen before (a replay).
    pub fn first_use(&self, target: &LogoutTarget, now: i64) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        seen.retain(|_, until| *until > now);
        if seen.len() > 100_000 {
            return false; // refuse rather than grow without bound under a flood
        }
        seen.insert(target.jti.clone(), target.replay_until)
            .is_none()
    }
}
