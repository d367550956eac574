//! Catalogue cases (`shared/security-catalogue.md`) that the real Keycloak can produce and that the
//! other test files do not already cover; `docs/security.md` maps every case to its test.

use crate::common::*;
use reqwest::header::SET_COOKIE;
use reqwest::StatusCode;
use serde_json::Value;

/// The realm's issuer as Keycloak sends it with a callback (RFC 9207), query-encoded.
const ISSUER_PARAM: &str = "http%3A%2F%2Flocalhost%3A8080%2Frealms%2Fdemo";

fn query_param(url: &str, name: &str) -> String {
    url::Url::parse(url)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn a03_a_stolen_code_injected_into_another_browsers_callback_fails_on_pkce() {
    let victim = spawn_app().await;
    let authorize = victim.start_login("/").await;
    let victims_callback = victim
        .keycloak_login(&authorize, "paul", "paul-dev-pw")
        .await;
    let stolen_code = query_param(&victims_callback, "code");

    // The attacker starts a login of their own (their state, their PKCE verifier) and swaps in
    // the victim's code.
    let attacker = TestApp::sharing(&victim, browser());
    let own = attacker.start_login("/").await;
    let state = query_param(&own, "state");
    // With Keycloak's `iss` (an attacker copies it too), so only the code exchange can refuse.
    let r = attacker
        .get(&format!(
            "/auth/callback?code={}&state={}&iss={}",
            stolen_code, state, ISSUER_PARAM
        ))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        attacker.current_user().await,
        Value::Null,
        "the attacker got no session"
    );
}

#[tokio::test]
async fn a08_many_tabs_each_get_a_login_and_only_the_newest_few_are_kept() {
    let app = spawn_app().await;
    let mut authorizations = Vec::new();
    let mut cookie_sizes = Vec::new();
    for _ in 0..12 {
        let r = app.get("/auth/login?return_to=/profile").await;
        for c in r.headers().get_all(SET_COOKIE) {
            cookie_sizes.push(c.len());
        }
        authorizations.push(location(&r));
    }
    assert!(
        cookie_sizes.iter().all(|n| *n < 200),
        "the cookie does not grow: {cookie_sizes:?}"
    );
    // The newest login completes...
    let newest = app
        .keycloak_login(&authorizations[11], "paul", "paul-dev-pw")
        .await;
    assert_eq!(
        app.client.get(&newest).send().await.expect("cb").status(),
        StatusCode::SEE_OTHER
    );
    // ...while the oldest was dropped: Keycloak (already signed in) sends its code straight back,
    // and the app no longer knows that state.
    let r = app
        .client
        .get(&authorizations[0])
        .send()
        .await
        .expect("authorize");
    assert_eq!(r.status(), StatusCode::FOUND);
    let callback = location(&r);
    let rest = callback.strip_prefix(PUBLIC_ORIGIN).expect("callback");
    assert_eq!(app.get(rest).await.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a10_tokens_in_the_callback_instead_of_a_code_are_ignored() {
    let app = spawn_app().await;
    let authorize = app.start_login("/").await;
    let state = query_param(&authorize, "state");
    let fake = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.";
    let r = app
        .get(&format!(
            "/auth/callback?state={state}&iss={ISSUER_PARAM}&access_token={fake}&id_token={fake}&token_type=Bearer"
        ))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.current_user().await, Value::Null);
    // The authorization request itself only ever asks for a code.
    assert_eq!(query_param(&authorize, "response_type"), "code");
}

#[tokio::test]
async fn f02_coming_back_from_keycloak_with_any_state_changes_nothing() {
    let app = spawn_app().await;
    app.sign_in("erin").await;
    for path in ["/?state=forged", "/?state=", "/", "/?state=%00"] {
        assert_eq!(app.get(path).await.status(), StatusCode::OK, "{path}");
    }
    assert_eq!(app.current_user().await["username"], "erin");
}

#[tokio::test]
async fn g02_under_an_https_public_url_the_cookie_is_secure_and_host_prefixed() {
    let dir = tempfile::tempdir().expect("tmp");
    let app = spawn_app_in(
        dir,
        browser(),
        &[("APP_AUTH_PUBLIC_URL", "https://app.example")],
    )
    .await;
    let r = app.get("/auth/login?return_to=/").await;
    let cookie = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("__Host-kc_leptos_session="))
        .expect("a __Host- cookie")
        .to_owned();
    for flag in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    assert!(!cookie.to_ascii_lowercase().contains("domain="), "{cookie}");
    // The redirect URI comes from the settings, so Keycloak is asked for the https callback.
    let to = location(&r);
    assert_eq!(
        query_param(&to, "redirect_uri"),
        "https://app.example/auth/callback"
    );
}

#[tokio::test]
async fn g05_spoofed_forwarded_headers_change_no_url_and_pass_no_origin_check() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/auth/login?return_to=/"))
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-proto", "https")
        .header("forwarded", "host=evil.example;proto=https")
        .header("host", "evil.example")
        .send()
        .await
        .expect("login");
    let to = location(&r);
    assert_eq!(
        query_param(&to, "redirect_uri"),
        "http://localhost:3000/auth/callback"
    );
    app.sign_in("erin").await;
    let r = app
        .client
        .post(app.url("/auth/logout"))
        .header("origin", "http://evil.example")
        .header("x-forwarded-host", "evil.example")
        .header("host", "evil.example")
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.current_user().await["username"], "erin");
}

#[tokio::test]
async fn g06_route_guards_cannot_be_bypassed_by_encoding_slashes_case_or_query() {
    let app = spawn_app().await;
    app.sign_in("paul").await;
    for path in [
        "/admin",
        "/admin/",
        "//admin",
        "/admin//",
        "/ADMIN",
        "/Admin",
        "/%61dmin",
        "/admin%2F",
        "/admin?x=1",
        "/admin?role=admin",
        "/./admin",
        "/notes/../admin",
        "/admin#x",
        "/admin;x",
    ] {
        let r = app.get(path).await;
        let status = r.status();
        let html = r.text().await.unwrap_or_default();
        assert!(
            !html.contains("Administration"),
            "{path} showed the admin page ({status})"
        );
        assert!(
            status == StatusCode::FORBIDDEN
                || status == StatusCode::NOT_FOUND
                || status.is_redirection(),
            "{path}: {status}"
        );
    }
    for function in [
        "/api/admin_overview",
        "/api/ADMIN_OVERVIEW",
        "/api//admin_overview",
        "/api/admin_overview/",
    ] {
        let r = app.post(function, Some(PUBLIC_ORIGIN)).await;
        assert!(r.status().is_client_error(), "{function}: {}", r.status());
        assert!(
            !r.text().await.unwrap_or_default().contains("issuer"),
            "{function}"
        );
    }
}

#[tokio::test]
async fn g01_a_session_cookie_planted_before_login_never_becomes_a_signed_in_session() {
    let app = spawn_app().await;
    let planted = "AAAAAAAAAAAAAAAAAAAAAA";
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let origin = url::Url::parse(&app.base).expect("url");
    jar.add_cookie_str(&format!("kc_leptos_session={planted}; Path=/"), &origin);
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let victim = TestApp::sharing(&app, client);
    let r = victim.login_as("paul", "/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookies: Vec<String> = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    assert!(
        cookies.iter().any(|c| c.starts_with("kc_leptos_session=")),
        "a new session cookie"
    );
    assert!(!cookies.iter().any(|c| c.contains(planted)), "{cookies:?}");
    assert_eq!(victim.current_user().await["username"], "paul");
    // The attacker, who knows the planted value, has nothing.
    let r = app.current_user_with_cookie(planted).await;
    assert_eq!(r.json::<Value>().await.expect("json"), Value::Null);
}
