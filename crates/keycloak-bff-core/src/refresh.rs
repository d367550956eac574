//! When to refresh: pure decisions about a session's tokens at a given time.

/// The times that decide about a refresh (Unix seconds).
#[derive(Debug, Clone, Copy)]
pub struct TokenTimes {
    pub access_expires_at: i64,
    pub has_refresh_token: bool,
}

/// What to do with a session's tokens now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The access token is good for longer than the margin (or a retry is not due yet and it is
    /// still valid): use it.
    UseAsIs,
    /// Refresh now.
    Refresh,
    /// The access token has expired and the last refresh failed for want of Keycloak; the next
    /// attempt is not due yet.
    Unavailable,
}

/// Back-off after refreshes that failed because Keycloak could not be reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Backoff {
    pub failures: u32,
    /// No attempt before this time.
    pub retry_at: i64,
}

impl Backoff {
    /// The back-off after one more failure at `now`: 1, 2, 4, 8, 16, then 30 seconds.
    pub fn failed(self, now: i64) -> Backoff {
        let failures = self.failures.saturating_add(1);
        let delay = 1i64 << (failures - 1).min(5);
        Backoff {
            failures,
            retry_at: now.saturating_add(delay.min(30)),
        }
    }
}

/// When a session that Keycloak just issued or refreshed tokens for ends: `refresh_expires_in`
/// seconds from `now` when there is a refresh token (saturating: a hostile lifetime cannot
/// overflow), else with the access token.
pub fn session_end(
    now: i64,
    refresh_expires_in: Option<i64>,
    has_refresh_token: bool,
    access_expires_at: i64,
) -> i64 {
    match refresh_expires_in {
        Some(secs) if secs > 0 && has_refresh_token => now.saturating_add(secs),
        _ => access_expires_at,
    }
}

pub fn decide(t: &TokenTimes, now: i64, margin: i64, backoff: &Backoff) -> Decision {
    if t.access_expires_at.saturating_sub(margin) > now {
        return Decision::UseAsIs;
    }
    if !t.has_refresh_token {
        return Decision::Refresh; // the caller ends the session once the access token is dead
    }
    if now < backoff.retry_at {
        return if now < t.access_expires_at {
            Decision::UseAsIs
        } else {
            Decision::Unavailable
        };
    }
    Decision::Refresh
}

/// Seconds until an open page should ask for a silent refresh (`now`, the access token's expiry
/// and the session's end in Unix seconds): when the access token expires. The server refreshes it
/// then (or earlier, when another request of the session comes within the refresh margin), so an
/// idle page sends one request per access-token lifetime, never more, and never waits past the
/// session's end. Nothing waits on this refresh: a request that finds the token expired refreshes
/// it itself. Always at least one second.
pub fn next_check_in(now: i64, access_expires_at: i64, session_expires_at: i64) -> i64 {
    access_expires_at
        .min(session_expires_at)
        .saturating_sub(now)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: TokenTimes = TokenTimes {
        access_expires_at: 1_000,
        has_refresh_token: true,
    };

    #[test]
    fn a_token_outside_the_margin_is_used_as_is() {
        assert_eq!(decide(&T, 900, 30, &Backoff::default()), Decision::UseAsIs);
        assert_eq!(decide(&T, 969, 30, &Backoff::default()), Decision::UseAsIs);
    }

    #[test]
    fn a_token_inside_the_margin_or_expired_is_refreshed() {
        assert_eq!(decide(&T, 970, 30, &Backoff::default()), Decision::Refresh);
        assert_eq!(
            decide(&T, 5_000, 30, &Backoff::default()),
            Decision::Refresh
        );
    }

    #[test]
    fn while_backing_off_a_still_valid_token_keeps_working_and_an_expired_one_is_unavailable() {
        let b = Backoff::default().failed(980);
        assert_eq!(b.retry_at, 981);
        assert_eq!(decide(&T, 980, 30, &b), Decision::UseAsIs);
        let b = Backoff {
            failures: 3,
            retry_at: 1_010,
        };
        assert_eq!(decide(&T, 1_005, 30, &b), Decision::Unavailable);
        assert_eq!(decide(&T, 1_010, 30, &b), Decision::Refresh);
    }

    #[test]
    fn extreme_times_saturate_instead_of_overflowing() {
        let b = Backoff::default().failed(i64::MAX);
        assert_eq!(b.retry_at, i64::MAX);
        let t = TokenTimes {
            access_expires_at: i64::MIN,
            has_refresh_token: true,
        };
        assert_eq!(decide(&t, 0, 30, &Backoff::default()), Decision::Refresh);
    }

    #[test]
    fn a_session_ends_with_its_refresh_token_and_a_hostile_lifetime_saturates() {
        assert_eq!(session_end(1_000, Some(1_800), true, 1_300), 2_800);
        assert_eq!(session_end(1_000, Some(i64::MAX), true, 1_300), i64::MAX);
        assert_eq!(session_end(1_000, Some(1_800), false, 1_300), 1_300);
        assert_eq!(session_end(1_000, Some(0), true, 1_300), 1_300);
        assert_eq!(session_end(1_000, None, true, 1_300), 1_300);
    }

    #[test]
    fn back_off_doubles_up_to_thirty_seconds() {
        let mut b = Backoff::default();
        let mut delays = Vec::new();
        for _ in 0..8 {
            b = b.failed(0);
            delays.push(b.retry_at);
        }
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn an_idle_page_asks_when_the_access_token_expires_and_the_server_then_refreshes() {
        let wait = next_check_in(1_000, 1_300, 10_000);
        assert_eq!(wait, 300);
        let t = TokenTimes {
            access_expires_at: 1_300,
            has_refresh_token: true,
        };
        assert_eq!(
            decide(&t, 1_000 + wait, 30, &Backoff::default()),
            Decision::Refresh
        );
        // so the next token's wait starts then: one request per lifetime
        assert_eq!(next_check_in(1_300, 1_600, 10_000), 300);
    }

    #[test]
    fn a_page_never_waits_past_the_end_of_its_session() {
        assert_eq!(next_check_in(1_000, 1_300, 1_050), 50);
    }

    #[test]
    fn a_page_waits_at_least_a_second_even_for_expired_or_hostile_times() {
        assert_eq!(next_check_in(1_000, 900, 10_000), 1);
        assert_eq!(next_check_in(1_000, i64::MIN, i64::MIN), 1);
        assert!(next_check_in(i64::MIN, i64::MAX, i64::MAX) > 0);
    }
}
