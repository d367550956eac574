//! The warning before Keycloak's session ends. Keycloak ends a session when its idle time or its
//! maximum lifetime runs out; the refresh token's expiry is the earlier of the two. A refresh
//! moves the idle limit, never the maximum: when a refresh leaves the session ending within the
//! warning, the maximum is reached and only a new sign-in helps.

use serde::{Deserialize, Serialize};

/// What the page says about the end of the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionNotice {
    /// Nothing to say (yet).
    Quiet,
    /// The session ends at `ends_at` unless the user stays: a refresh extends it.
    EndsSoon {
        /// When it ends, Unix seconds.
        ends_at: i64,
    },
    /// The session ends at `ends_at` and cannot be extended: sign in again.
    EndsAtMaximum {
        /// When it ends, Unix seconds.
        ends_at: i64,
    },
}

/// The notice at `now` for a session that ends at `ends_at`, `warn_before_secs` ahead (0: never
/// warn). `at_maximum`: a refresh already failed to move the end.
pub fn session_notice(
    now: i64,
    ends_at: i64,
    warn_before_secs: i64,
    at_maximum: bool,
) -> SessionNotice {
    if warn_before_secs <= 0 || ends_at - now > warn_before_secs {
        SessionNotice::Quiet
    } else if at_maximum {
        SessionNotice::EndsAtMaximum { ends_at }
    } else {
        SessionNotice::EndsSoon { ends_at }
    }
}

/// Seconds from `now` until the warning is due (0: due now), for a session ending at `ends_at`.
pub fn warning_due_in(now: i64, ends_at: i64, warn_before_secs: i64) -> i64 {
    (ends_at - warn_before_secs - now).max(0)
}

/// After a refresh at `now` that was asked for to extend the session: the maximum lifetime is
/// reached when the session still ends within the warning.
pub fn reached_maximum(now: i64, ends_at_after_refresh: i64, warn_before_secs: i64) -> bool {
    warn_before_secs > 0 && ends_at_after_refresh - now <= warn_before_secs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_far_from_its_end_gets_no_notice() {
        assert_eq!(session_notice(0, 121, 120, false), SessionNotice::Quiet);
        assert_eq!(warning_due_in(0, 121, 120), 1);
    }

    #[test]
    fn within_the_warning_the_user_is_offered_to_stay() {
        assert_eq!(
            session_notice(0, 120, 120, false),
            SessionNotice::EndsSoon { ends_at: 120 }
        );
        assert_eq!(warning_due_in(10, 120, 120), 0);
    }

    #[test]
    fn at_the_maximum_lifetime_the_notice_asks_for_a_new_sign_in() {
        assert!(reached_maximum(100, 200, 120));
        assert!(!reached_maximum(100, 230, 120));
        assert_eq!(
            session_notice(100, 200, 120, true),
            SessionNotice::EndsAtMaximum { ends_at: 200 }
        );
    }

    #[test]
    fn a_warning_of_zero_turns_the_notice_off() {
        assert_eq!(session_notice(0, 1, 0, false), SessionNotice::Quiet);
        assert!(!reached_maximum(0, 1, 0));
    }
}
