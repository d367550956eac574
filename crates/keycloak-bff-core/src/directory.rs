//! The realm's users as the admins' directory shows them, with their effective roles and groups,
//! read from Keycloak's Admin REST API by a read-only service account. Keycloak's JSON is read
//! leniently (a field of an unexpected type counts as absent); searches and pages are bounded
//! before they reach Keycloak.

use crate::account::text;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A user of the realm as the directory shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryUser {
    /// Keycloak's user id.
    pub id: String,
    /// The username.
    pub username: String,
    /// First and last name, or the username when both are empty.
    pub name: String,
    /// The e-mail address, if any.
    pub email: Option<String>,
    /// Whether the account may sign in.
    pub enabled: bool,
    /// Effective realm roles (composites expanded), without Keycloak's `default-roles-*`.
    pub realm_roles: Vec<String>,
    /// Effective roles of this app's client.
    pub client_roles: Vec<String>,
    /// Group paths.
    pub groups: Vec<String>,
}

/// One page of the directory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryPage {
    /// The search (username, name or e-mail), capped at [`MAX_SEARCH_LEN`].
    pub search: String,
    /// 0-based.
    pub page: u32,
    /// Users per page.
    pub per_page: u32,
    /// How many users match the search.
    pub total: u64,
    /// This page's users.
    pub users: Vec<DirectoryUser>,
}

impl DirectoryPage {
    /// Whether a page comes before this one.
    pub fn has_previous(&self) -> bool {
        self.page > 0
    }

    /// Whether more users match after this page.
    pub fn has_next(&self) -> bool {
        u64::from(self.page + 1) * u64::from(self.per_page) < self.total
    }
}

/// The longest search kept; the directory's default page size.
pub const MAX_SEARCH_LEN: usize = 100;
/// Users per page unless the caller asks for another size.
pub const PER_PAGE: u32 = 10;
/// The largest page asked for.
pub const MAX_PER_PAGE: u32 = 50;
/// Pages beyond this are not served (Keycloak's `first` stays small).
pub const MAX_PAGE: u32 = 1_000;

/// The search as sent to Keycloak: trimmed, control characters dropped, capped.
pub fn clean_search(search: &str) -> String {
    search
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_SEARCH_LEN)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// A user's fields from `GET /admin/realms/{realm}/users` (roles and groups come separately).
pub fn directory_user(v: &Value) -> Option<DirectoryUser> {
    let id = text(v, "id")?;
    let username = text(v, "username").unwrap_or_else(|| id.clone());
    let name = [text(v, "firstName"), text(v, "lastName")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    Some(DirectoryUser {
        name: if name.is_empty() {
            username.clone()
        } else {
            name
        },
        id,
        username,
        email: text(v, "email"),
        enabled: v.get("enabled").and_then(Value::as_bool).unwrap_or(false),
        ..DirectoryUser::default()
    })
}

/// Role names from a role-mapping answer (an array of roles), sorted, without Keycloak's
/// `default-roles-*` and `offline_access`/`uma_authorization` bookkeeping roles.
pub fn role_names(v: &Value) -> Vec<String> {
    let mut names: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| text(r, "name"))
        .filter(|n| {
            !n.starts_with("default-roles-") && n != "offline_access" && n != "uma_authorization"
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Group paths from `GET /users/{id}/groups`, sorted.
pub fn group_paths(v: &Value) -> Vec<String> {
    let mut paths: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| text(g, "path"))
        .collect();
    paths.sort();
    paths
}

/// What the directory shows of one user on its detail, which needs a stronger sign-in (the
/// demo: level `otp`): the user with roles and groups, and where they are signed in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryUserDetail {
    /// The user, roles and groups included.
    pub user: DirectoryUser,
    /// Whether Keycloak verified the e-mail address.
    pub email_verified: bool,
    /// When the account was made, Unix seconds.
    pub created_at: Option<i64>,
    /// Keycloak's required actions pending for the account (`UPDATE_PASSWORD`, …).
    pub required_actions: Vec<String>,
    /// Whether the account has an authenticator app (Keycloak's `totp`).
    pub has_authenticator: bool,
    /// The account's Keycloak sessions, most recently used first.
    pub sessions: Vec<UserSessionSummary>,
}

/// One Keycloak session of a user, as the directory's detail shows it (no session id).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSessionSummary {
    /// The address Keycloak saw.
    pub ip: String,
    /// Started, Unix seconds.
    pub started: i64,
    /// Last used, Unix seconds.
    pub last_access: i64,
    /// The clients of the session, by client id, sorted.
    pub clients: Vec<String>,
}

/// Whether `id` may name a user in an Admin API path: 1 to 64 of `A-Z a-z 0-9 -` (Keycloak's
/// ids are UUIDs). Anything else never reaches Keycloak.
pub fn user_id_ok(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The detail of a user from `GET /users/{id}` and `GET /users/{id}/sessions` (roles and groups
/// are filled in separately).
pub fn user_detail(user: &Value, sessions: &Value) -> Option<DirectoryUserDetail> {
    let millis = |v: &Value, key: &str| v.get(key).and_then(Value::as_i64).map(|ms| ms / 1000);
    let mut sessions: Vec<UserSessionSummary> = sessions
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let mut clients: Vec<String> = s
                .get("clients")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter_map(|(_, c)| c.as_str().map(str::to_owned))
                .collect();
            clients.sort();
            UserSessionSummary {
                ip: text(s, "ipAddress").unwrap_or_default(),
                started: millis(s, "start").unwrap_or(0),
                last_access: millis(s, "lastAccess").unwrap_or(0),
                clients,
            }
        })
        .collect();
    sessions.sort_by_key(|s| std::cmp::Reverse(s.last_access));
    Some(DirectoryUserDetail {
        user: directory_user(user)?,
        email_verified: user
            .get("emailVerified")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        created_at: millis(user, "createdTimestamp"),
        required_actions: user
            .get("requiredActions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect(),
        has_authenticator: user.get("totp").and_then(Value::as_bool).unwrap_or(false),
        sessions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roles_skip_keycloaks_bookkeeping_and_groups_are_paths() {
        let roles = json!([{"name": "user"}, {"name": "default-roles-demo"}, {"name": "offline_access"}, {"name": "admin"}, {"id": 1}]);
        assert_eq!(role_names(&roles), ["admin", "user"]);
        assert_eq!(
            group_paths(&json!([{"path": "/staff/editors"}, {"path": "/partners"}])),
            ["/partners", "/staff/editors"]
        );
    }

    #[test]
    fn a_directory_user_is_named_by_first_and_last_name_or_username() {
        let u = directory_user(
            &json!({"id": "u1", "username": "erin", "firstName": "Erin", "lastName": "Editor", "enabled": true}),
        );
        assert_eq!(u.as_ref().map(|u| u.name.as_str()), Some("Erin Editor"));
        let u = directory_user(&json!({"id": "u2", "username": "nora"}));
        assert_eq!(u.map(|u| (u.name, u.enabled)), Some(("nora".into(), false)));
        assert_eq!(directory_user(&json!({"username": "no-id"})), None);
    }

    #[test]
    fn a_users_detail_lists_their_sessions_newest_first_without_session_ids() {
        let user = json!({"id": "u1", "username": "otto", "enabled": true, "emailVerified": true,
            "createdTimestamp": 1_700_000_000_123_i64, "requiredActions": ["UPDATE_PASSWORD"],
            "totp": true});
        let sessions = json!([
            {"id": "s1", "ipAddress": "10.0.0.1", "start": 1_000_000, "lastAccess": 2_000_000,
             "clients": {"c1": "demo-app"}},
            {"id": "s2", "ipAddress": "10.0.0.2", "start": 1_000_000, "lastAccess": 3_000_000,
             "clients": {"c2": "other-app", "c1": "demo-app"}},
        ]);
        let d = user_detail(&user, &sessions).expect("detail");
        assert!(d.email_verified && d.has_authenticator);
        assert_eq!(d.created_at, Some(1_700_000_000));
        assert_eq!(d.required_actions, ["UPDATE_PASSWORD"]);
        assert_eq!(d.sessions[0].ip, "10.0.0.2");
        assert_eq!(d.sessions[0].clients, ["demo-app", "other-app"]);
        assert_eq!(d.sessions[1].last_access, 2_000);
        assert!(!serde_json::to_string(&d).expect("JSON").contains("s1"));
        assert_eq!(user_detail(&json!({}), &sessions), None);
    }

    #[test]
    fn only_an_id_of_plain_characters_names_a_user() {
        assert!(user_id_ok("1f7c0e9a-5b2d-4c1e-9a8b-0123456789ab"));
        for bad in ["", "../../clients", "a/b", "a?b", &"a".repeat(65)] {
            assert!(!user_id_ok(bad), "{bad}");
        }
    }

    #[test]
    fn paging_knows_its_ends_and_searches_are_cleaned() {
        let p = DirectoryPage {
            page: 0,
            per_page: 10,
            total: 10,
            ..DirectoryPage::default()
        };
        assert!(!p.has_previous() && !p.has_next());
        let p = DirectoryPage {
            page: 1,
            per_page: 10,
            total: 21,
            ..DirectoryPage::default()
        };
        assert!(p.has_previous() && p.has_next());
        assert_eq!(clean_search("  al\u{0}ice\n "), "alice");
        assert_eq!(clean_search(&"a".repeat(500)).len(), MAX_SEARCH_LEN);
    }
}
