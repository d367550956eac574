//! Step-up authentication and the kinds of sign-in: a dangerous action needs a sign-in with the
//! password within the last few minutes (`auth_time`), and otherwise a new sign-in on Keycloak's
//! page (`prompt=login`) that comes back to the action. A silent sign-in (`prompt=none`) asks
//! Keycloak whether the browser is already signed in there, without showing anything.

use crate::user::KeycloakUser;
use serde::{Deserialize, Serialize};

/// How a sign-in asks Keycloak (the authorization request's `prompt`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    /// Keycloak decides: its login page, or single sign-on when it knows the browser.
    #[default]
    Normal,
    /// The password again, whatever Keycloak's session (`prompt=login`): a step-up.
    Login,
    /// No page at all (`prompt=none`): signed in if Keycloak knows the browser, else an error
    /// that brings the browser back signed out.
    Silent,
}

impl Prompt {
    /// The `prompt` query value of the sign-in route (`login`, `none`); anything else is normal.
    pub fn from_query(value: Option<&str>) -> Self {
        match value {
            Some("login") => Prompt::Login,
            Some("none") => Prompt::Silent,
            _ => Prompt::Normal,
        }
    }

    /// The value sent to Keycloak as `prompt`, if any.
    pub fn as_param(self) -> Option<&'static str> {
        match self {
            Prompt::Normal => None,
            Prompt::Login => Some("login"),
            Prompt::Silent => Some("none"),
        }
    }
}

/// The user proved who they are (a sign-in with the password, not a refresh or single sign-on)
/// at most `max_age_secs` before `now`. An `auth_time` in the future beyond `leeway_secs`, or
/// none at all, never counts.
pub fn signed_in_recently(
    user: &KeycloakUser,
    now: i64,
    max_age_secs: i64,
    leeway_secs: i64,
) -> bool {
    user.auth_time
        .is_some_and(|t| t <= now + leeway_secs && now - t <= max_age_secs)
}

/// What a dangerous action (step-up) decides about the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepUp {
    /// Recent enough: go on.
    Allowed,
    /// No sign-in with the password within the window: Keycloak asks for it again.
    NeedsRecentSignIn,
    /// An administrator acts as the user (Keycloak's impersonation): their fresh `auth_time` is
    /// the administrator's sign-in, not the user's password. Refused unless allowed.
    NotWhileImpersonating,
}

/// The step-up decision: an impersonated session is refused first (unless
/// `allow_impersonation`), whatever its `auth_time`; otherwise [`signed_in_recently`].
pub fn step_up(
    user: &KeycloakUser,
    now: i64,
    max_age_secs: i64,
    leeway_secs: i64,
    allow_impersonation: bool,
) -> StepUp {
    if user.impersonator.is_some() && !allow_impersonation {
        StepUp::NotWhileImpersonating
    } else if signed_in_recently(user, now, max_age_secs, leeway_secs) {
        StepUp::Allowed
    } else {
        StepUp::NeedsRecentSignIn
    }
}

/// After a step-up sign-in, the new tokens must show a sign-in made for it: an `auth_time` no
/// older than the start of that sign-in (less the clock leeway). Keycloak that ignored
/// `prompt=login` and answered from its session would fail this.
pub fn step_up_satisfied(user: &KeycloakUser, started_at: i64, leeway_secs: i64) -> bool {
    user.auth_time
        .is_some_and(|t| t + leeway_secs >= started_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed_in_at(t: Option<i64>) -> KeycloakUser {
        KeycloakUser {
            auth_time: t,
            ..KeycloakUser::default()
        }
    }

    #[test]
    fn an_impersonated_session_is_refused_step_up_whatever_its_sign_in_unless_allowed() {
        let now = 10_000;
        let acting = KeycloakUser {
            auth_time: Some(now),
            impersonator: Some("alice".into()),
            ..KeycloakUser::default()
        };
        assert_eq!(
            step_up(&acting, now, 300, 30, false),
            StepUp::NotWhileImpersonating
        );
        assert_eq!(step_up(&acting, now, 300, 30, true), StepUp::Allowed);
        let stale_acting = KeycloakUser {
            auth_time: Some(now - 3_600),
            ..acting
        };
        assert_eq!(
            step_up(&stale_acting, now, 300, 30, true),
            StepUp::NeedsRecentSignIn
        );
        assert_eq!(
            step_up(&signed_in_at(Some(now - 10)), now, 300, 30, false),
            StepUp::Allowed
        );
        assert_eq!(
            step_up(&signed_in_at(Some(now - 3_600)), now, 300, 30, false),
            StepUp::NeedsRecentSignIn
        );
    }

    #[test]
    fn a_sign_in_within_the_window_counts_and_an_older_one_does_not() {
        let now = 10_000;
        assert!(signed_in_recently(
            &signed_in_at(Some(now - 300)),
            now,
            300,
            30
        ));
        assert!(!signed_in_recently(
            &signed_in_at(Some(now - 301)),
            now,
            300,
            30
        ));
    }

    #[test]
    fn no_auth_time_or_one_far_in_the_future_never_counts() {
        assert!(!signed_in_recently(&signed_in_at(None), 10_000, 300, 30));
        assert!(!signed_in_recently(
            &signed_in_at(Some(10_031)),
            10_000,
            300,
            30
        ));
        assert!(signed_in_recently(
            &signed_in_at(Some(10_030)),
            10_000,
            300,
            30
        ));
    }

    #[test]
    fn a_step_up_needs_a_sign_in_made_after_it_started() {
        assert!(step_up_satisfied(&signed_in_at(Some(1_000)), 1_000, 0));
        assert!(!step_up_satisfied(&signed_in_at(Some(900)), 1_000, 30));
        assert!(!step_up_satisfied(&signed_in_at(None), 1_000, 30));
    }

    #[test]
    fn only_login_and_none_are_prompts_the_route_takes() {
        assert_eq!(Prompt::from_query(Some("login")), Prompt::Login);
        assert_eq!(Prompt::from_query(Some("none")), Prompt::Silent);
        for other in [
            None,
            Some(""),
            Some("consent"),
            Some("select_account"),
            Some("LOGIN"),
        ] {
            assert_eq!(Prompt::from_query(other), Prompt::Normal);
        }
        assert_eq!(Prompt::Normal.as_param(), None);
    }
}
