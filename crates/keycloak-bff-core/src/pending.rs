//! Logins that were started and not yet finished, kept in the browser's pre-login session.
//! Each is used once, expires, and there are at most a few per browser (catalogue A01, A08, A09).

use crate::return_to::ReturnTo;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub return_to: ReturnTo,
    pub created_at: i64,
}

impl std::fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLogin")
            .field("return_to", &self.return_to)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PendingLogins(Vec<PendingLogin>);

impl PendingLogins {
    fn prune(&mut self, now: i64, ttl_secs: i64) {
        self.0
            .retain(|p| now >= p.created_at && now - p.created_at <= ttl_secs);
    }

    /// Adds a login, after dropping expired ones and, beyond `max`, the oldest.
    pub fn push(&mut self, login: PendingLogin, now: i64, ttl_secs: i64, max: usize) {
        self.prune(now, ttl_secs);
        let max = max.max(1);
        while self.0.len() >= max {
            self.0.remove(0);
        }
        self.0.push(login);
    }

    /// Removes and returns the unexpired login with this `state`; `None` when unknown, expired or
    /// already used.
    pub fn take(&mut self, state: &str, now: i64, ttl_secs: i64) -> Option<PendingLogin> {
        self.prune(now, ttl_secs);
        let index = self.0.iter().position(|p| p.state == state)?;
        Some(self.0.remove(index))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(state: &str, at: i64) -> PendingLogin {
        PendingLogin {
            state: state.into(),
            nonce: "n".into(),
            pkce_verifier: "v".into(),
            return_to: ReturnTo::home(),
            created_at: at,
        }
    }

    #[test]
    fn a_state_can_be_used_only_once() {
        let mut p = PendingLogins::default();
        p.push(login("s1", 100), 100, 600, 5);
        assert!(p.take("s1", 101, 600).is_some());
        assert!(p.take("s1", 102, 600).is_none());
    }

    #[test]
    fn an_unknown_state_finds_nothing_and_keeps_the_others() {
        let mut p = PendingLogins::default();
        p.push(login("s1", 100), 100, 600, 5);
        assert!(p.take("forged", 101, 600).is_none());
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn an_abandoned_login_expires_and_does_not_block_the_next() {
        let mut p = PendingLogins::default();
        p.push(login("old", 100), 100, 600, 5);
        p.push(login("new", 800), 800, 600, 5);
        assert_eq!(p.len(), 1);
        assert!(p.take("old", 801, 600).is_none());
        assert!(p.take("new", 801, 600).is_some());
    }

    #[test]
    fn many_tabs_each_get_a_login_but_only_the_newest_few_are_kept() {
        let mut p = PendingLogins::default();
        for i in 0..50 {
            p.push(login(&format!("s{i}"), 100 + i), 100 + i, 600, 5);
        }
        assert_eq!(p.len(), 5);
        assert!(p.take("s44", 200, 600).is_none());
        assert!(p.take("s45", 200, 600).is_some());
        assert!(p.take("s49", 200, 600).is_some());
    }

    #[test]
    fn a_login_created_in_the_future_is_not_trusted() {
        let mut p = PendingLogins::default();
        p.push(login("s", 1_000), 1_000, 600, 5);
        assert!(p.take("s", 10, 600).is_none());
    }
}
