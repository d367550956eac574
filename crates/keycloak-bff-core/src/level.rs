//! Levels of authentication: how strongly the person signed in (`acr`), compared the way the
//! realm ranks them. Keycloak maps each `acr` value to a level (the realm's ACR → LoA map, for
//! example `password` = 1, `otp` = 2) and writes the value of the level it reached in the tokens;
//! the app names the values it uses, weakest first (`keycloak.acr_levels`). Without that list,
//! `acr` values are Keycloak's plain level numbers (`"1"`, `"2"`).
//!
//! The check runs on what came back, never on what was asked: a sign-in that asked for `otp` and
//! came back with `password` is refused (catalogue AA04, an `acr` downgrade in the callback), and
//! an `acr` this list does not name meets no level (AA05).

use crate::user::KeycloakUser;
use serde::{Deserialize, Serialize};

/// The longest `acr` value the app asks for or accepts from a query.
pub const MAX_ACR_LEN: usize = 64;

/// The realm's `acr` values as the app ranks them, weakest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcrLevels(Vec<String>);

/// A malformed list of levels (settings).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LevelsError {
    /// A value is empty, too long, or has characters outside `A-Z a-z 0-9 - _ . :`.
    #[error("{0:?} is not an acr value (letters, digits, - _ . : and at most 64 of them)")]
    Malformed(String),
    /// A value is listed twice.
    #[error("{0:?} is listed twice")]
    Repeated(String),
}

/// Whether `value` looks like an `acr` value this library sends or accepts: 1 to 64 characters
/// of `A-Z a-z 0-9 - _ . :`.
pub fn well_formed(value: &str) -> bool {
    (1..=MAX_ACR_LEN).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

impl AcrLevels {
    /// The values, weakest first; each must be [`well_formed`] and appear once.
    pub fn new(values: Vec<String>) -> Result<Self, LevelsError> {
        for (i, v) in values.iter().enumerate() {
            if !well_formed(v) {
                return Err(LevelsError::Malformed(v.clone()));
            }
            if values[..i].contains(v) {
                return Err(LevelsError::Repeated(v.clone()));
            }
        }
        Ok(Self(values))
    }

    /// The values, weakest first (empty: Keycloak's level numbers).
    pub fn values(&self) -> &[String] {
        &self.0
    }

    /// The rank of `acr`: its place in the list (1 for the first), or, without a list, the
    /// level number it is. `None` for a value the app does not know.
    pub fn rank_of(&self, acr: &str) -> Option<u32> {
        if self.0.is_empty() {
            return acr.parse::<u32>().ok().filter(|_| well_formed(acr));
        }
        self.0
            .iter()
            .position(|v| v == acr)
            .and_then(|i| u32::try_from(i + 1).ok())
    }

    /// Whether the app may ask for `acr` (a sign-in route's query): a value it ranks.
    pub fn knows(&self, acr: &str) -> bool {
        self.rank_of(acr).is_some()
    }

    /// Whether a session whose tokens say `have` meets `want`: both ranked, and `have` at least
    /// as strong. No `acr`, or one the app does not rank, meets nothing.
    pub fn meets(&self, have: Option<&str>, want: &str) -> bool {
        match (have.and_then(|h| self.rank_of(h)), self.rank_of(want)) {
            (Some(have), Some(want)) => have >= want,
            _ => false,
        }
    }
}

/// What a level-gated action decides about the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LevelCheck {
    /// Signed in at that level or stronger: go on.
    Allowed,
    /// Signed in more weakly: a sign-in at that level first.
    NeedsLevel,
    /// An administrator acts as the user (Keycloak's impersonation): the level is the
    /// administrator's sign-in, not the user's. Refused unless allowed.
    NotWhileImpersonating,
}

/// The decision for a level-gated action: an impersonated session is refused first (unless
/// `allow_impersonation`); otherwise the session's `acr` must meet `want`.
pub fn check_level(
    user: &KeycloakUser,
    levels: &AcrLevels,
    want: &str,
    allow_impersonation: bool,
) -> LevelCheck {
    if user.impersonator.is_some() && !allow_impersonation {
        LevelCheck::NotWhileImpersonating
    } else if levels.meets(user.acr.as_deref(), want) {
        LevelCheck::Allowed
    } else {
        LevelCheck::NeedsLevel
    }
}

/// The `claims` parameter of an authorization request that asks for `acr` as an essential claim
/// of the ID token (OpenID Connect Core §5.5.1.1): Keycloak then fails the sign-in rather than
/// answer with a weaker one. `acr` must be [`well_formed`], so nothing needs escaping.
pub fn essential_acr_claims(acr: &str) -> String {
    format!(r#"{{"id_token":{{"acr":{{"essential":true,"values":["{acr}"]}}}}}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> AcrLevels {
        AcrLevels::new(vec!["password".into(), "otp".into()]).expect("levels")
    }

    #[test]
    fn a_stronger_or_equal_level_meets_a_weaker_one_and_never_the_reverse() {
        let levels = demo();
        assert!(levels.meets(Some("otp"), "otp"));
        assert!(levels.meets(Some("otp"), "password"));
        assert!(levels.meets(Some("password"), "password"));
        assert!(!levels.meets(Some("password"), "otp"));
    }

    #[test]
    fn no_acr_or_an_unknown_one_meets_nothing_and_cannot_be_asked_for() {
        let levels = demo();
        assert!(!levels.meets(None, "password"));
        assert!(!levels.meets(Some("gold"), "password"));
        assert!(
            !levels.meets(Some("2"), "password"),
            "numbers only without a list"
        );
        assert!(!levels.meets(Some("otp"), "gold"));
        assert!(!levels.knows("gold"));
        assert!(levels.knows("otp"));
    }

    #[test]
    fn without_a_list_acr_values_are_keycloaks_level_numbers() {
        let levels = AcrLevels::default();
        assert!(levels.meets(Some("2"), "1"));
        assert!(!levels.meets(Some("1"), "2"));
        assert!(
            !levels.meets(Some("0"), "1"),
            "single sign-on from a cookie is level 0"
        );
        assert!(!levels.meets(Some("otp"), "1"));
        assert!(!levels.knows("+2"), "only plain digits");
    }

    #[test]
    fn an_impersonated_session_is_refused_a_level_whatever_its_acr_unless_allowed() {
        let levels = demo();
        let user = |acr: &str, by: Option<&str>| KeycloakUser {
            acr: Some(acr.to_owned()),
            impersonator: by.map(str::to_owned),
            ..KeycloakUser::default()
        };
        assert_eq!(
            check_level(&user("otp", None), &levels, "otp", false),
            LevelCheck::Allowed
        );
        assert_eq!(
            check_level(&user("password", None), &levels, "otp", false),
            LevelCheck::NeedsLevel
        );
        assert_eq!(
            check_level(&user("otp", Some("admin")), &levels, "otp", false),
            LevelCheck::NotWhileImpersonating
        );
        assert_eq!(
            check_level(&user("otp", Some("admin")), &levels, "otp", true),
            LevelCheck::Allowed
        );
    }

    #[test]
    fn a_malformed_or_repeated_value_is_refused_in_the_settings() {
        assert_eq!(
            AcrLevels::new(vec!["pass word".into()]),
            Err(LevelsError::Malformed("pass word".into()))
        );
        assert_eq!(
            AcrLevels::new(vec!["otp".into(), "otp".into()]),
            Err(LevelsError::Repeated("otp".into()))
        );
        assert!(AcrLevels::new(vec!["x".repeat(65)]).is_err());
        assert!(AcrLevels::new(vec![String::new()]).is_err());
    }

    #[test]
    fn the_claims_parameter_asks_for_an_essential_acr_of_the_id_token() {
        let claims: serde_json::Value =
            serde_json::from_str(&essential_acr_claims("otp")).expect("JSON");
        assert_eq!(claims["id_token"]["acr"]["essential"], true);
        assert_eq!(claims["id_token"]["acr"]["values"][0], "otp");
    }
}
