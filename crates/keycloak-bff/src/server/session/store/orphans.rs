//! Refresh locks this process could not release because the shared store did not answer (a
//! Redis restart, a failover): released as soon as the store answers again, not left to their
//! expiry. Without this, a lock taken just before a failover (its write replicated, the
//! confirmation lost with the old master) or held while the store went away keeps every refresh
//! of its session waiting for the rest of [`LOCK_TTL_MS`] after the store is back.
//!
//! Releasing one is always safe: a lock is deleted only if it still holds this holder's random
//! token, so a lock another replica took since is never touched, and a lock whose take never
//! reached the store makes the release a no-op. Catalogue: D03 (a refresh lock outliving its
//! holder), E03 (a store outage signs nobody out, and its end heals every session at once).

use super::{Backend, LOCK_TTL_MS};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often the locks left are tried again while the store is away.
const RETRY_EVERY: Duration = Duration::from_millis(250);

/// How many locks wait for their release at most; beyond that they are left to expire.
const MOST_KEPT: usize = 10_000;

/// The locks left by this process (session id and holder token, with the time after which the
/// lock has expired by itself), and whether a task is releasing them.
#[derive(Debug, Default)]
struct Left {
    locks: HashMap<(String, String), Instant>,
    releasing: bool,
}

/// The refresh locks this process still has to release.
#[derive(Clone, Debug, Default)]
pub struct OrphanLocks(Arc<Mutex<Left>>);

impl OrphanLocks {
    /// Releases the lock `token` may hold on session `id` once `backend` answers again, for as
    /// long as the lock can live.
    pub fn release_later(&self, backend: &Arc<dyn Backend>, id: &str, token: &str) {
        let until = Instant::now() + Duration::from_millis(LOCK_TTL_MS.unsigned_abs());
        let mut left = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if left.locks.len() >= MOST_KEPT {
            tracing::debug!("too many refresh locks left to release; this one expires by itself");
            return;
        }
        left.locks.insert((id.to_owned(), token.to_owned()), until);
        if !left.releasing {
            left.releasing = true;
            tokio::spawn(release(self.0.clone(), backend.clone()));
        }
    }

    /// How many locks are still to be released.
    #[cfg(all(test, feature = "redis"))]
    pub fn len(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .locks
            .len()
    }
}

/// Tries the locks left every [`RETRY_EVERY`] until each is released or expired; a round stops
/// at the first failure (the store is still away).
async fn release(left: Arc<Mutex<Left>>, backend: Arc<dyn Backend>) {
    loop {
        tokio::time::sleep(RETRY_EVERY).await;
        let round: Vec<(String, String)> = {
            let mut left = left.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            left.locks.retain(|_, until| *until > now);
            if left.locks.is_empty() {
                left.releasing = false;
                return;
            }
            left.locks.keys().cloned().collect()
        };
        let mut released = 0_usize;
        for (id, token) in round {
            if let Err(e) = backend.unlock(&id, &token).await {
                tracing::debug!(error = %e, "a refresh lock left by an outage is not released yet");
                break;
            }
            released += 1;
            left.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .locks
                .remove(&(id, token));
        }
        if released > 0 {
            tracing::info!(
                released,
                "released refresh locks left by a session store outage"
            );
        }
    }
}
