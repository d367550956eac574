//! What the app shows from Keycloak's own APIs: a user's sessions (the Account REST API, called
//! as the user) and the realm's users with their roles and groups (the Admin REST API, called by
//! a read-only service account). Keycloak's JSON is read leniently: a field of an unexpected type
//! counts as absent, never as an error page.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One of the user's Keycloak sessions (a browser signed in to the realm).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSession {
    /// Keycloak's session id (the `sid` of its tokens).
    pub id: String,
    /// "Chrome/131.0.0 on Linux", as Keycloak recognised the browser.
    pub browser: String,
    pub ip_address: String,
    /// Unix seconds.
    pub started: i64,
    pub last_access: i64,
    pub expires: i64,
    /// The applications signed in through this session (their names, or client ids).
    pub clients: Vec<String>,
    /// The session this browser is using.
    pub current: bool,
}

/// A non-blank string field, at most 200 characters kept.
fn text(v: &Value, key: &str) -> Option<String> {
    crate::claims::string_claim(v, key).map(|s| s.chars().take(200).collect())
}

fn seconds(v: &Value, key: &str) -> i64 {
    v.get(key).and_then(Value::as_i64).unwrap_or(0)
}

/// The sessions in the answer of `GET /realms/{realm}/account/sessions/devices`: each device's
/// sessions, the current one first, then the most recently used.
pub fn sessions_from_devices(devices: &Value) -> Vec<AccountSession> {
    let mut out: Vec<AccountSession> = Vec::new();
    for device in devices.as_array().into_iter().flatten().take(100) {
        let os = text(device, "os").filter(|os| os != "Other");
        for s in device
            .get("sessions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .take(100)
        {
            let Some(id) = text(s, "id") else { continue };
            let browser = text(s, "browser")
                .or_else(|| text(device, "browser"))
                .unwrap_or_else(|| "Unknown browser".to_owned());
            out.push(AccountSession {
                id,
                browser: match &os {
                    Some(os) => format!("{browser} on {os}"),
                    None => browser,
                },
                ip_address: text(s, "ipAddress").unwrap_or_default(),
                started: seconds(s, "started"),
                last_access: seconds(s, "lastAccess"),
                expires: seconds(s, "expires"),
                clients: s
                    .get("clients")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|c| text(c, "clientName").or_else(|| text(c, "clientId")))
                    .collect(),
                current: s.get("current").and_then(Value::as_bool).unwrap_or(false),
            });
        }
    }
    out.sort_by(|a, b| {
        b.current
            .cmp(&a.current)
            .then(b.last_access.cmp(&a.last_access))
    });
    out
}

/// A session id as Keycloak makes them, safe to put in a URL path: 1 to 64 characters of
/// letters, digits, `-` and `_`.
pub fn is_session_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A user of the realm as the directory shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryUser {
    pub id: String,
    pub username: String,
    pub name: String,
    pub email: Option<String>,
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
    pub search: String,
    /// 0-based.
    pub page: u32,
    pub per_page: u32,
    /// How many users match the search.
    pub total: u64,
    pub users: Vec<DirectoryUser>,
}

impl DirectoryPage {
    pub fn has_previous(&self) -> bool {
        self.page > 0
    }

    pub fn has_next(&self) -> bool {
        u64::from(self.page + 1) * u64::from(self.per_page) < self.total
    }
}

/// The longest search kept; the directory's default page size.
pub const MAX_SEARCH_LEN: usize = 100;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sessions_are_read_from_devices_with_the_current_one_first() {
        let devices = json!([
            {"os": "Linux", "browser": "Chrome/131.0.0", "sessions": [
                {"id": "s-old", "ipAddress": "10.0.0.2", "started": 100, "lastAccess": 200,
                 "expires": 1900, "browser": "Chrome/131.0.0",
                 "clients": [{"clientId": "demo-app", "clientName": "kc-leptos demo app"}], "current": false},
                {"id": "s-me", "ipAddress": "10.0.0.1", "started": 150, "lastAccess": 160,
                 "expires": 1950, "clients": [{"clientId": "account-console"}], "current": true}
            ]},
            {"os": "Other", "sessions": [{"id": "s-new", "lastAccess": 300, "clients": "odd"}]}
        ]);
        let s = sessions_from_devices(&devices);
        let ids: Vec<&str> = s.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["s-me", "s-new", "s-old"]);
        assert_eq!(s[0].browser, "Chrome/131.0.0 on Linux");
        assert_eq!(s[0].clients, ["account-console"]);
        assert_eq!(s[2].clients, ["kc-leptos demo app"]);
        assert_eq!(s[1].browser, "Unknown browser");
        assert!(s[1].clients.is_empty());
    }

    #[test]
    fn an_answer_of_the_wrong_shape_has_no_sessions() {
        for odd in [
            json!({}),
            json!("x"),
            json!([{"sessions": {"id": 1}}]),
            json!([{"sessions": [{"id": 7}]}]),
        ] {
            assert!(sessions_from_devices(&odd).is_empty(), "{odd}");
        }
    }

    #[test]
    fn only_plain_ids_go_into_a_url() {
        assert!(is_session_id("3f2b-11aa_Z"));
        for bad in ["", "../admin", "a/b", "a?b", "a b", &"x".repeat(65)] {
            assert!(!is_session_id(bad), "{bad}");
        }
    }

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
