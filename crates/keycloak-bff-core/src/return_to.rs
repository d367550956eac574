//! Where to send the browser after login: only a same-origin relative path is ever followed.
//!
//! [`ReturnTo`] can only be made by its sanitiser, so a value of that type is safe to redirect to,
//! wherever it came from (a query string, a stored pending login, the browser's location).

use serde::{Deserialize, Serialize};

/// The longest return path kept; anything longer falls back to `/`.
const MAX_LEN: usize = 2048;

/// The longest return path a started sign-in keeps in its sealed cookie. A browser may hold
/// several started sign-ins at once (five by default) and sends them all in one `Cookie` header:
/// at this length they stay well under the 8 KB per header line that proxies allow by default
/// (nginx's `large_client_header_buffers`), where 2 KB paths would exceed it.
pub const MAX_PENDING_LEN: usize = 512;

/// A same-origin relative path (`/profile?tab=1`) to come back to after sign-in.
///
/// Refused, and replaced by `/`: anything not starting with exactly one `/` (`//evil.example`,
/// `https:evil.example`, `evil.example`), backslashes anywhere (`/\evil.example`, which browsers
/// read as `//`), percent-encoded slashes or backslashes (`/%2F%2Fevil`, `/%5Cevil`), control
/// characters and whitespace (raw or percent-encoded), and overlong values. Deserializing runs the
/// same sanitiser, so a stored value is checked again when it is read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct ReturnTo(String);

impl ReturnTo {
    /// The sanitiser: `candidate` when it is a safe same-origin relative path, else `/`.
    pub fn new(candidate: Option<&str>) -> Self {
        match candidate {
            Some(path) if is_safe(path) => ReturnTo(path.to_owned()),
            _ => ReturnTo::home(),
        }
    }

    /// The home page, `/`.
    pub fn home() -> Self {
        ReturnTo("/".to_owned())
    }

    /// The path, with its query and fragment.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This path as a started sign-in keeps it ([`MAX_PENDING_LEN`]): the path as it is when it
    /// is short enough, else the path without its query, else the home page.
    pub fn for_pending_login(&self) -> ReturnTo {
        if self.0.len() <= MAX_PENDING_LEN {
            return self.clone();
        }
        match self.0.split_once('?') {
            Some((path, _)) if path.len() <= MAX_PENDING_LEN => ReturnTo::new(Some(path)),
            _ => ReturnTo::home(),
        }
    }

    /// The sign-in link (`login_path?return_to=…`) that comes back here.
    pub fn login_href(&self, login_path: &str) -> String {
        format!("{login_path}?return_to={}", encode_component(&self.0))
    }

    /// The sign-in link that asks Keycloak with `prompt` (a step-up asks for the password again)
    /// and comes back here.
    pub fn login_href_with(&self, login_path: &str, prompt: crate::step_up::Prompt) -> String {
        match prompt.as_param() {
            Some(p) => format!("{}&prompt={p}", self.login_href(login_path)),
            None => self.login_href(login_path),
        }
    }
}

impl From<String> for ReturnTo {
    fn from(value: String) -> Self {
        ReturnTo::new(Some(&value))
    }
}

impl From<ReturnTo> for String {
    fn from(value: ReturnTo) -> Self {
        value.0
    }
}

impl std::fmt::Display for ReturnTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Percent-encodes a URL query component: everything but RFC 3986's unreserved characters.
pub fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether `path` is a safe same-origin relative path (see [`ReturnTo`]).
pub fn is_safe(path: &str) -> bool {
    if path.is_empty() || path.len() > MAX_LEN || !path.starts_with('/') {
        return false;
    }
    if path.starts_with("//") || path.contains('\\') {
        return false;
    }
    if path.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return false;
    }
    // Percent-encoded characters that would change the meaning of the path when a later hop
    // decodes it: slashes, backslashes, control characters and whitespace.
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = match path.get(i + 1..i + 3) {
                Some(h) => h,
                None => return false,
            };
            let value = match u8::from_str_radix(hex, 16) {
                Ok(v) => v,
                Err(_) => return false,
            };
            if value < 0x21 || value == 0x7f || value == b'/' || value == b'\\' || value == b'%' {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sanitize(candidate: Option<&str>) -> String {
        ReturnTo::new(candidate).into()
    }

    #[test]
    fn same_origin_relative_paths_are_followed() {
        for ok in [
            "/",
            "/profile",
            "/admin?tab=keys&x=1",
            "/editor#top",
            "/a/b/c",
            "/caf%C3%A9",
        ] {
            assert_eq!(sanitize(Some(ok)), ok, "{ok}");
        }
    }

    #[test]
    fn open_redirect_attempts_fall_back_to_the_home_page() {
        for bad in [
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https:evil.example",
            "https://evil.example/",
            "http://localhost:3000/profile",
            "javascript:alert(1)",
            "evil.example",
            "/%2F%2Fevil.example",
            "/%2f%2fevil.example",
            "/%5Cevil.example",
            "/%09/evil.example",
            "/%0d%0aSet-Cookie:x=y",
            "/ /evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\u{0}x",
            "/%",
            "/%zz",
            "/%252F%252Fevil.example",
            "",
        ] {
            assert_eq!(sanitize(Some(bad)), "/", "{bad:?} must not be followed");
        }
        assert_eq!(sanitize(None), "/");
    }

    #[test]
    fn a_stored_return_path_is_sanitised_again_when_it_is_read() {
        let r: ReturnTo = serde_json::from_str("\"//evil.example\"").expect("a string");
        assert_eq!(r.as_str(), "/");
        let r: ReturnTo = serde_json::from_str("\"/notes?x=1\"").expect("a string");
        assert_eq!(serde_json::to_string(&r).expect("json"), "\"/notes?x=1\"");
    }

    #[test]
    fn the_sign_in_link_encodes_the_return_path_as_one_query_component() {
        let r = ReturnTo::new(Some("/notes?a=1&b=caf%C3%A9"));
        assert_eq!(
            r.login_href("/auth/login"),
            "/auth/login?return_to=%2Fnotes%3Fa%3D1%26b%3Dcaf%25C3%25A9"
        );
        assert_eq!(
            ReturnTo::new(Some("/profile")).login_href("/sso/login"),
            "/sso/login?return_to=%2Fprofile"
        );
    }

    #[test]
    fn overlong_return_paths_fall_back_to_the_home_page() {
        let long = format!("/{}", "a".repeat(MAX_LEN));
        assert_eq!(sanitize(Some(&long)), "/");
    }

    #[test]
    fn a_started_sign_in_keeps_a_short_return_path_and_drops_a_long_query_or_path() {
        let short = ReturnTo::new(Some("/notes?page=2"));
        assert_eq!(short.for_pending_login(), short);
        let query = format!("/notes?q={}", "a".repeat(MAX_PENDING_LEN));
        assert_eq!(
            ReturnTo::new(Some(&query)).for_pending_login().as_str(),
            "/notes"
        );
        let path = format!("/{}", "a".repeat(MAX_PENDING_LEN + 1));
        assert_eq!(ReturnTo::new(Some(&path)).for_pending_login().as_str(), "/");
        let edge = format!("/{}", "a".repeat(MAX_PENDING_LEN - 1));
        assert_eq!(
            ReturnTo::new(Some(&edge)).for_pending_login().as_str(),
            edge
        );
    }
}
