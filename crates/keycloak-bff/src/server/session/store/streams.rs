//! Leases on event streams (`<prefix>/events`), counted per session and per user across every
//! replica: a stream takes a lease when it opens, renews it while it lives and gives it back when
//! it ends; a lease whose replica died ends by itself after [`LEASE_TTL_MS`]. The check and the
//! take are one step (a Lua script in Redis, one lock here), so that streams opened at once, on
//! any replicas, cannot all pass. Catalogue: C (a client holding connections open on purpose).

use super::AuthStore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How long a lease lives unless renewed.
pub const LEASE_TTL_MS: i64 = 60_000;

/// How often a live stream renews its lease.
pub const LEASE_RENEW_EVERY: std::time::Duration = std::time::Duration::from_secs(20);

/// Whether a stream may open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamRoom {
    Taken,
    /// The session holds its limit of streams.
    SessionFull,
    /// The user holds their limit of streams (all their sessions, every replica).
    UserFull,
}

/// The limits a lease is taken within.
#[derive(Clone, Copy, Debug)]
pub struct StreamLimits {
    pub per_session: usize,
    pub per_user: usize,
}

/// The leases of a store of one process: holder sets by key, each lease with its end.
#[derive(Clone, Debug, Default)]
pub struct LocalLeases(Arc<Mutex<HashMap<String, HashMap<String, i64>>>>);

impl LocalLeases {
    /// Takes `lease` in every set of `keys` (with their limits), or in none.
    pub fn take(
        &self,
        keys: &[(String, usize); 2],
        lease: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> StreamRoom {
        let Ok(mut sets) = self.0.lock() else {
            return StreamRoom::Taken;
        };
        for (i, (key, limit)) in keys.iter().enumerate() {
            let set = sets.entry(key.clone()).or_default();
            set.retain(|_, until| *until > now_ms);
            if set.len() >= *limit {
                return if i == 0 {
                    StreamRoom::SessionFull
                } else {
                    StreamRoom::UserFull
                };
            }
        }
        for (key, _) in keys {
            sets.entry(key.clone())
                .or_default()
                .insert(lease.to_owned(), until_ms);
        }
        StreamRoom::Taken
    }

    pub fn renew(&self, keys: &[String; 2], lease: &str, until_ms: i64) {
        if let Ok(mut sets) = self.0.lock() {
            for key in keys {
                if let Some(end) = sets.get_mut(key).and_then(|set| set.get_mut(lease)) {
                    *end = until_ms;
                }
            }
        }
    }

    pub fn release(&self, keys: &[String; 2], lease: &str) {
        if let Ok(mut sets) = self.0.lock() {
            for key in keys {
                if let Some(set) = sets.get_mut(key) {
                    set.remove(lease);
                    if set.is_empty() {
                        sets.remove(key);
                    }
                }
            }
        }
    }
}

/// A stream's lease; given back when dropped.
pub struct StreamLease {
    pub(super) store: AuthStore,
    pub(super) id: String,
    pub(super) sub: String,
    pub(super) lease: String,
}

impl StreamLease {
    /// Keeps the lease for [`LEASE_TTL_MS`] more from `now_ms`. A failure is only logged: the
    /// lease then ends by itself, and the stream goes on.
    pub async fn renew(&self, now_ms: i64) {
        if let Err(e) = self
            .store
            .renew_stream(&self.id, &self.sub, &self.lease, now_ms + LEASE_TTL_MS)
            .await
        {
            tracing::debug!(error = %e, "could not renew an event stream's lease");
        }
    }
}

impl Drop for StreamLease {
    fn drop(&mut self) {
        let (store, id, sub, lease) = (
            self.store.clone(),
            std::mem::take(&mut self.id),
            std::mem::take(&mut self.sub),
            std::mem::take(&mut self.lease),
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = store.release_stream(&id, &sub, &lease).await {
                    tracing::debug!(error = %e, "could not give back an event stream's lease");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(
        session: &str,
        user: &str,
        per_session: usize,
        per_user: usize,
    ) -> [(String, usize); 2] {
        [
            (session.to_owned(), per_session),
            (user.to_owned(), per_user),
        ]
    }

    #[test]
    fn a_session_and_a_user_hold_no_more_than_their_limits_and_expired_leases_free_room() {
        let leases = LocalLeases::default();
        let now = 1_000_000;
        for n in 0..2 {
            assert_eq!(
                leases.take(&keys("s1", "u", 2, 3), &format!("a{n}"), now + 60_000, now),
                StreamRoom::Taken
            );
        }
        assert_eq!(
            leases.take(&keys("s1", "u", 2, 3), "a2", now + 60_000, now),
            StreamRoom::SessionFull
        );
        assert_eq!(
            leases.take(&keys("s2", "u", 2, 3), "b0", now + 60_000, now),
            StreamRoom::Taken
        );
        assert_eq!(
            leases.take(&keys("s3", "u", 2, 3), "c0", now + 60_000, now),
            StreamRoom::UserFull
        );
        leases.release(&["s1".into(), "u".into()], "a0");
        assert_eq!(
            leases.take(&keys("s3", "u", 2, 3), "c0", now + 60_000, now),
            StreamRoom::Taken
        );
        // A minute later, leases not renewed are gone.
        let later = now + 61_000;
        leases.renew(&["s3".into(), "u".into()], "c0", later + 60_000);
        assert_eq!(
            leases.take(&keys("s1", "u", 2, 3), "d0", later + 60_000, later),
            StreamRoom::Taken
        );
        assert_eq!(
            leases.take(&keys("s1", "u", 2, 3), "d1", later + 60_000, later),
            StreamRoom::Taken
        );
        assert_eq!(
            leases.take(&keys("s4", "u", 2, 3), "e0", later + 60_000, later),
            StreamRoom::UserFull,
            "c0 was renewed"
        );
    }
}
