//! One address, two names: in development the app is reached as `localhost` and as `127.0.0.1`
//! (cargo-leptos prints the latter). Cookies belong to a name, so a sign-in started on one name
//! and finished on the other (Keycloak sends the browser back to `auth.public_url`) loses its
//! sealed sign-in cookie: "Sign-in failed" on the first page. A page navigation that arrives on
//! another loopback name of the public URL's host and port is therefore sent to the public URL
//! first, before anything sets a cookie. The redirect is marked ([`MARK`]), and a marked
//! request is never redirected again: a proxy that rewrites `Host` cannot make a loop.
//!
//! Only loopback names are aliases: for any other name the app cannot know what is the same
//! server (a proxy's internal name, an apex and its `www`), and serves it as it is.

/// The query parameter a redirect to the public URL carries.
pub const MARK: &str = "kc_host";

/// What to do with a page navigation that arrived with `Host: host_header`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostCheck {
    /// Serve it.
    Serve,
    /// Redirect to the public URL (origin given) with the same path and query, marked.
    ToPublic,
    /// The public name, marked: redirect to the same URL without the mark (cosmetic, once).
    Unmark,
    /// Another loopback name, already marked: the `Host` seen is not the browser's (a proxy
    /// rewrites it). Serve it, and say so in the log.
    HostRewritten,
}

const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// `host[:port]` of a `Host` header, lower-cased, the port defaulted to `default_port`.
fn split(host_header: &str, default_port: u16) -> Option<(String, u16)> {
    let host = host_header.trim().to_ascii_lowercase();
    let (name, port) = match host.rfind(':') {
        // `[::1]` alone has colons inside its brackets.
        Some(i) if !host[i..].contains(']') => (&host[..i], host[i + 1..].parse().ok()?),
        _ => (host.as_str(), default_port),
    };
    (!name.is_empty()).then(|| (name.to_owned(), port))
}

/// Decides for a page navigation: `public` is the public URL's (host, port), `host_header` the
/// request's `Host`, `marked` whether its query carries [`MARK`].
pub fn check(public: (&str, u16), host_header: &str, marked: bool) -> HostCheck {
    let public_name = public.0.to_ascii_lowercase();
    let Some((name, port)) = split(host_header, public.1) else {
        return HostCheck::Serve;
    };
    if name == public_name && port == public.1 {
        return if marked {
            HostCheck::Unmark
        } else {
            HostCheck::Serve
        };
    }
    let alias = port == public.1
        && LOOPBACK.contains(&public_name.as_str())
        && LOOPBACK.contains(&name.as_str());
    match (alias, marked) {
        (false, _) => HostCheck::Serve,
        (true, false) => HostCheck::ToPublic,
        (true, true) => HostCheck::HostRewritten,
    }
}

/// `path_and_query` with [`MARK`] added (`to_public`) or taken out.
pub fn marked(path_and_query: &str, to_public: bool) -> String {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some(MARK))
        .collect();
    let mark = format!("{MARK}=1");
    if to_public {
        kept.push(&mark);
    }
    if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

/// Whether a query carries [`MARK`].
pub fn is_marked(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|p| p.split('=').next() == Some(MARK)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_loopback_name_of_the_public_host_goes_to_the_public_url_once() {
        let public = ("localhost", 3000);
        assert_eq!(check(public, "127.0.0.1:3000", false), HostCheck::ToPublic);
        assert_eq!(check(public, "[::1]:3000", false), HostCheck::ToPublic);
        assert_eq!(
            check(("127.0.0.1", 3000), "LOCALHOST:3000", false),
            HostCheck::ToPublic
        );
        assert_eq!(
            check(public, "127.0.0.1:3000", true),
            HostCheck::HostRewritten,
            "a marked request is never sent again"
        );
        assert_eq!(check(public, "localhost:3000", true), HostCheck::Unmark);
        assert_eq!(check(public, "localhost:3000", false), HostCheck::Serve);
    }

    #[test]
    fn other_ports_and_names_are_served_as_they_are() {
        let public = ("localhost", 3000);
        assert_eq!(
            check(public, "127.0.0.1:3101", false),
            HostCheck::Serve,
            "a replica behind a proxy"
        );
        assert_eq!(check(public, "app.internal:3000", false), HostCheck::Serve);
        assert_eq!(
            check(("app.example", 443), "www.app.example", false),
            HostCheck::Serve
        );
        assert_eq!(
            check(("app.example", 443), "app.example", false),
            HostCheck::Serve
        );
        assert_eq!(check(public, "", false), HostCheck::Serve);
        assert_eq!(check(public, "localhost:x", false), HostCheck::Serve);
    }

    #[test]
    fn the_mark_is_added_and_taken_out_keeping_the_rest_of_the_query() {
        assert_eq!(marked("/profile", true), "/profile?kc_host=1");
        assert_eq!(marked("/notes?page=2", true), "/notes?page=2&kc_host=1");
        assert_eq!(marked("/notes?page=2&kc_host=1", false), "/notes?page=2");
        assert_eq!(marked("/?kc_host=1", false), "/");
        assert!(is_marked(Some("a=1&kc_host=1")));
        assert!(!is_marked(Some("kc_hostile=1")));
        assert!(!is_marked(None));
    }
}
