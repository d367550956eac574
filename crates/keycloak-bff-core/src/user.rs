//! The signed-in user as the whole app sees it, and the one authorization model that the UI, the
//! server functions and the routes share. No Leptos or axum types here: this compiles on both sides.

use serde::{Deserialize, Serialize};

/// What the app knows about a signed-in person. Built on the server from the tokens Keycloak issued;
/// it never carries a token, so it is safe to send to the browser.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeycloakUser {
    /// Keycloak's user id (`sub`).
    pub subject: String,
    /// `preferred_username`.
    pub username: String,
    /// `name`, or given and family name, or the username.
    pub display_name: String,
    /// The e-mail address, if Keycloak shares it.
    pub email: Option<String>,
    /// Realm roles (`realm_access.roles`), composites already expanded by Keycloak.
    pub realm_roles: Vec<String>,
    /// Roles of this app's client only (`resource_access.<client_id>.roles`).
    pub client_roles: Vec<String>,
    /// Group paths such as `/staff/editors`.
    pub groups: Vec<String>,
    /// Unix time (seconds) at which the app session ends (Keycloak's refresh token lifetime).
    pub session_expires_at: i64,
    /// Unix time (seconds) at which the person last proved who they are to Keycloak (`auth_time`):
    /// a sign-in with the password, not a refresh or a single sign-on from another app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// The username of the administrator who impersonates this user from Keycloak's admin
    /// console (`impersonator.username`, or the `act` claim), when one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impersonator: Option<String>,
    /// How strongly the sign-in proved who the person is (`acr`): Keycloak's level (`1` a sign-in
    /// with the credentials, `0` from its session cookie) or the name of the realm's level map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// How the person signed in (`amr`, when the realm's client scopes put it in the tokens:
    /// `pwd`, `otp`, `hwk` for a passkey or security key…; sorted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
}

impl KeycloakUser {
    /// Whether the user has this realm role.
    pub fn has_realm_role(&self, role: &str) -> bool {
        self.realm_roles.iter().any(|r| r == role)
    }

    /// Whether the user has this role of the app's client.
    pub fn has_client_role(&self, role: &str) -> bool {
        self.client_roles.iter().any(|r| r == role)
    }

    /// Membership of the group at `path`; with `include_subgroups`, membership of any group below
    /// it counts too (`/staff` covers `/staff/editors`, never `/staffing`).
    pub fn in_group(&self, path: &str, include_subgroups: bool) -> bool {
        self.groups_within(path, include_subgroups).next().is_some()
    }

    /// The user's groups that are the group at `path` or, with `include_subgroups`, below it.
    /// An empty path (`""`, `"/"`) names no group: it matches nothing, never every group.
    pub fn groups_within<'a>(
        &'a self,
        path: &'a str,
        include_subgroups: bool,
    ) -> impl Iterator<Item = &'a String> + 'a {
        let path = path.trim_end_matches('/');
        self.groups.iter().filter(move |g| {
            !path.is_empty()
                && (g.as_str() == path
                    || (include_subgroups
                        && g.len() > path.len()
                        && g.starts_with(path)
                        && g.as_bytes().get(path.len()) == Some(&b'/')))
        })
    }
}

/// What a page, a component or a server function requires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rule {
    /// Anyone signed in.
    SignedIn,
    /// A realm role.
    RealmRole(String),
    /// A role of this app's client.
    ClientRole(String),
    /// Membership of a group, given by its full path.
    Group {
        /// The group's full path (`/staff/editors`).
        path: String,
        /// Whether members of its subgroups count too.
        include_subgroups: bool,
    },
    /// Any one of the rules.
    AnyOf(Vec<Rule>),
}

/// The answer of a rule for a (possibly absent) user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The user may.
    Allowed,
    /// No one is signed in: HTTP 401, or a redirect to the login for a page.
    NotSignedIn,
    /// Signed in without what the rule needs: HTTP 403.
    Forbidden,
}

impl Rule {
    /// A rule: has this realm role.
    pub fn realm_role(role: &str) -> Self {
        Rule::RealmRole(role.to_owned())
    }

    /// A rule: has this role of the app's client.
    pub fn client_role(role: &str) -> Self {
        Rule::ClientRole(role.to_owned())
    }

    /// A rule: is in this group (by full path), or in one of its subgroups when asked.
    pub fn group(path: &str, include_subgroups: bool) -> Self {
        Rule::Group {
            path: path.to_owned(),
            include_subgroups,
        }
    }

    fn holds_for(&self, user: &KeycloakUser) -> bool {
        match self {
            Rule::SignedIn => true,
            Rule::RealmRole(r) => user.has_realm_role(r),
            Rule::ClientRole(r) => user.has_client_role(r),
            Rule::Group {
                path,
                include_subgroups,
            } => user.in_group(path, *include_subgroups),
            Rule::AnyOf(rules) => rules.iter().any(|r| r.holds_for(user)),
        }
    }

    /// What this rule answers for `user` (none: nobody signed in).
    pub fn check(&self, user: Option<&KeycloakUser>) -> Access {
        match user {
            None => Access::NotSignedIn,
            Some(u) if self.holds_for(u) => Access::Allowed,
            Some(_) => Access::Forbidden,
        }
    }

    /// Whether this rule lets `user` in.
    pub fn allows(&self, user: Option<&KeycloakUser>) -> bool {
        self.check(user) == Access::Allowed
    }
}

/// Whether an open page must show `heard` instead of the user it shows: someone else, other roles
/// or groups, a new sign-in, an impersonation begun or ended, signed in or out. Not when only the
/// session's end moved, which every refresh does: re-rendering the gated parts of the page for it
/// would drop what they hold (a list just updated, an answer on screen).
pub fn shown_user_changes(shown: Option<&KeycloakUser>, heard: Option<&KeycloakUser>) -> bool {
    match (shown, heard) {
        (Some(shown), Some(heard)) => {
            let moved_end_only = KeycloakUser {
                session_expires_at: heard.session_expires_at,
                ..shown.clone()
            };
            moved_end_only != *heard
        }
        (shown, heard) => shown.is_some() != heard.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(realm: &[&str], client: &[&str], groups: &[&str]) -> KeycloakUser {
        KeycloakUser {
            subject: "s".into(),
            username: "u".into(),
            display_name: "U".into(),
            email: None,
            realm_roles: realm.iter().map(|s| s.to_string()).collect(),
            client_roles: client.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            session_expires_at: 0,
            ..KeycloakUser::default()
        }
    }

    #[test]
    fn nobody_signed_in_is_not_signed_in_for_every_rule() {
        for rule in [
            Rule::SignedIn,
            Rule::realm_role("admin"),
            Rule::client_role("editor"),
            Rule::group("/staff", true),
        ] {
            assert_eq!(rule.check(None), Access::NotSignedIn);
        }
    }

    #[test]
    fn a_realm_role_does_not_satisfy_a_client_role_of_the_same_name() {
        let u = user(&["editor"], &[], &[]);
        assert_eq!(
            Rule::client_role("editor").check(Some(&u)),
            Access::Forbidden
        );
        assert_eq!(Rule::realm_role("editor").check(Some(&u)), Access::Allowed);
    }

    #[test]
    fn a_client_role_does_not_satisfy_a_realm_role_of_the_same_name() {
        let u = user(&[], &["admin"], &[]);
        assert_eq!(Rule::realm_role("admin").check(Some(&u)), Access::Forbidden);
    }

    #[test]
    fn a_group_rule_with_an_empty_path_allows_no_one() {
        let u = user(&[], &[], &["/staff", "/staff/editors", "/other"]);
        for path in ["", "/", "//"] {
            assert!(!Rule::group(path, true).allows(Some(&u)), "{path:?}");
            assert!(!Rule::group(path, false).allows(Some(&u)), "{path:?}");
            assert_eq!(u.groups_within(path, true).count(), 0, "{path:?}");
        }
    }

    #[test]
    fn group_rules_cover_subgroups_only_when_asked_and_never_name_prefixes() {
        let u = user(&[], &[], &["/staff/editors"]);
        assert!(Rule::group("/staff", true).allows(Some(&u)));
        assert!(!Rule::group("/staff", false).allows(Some(&u)));
        assert!(Rule::group("/staff/editors", false).allows(Some(&u)));
        assert!(!Rule::group("/staff/edit", true).allows(Some(&u)));
        let v = user(&[], &[], &["/staffing"]);
        assert!(!Rule::group("/staff", true).allows(Some(&v)));
        let w = user(
            &[],
            &[],
            &["/partners", "/staff", "/staff/editors", "/staffing"],
        );
        let within: Vec<&String> = w.groups_within("/staff", true).collect();
        assert_eq!(within, ["/staff", "/staff/editors"]);
    }

    #[test]
    fn any_of_allows_when_one_rule_holds() {
        let rule = Rule::AnyOf(vec![Rule::client_role("editor"), Rule::realm_role("admin")]);
        assert!(rule.allows(Some(&user(&["admin"], &[], &[]))));
        assert!(rule.allows(Some(&user(&[], &["editor"], &[]))));
        assert_eq!(
            rule.check(Some(&user(&["user"], &["viewer"], &[]))),
            Access::Forbidden
        );
    }

    #[test]
    fn a_refresh_that_only_moves_the_session_end_does_not_change_the_shown_user() {
        let shown = KeycloakUser {
            subject: "s".into(),
            realm_roles: vec!["admin".into()],
            session_expires_at: 100,
            ..KeycloakUser::default()
        };
        let refreshed = KeycloakUser {
            session_expires_at: 400,
            ..shown.clone()
        };
        assert!(!shown_user_changes(Some(&shown), Some(&refreshed)));
        let fewer_roles = KeycloakUser {
            realm_roles: vec![],
            ..refreshed.clone()
        };
        assert!(shown_user_changes(Some(&shown), Some(&fewer_roles)));
        let impersonated = KeycloakUser {
            impersonator: Some("alice".into()),
            ..shown.clone()
        };
        assert!(shown_user_changes(Some(&shown), Some(&impersonated)));
        assert!(shown_user_changes(Some(&shown), None));
        assert!(shown_user_changes(None, Some(&shown)));
        assert!(!shown_user_changes(None, None));
    }
}
