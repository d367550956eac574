//! Remote API routes (the backend-for-frontend's proxy to other APIs): the decisions that do not
//! need a network. Which token a route sends, whether a request path stays under the route's
//! prefix, whether a browser call is same-origin and carries the anti-forgery header, which
//! headers cross the proxy in each direction, and how long an exchanged token is reused.
//!
//! Catalogue: P01 (cross-origin and header-less calls), P02 (the browser's `Cookie` and
//! `Authorization`, the upstream's `Set-Cookie`), P03 (`..`, encoded slashes, absolute URLs).

use serde::{Deserialize, Serialize};

/// The request header a browser's state-changing call through a remote API route must carry,
/// with the value [`CSRF_HEADER_VALUE`]. A page of another origin cannot add it without a CORS
/// preflight, which the app never grants.
pub const CSRF_HEADER: &str = "x-csrf";
/// The value of [`CSRF_HEADER`].
pub const CSRF_HEADER_VALUE: &str = "1";

/// Which token a remote API route adds to the calls it forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamToken {
    /// The signed-in user's access token (or, with an audience, one exchanged for it). A
    /// signed-out caller gets 401 and the upstream is not called. The default.
    #[default]
    User,
    /// The app's own token (client credentials): for upstreams that trust the app, not the user.
    Client,
    /// The user's token when someone is signed in; the call goes without a token otherwise.
    UserOrNone,
    /// No token: the route only keeps the upstream behind the app's origin.
    None,
}

/// Why a request path was refused before any call to the upstream (a 400, or a 404 when it is
/// not under the route at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRefusal {
    /// The path is not the route's prefix or below it.
    #[error("the path is not under this route")]
    NotUnder,
    /// A `.` or `..` segment, written plainly or percent-encoded.
    #[error("the path has a '.' or '..' segment")]
    DotSegment,
    /// `%2F`, `%5C` or a backslash: a separator the upstream might read differently.
    #[error("the path has an encoded slash or a backslash")]
    EncodedSeparator,
    /// An empty segment (`//`), which is how an absolute URL (`/https://evil.example`) or a
    /// host-relative reference starts.
    #[error("the path has an empty segment or an absolute URL")]
    EmptySegment,
    /// A `%` not followed by two hex digits, or an encoded control character.
    #[error("the path has a malformed escape or a control character")]
    Malformed,
}

/// The part of `raw_path` (as received, still percent-encoded) after the route's `prefix`: `""`
/// or `/a/b`, safe to append to the upstream's own path. Every segment is checked after decoding,
/// so the upstream sees only paths below what the operator declared.
pub fn upstream_suffix<'a>(prefix: &str, raw_path: &'a str) -> Result<&'a str, PathRefusal> {
    let rest = raw_path.strip_prefix(prefix).ok_or(PathRefusal::NotUnder)?;
    if rest.is_empty() {
        return Ok(rest);
    }
    let Some(segments) = rest.strip_prefix('/') else {
        return Err(PathRefusal::NotUnder);
    };
    let count = segments.split('/').count();
    for (i, segment) in segments.split('/').enumerate() {
        // A trailing slash (`/orders/`) is an empty last segment and harmless.
        if segment.is_empty() {
            if i + 1 == count {
                continue;
            }
            return Err(PathRefusal::EmptySegment);
        }
        let decoded = percent_decode(segment).ok_or(PathRefusal::Malformed)?;
        if decoded.iter().any(|b| *b == b'/' || *b == b'\\') {
            return Err(PathRefusal::EncodedSeparator);
        }
        if decoded.iter().any(|b| b.is_ascii_control()) {
            return Err(PathRefusal::Malformed);
        }
        if decoded == b"." || decoded == b".." {
            return Err(PathRefusal::DotSegment);
        }
    }
    Ok(rest)
}

/// Percent-decodes one path segment; `None` for a `%` without two hex digits after it.
fn percent_decode(segment: &str) -> Option<Vec<u8>> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let text = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(text, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Why a browser call was refused before any call to the upstream (403).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CsrfRefusal {
    /// `Origin` names another origin, or `Sec-Fetch-Site` says the call came from another site.
    #[error("cross-origin request refused")]
    CrossOrigin,
    /// A state-changing call without `X-CSRF: 1`.
    #[error("this request needs the header X-CSRF: 1")]
    MissingHeader,
}

/// What the browser's request says of where it came from.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallOrigin<'a> {
    /// `GET`, `HEAD` or `OPTIONS`.
    pub safe_method: bool,
    /// The `Origin` header.
    pub origin: Option<&'a str>,
    /// The `Sec-Fetch-Site` header.
    pub sec_fetch_site: Option<&'a str>,
    /// The value of [`CSRF_HEADER`].
    pub csrf_header: Option<&'a str>,
}

/// The same-origin check of every call through a remote API route, whatever the method (the
/// IETF browser-based-apps draft's advice to a BFF), and the custom header on state-changing
/// calls. A program that is not a browser sends neither `Origin` nor `Sec-Fetch-Site` and holds
/// no one's ambient cookie: only the header is asked of it.
pub fn check_call(call: &CallOrigin<'_>, public_origin: &str) -> Result<(), CsrfRefusal> {
    if call.origin.is_some_and(|o| o != public_origin) {
        return Err(CsrfRefusal::CrossOrigin);
    }
    match call.sec_fetch_site {
        None | Some("same-origin") => {}
        // Typed into the address bar or opened from a bookmark: a read only.
        Some("none") if call.safe_method => {}
        Some(_) => return Err(CsrfRefusal::CrossOrigin),
    }
    if !call.safe_method && call.csrf_header != Some(CSRF_HEADER_VALUE) {
        return Err(CsrfRefusal::MissingHeader);
    }
    Ok(())
}

/// The browser's request headers that reach the upstream: content negotiation, conditional and
/// range requests, and `Last-Event-ID` (a reconnecting event stream). Never `Cookie`,
/// `Authorization`, `Host`, `Origin`, forwarding or hop-by-hop headers.
pub fn forwards_request_header(name: &str) -> bool {
    const FORWARDED: &[&str] = &[
        "accept",
        "accept-language",
        "cache-control",
        "content-language",
        "content-type",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-event-id",
        "range",
    ];
    FORWARDED.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// The upstream's response headers that reach the browser: the body's description and caching.
/// Never `Set-Cookie` (it would land on the app's own origin), `Location` (the upstream's own
/// address), authentication challenges or hop-by-hop headers; the app's security headers are
/// added by the app.
pub fn forwards_response_header(name: &str) -> bool {
    const FORWARDED: &[&str] = &[
        "accept-ranges",
        "cache-control",
        "content-disposition",
        "content-encoding",
        "content-language",
        "content-range",
        "content-type",
        "etag",
        "expires",
        "last-modified",
        "retry-after",
        "vary",
    ];
    FORWARDED.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// An exchanged token is used until this long before it expires (or a quarter of its lifetime,
/// when that is shorter), so that it never expires on the way to the upstream.
pub const EXCHANGED_TOKEN_MARGIN_SECS: i64 = 30;

/// When an exchanged token obtained at `now` with Keycloak's `expires_in` stops being reused
/// (Unix seconds). A missing or odd `expires_in` makes it single-use.
pub fn exchanged_token_reuse_until(expires_in: Option<i64>, now: i64) -> i64 {
    match expires_in {
        Some(secs) if secs > 1 => {
            let secs = secs.min(86_400);
            now + secs - EXCHANGED_TOKEN_MARGIN_SECS.min(secs / 4).max(1)
        }
        _ => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_under_the_prefix_keep_their_rest_and_others_are_not_under() {
        let p = "/remote/orders";
        assert_eq!(upstream_suffix(p, "/remote/orders"), Ok(""));
        assert_eq!(upstream_suffix(p, "/remote/orders/"), Ok("/"));
        assert_eq!(upstream_suffix(p, "/remote/orders/42"), Ok("/42"));
        assert_eq!(upstream_suffix(p, "/remote/orders/a%20b/c"), Ok("/a%20b/c"));
        for other in ["/remote/ordersX", "/remote", "/remote/order", "/other"] {
            assert_eq!(
                upstream_suffix(p, other),
                Err(PathRefusal::NotUnder),
                "{other}"
            );
        }
    }

    #[test]
    fn dot_segments_plain_or_encoded_never_leave_the_prefix() {
        let p = "/remote/orders";
        for bad in [
            "/remote/orders/..",
            "/remote/orders/../admin",
            "/remote/orders/./x",
            "/remote/orders/%2e%2e/admin",
            "/remote/orders/%2E%2E",
            "/remote/orders/.%2e/admin",
            "/remote/orders/%2e",
        ] {
            assert_eq!(
                upstream_suffix(p, bad),
                Err(PathRefusal::DotSegment),
                "{bad}"
            );
        }
        // Dots inside a name are a name.
        assert_eq!(upstream_suffix(p, "/remote/orders/a..b"), Ok("/a..b"));
    }

    #[test]
    fn encoded_slashes_backslashes_and_absolute_urls_are_refused() {
        let p = "/remote/orders";
        for (bad, why) in [
            ("/remote/orders/a%2fb", PathRefusal::EncodedSeparator),
            ("/remote/orders/a%2Fb", PathRefusal::EncodedSeparator),
            (
                "/remote/orders/%2e%2e%2fadmin",
                PathRefusal::EncodedSeparator,
            ),
            ("/remote/orders/a%5cb", PathRefusal::EncodedSeparator),
            ("/remote/orders/a\\b", PathRefusal::EncodedSeparator),
            ("/remote/orders//evil.example", PathRefusal::EmptySegment),
            (
                "/remote/orders/https://evil.example/x",
                PathRefusal::EmptySegment,
            ),
            ("/remote/orders/a%zz", PathRefusal::Malformed),
            ("/remote/orders/a%2", PathRefusal::Malformed),
            ("/remote/orders/a%00b", PathRefusal::Malformed),
            ("/remote/orders/a%0d%0aX-Evil:%201", PathRefusal::Malformed),
        ] {
            assert_eq!(upstream_suffix(p, bad), Err(why), "{bad}");
        }
    }

    const APP: &str = "https://app.example";

    fn call<'a>(
        safe_method: bool,
        origin: Option<&'a str>,
        site: Option<&'a str>,
        csrf: Option<&'a str>,
    ) -> CallOrigin<'a> {
        CallOrigin {
            safe_method,
            origin,
            sec_fetch_site: site,
            csrf_header: csrf,
        }
    }

    #[test]
    fn a_cross_origin_call_is_refused_whatever_its_method() {
        for safe in [true, false] {
            for c in [
                call(safe, Some("https://evil.example"), None, Some("1")),
                call(safe, Some("null"), None, Some("1")),
                call(safe, None, Some("cross-site"), Some("1")),
                call(safe, None, Some("same-site"), Some("1")),
                call(safe, Some(APP), Some("cross-site"), Some("1")),
            ] {
                assert_eq!(check_call(&c, APP), Err(CsrfRefusal::CrossOrigin));
            }
        }
    }

    #[test]
    fn a_state_changing_call_needs_the_custom_header_and_a_read_does_not() {
        assert_eq!(
            check_call(&call(false, Some(APP), Some("same-origin"), None), APP),
            Err(CsrfRefusal::MissingHeader)
        );
        assert_eq!(
            check_call(&call(false, Some(APP), Some("same-origin"), Some("0")), APP),
            Err(CsrfRefusal::MissingHeader)
        );
        assert_eq!(
            check_call(&call(false, Some(APP), Some("same-origin"), Some("1")), APP),
            Ok(())
        );
        assert_eq!(
            check_call(&call(true, None, Some("same-origin"), None), APP),
            Ok(())
        );
        // A program (no browser headers) must still send the header to change anything.
        assert_eq!(
            check_call(&call(false, None, None, None), APP),
            Err(CsrfRefusal::MissingHeader)
        );
        assert_eq!(check_call(&call(true, None, None, None), APP), Ok(()));
        // Typed into the address bar: a read is fine, a write is not a thing browsers do.
        assert_eq!(
            check_call(&call(true, None, Some("none"), None), APP),
            Ok(())
        );
        assert_eq!(
            check_call(&call(false, None, Some("none"), Some("1")), APP),
            Err(CsrfRefusal::CrossOrigin)
        );
    }

    #[test]
    fn credentials_and_cookies_never_cross_the_proxy() {
        for h in [
            "Cookie",
            "authorization",
            "Host",
            "Origin",
            "X-Forwarded-For",
            "Proxy-Authorization",
            "DPoP",
            "x-csrf",
        ] {
            assert!(!forwards_request_header(h), "{h}");
        }
        for h in ["Accept", "content-type", "Last-Event-ID", "If-None-Match"] {
            assert!(forwards_request_header(h), "{h}");
        }
        for h in [
            "Set-Cookie",
            "location",
            "www-authenticate",
            "connection",
            "transfer-encoding",
            "strict-transport-security",
        ] {
            assert!(!forwards_response_header(h), "{h}");
        }
        for h in ["Content-Type", "ETag", "cache-control"] {
            assert!(forwards_response_header(h), "{h}");
        }
    }

    #[test]
    fn an_exchanged_token_is_reused_until_shortly_before_it_expires() {
        assert_eq!(exchanged_token_reuse_until(Some(300), 1_000), 1_270);
        // Short-lived tokens (a realm with 10-second tokens) are still reused, a quarter less.
        assert_eq!(exchanged_token_reuse_until(Some(10), 1_000), 1_008);
        assert_eq!(exchanged_token_reuse_until(Some(1), 1_000), 1_000);
        assert_eq!(exchanged_token_reuse_until(None, 1_000), 1_000);
        assert_eq!(exchanged_token_reuse_until(Some(-5), 1_000), 1_000);
        assert_eq!(
            exchanged_token_reuse_until(Some(i64::MAX), 1_000),
            1_000 + 86_400 - 30
        );
    }

    #[test]
    fn token_kinds_read_as_the_settings_write_them() {
        #[derive(Deserialize)]
        struct T {
            token: UpstreamToken,
        }
        for (text, kind) in [
            ("user", UpstreamToken::User),
            ("client", UpstreamToken::Client),
            ("user_or_none", UpstreamToken::UserOrNone),
            ("none", UpstreamToken::None),
        ] {
            let t: T = serde_json::from_str(&format!(r#"{{"token":"{text}"}}"#))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(t.token, kind);
        }
        assert!(serde_json::from_str::<T>(r#"{"token":"admin"}"#).is_err());
    }
}
