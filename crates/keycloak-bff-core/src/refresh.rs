//! When to refresh: pure decisions about a session's tokens at a given time.

/// The times that decide about a refresh (Unix seconds).
#[derive(Debug, Clone, Copy)]
pub struct TokenTimes {
    /// When the access token expires, Unix seconds.
    pub access_expires_at: i64,
    /// Whether the session holds a refresh token.
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
    /// Failed attempts in a row.
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

/// What to do with a session's tokens at `now`, refreshing `margin` seconds before expiry.
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

/// How an open page keeps Keycloak's session alive (`session.keep_alive`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepAlive {
    /// The page's timer refreshes only when the user did something since the last refresh
    /// (input, a page load, a server function): an unattended tab lets Keycloak's idle limit end
    /// the session, after the warning.
    #[default]
    Activity,
    /// The page's timer refreshes whether or not anyone is there: an open tab keeps the session
    /// until Keycloak's maximum lifetime.
    Always,
}

/// How long before the expiry warning would show a kept-alive session is refreshed, seconds.
pub const KEEP_ALIVE_LEAD_SECS: i64 = 10;

/// Seconds before the session's end at which a page that keeps it alive refreshes: before the
/// warning shows (`warning_secs` ahead of the end), or, when the session is already that close,
/// halfway to the end (at most [`KEEP_ALIVE_LEAD_SECS`] before it).
fn keep_alive_before_end(remaining: i64, warning_secs: i64) -> i64 {
    let before_warning = warning_secs.max(0).saturating_add(KEEP_ALIVE_LEAD_SECS);
    if remaining > before_warning {
        before_warning
    } else {
        KEEP_ALIVE_LEAD_SECS.min(remaining / 2)
    }
}

/// Seconds until an open page should ask again (`now`, the access token's expiry and the
/// session's end in Unix seconds; the expiry warning's lead): when the access token expires, or,
/// sooner, just before the warning of the session's end would show, so that a page kept alive
/// refreshes before Keycloak's idle limit ([`keep_alive_due`]). One request per access-token
/// lifetime (or per idle period, whichever is shorter), never past the session's end. Nothing
/// waits on it: a request that finds the token expired refreshes it itself. At least one second.
pub fn next_check_in(
    now: i64,
    access_expires_at: i64,
    session_expires_at: i64,
    warning_secs: i64,
) -> i64 {
    let remaining = session_expires_at.saturating_sub(now);
    let keep_alive_at =
        session_expires_at.saturating_sub(keep_alive_before_end(remaining, warning_secs));
    access_expires_at
        .min(keep_alive_at)
        .min(session_expires_at)
        .saturating_sub(now)
        .max(1)
}

/// Seconds until an idle page (nothing done since the last refresh) asks again: at the
/// session's end, unless the user does something first. At least one second.
pub fn next_check_in_idle(now: i64, session_expires_at: i64) -> i64 {
    session_expires_at.saturating_sub(now).max(1)
}

/// A session refreshed less than this long ago is not refreshed again to keep it alive.
pub const KEEP_ALIVE_MIN_INTERVAL_SECS: i64 = 30;

/// Whether a request of the session (a page, a server function, the page's timer after
/// activity) must refresh now although the access token is good, to keep Keycloak's session
/// alive: its idle end is near enough that the warning would soon show (the page's timer comes
/// then, [`next_check_in`]), and the last refresh (`refreshed_at`) was not moments ago (a realm
/// whose idle limit is shorter than the warning would otherwise refresh on every request).
pub fn keep_alive_due(
    now: i64,
    session_expires_at: i64,
    refreshed_at: i64,
    warning_secs: i64,
) -> bool {
    now.saturating_sub(refreshed_at) >= KEEP_ALIVE_MIN_INTERVAL_SECS
        && session_expires_at.saturating_sub(now)
            <= warning_secs.max(0).saturating_add(KEEP_ALIVE_LEAD_SECS)
}

/// Whether the page's timer refreshes (keeps Keycloak's session alive) or only asks how the
/// session stands: always with [`KeepAlive::Always`]; with [`KeepAlive::Activity`], only when
/// the last activity (milliseconds, the browser's clock) came after the last refresh heard.
pub fn timer_refreshes(keep_alive: KeepAlive, last_activity_ms: f64, last_refresh_ms: f64) -> bool {
    keep_alive == KeepAlive::Always || last_activity_ms > last_refresh_ms
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
    fn an_open_page_asks_when_the_access_token_expires_and_the_server_then_refreshes() {
        let wait = next_check_in(1_000, 1_300, 10_000, 120);
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
        assert_eq!(next_check_in(1_300, 1_600, 10_000, 120), 300);
    }

    #[test]
    fn a_page_keeping_the_session_alive_asks_before_the_warning_and_the_server_refreshes_then() {
        // An idle end of 30 minutes and a long access token: just before the warning would show.
        assert_eq!(next_check_in(0, 3_600, 1_800, 120), 1_800 - 130);
        assert!(keep_alive_due(1_800 - 130, 1_800, 0, 120));
        assert!(!keep_alive_due(1_800 - 131, 1_800, 0, 120));
        // A 5-minute access token comes first.
        assert_eq!(next_check_in(0, 300, 1_800, 120), 300);
    }

    #[test]
    fn a_session_already_within_the_warning_is_asked_about_halfway_to_its_end_and_never_in_a_loop()
    {
        // Keycloak's idle limit (130 s) no longer than the warning and its lead: right after each
        // refresh, the page waits until 10 s before the end, not a second.
        assert_eq!(next_check_in(1_000, 1_600, 1_130, 120), 120);
        assert!(keep_alive_due(1_120, 1_130, 1_000, 120));
        assert_eq!(next_check_in(1_000, 5_000, 1_100, 120), 90);
        // Close to the end (Keycloak's maximum caps it), the waits shrink but stay whole seconds.
        assert_eq!(next_check_in(1_000, 5_000, 1_010, 120), 5);
        assert_eq!(next_check_in(1_000, 5_000, 1_002, 120), 1);
    }

    #[test]
    fn a_session_refreshed_moments_ago_is_not_refreshed_again_to_keep_it_alive() {
        // Keycloak's idle limit (130 s) within the warning and its lead: every request would
        // otherwise refresh.
        assert!(!keep_alive_due(1_000, 1_130, 1_000, 120));
        assert!(!keep_alive_due(1_029, 1_130, 1_000, 120));
        assert!(keep_alive_due(1_030, 1_130, 1_000, 120));
    }

    #[test]
    fn an_idle_page_asks_again_only_at_the_end() {
        assert_eq!(next_check_in_idle(1_000, 1_130), 130);
        assert_eq!(next_check_in_idle(1_000, 900), 1);
    }

    #[test]
    fn the_timer_keeps_the_session_alive_only_after_activity_unless_always() {
        assert!(timer_refreshes(KeepAlive::Activity, 2_000.0, 1_000.0));
        assert!(!timer_refreshes(KeepAlive::Activity, 1_000.0, 2_000.0));
        assert!(!timer_refreshes(KeepAlive::Activity, 1_000.0, 1_000.0));
        assert!(timer_refreshes(KeepAlive::Always, 1_000.0, 2_000.0));
        assert_eq!(KeepAlive::default(), KeepAlive::Activity);
    }

    #[test]
    fn a_page_never_waits_past_the_end_of_its_session() {
        assert_eq!(next_check_in(1_000, 1_300, 1_050, 0), 40);
        assert!(next_check_in(1_000, 1_300, 1_050, 120) <= 50);
    }

    #[test]
    fn a_page_waits_at_least_a_second_even_for_expired_or_hostile_times() {
        assert_eq!(next_check_in(1_000, 900, 10_000, 120), 1);
        assert_eq!(next_check_in(1_000, i64::MIN, i64::MIN, 120), 1);
        assert!(next_check_in(i64::MIN, i64::MAX, i64::MAX, i64::MAX) > 0);
        assert!(next_check_in(0, i64::MAX, i64::MAX, i64::MIN) > 0);
    }
}
