//! When a page load may try a silent sign-in (`prompt=none`), decided from what the browser sent.
//!
//! A silent attempt must never turn a public page into an error page, nor loop. So it is tried
//! only once a cookie round trip has been seen (a browser that keeps no cookies, or an `https`
//! public URL served over `http` whose `Secure` cookies the browser drops, would otherwise come back
//! from Keycloak to a callback without its sealed sign-in), once per browser session, and never
//! while Keycloak is known to be down. The first page load of a browser with no marker cookie is
//! sent back to itself with the marker set and [`PROBE_PARAM`] in its query: the marker coming back
//! proves the round trip; the parameter without the marker shows a browser that keeps no cookies,
//! which then gets the page, and no loop.

/// The query parameter of the one redirect that tests whether the browser keeps cookies.
pub const PROBE_PARAM: &str = "kc_sso_probe";

/// The marker cookie's value once the round trip was seen but nothing was tried yet.
pub const SEEN: &str = "0";
/// The marker cookie's value once a silent sign-in was tried in this browser session.
pub const TRIED: &str = "1";

/// What a signed-out browser's page load does about silent sign-in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Silent {
    /// Serve the page: tried already in this browser session, or Keycloak is known to be down.
    Skip,
    /// Redirect to the same page with the marker set ([`SEEN`]) and [`PROBE_PARAM`].
    Probe,
    /// The probe came back without the marker: the browser keeps no cookies. Serve the page.
    NoCookies,
    /// Redirect through the silent sign-in, marking it [`TRIED`].
    Try,
}

/// The decision for a signed-out browser's page load: `marker` is the marker cookie's value as
/// sent, `probing` whether the URL carries [`PROBE_PARAM`].
pub fn decide(marker: Option<&str>, probing: bool, keycloak_known_down: bool) -> Silent {
    match marker {
        Some(TRIED) => Silent::Skip,
        _ if keycloak_known_down => Silent::Skip,
        Some(_) => Silent::Try,
        None if probing => Silent::NoCookies,
        None => Silent::Probe,
    }
}

/// `path_and_query` with [`PROBE_PARAM`] added.
pub fn with_probe(path_and_query: &str) -> String {
    let sep = if path_and_query.contains('?') {
        '&'
    } else {
        '?'
    };
    format!("{path_and_query}{sep}{PROBE_PARAM}=1")
}

/// `path_and_query` without [`PROBE_PARAM`] (and without a `?` left empty).
pub fn without_probe(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| pair.split('=').next() != Some(PROBE_PARAM))
        .collect();
    if kept.iter().all(|p| p.is_empty()) {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

/// Whether `query` (without `?`) carries [`PROBE_PARAM`].
pub fn is_probing(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|p| p.split('=').next() == Some(PROBE_PARAM))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_visit_probes_and_a_browser_without_cookies_gets_the_page_without_a_loop() {
        assert_eq!(decide(None, false, false), Silent::Probe);
        assert_eq!(decide(None, true, false), Silent::NoCookies);
        assert_eq!(decide(Some(SEEN), true, false), Silent::Try);
        assert_eq!(decide(Some(SEEN), false, false), Silent::Try);
    }

    #[test]
    fn once_tried_or_while_keycloak_is_down_nothing_is_tried() {
        assert_eq!(decide(Some(TRIED), false, false), Silent::Skip);
        assert_eq!(decide(Some(TRIED), true, false), Silent::Skip);
        assert_eq!(decide(Some(SEEN), false, true), Silent::Skip);
        assert_eq!(decide(None, false, true), Silent::Skip);
    }

    #[test]
    fn the_probe_parameter_is_added_and_removed_without_touching_the_rest() {
        assert_eq!(with_probe("/notes"), "/notes?kc_sso_probe=1");
        assert_eq!(with_probe("/notes?x=1"), "/notes?x=1&kc_sso_probe=1");
        assert_eq!(without_probe("/notes?kc_sso_probe=1"), "/notes");
        assert_eq!(without_probe("/notes?x=1&kc_sso_probe=1"), "/notes?x=1");
        assert_eq!(without_probe("/notes?kc_sso_probe=1&x=1&y"), "/notes?x=1&y");
        assert_eq!(
            without_probe("/notes?kc_sso_probex=1"),
            "/notes?kc_sso_probex=1"
        );
        assert_eq!(without_probe("/"), "/");
        assert!(is_probing(Some("x=1&kc_sso_probe=1")));
        assert!(!is_probing(Some("kc_sso_probex=1")));
        assert!(!is_probing(None));
    }
}
