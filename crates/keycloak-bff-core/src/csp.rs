//! The Content-Security-Policy of every response (catalogue G: injected script, framing, form
//! targets). Scripts run only from this origin or with the page's nonce (the one Leptos puts on
//! its hydration script), plus WebAssembly compilation; forms post only here or to Keycloak.
//! The nonce is read from the page itself ([`page_script_nonce`]), so the policy and the page
//! cannot disagree (G04: an injected script never gets it; a page always hydrates).

/// The policy. `nonce`: the page's script nonce, if the response is a page. `issuer_origin`:
/// Keycloak's origin, the only other place a form may post to. `dev_reload`: the live-reload
/// socket of `cargo leptos watch`, if it runs.
pub fn policy(nonce: Option<&str>, issuer_origin: &str, dev_reload: Option<&str>) -> String {
    let script = match nonce.filter(|n| is_nonce(n)) {
        Some(n) => format!("script-src 'self' 'nonce-{n}' 'wasm-unsafe-eval'"),
        None => "script-src 'self' 'wasm-unsafe-eval'".to_owned(),
    };
    let connect = match dev_reload {
        Some(socket) => format!("connect-src 'self' {socket}"),
        None => "connect-src 'self'".to_owned(),
    };
    format!(
        "default-src 'self'; {script}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
         {connect}; object-src 'none'; base-uri 'self'; frame-ancestors 'none'; \
         form-action 'self' {issuer_origin}"
    )
}

/// The policy of the front-channel logout page, which Keycloak loads in an iframe of its own
/// logout page: nothing runs, nothing loads, and only Keycloak's origin may frame it.
pub fn framed_by_issuer(issuer_origin: &str) -> String {
    format!(
        "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors {issuer_origin}"
    )
}

/// A nonce that cannot break out of the header: base64 characters only.
fn is_nonce(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=-_".contains(&b))
}

/// What the start of a page says about its script nonce ([`page_script_nonce`]).
#[derive(Debug, PartialEq, Eq)]
pub enum PageNonce<'a> {
    /// The nonce of the page's first script tag.
    Found(&'a str),
    /// The page has none: its first script tag has no (well-formed) nonce, or its head ended
    /// without a script tag.
    Absent,
    /// Not known yet: neither a complete script tag nor the end of the head so far.
    ReadMore,
}

/// The script nonce of a page, read from the start of its HTML as the server rendered it: the
/// `nonce` attribute of its first `<script>` tag (Leptos's hydration script, in the head).
///
/// Only the first script tag counts, and only a double-quoted attribute of that tag. What a page
/// shows of its users cannot fake it: in text, `<` is escaped, so no `<script` of theirs can come
/// first; in an attribute value, `"` is escaped, so no `nonce="` of theirs can be inside a tag;
/// and script contents (hydration data) only come after the first script tag.
pub fn page_script_nonce(html: &[u8]) -> PageNonce<'_> {
    let head_end = find_ascii_ci(html, b"</head", 0);
    let mut from = 0;
    let start = loop {
        let Some(at) = find_ascii_ci(html, b"<script", from) else {
            return match head_end {
                Some(_) => PageNonce::Absent,
                None => PageNonce::ReadMore,
            };
        };
        match html.get(at + b"<script".len()) {
            // `<scripts>` or another tag that only starts alike: not a script.
            Some(b) if !(b.is_ascii_whitespace() || *b == b'>' || *b == b'/') => from = at + 1,
            None => return PageNonce::ReadMore,
            Some(_) => break at,
        }
    };
    if head_end.is_some_and(|end| end < start) {
        return PageNonce::Absent;
    }
    let Some(length) = html[start..].iter().position(|b| *b == b'>') else {
        return PageNonce::ReadMore;
    };
    let tag = &html[start..start + length];
    let mut from = 0;
    while let Some(at) = find_ascii_ci(tag, b"nonce=\"", from) {
        from = at + 1;
        if !tag[at - 1].is_ascii_whitespace() {
            continue; // `data-nonce="…"`
        }
        let value = &tag[at + b"nonce=\"".len()..];
        let Some(end) = value.iter().position(|b| *b == b'"') else {
            return PageNonce::Absent;
        };
        return match std::str::from_utf8(&value[..end]) {
            Ok(nonce) if is_nonce(nonce) => PageNonce::Found(nonce),
            _ => PageNonce::Absent,
        };
    }
    PageNonce::Absent
}

/// Where `needle` (lowercase ASCII) first occurs in `haystack` at or after `from`, ignoring ASCII
/// case (HTML's tag and attribute names).
fn find_ascii_ci(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
        .map(|at| at + from)
}

/// `Cross-Origin-Opener-Policy` of every page: a window another site opens (or that opens this
/// app) gets no handle on it (cross-window attacks, XS-Leaks). Sign-in is a full-page navigation,
/// so nothing of the app needs an opener.
pub const OPENER_POLICY: &str = "same-origin";

/// `Permissions-Policy` of every page: the powerful browser features an app behind Keycloak does
/// not use are off, for the app and anything it embeds. (Passkeys are used on Keycloak's own
/// pages, another origin, which this does not touch.)
pub const PERMISSIONS_POLICY: &str = "camera=(), microphone=(), geolocation=(), payment=(), usb=()";

/// The sources of a policy's `script-src` directive (or `default-src` without one), as written.
pub fn script_sources(policy: &str) -> Vec<&str> {
    let directive = |name: &str| {
        policy
            .split(';')
            .map(str::trim)
            .find(|d| d.split_whitespace().next() == Some(name))
            .map(|d| d.split_whitespace().skip(1).collect::<Vec<_>>())
    };
    directive("script-src")
        .or_else(|| directive("default-src"))
        .unwrap_or_default()
}

/// The sources in a policy's `script-src` that would let an injected script run: inline or
/// `eval`'d code, any host, `data:` or `blob:` URLs, any URL of a scheme. A sound page policy has
/// none (catalogue G04).
pub fn unsafe_script_sources(policy: &str) -> Vec<&str> {
    script_sources(policy)
        .into_iter()
        .filter(|s| {
            matches!(
                s.to_ascii_lowercase().as_str(),
                "'unsafe-inline'"
                    | "'unsafe-eval'"
                    | "'unsafe-hashes'"
                    | "*"
                    | "data:"
                    | "blob:"
                    | "http:"
                    | "https:"
                    | "filesystem:"
            ) || s.starts_with("*.")
        })
        .collect()
}

/// `Strict-Transport-Security` for an https public URL (two years; subdomains are the
/// operator's to decide), none for plain http.
pub fn hsts(public_url_is_https: bool) -> Option<&'static str> {
    public_url_is_https.then_some("max-age=63072000")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keycloak_may_frame_the_front_channel_logout_page() {
        let p = framed_by_issuer("https://sso.example");
        assert!(p.ends_with("frame-ancestors https://sso.example"));
        assert!(p.starts_with("default-src 'none';"));
    }

    #[test]
    fn a_page_allows_its_own_nonce_and_no_other_inline_script() {
        let p = policy(Some("abc123"), "https://sso.example", None);
        assert_eq!(
            script_sources(&p),
            ["'self'", "'nonce-abc123'", "'wasm-unsafe-eval'"]
        );
        assert_eq!(unsafe_script_sources(&p), Vec::<&str>::new());
        assert_eq!(
            unsafe_script_sources(&policy(None, "https://sso.example", None)),
            Vec::<&str>::new()
        );
        assert!(p.starts_with("default-src 'self';"));
        assert!(p.ends_with("form-action 'self' https://sso.example"));
        assert!(p.contains("frame-ancestors 'none'") && p.contains("object-src 'none'"));
    }

    #[test]
    fn the_script_check_finds_every_way_an_injected_script_could_run() {
        for weak in [
            "default-src 'self'; script-src 'self' 'unsafe-inline'",
            "script-src 'self' 'unsafe-eval'",
            "script-src *",
            "script-src 'self' data:",
            "script-src https:",
            "script-src *.example.com",
            "default-src 'self' 'unsafe-inline'",
        ] {
            assert!(!unsafe_script_sources(weak).is_empty(), "{weak}");
        }
        // 'unsafe-inline' for styles is not a script source.
        let styles = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'";
        assert!(unsafe_script_sources(styles).is_empty());
    }

    #[test]
    fn a_nonce_that_could_inject_a_directive_is_dropped() {
        let p = policy(Some("x'; script-src *"), "https://sso.example", None);
        assert!(p.contains("script-src 'self' 'wasm-unsafe-eval';"));
        assert!(!p.contains('*'));
    }

    #[test]
    fn the_dev_reload_socket_is_allowed_only_when_given() {
        assert!(policy(None, "http://kc", Some("ws://127.0.0.1:3001"))
            .contains("connect-src 'self' ws://127.0.0.1:3001;"));
        assert!(policy(None, "http://kc", None).contains("connect-src 'self';"));
    }

    #[test]
    fn a_page_nonce_is_the_one_on_its_first_script_tag() {
        let page = br#"<!DOCTYPE html><html><head><link rel="modulepreload" crossorigin="n1"><script type="module" nonce="Jt2unrU_MFob9981NTN9yA">import('/pkg/app.js')</script><script nonce="other">x</script></head>"#;
        assert_eq!(
            page_script_nonce(page),
            PageNonce::Found("Jt2unrU_MFob9981NTN9yA")
        );
        assert_eq!(
            page_script_nonce(b"<html><HEAD><SCRIPT Nonce=\"abc\">"),
            PageNonce::Found("abc")
        );
    }

    #[test]
    fn a_page_start_without_a_whole_script_tag_or_the_end_of_its_head_asks_for_more() {
        for start in [
            &b"<!DOCTYPE html><html><head><meta charset=\"utf-8\">"[..],
            b"<html><head><scr",
            b"<html><head><script",
            b"<html><head><script type=\"module\" nonce=\"abc",
        ] {
            assert_eq!(page_script_nonce(start), PageNonce::ReadMore);
        }
    }

    #[test]
    fn only_the_first_script_tag_counts_and_user_text_cannot_fake_it() {
        // The first script has no nonce: a later one (or one in hydration data) is not taken.
        let page = br#"<head><script>var a = '<script nonce="evil">';</script><script nonce="late"></script></head>"#;
        assert_eq!(page_script_nonce(page), PageNonce::Absent);
        // Escaped user text before the script, as Leptos renders it.
        let page =
            br#"<head><title>&lt;script nonce="evil"&gt;</title><script nonce="real"></script>"#;
        assert_eq!(page_script_nonce(page), PageNonce::Found("real"));
        // Another attribute that ends in `nonce`, and a nonce that would break out of the header.
        assert_eq!(
            page_script_nonce(br#"<script data-nonce="evil">"#),
            PageNonce::Absent
        );
        assert_eq!(
            page_script_nonce(br#"<script nonce="x'; script-src *">"#),
            PageNonce::Absent
        );
        // A tag that only starts like a script, then the real one.
        assert_eq!(
            page_script_nonce(br#"<head><scripts nonce="no"><script nonce="yes">"#),
            PageNonce::Found("yes")
        );
    }

    #[test]
    fn a_head_that_ends_without_a_script_has_no_nonce() {
        assert_eq!(
            page_script_nonce(b"<html><head><title>t</title></head><body><script nonce=\"late\">"),
            PageNonce::Absent
        );
        assert_eq!(page_script_nonce(b"not found\n"), PageNonce::ReadMore);
    }

    #[test]
    fn hsts_only_under_https() {
        assert_eq!(hsts(true), Some("max-age=63072000"));
        assert_eq!(hsts(false), None);
    }
}
