//! The session cookie's settings, decided from the app's public URL (catalogue G02).

/// How the session cookie is set. `HttpOnly`, `SameSite=Lax` (the sign-in ends in a navigation
/// that starts on Keycloak's site: the callback's redirect to the page must carry the new session
/// cookie, which `Strict` would hold back), `Path=/` and no `Domain` always; `Secure` and the
/// `__Host-` prefix whenever the public URL is https. (Started sign-ins are not in a session:
/// they travel in sealed cookies of their own, see `login_cookie_prefix`.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookiePolicy {
    /// The cookie's name (`__Host-` prefixed over https).
    pub name: String,
    /// `Secure`: whenever the public URL is https.
    pub secure: bool,
    /// `HttpOnly`: always.
    pub http_only: bool,
    /// `Path`: always `/`.
    pub path: &'static str,
}

/// The session cookie's attributes for a public URL (https or not) and a base name.
pub fn policy(public_url_is_https: bool, base_name: &str) -> CookiePolicy {
    let base = base_name
        .trim_start_matches("__Host-")
        .trim_start_matches("__Secure-");
    CookiePolicy {
        name: if public_url_is_https {
            format!("__Host-{base}")
        } else {
            base.to_owned()
        },
        secure: public_url_is_https,
        http_only: true,
        path: "/",
    }
}

impl CookiePolicy {
    /// The `Set-Cookie` value that makes the browser drop the session cookie now, with the
    /// attributes it was set with (a `__Host-` cookie is only removed by a `Secure`, `Path=/` one).
    pub fn removal(&self) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{}=; Path={}; Max-Age=0; HttpOnly; SameSite=Lax{secure}",
            self.name, self.path
        )
    }
}

/// The start of the name of every pending-login cookie (one per sign-in started, scoped to the
/// auth routes, so `__Secure-` rather than `__Host-` under https): `<base>_login_`.
pub fn login_cookie_prefix(public_url_is_https: bool, base_name: &str) -> String {
    let base = base_name
        .trim_start_matches("__Host-")
        .trim_start_matches("__Secure-");
    let secure = if public_url_is_https { "__Secure-" } else { "" };
    format!("{secure}{base}_login_")
}

/// The cookie that marks a browser session's silent sign-in (`prompt=none`): `<base>_sso`,
/// `__Host-` prefixed under https, holding `value` (`crate::silent_sso::SEEN` or `TRIED`) and
/// nothing else, until the browser closes (no `Max-Age`). Returns its name and `Set-Cookie` value.
pub fn silent_sso_cookie(
    public_url_is_https: bool,
    base_name: &str,
    value: &str,
) -> (String, String) {
    let p = policy(public_url_is_https, base_name);
    let name = format!("{}_sso", p.name);
    let secure = if p.secure { "; Secure" } else { "" };
    let set = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax{secure}");
    (name, set)
}

/// A cookie name that browsers and servers accept: an RFC 6265 token, short, and not one of the
/// names Keycloak uses (the app and Keycloak share `localhost`'s cookie jar across ports).
pub fn is_valid_name(name: &str) -> bool {
    let reserved = [
        "KEYCLOAK_IDENTITY",
        "KEYCLOAK_SESSION",
        "AUTH_SESSION_ID",
        "KC_RESTART",
    ];
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !reserved
            .iter()
            .any(|r| name.to_ascii_uppercase().starts_with(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_silent_sign_in_marker_lives_for_the_browser_session_and_is_secure_under_https() {
        let (name, set) = silent_sso_cookie(true, "kc_session", "1");
        assert_eq!(name, "__Host-kc_session_sso");
        assert_eq!(
            set,
            "__Host-kc_session_sso=1; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
        let (name, set) = silent_sso_cookie(false, "kc_session", "0");
        assert_eq!(name, "kc_session_sso");
        assert!(!set.contains("Max-Age") && !set.contains("Expires") && !set.contains("Secure"));
    }

    #[test]
    fn https_public_url_gives_a_secure_host_prefixed_cookie() {
        let p = policy(true, "app_session");
        assert_eq!(p.name, "__Host-app_session");
        assert!(p.secure && p.http_only);
        assert_eq!(p.path, "/");
    }

    #[test]
    fn plain_http_on_localhost_gives_an_unprefixed_cookie_that_is_still_http_only_and_lax() {
        let p = policy(false, "app_session");
        assert_eq!(p.name, "app_session");
        assert!(!p.secure);
        assert!(p.http_only);
    }

    #[test]
    fn the_removal_of_the_session_cookie_has_the_attributes_it_was_set_with() {
        assert_eq!(
            policy(true, "app_session").removal(),
            "__Host-app_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax; Secure"
        );
        assert_eq!(
            policy(false, "app_session").removal(),
            "app_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
        );
    }

    #[test]
    fn a_configured_prefix_is_never_doubled_or_kept_without_https() {
        assert_eq!(policy(true, "__Host-s").name, "__Host-s");
        assert_eq!(policy(false, "__Host-s").name, "s");
    }

    #[test]
    fn login_cookies_are_named_after_the_session_cookie_and_secure_under_https() {
        assert_eq!(
            login_cookie_prefix(false, "kc_session"),
            "kc_session_login_"
        );
        assert_eq!(
            login_cookie_prefix(true, "__Host-kc_session"),
            "__Secure-kc_session_login_"
        );
    }

    #[test]
    fn cookie_names_must_be_tokens_and_not_keycloaks_own() {
        assert!(is_valid_name("app_session"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("a b"));
        assert!(!is_valid_name("a;b"));
        assert!(!is_valid_name("KEYCLOAK_SESSION"));
        assert!(!is_valid_name("AUTH_SESSION_ID_LEGACY"));
    }
}
