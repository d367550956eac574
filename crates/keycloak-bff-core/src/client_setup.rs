//! What Keycloak's client must be for the library, setting by setting, in the admin console's own
//! words: the check behind `keycloak-bff client check` (and the client `keycloak-bff client
//! create` makes). A client made in the console with its defaults differs in ways that fail
//! silently: *Front channel logout* is on for every new client, and Keycloak then never calls the
//! back-channel URL, so a session ended in Keycloak stays signed in in the app. Catalogue: F
//! (sign-out from elsewhere), A (PKCE, no password grant).
//!
//! Input is the client's representation from the Admin REST API (`GET /clients?clientId=…`) and
//! the protocol mappers that reach its tokens (its own, and those of its default client scopes).

use serde_json::{json, Value};

/// The app the client is for.
#[derive(Clone, Debug)]
pub struct Expected<'a> {
    /// The client's id in Keycloak.
    pub client_id: &'a str,
    /// `auth.public_url`, without a trailing slash.
    pub public_url: &'a str,
    /// The library's route prefix (`/auth` by default).
    pub route_prefix: &'a str,
}

impl Expected<'_> {
    fn public(&self) -> &str {
        self.public_url.trim_end_matches('/')
    }

    /// The redirect URI: `<public URL><prefix>/callback`.
    pub fn callback(&self) -> String {
        format!("{}{}/callback", self.public(), self.route_prefix)
    }

    /// The back-channel logout URL: `<public URL><prefix>/backchannel-logout`.
    pub fn backchannel_logout(&self) -> String {
        format!("{}{}/backchannel-logout", self.public(), self.route_prefix)
    }

    /// Where Keycloak may send the browser after a sign-out: the app's home page.
    pub fn post_logout(&self) -> String {
        format!("{}/", self.public())
    }
}

/// One setting that differs: its name in the console, what the library needs, what is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The setting's name, as the admin console shows it.
    pub setting: &'static str,
    /// What the library needs.
    pub expected: String,
    /// What the client has.
    pub found: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: should be {}, is {}",
            self.setting, self.expected, self.found
        )
    }
}

fn on_off(v: Option<bool>) -> String {
    match v {
        Some(true) => "On".into(),
        Some(false) => "Off".into(),
        None => "not set".into(),
    }
}

fn attribute<'a>(client: &'a Value, name: &str) -> Option<&'a str> {
    client["attributes"][name].as_str()
}

fn mapper_config<'a>(mapper: &'a Value, key: &str) -> Option<&'a str> {
    mapper["config"][key].as_str()
}

/// Every setting of `client` that differs from what the library needs; empty when it is right.
pub fn check(client: &Value, mappers: &[Value], expected: &Expected) -> Vec<Finding> {
    let mut findings = switches(client);
    findings.extend(addresses(client, expected));
    findings.extend(mappers_missing(mappers, expected));
    findings
}

/// The console's on/off switches (a missing optional one counts as off).
fn switches(client: &Value) -> Vec<Finding> {
    let flag = |v: &Value| v.as_bool();
    let off_unless_set = |v: &Value| v.as_bool().or(Some(false));
    let session_required =
        attribute(client, "backchannel.logout.session.required").map(|v| v == "true");
    [
        (
            "Client authentication",
            true,
            client["publicClient"].as_bool().map(|p| !p),
        ),
        ("Standard flow", true, flag(&client["standardFlowEnabled"])),
        (
            "Direct access grants",
            false,
            off_unless_set(&client["directAccessGrantsEnabled"]),
        ),
        (
            "Implicit flow",
            false,
            off_unless_set(&client["implicitFlowEnabled"]),
        ),
        (
            "Front channel logout",
            false,
            off_unless_set(&client["frontchannelLogout"]),
        ),
        (
            "Backchannel logout session required",
            true,
            session_required,
        ),
    ]
    .into_iter()
    .filter(|(_, want, found)| *found != Some(*want))
    .map(|(setting, want, found)| Finding {
        setting,
        expected: on_off(Some(want)),
        found: on_off(found),
    })
    .collect()
}

/// PKCE, and the URLs Keycloak sends the browser and its logout calls to.
fn addresses(client: &Value, expected: &Expected) -> Vec<Finding> {
    let mut findings = Vec::new();
    let listed = |items: Vec<&str>| {
        if items.is_empty() {
            "not set".to_owned()
        } else {
            items.join(" ")
        }
    };
    for (setting, want, found) in [
        (
            "Proof Key for Code Exchange Code Challenge Method",
            "S256".to_owned(),
            attribute(client, "pkce.code.challenge.method"),
        ),
        (
            "Backchannel logout URL",
            expected.backchannel_logout(),
            attribute(client, "backchannel.logout.url"),
        ),
    ] {
        let found = found.filter(|v| !v.is_empty());
        if found != Some(want.as_str()) {
            findings.push(Finding {
                setting,
                expected: want,
                found: found.map_or_else(|| "not set".into(), str::to_owned),
            });
        }
    }
    let redirects: Vec<&str> = client["redirectUris"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !redirects.contains(&expected.callback().as_str())
        || redirects.iter().any(|r| r.contains('*'))
    {
        findings.push(Finding {
            setting: "Valid redirect URIs",
            expected: format!("{} (and no wildcard)", expected.callback()),
            found: listed(redirects),
        });
    }
    let post_logout: Vec<&str> = attribute(client, "post.logout.redirect.uris")
        .map(|v| v.split("##").filter(|u| !u.is_empty()).collect())
        .unwrap_or_default();
    if !post_logout.contains(&expected.post_logout().as_str()) {
        findings.push(Finding {
            setting: "Valid post logout redirect URIs",
            expected: expected.post_logout(),
            found: listed(post_logout),
        });
    }
    findings
}

/// The group and audience mappers the access token needs.
fn mappers_missing(mappers: &[Value], expected: &Expected) -> Vec<Finding> {
    let mut findings = Vec::new();
    let in_access_token = |m: &&Value| mapper_config(m, "access.token.claim") == Some("true");
    let groups = mappers.iter().filter(in_access_token).find(|m| {
        m["protocolMapper"] == "oidc-group-membership-mapper"
            && mapper_config(m, "claim.name") == Some("groups")
    });
    match groups {
        None => findings.push(Finding {
            setting: "Mapper \"Group Membership\" (Token Claim Name)",
            expected: "groups, added to the access token".into(),
            found: "no such mapper".into(),
        }),
        Some(m) if mapper_config(m, "full.path") != Some("true") => findings.push(Finding {
            setting: "Mapper \"Group Membership\" (Full group path)",
            expected: "On".into(),
            found: "Off".into(),
        }),
        Some(_) => {}
    }
    let audience = mappers.iter().filter(in_access_token).any(|m| {
        m["protocolMapper"] == "oidc-audience-mapper"
            && mapper_config(m, "included.client.audience") == Some(expected.client_id)
    });
    if !audience {
        findings.push(Finding {
            setting: "Mapper \"Audience\" (Included Client Audience)",
            expected: format!("{}, added to the access token", expected.client_id),
            found: "no such mapper".into(),
        });
    }
    findings
}

/// The client to create: everything [`check`] asks for (Keycloak makes its secret).
pub fn representation(expected: &Expected) -> Value {
    let mapper = |name: &str, kind: &str, config: Value| json!({ "name": name, "protocol": "openid-connect", "protocolMapper": kind, "config": config });
    json!({
        "clientId": expected.client_id,
        "protocol": "openid-connect",
        "enabled": true,
        "publicClient": false,
        "clientAuthenticatorType": "client-secret",
        "standardFlowEnabled": true,
        "implicitFlowEnabled": false,
        "directAccessGrantsEnabled": false,
        "serviceAccountsEnabled": false,
        "frontchannelLogout": false,
        "rootUrl": expected.public(),
        "baseUrl": "/",
        "redirectUris": [expected.callback()],
        "webOrigins": [],
        "attributes": {
            "pkce.code.challenge.method": "S256",
            "post.logout.redirect.uris": expected.post_logout(),
            "backchannel.logout.url": expected.backchannel_logout(),
            "backchannel.logout.session.required": "true",
            "backchannel.logout.revoke.offline.tokens": "false"
        },
        "protocolMappers": [
            mapper("groups", "oidc-group-membership-mapper", json!({
                "claim.name": "groups", "full.path": "true", "id.token.claim": "true",
                "access.token.claim": "true", "userinfo.token.claim": "true",
                "introspection.token.claim": "true"
            })),
            mapper(&format!("audience-{}", expected.client_id), "oidc-audience-mapper", json!({
                "included.client.audience": expected.client_id, "access.token.claim": "true",
                "id.token.claim": "false", "introspection.token.claim": "true"
            })),
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: Expected<'static> = Expected {
        client_id: "my-app",
        public_url: "https://app.example/",
        route_prefix: "/auth",
    };

    fn mappers_of(client: &Value) -> Vec<Value> {
        client["protocolMappers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn the_client_the_library_creates_passes_its_own_check() {
        let client = representation(&APP);
        assert_eq!(check(&client, &mappers_of(&client), &APP), []);
        assert_eq!(
            client["redirectUris"][0],
            "https://app.example/auth/callback"
        );
    }

    #[test]
    fn a_client_with_the_consoles_defaults_is_told_every_setting_in_the_consoles_words() {
        // "Create client" in the console: client authentication on, a redirect URI, the rest
        // left as the console sets it.
        let console = json!({
            "clientId": "my-app", "publicClient": false, "standardFlowEnabled": true,
            "directAccessGrantsEnabled": true, "implicitFlowEnabled": false,
            "frontchannelLogout": true, "redirectUris": ["https://app.example/*"],
            "attributes": { "backchannel.logout.session.required": "true" }
        });
        let named: Vec<&str> = check(&console, &[], &APP)
            .iter()
            .map(|f| f.setting)
            .collect();
        assert_eq!(
            named,
            [
                "Direct access grants",
                "Front channel logout",
                "Proof Key for Code Exchange Code Challenge Method",
                "Backchannel logout URL",
                "Valid redirect URIs",
                "Valid post logout redirect URIs",
                "Mapper \"Group Membership\" (Token Claim Name)",
                "Mapper \"Audience\" (Included Client Audience)",
            ]
        );
        let shown = check(&console, &[], &APP)[1].to_string();
        assert_eq!(shown, "Front channel logout: should be Off, is On");
    }

    #[test]
    fn a_public_client_and_mappers_kept_out_of_the_access_token_are_findings() {
        let mut client = representation(&APP);
        client["publicClient"] = json!(true);
        let mut mappers = mappers_of(&client);
        for m in &mut mappers {
            m["config"]["access.token.claim"] = json!("false");
        }
        let named: Vec<&str> = check(&client, &mappers, &APP)
            .iter()
            .map(|f| f.setting)
            .collect();
        assert_eq!(
            named,
            [
                "Client authentication",
                "Mapper \"Group Membership\" (Token Claim Name)",
                "Mapper \"Audience\" (Included Client Audience)",
            ]
        );
    }
}
