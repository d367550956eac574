//! The answer of the silent-refresh route (`POST <prefix>/refresh`): one typed contract that the
//! server writes and the browser's session watcher reads. It never carries a token.

use crate::user::KeycloakUser;
use serde::{Deserialize, Serialize};

/// What the server says about the browser's session. The HTTP status says the outcome (200 signed
/// in, 401 signed out, 503 Keycloak unreachable with the session kept, 500 a fault of the
/// server); the body says the details.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStatus {
    /// Known to be signed in, with the user and expiries below (200 only). `false` says nothing
    /// more: the HTTP status tells a sign-out (401) from a session kept while Keycloak cannot be
    /// reached (503).
    pub signed_in: bool,
    /// When the access token expires (Unix seconds); signed in only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_expires_at: Option<i64>,
    /// When the session ends (Keycloak's refresh-token lifetime); signed in only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The signed-in user, if any.
    pub user: Option<KeycloakUser>,
    /// Seconds until the page should ask again ([`crate::refresh::next_check_in`]): when the
    /// access token expires; signed in only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_in_secs: Option<i64>,
    /// Set when a refresh asked for to extend the session left it ending within the warning:
    /// Keycloak's maximum lifetime is reached, only a new sign-in helps.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub at_maximum: bool,
    /// A short reason when the session's state could not be decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SessionStatus {
    /// Signed in as `user` at `now`, the access token expiring at `access_expires_at`; the page
    /// asks again as [`crate::refresh::next_check_in`] says for a warning `warning_secs` ahead.
    pub fn signed_in(
        user: KeycloakUser,
        access_expires_at: i64,
        now: i64,
        warning_secs: i64,
    ) -> Self {
        SessionStatus {
            signed_in: true,
            access_expires_at: Some(access_expires_at),
            session_expires_at: Some(user.session_expires_at),
            check_in_secs: Some(crate::refresh::next_check_in(
                now,
                access_expires_at,
                user.session_expires_at,
                warning_secs,
            )),
            user: Some(user),
            at_maximum: false,
            error: None,
        }
    }

    /// The answer for a browser with no session.
    pub fn signed_out() -> Self {
        SessionStatus {
            signed_in: false,
            access_expires_at: None,
            session_expires_at: None,
            check_in_secs: None,
            user: None,
            at_maximum: false,
            error: None,
        }
    }

    /// Keycloak cannot be reached: the session is kept (the answer is a 503, not a 401), but
    /// nothing about it is known now, so nothing is claimed.
    pub fn unavailable() -> Self {
        SessionStatus {
            error: Some("identity provider unavailable; the session is kept".to_owned()),
            ..SessionStatus::signed_out()
        }
    }

    /// The server could not read the session.
    pub fn failed() -> Self {
        SessionStatus {
            error: Some("internal error".to_owned()),
            ..SessionStatus::signed_out()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_out_answer_says_only_that() {
        let json = serde_json::to_value(SessionStatus::signed_out()).expect("json");
        assert_eq!(json, serde_json::json!({"signed_in": false}));
    }

    #[test]
    fn an_unavailable_answer_claims_nothing_about_the_session_it_keeps() {
        let json = serde_json::to_value(SessionStatus::unavailable()).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "signed_in": false,
                "error": "identity provider unavailable; the session is kept"
            })
        );
    }

    #[test]
    fn a_signed_in_answer_round_trips_with_the_user_and_both_expiries() {
        let user = KeycloakUser {
            subject: "s".into(),
            username: "u".into(),
            display_name: "U".into(),
            email: None,
            realm_roles: vec![],
            client_roles: vec!["viewer".into()],
            groups: vec![],
            session_expires_at: 2_000,
            ..KeycloakUser::default()
        };
        let status = SessionStatus::signed_in(user, 1_000, 700, 120);
        let text = serde_json::to_string(&status).expect("json");
        assert!(text.contains(r#""check_in_secs":300"#), "{text}");
        assert!(text.contains(r#""access_expires_at":1000"#), "{text}");
        assert!(text.contains(r#""session_expires_at":2000"#), "{text}");
        assert_eq!(
            serde_json::from_str::<SessionStatus>(&text).ok(),
            Some(status)
        );
    }
}
