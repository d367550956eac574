//! What the app shows of a user's Keycloak sessions and sign-in methods (the Account REST API,
//! called as the user; the realm's users are in `directory.rs`). Keycloak's JSON is read leniently: a field of an
//! unexpected type counts as absent, never as an error page.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One of the user's Keycloak sessions (a browser signed in to the realm).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSession {
    /// On the server, Keycloak's session id (the `sid` of its tokens); in what the browser gets
    /// (`server::my_sessions`), an opaque handle of it: a `sid` is a front-channel logout
    /// credential and never leaves the server.
    pub id: String,
    /// "Chrome/131.0.0 on Linux", as Keycloak recognised the browser.
    pub browser: String,
    /// The address Keycloak last saw the browser at.
    pub ip_address: String,
    /// Unix seconds.
    pub started: i64,
    /// Unix seconds.
    pub last_access: i64,
    /// When the session ends, Unix seconds.
    pub expires: i64,
    /// The applications signed in through this session (their names, or client ids).
    pub clients: Vec<String>,
    /// The session this browser is using.
    pub current: bool,
}

/// A non-blank string field, at most 200 characters kept.
pub(crate) fn text(v: &Value, key: &str) -> Option<String> {
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

/// One kind of the user's sign-in methods, as Keycloak's Account API lists them
/// (`GET /realms/{realm}/account/credentials`): what it is, and the user's credentials of it by
/// their labels. No secret, no credential data: only what the user would see in Keycloak's own
/// account console.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInMethod {
    /// Keycloak's credential type: `password`, `otp`, `webauthn` (a security key as a second
    /// factor) or `webauthn-passwordless` (a passkey).
    pub kind: String,
    /// Its name for people: "Password", "Authenticator app", "Security key", "Passkey".
    pub name: String,
    /// The user's credentials of this kind, by label (Keycloak's `userLabel`, or the kind's name
    /// when the user gave none). Empty: not set up.
    pub labels: Vec<String>,
}

/// The user's sign-in methods in the answer of `GET /realms/{realm}/account/credentials`: the
/// known kinds (password, authenticator app, passkey, security key), in that order, each with the
/// user's credentials of it. A kind Keycloak does not list (it lists those its flows use, and
/// those the user has) is there with none: not set up.
pub fn sign_in_methods(credentials: &Value) -> Vec<SignInMethod> {
    const KNOWN: [(&str, &str); 4] = [
        ("password", "Password"),
        ("otp", "Authenticator app"),
        ("webauthn-passwordless", "Passkey"),
        ("webauthn", "Security key"),
    ];
    let listed = credentials
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    KNOWN
        .iter()
        .map(|(kind, name)| {
            let labels = listed
                .iter()
                .find(|c| text(c, "type").as_deref() == Some(*kind))
                .and_then(|c| c.get("userCredentialMetadatas"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .take(50)
                .map(|m| {
                    m.get("credential")
                        .and_then(|c| text(c, "userLabel"))
                        .unwrap_or_else(|| (*name).to_owned())
                })
                .collect();
            SignInMethod {
                kind: (*kind).to_owned(),
                name: (*name).to_owned(),
                labels,
            }
        })
        .collect()
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
    fn sign_in_methods_are_the_known_kinds_with_their_labels_and_no_secret() {
        let answer = serde_json::json!([
            {"type": "password", "userCredentialMetadatas": [
                {"credential": {"id": "1", "type": "password", "createdDate": 1, "credentialData": "{\"hashIterations\":5}"}}
            ]},
            {"type": "otp", "userCredentialMetadatas": []},
            {"type": "webauthn-passwordless", "userCredentialMetadatas": [
                {"credential": {"id": "2", "userLabel": "My laptop", "credentialData": "{\"aaguid\":\"x\"}"}}
            ]},
            {"type": "recovery-authn-codes", "userCredentialMetadatas": [{"credential": {"id": "3"}}]},
            {"type": 7}
        ]);
        let methods = sign_in_methods(&answer);
        let kinds: Vec<&str> = methods.iter().map(|m| m.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["password", "otp", "webauthn-passwordless", "webauthn"]
        );
        assert_eq!(methods[0].labels, ["Password"]);
        assert!(
            methods[1].labels.is_empty(),
            "an authenticator app not set up"
        );
        assert_eq!(methods[2].name, "Passkey");
        assert_eq!(methods[2].labels, ["My laptop"]);
        let shown = serde_json::to_string(&methods).unwrap_or_default();
        assert!(!shown.contains("hashIterations") && !shown.contains("aaguid"));
        assert!(
            methods[3].labels.is_empty(),
            "a kind Keycloak did not list: not set up"
        );
        let nothing = sign_in_methods(&serde_json::json!({"error": "x"}));
        assert!(nothing.iter().all(|m| m.labels.is_empty()));
    }
}
