//! Reading a request's `Cookie` headers: the one parser for every cookie the library reads (the
//! sealed sign-in cookies, silent sign-on's marker). Pairs that do not parse are skipped, never an
//! error: a browser's other cookies are none of the library's business (catalogue A03: a
//! malformed cookie is a 4xx or nothing, never a 500).

use axum::http::{header, HeaderMap};
use cookie::Cookie;

/// Every cookie the request sent, in order, across all its `Cookie` headers.
pub fn request_cookies(headers: &HeaderMap) -> impl Iterator<Item = Cookie<'_>> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
}

/// Whether the request sent a cookie named `name` (the tests' question).
#[cfg(test)]
pub fn has_cookie(headers: &HeaderMap, name: &str) -> bool {
    request_cookies(headers).any(|c| c.name() == name)
}

/// The value of the first cookie named `name` the request sent, if any.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    request_cookies(headers)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cookies_are_read_across_headers_and_bad_pairs_are_skipped() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; =broken; b=2"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("c=3"));
        let names: Vec<String> = request_cookies(&h).map(|c| c.name().to_owned()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(has_cookie(&h, "c"));
        assert!(!has_cookie(&h, "d"));
        assert!(!has_cookie(&h, ""), "a pair without a name names nothing");
        assert_eq!(cookie_value(&h, "b").as_deref(), Some("2"));
        assert_eq!(cookie_value(&h, "d"), None);
    }
}
