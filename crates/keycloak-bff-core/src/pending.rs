//! Logins that were started and not yet finished. Each travels in a cookie of its own, encrypted
//! by the server and scoped to the auth routes, so that starting a sign-in writes nothing on the
//! server (catalogue A08). Each is used once, expires, and there are at most a few per browser
//! (catalogue A01, A09). This module decides; the server seals and reads the cookies.

use crate::return_to::ReturnTo;
use crate::step_up::Prompt;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
/// A login started and not yet finished: what the callback checks and needs.
pub struct PendingLogin {
    /// The `state` sent to Keycloak, compared with the callback's.
    pub state: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE code verifier.
    pub pkce_verifier: String,
    /// Where the user goes after signing in.
    pub return_to: ReturnTo,
    /// When the login started, Unix seconds.
    pub created_at: i64,
    /// Orders logins started within the same second (the server's clock in nanoseconds, say),
    /// so that the oldest are the ones dropped.
    #[serde(default)]
    pub order: u64,
    /// How this sign-in asked Keycloak: a step-up (`Login`) must come back with a fresh
    /// `auth_time`; a silent one (`Silent`) comes back signed out, without an error page, when
    /// Keycloak does not know the browser.
    #[serde(default)]
    pub prompt: Prompt,
    /// The account action this sign-in sends the user into (`kc_action`), if any: only its
    /// callback's `kc_action_status` counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<crate::account_action::AccountAction>,
    /// The level of authentication this sign-in asked for (`acr`, such as `otp`), if any: the
    /// tokens that come back must reach it ([`crate::level::AcrLevels::meets`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
}

impl std::fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLogin")
            .field("return_to", &self.return_to)
            .field("created_at", &self.created_at)
            .field("prompt", &self.prompt)
            .field("acr", &self.acr)
            .finish_non_exhaustive()
    }
}

impl PendingLogin {
    /// Started at most `ttl_secs` ago, and not in the future.
    pub fn is_fresh(&self, now: i64, ttl_secs: i64) -> bool {
        now >= self.created_at && now - self.created_at <= ttl_secs
    }
}

/// The part of a login cookie's name that its `state` gives: the state itself when it looks like
/// one this server makes (URL-safe, 16 to 64 characters); `None` for anything else, which then
/// names no login.
pub fn cookie_suffix(state: &str) -> Option<&str> {
    let plausible = (16..=64).contains(&state.len())
        && state
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    plausible.then_some(state)
}

/// The login cookies to remove before a new login is added: those that are expired or unreadable
/// (`None`), and beyond `max - 1` fresh ones, the oldest. `existing` pairs each cookie's name with
/// its login's `(created_at, order)`, if it could be read.
pub fn to_evict<'a>(
    existing: &[(&'a str, Option<(i64, u64)>)],
    now: i64,
    ttl_secs: i64,
    max: usize,
) -> Vec<&'a str> {
    let fresh =
        |at: &Option<(i64, u64)>| at.is_some_and(|(at, _)| now >= at && now - at <= ttl_secs);
    let mut evict: Vec<&str> = existing
        .iter()
        .filter(|(_, at)| !fresh(at))
        .map(|(name, _)| *name)
        .collect();
    let mut kept: Vec<(&str, (i64, u64))> = existing
        .iter()
        .filter_map(|(name, at)| at.filter(|_| fresh(at)).map(|at| (*name, at)))
        .collect();
    kept.sort_by_key(|(_, at)| *at);
    let room = max.max(1) - 1;
    let excess = kept.len().saturating_sub(room);
    evict.extend(kept.iter().take(excess).map(|(name, _)| *name));
    evict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(at: i64) -> PendingLogin {
        PendingLogin {
            state: "s".into(),
            nonce: "n".into(),
            pkce_verifier: "v".into(),
            return_to: ReturnTo::home(),
            created_at: at,
            order: 0,
            prompt: Default::default(),
            action: None,
            acr: None,
        }
    }

    #[test]
    fn an_abandoned_login_expires() {
        assert!(login(100).is_fresh(700, 600));
        assert!(!login(100).is_fresh(701, 600));
    }

    #[test]
    fn a_login_created_in_the_future_is_not_trusted() {
        assert!(!login(1_000).is_fresh(10, 600));
    }

    #[test]
    fn only_a_plausible_state_names_a_login_cookie() {
        assert_eq!(
            cookie_suffix("AbCdEfGhIjKlMnOpQrStUv"),
            Some("AbCdEfGhIjKlMnOpQrStUv")
        );
        assert_eq!(cookie_suffix("short"), None);
        assert_eq!(cookie_suffix("a;b=c/AbCdEfGhIjKlMnOp"), None);
        assert_eq!(cookie_suffix(&"a".repeat(65)), None);
    }

    #[test]
    fn many_tabs_each_get_a_login_but_only_the_newest_few_are_kept() {
        let names: Vec<String> = (0..8).map(|i| format!("c{i}")).collect();
        // Started within one second, in this order (listed here in another).
        let existing: Vec<(&str, Option<(i64, u64)>)> = names
            .iter()
            .enumerate()
            .rev()
            .map(|(i, n)| (n.as_str(), Some((100, i as u64))))
            .collect();
        let mut evicted = to_evict(&existing, 100, 600, 5);
        evicted.sort();
        // Four stay, so that the new one makes five.
        assert_eq!(evicted, vec!["c0", "c1", "c2", "c3"]);
    }

    #[test]
    fn expired_and_unreadable_login_cookies_are_removed_first() {
        let existing = [
            ("old", Some((0, 0))),
            ("junk", None),
            ("new", Some((900, 0))),
        ];
        let mut evicted = to_evict(&existing, 1_000, 600, 5);
        evicted.sort();
        assert_eq!(evicted, vec!["junk", "old"]);
    }
}
