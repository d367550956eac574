//! Keycloak claims → [`KeycloakUser`]. Claims of an unexpected type or size count as absent: a
//! malformed `realm_access` means "no realm roles", never a panic or an error page.

use crate::user::KeycloakUser;
use serde_json::Value;

/// More entries than this in one role or group list are ignored (a token is capped in size anyway).
const MAX_ENTRIES: usize = 512;
/// A role or group name longer than this is ignored.
const MAX_NAME_LEN: usize = 255;

/// The strings of a JSON array at `path`, sorted and de-duplicated; anything else gives nothing.
fn string_list(claims: &Value, path: &[&str]) -> Vec<String> {
    let mut node = claims;
    for key in path {
        match node.get(key) {
            Some(next) => node = next,
            None => return Vec::new(),
        }
    }
    let mut out: Vec<String> = match node.as_array() {
        Some(items) => items
            .iter()
            .take(MAX_ENTRIES)
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= MAX_NAME_LEN)
            .map(str::to_owned)
            .collect(),
        None => Vec::new(),
    };
    out.sort();
    out.dedup();
    out
}

/// A non-blank string member `key` of a JSON object, trimmed.
pub(crate) fn string_claim(claims: &Value, key: &str) -> Option<String> {
    claims
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A claim holding Unix seconds, when it is a number in a plausible range.
fn time_claim(claims: &Value, key: &str) -> Option<i64> {
    claims
        .get(key)
        .and_then(Value::as_i64)
        .filter(|t| (0..=253_402_300_799).contains(t))
}

/// Who impersonates the user: Keycloak's `impersonator` mapper (`{"username": …}`) or RFC 8693's
/// `act` claim (`{"sub": …}`, set by Keycloak 26.8 and later).
fn impersonator(claims: &Value) -> Option<String> {
    let from = |key: &str, field: &str| {
        claims
            .get(key)
            .and_then(|v| v.get(field))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= MAX_NAME_LEN)
            .map(str::to_owned)
    };
    from("impersonator", "username").or_else(|| from("act", "sub"))
}

/// Builds the user from the validated access token (roles, groups, profile) and ID token (profile
/// fallback). Only roles of `client_id` count as client roles: a role of the same name on another
/// client never does.
pub fn user_from_claims(
    access: &Value,
    id: &Value,
    client_id: &str,
    session_expires_at: i64,
) -> KeycloakUser {
    let pick = |key: &str| string_claim(access, key).or_else(|| string_claim(id, key));
    let subject = pick("sub").unwrap_or_default();
    let username = pick("preferred_username").unwrap_or_else(|| subject.clone());
    let display_name = pick("name")
        .or_else(|| {
            let full = [pick("given_name"), pick("family_name")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            (!full.is_empty()).then_some(full)
        })
        .unwrap_or_else(|| username.clone());
    let mut groups = string_list(access, &["groups"]);
    if groups.is_empty() {
        groups = string_list(id, &["groups"]);
    }
    KeycloakUser {
        subject,
        username,
        display_name,
        email: pick("email"),
        realm_roles: string_list(access, &["realm_access", "roles"]),
        client_roles: string_list(access, &["resource_access", client_id, "roles"]),
        groups,
        session_expires_at,
        auth_time: time_claim(id, "auth_time").or_else(|| time_claim(access, "auth_time")),
        impersonator: impersonator(access).or_else(|| impersonator(id)),
        // The ID token's: it says how this sign-in went (the access token's may be a refresh's).
        acr: string_claim(id, "acr").or_else(|| string_claim(access, "acr")),
        amr: match string_list(id, &["amr"]) {
            amr if amr.is_empty() => string_list(access, &["amr"]),
            amr => amr,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keycloak_access_token() -> Value {
        json!({
            "sub": "0b5c-user", "preferred_username": "erin", "name": "Erin Editor",
            "email": "erin@example.test", "typ": "Bearer", "azp": "demo-app",
            "realm_access": {"roles": ["user", "default-roles-demo", "user"]},
            "resource_access": {
                "demo-app": {"roles": ["viewer", "editor"]},
                "other-app": {"roles": ["admin"]},
                "account": {"roles": ["manage-account"]}
            },
            "groups": ["/staff/editors"]
        })
    }

    #[test]
    fn realm_and_this_clients_roles_are_read_and_other_clients_roles_never_count() {
        let u = user_from_claims(&keycloak_access_token(), &json!({}), "demo-app", 99);
        assert_eq!(u.realm_roles, vec!["default-roles-demo", "user"]);
        assert_eq!(u.client_roles, vec!["editor", "viewer"]);
        assert!(!u.has_client_role("admin"));
        assert!(!u.has_realm_role("admin"));
        assert!(!u.has_client_role("manage-account"));
        assert_eq!(u.groups, vec!["/staff/editors"]);
        assert_eq!(u.session_expires_at, 99);
    }

    #[test]
    fn the_client_id_selects_whose_roles_count() {
        let u = user_from_claims(&keycloak_access_token(), &json!({}), "other-app", 0);
        assert_eq!(u.client_roles, vec!["admin"]);
    }

    #[test]
    fn profile_fields_come_from_the_access_token_then_the_id_token() {
        let u = user_from_claims(
            &json!({"sub": "s1"}),
            &json!({"sub": "s1", "preferred_username": "nora", "given_name": "Nora", "family_name": "N", "email": "n@x.test", "groups": ["/partners"]}),
            "demo-app",
            0,
        );
        assert_eq!(u.username, "nora");
        assert_eq!(u.display_name, "Nora N");
        assert_eq!(u.email.as_deref(), Some("n@x.test"));
        assert_eq!(u.groups, vec!["/partners"]);
    }

    #[test]
    fn missing_name_falls_back_to_the_username_then_the_subject() {
        let u = user_from_claims(&json!({"sub": "s2"}), &json!({}), "demo-app", 0);
        assert_eq!(u.username, "s2");
        assert_eq!(u.display_name, "s2");
        assert_eq!(u.email, None);
    }

    #[test]
    fn role_and_group_claims_of_odd_types_count_as_none() {
        for odd in [
            json!({"sub": "s", "realm_access": "admin", "resource_access": ["demo-app"], "groups": "/staff"}),
            json!({"sub": "s", "realm_access": {"roles": "admin"}, "resource_access": {"demo-app": {"roles": {"admin": true}}}, "groups": {"a": 1}}),
            json!({"sub": "s", "realm_access": {"roles": [1, null, {"x": "admin"}, ["admin"]]}, "resource_access": {"demo-app": null}, "groups": [false]}),
            json!({"sub": "s", "realm_access": null, "resource_access": 7, "groups": null}),
        ] {
            let u = user_from_claims(&odd, &json!({}), "demo-app", 0);
            assert!(u.realm_roles.is_empty(), "{odd}");
            assert!(u.client_roles.is_empty(), "{odd}");
            assert!(u.groups.is_empty(), "{odd}");
        }
    }

    #[test]
    fn auth_time_comes_from_the_id_token_and_odd_values_count_as_absent() {
        let u = user_from_claims(
            &json!({"sub": "s", "auth_time": 5}),
            &json!({"auth_time": 1_700_000_000}),
            "demo-app",
            0,
        );
        assert_eq!(u.auth_time, Some(1_700_000_000));
        for odd in [json!("1700000000"), json!(-1), json!(1.5), json!(null)] {
            let u = user_from_claims(
                &json!({"sub": "s"}),
                &json!({"auth_time": odd}),
                "demo-app",
                0,
            );
            assert_eq!(u.auth_time, None, "{odd}");
        }
    }

    #[test]
    fn an_impersonation_names_the_impersonator_and_a_normal_sign_in_names_nobody() {
        let u = user_from_claims(
            &json!({"sub": "paul", "impersonator": {"id": "a1", "username": "alice"}}),
            &json!({}),
            "demo-app",
            0,
        );
        assert_eq!(u.impersonator.as_deref(), Some("alice"));
        let u = user_from_claims(
            &json!({"sub": "paul", "act": {"sub": "a1"}}),
            &json!({}),
            "demo-app",
            0,
        );
        assert_eq!(u.impersonator.as_deref(), Some("a1"));
        let u = user_from_claims(&keycloak_access_token(), &json!({}), "demo-app", 0);
        assert_eq!(u.impersonator, None);
        let u = user_from_claims(
            &json!({"sub": "s", "impersonator": "alice"}),
            &json!({}),
            "demo-app",
            0,
        );
        assert_eq!(u.impersonator, None);
    }

    #[test]
    fn huge_role_lists_are_truncated_and_overlong_names_ignored() {
        let many: Vec<String> = (0..10_000).map(|i| format!("r{i}")).collect();
        let long = "x".repeat(10_000);
        let u = user_from_claims(
            &json!({"sub": "s", "realm_access": {"roles": many}, "groups": [long, "/ok"]}),
            &json!({}),
            "demo-app",
            0,
        );
        assert_eq!(u.realm_roles.len(), MAX_ENTRIES);
        assert_eq!(u.groups, vec!["/ok"]);
    }

    #[test]
    fn how_the_sign_in_went_comes_from_the_id_token_first() {
        let id = json!({"sub": "0b5c-user", "acr": "1", "amr": ["pwd", "otp"]});
        let access = json!({"sub": "0b5c-user", "acr": "0"});
        let u = user_from_claims(&access, &id, "demo-app", 99);
        assert_eq!(u.acr.as_deref(), Some("1"));
        assert_eq!(u.amr, ["otp", "pwd"], "sorted, as every list here");
        let u = user_from_claims(&access, &json!({}), "demo-app", 99);
        assert_eq!(
            u.acr.as_deref(),
            Some("0"),
            "the access token's when the ID token says none"
        );
        assert!(u.amr.is_empty());
    }
}
