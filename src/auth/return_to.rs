//! Where to send the browser after login: only a same-origin relative path is ever followed.

/// The longest return path kept; anything longer falls back to `/`.
const MAX_LEN: usize = 2048;

/// Returns `candidate` when it is a safe same-origin relative path (`/profile?tab=1`), else `/`.
///
/// Refused: anything not starting with exactly one `/` (`//evil.example`, `https:evil.example`,
/// `evil.example`), backslashes anywhere (`/\evil.example`, which browsers read as `//`),
/// percent-encoded slashes or backslashes (`/%2F%2Fevil`, `/%5Cevil`), control characters and
/// whitespace (raw or percent-encoded), and overlong values.
pub fn sanitize(candidate: Option<&str>) -> String {
    match candidate {
        Some(path) if is_safe(path) => path.to_owned(),
        _ => "/".to_owned(),
    }
}

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
    fn overlong_return_paths_fall_back_to_the_home_page() {
        let long = format!("/{}", "a".repeat(MAX_LEN));
        assert_eq!(sanitize(Some(&long)), "/");
    }
}
