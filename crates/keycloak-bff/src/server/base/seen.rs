//! Ids seen recently, each remembered until it could no longer be accepted anyway: the `jti` of
//! DPoP proofs on the JSON API, so that a proof sent twice is refused the second time. Kept in
//! this process's memory, bounded; past the bound a new id is refused (under a flood, refusing a
//! good proof is better than accepting a replayed one). Replicas also record each id in the
//! shared session store (`AuthStore::first_use_of_dpop_proof`); this memory answers a replay to
//! the same process without a store round trip.
//!
//! Catalogue: P09 (a replayed DPoP proof).

use std::collections::HashMap;
use std::sync::Mutex;

/// At most this many ids are remembered at once.
const MAX_IDS: usize = 200_000;

/// Ids seen, with the time until which each is kept.
#[derive(Default)]
pub struct Seen(Mutex<HashMap<String, i64>>);

impl Seen {
    /// Whether `id` is seen for the first time (then it is remembered until `until`); `false`
    /// for a replay, and when the memory is full.
    pub fn first_use(&self, id: String, until: i64, now: i64) -> bool {
        let Ok(mut ids) = self.0.lock() else {
            return false;
        };
        if ids.len() >= MAX_IDS / 2 {
            ids.retain(|_, kept| *kept > now);
        }
        if ids.get(&id).is_some_and(|kept| *kept > now) || ids.len() >= MAX_IDS {
            return false;
        }
        ids.insert(id, until);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_accepted_once_until_it_expires() {
        let seen = Seen::default();
        assert!(seen.first_use("a".into(), 200, 100));
        assert!(!seen.first_use("a".into(), 200, 150));
        assert!(seen.first_use("b".into(), 200, 150));
        // Past its keeping time it could not be accepted anyway (the proof's iat is too old).
        assert!(seen.first_use("a".into(), 400, 201));
    }
}
