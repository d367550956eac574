//! Silent single sign-on: a visitor whose browser is already signed in to Keycloak (through
//! another application of the realm) is signed in here on the first page, without a click.
//!
//! Once per browser session, the first top-level page a signed-out browser opens is answered
//! with a redirect through `<prefix>/login?prompt=none`: Keycloak either signs the browser in
//! without showing anything, or answers `login_required`, and the callback brings the browser
//! back, signed out, to the page it asked for ([`crate::server::web::routes`]). Any other failure
//! of the attempt (Keycloak down, a token endpoint failing, a wrong `iss`) does the same, with the
//! reason in the log: a public page never becomes an error page. A cookie that lasts until the
//! browser closes ([`cookie::silent_sso_cookie`]) marks that it was tried, so it is never tried
//! again in that browser session. `auth.silent_sso = false` turns it off.
//!
//! It is tried only once a cookie round trip was seen, and never while Keycloak is known to be
//! down ([`keycloak_bff_core::silent_sso::decide`]): a browser's first page load without the
//! marker is sent back to itself with the marker and a probe parameter. A browser that keeps no
//! cookies then gets its page, and never loops through Keycloak.
//!
//! Only navigations count (`Sec-Fetch-Mode: navigate`, `Sec-Fetch-Dest: document`, GET, not a
//! prefetch): scripts, server functions, the JSON API, static files and the auth routes are
//! never redirected, and neither are clients that are not browsers.

use crate::server::base::clock::unix_now;
use crate::server::base::cookies::cookie_value;
use crate::server::web::guard::under;
use crate::server::web::state::KeycloakAuth;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Redirect, Response};
use keycloak_bff_core::cookie;
use keycloak_bff_core::silent_sso::{self as silent, Silent, SEEN, TRIED};
use keycloak_bff_core::step_up::Prompt;
use keycloak_bff_core::ReturnTo;
use tower_sessions::Session;

/// Whether a request is a browser's top-level page load that silent sign-in may redirect:
/// everything but the cookie and the session.
fn is_page_navigation(
    method: &Method,
    headers: &HeaderMap,
    path: &str,
    auth: &KeycloakAuth,
) -> bool {
    let header_is = |name: &str, value: &str| {
        headers
            .get(name)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(value.as_bytes()))
    };
    let prefetch = headers.contains_key("sec-purpose") || headers.contains_key("purpose");
    let prefix = &auth.ui_config().route_prefix;
    let own_route = under(path, prefix);
    *method == Method::GET
        && header_is("sec-fetch-mode", "navigate")
        && header_is("sec-fetch-dest", "document")
        && !prefetch
        && !own_route
        && !path.starts_with(auth.pkg_prefix())
        && !auth
            .settings()
            .silent_sso_skip
            .iter()
            .any(|skip| path.starts_with(skip.as_str()))
}

/// The layer's work (inside the session layer, [`crate::server::web::middleware`]): see the
/// module's documentation. `Some`: the redirect that answers instead of the app. (The request's
/// parts, not the request: its body cannot be shared across threads.)
pub(crate) async fn silent_sso(auth: &KeycloakAuth, request: &Parts) -> Option<Response> {
    let settings = auth.settings();
    if !settings.silent_sso
        || !is_page_navigation(&request.method, &request.headers, request.uri.path(), auth)
    {
        return None;
    }
    let https = settings.public_url_is_https();
    let (marker, _) = cookie::silent_sso_cookie(https, &settings.session.cookie_name, TRIED);
    let sent = cookie_value(&request.headers, &marker);
    if sent.as_deref() == Some(TRIED) {
        return None;
    }
    let session = request.extensions.get::<Session>()?;
    // Signed in, or the store cannot say: the page itself decides.
    if !matches!(
        auth.store().auth_session(session, unix_now()).await,
        Ok(None)
    ) {
        return None;
    }
    let probing = silent::is_probing(request.uri.query());
    let here = request.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let (to, value) =
        match silent::decide(sent.as_deref(), probing, auth.oidc().known_unavailable()) {
            Silent::Skip => {
                tracing::debug!("no silent sign-in: Keycloak is known to be down");
                return None;
            }
            Silent::NoCookies => {
                tracing::info!("no silent sign-in: the browser returned no cookie");
                return None;
            }
            Silent::Probe => (silent::with_probe(here), SEEN),
            Silent::Try => {
                auth.metrics().sign_in("silent_started");
                let back = silent::without_probe(here);
                let href = ReturnTo::new(Some(&back))
                    .login_href_with(&auth.ui_config().route("/login"), Prompt::Silent);
                (href, TRIED)
            }
        };
    let (_, set_marker) = cookie::silent_sso_cookie(https, &settings.session.cookie_name, value);
    let mut response = Redirect::to(&to).into_response();
    if let Ok(value) = HeaderValue::from_str(&set_marker) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::base::cookies::has_cookie;

    #[test]
    fn a_cookie_counts_only_under_its_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; kc_session_sso_x=1; kc_session=abc"),
        );
        assert!(!has_cookie(&h, "kc_session_sso"));
        h.append(header::COOKIE, HeaderValue::from_static("kc_session_sso=1"));
        assert!(has_cookie(&h, "kc_session_sso"));
    }
}
