//! Catalogue cases (`shared/security-catalogue.md`) that the real Keycloak can produce and that the
//! other test files do not already cover; `docs/security.md` maps every case to its test.

use crate::common::*;
use keycloak_bff::core::pending::PendingLogin;
use keycloak_bff::server::test_support::Internals as _;
use keycloak_bff::ReturnTo;
use reqwest::header::SET_COOKIE;
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::Arc;

/// The realm's issuer as Keycloak sends it with a callback (RFC 9207), query-encoded.
const ISSUER_PARAM: &str = "http%3A%2F%2Flocalhost%3A8080%2Frealms%2Fdemo";

/// A browser whose cookie jar the test can read and write.
fn browser_with_jar() -> (reqwest::Client, Arc<reqwest::cookie::Jar>) {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    (client, jar)
}

/// The `name=value` pairs a browser holding `jar` sends to `path` of the app.
fn cookies_sent(jar: &reqwest::cookie::Jar, app: &TestApp, path: &str) -> String {
    use reqwest::cookie::CookieStore;
    let url = url::Url::parse(&app.url(path)).expect("url");
    jar.cookies(&url)
        .and_then(|v| v.to_str().ok().map(str::to_owned))
        .unwrap_or_default()
}

/// A pending login sealed by the app itself (as `GET /auth/login` would), put in `jar`.
fn plant_pending_login(app: &TestApp, jar: &reqwest::cookie::Jar, login: &PendingLogin) {
    let now = keycloak_bff::server::unix_now();
    let sealed = app
        .state
        .auth
        .login_cookies()
        .start(&axum::http::HeaderMap::new(), login, now)
        .expect("sealed");
    let origin = url::Url::parse(&app.base).expect("url");
    for value in sealed {
        jar.add_cookie_str(value.to_str().expect("ascii"), &origin);
    }
}

/// The pending login the browser holding `jar` started with `state`, opened by the app's key.
fn pending_login_of(app: &TestApp, jar: &reqwest::cookie::Jar, state: &str) -> PendingLogin {
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(
        axum::http::header::COOKIE,
        cookies_sent(jar, app, "/auth/callback")
            .parse()
            .expect("cookie header"),
    );
    let now = keycloak_bff::server::unix_now();
    app.state
        .auth
        .login_cookies()
        .take(&headers, state, now)
        .0
        .expect("the victim's pending login")
}

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
    let app = spawn_app().await;
    // Two victims sign in at Keycloak; their codes are stolen before their browsers use them.
    let mut stolen = Vec::new();
    for _ in 0..2 {
        let (client, jar) = browser_with_jar();
        let victim = TestApp::sharing(&app, client);
        let authorize = victim.start_login("/").await;
        let callback = victim
            .keycloak_login(&authorize, "paul", "paul-dev-pw")
            .await;
        let state = query_param(&authorize, "state");
        let login = pending_login_of(&app, &jar, &state);
        stolen.push((query_param(&callback, "code"), login));
    }
    // The attacker's own pending login carries the victim's nonce, so that only PKCE can tell:
    // first with a verifier of the attacker's own, then (the control) with the victim's.
    for (case, (code, victims), verifier) in [
        (
            "another verifier",
            &stolen[0],
            "attacker-verifier-0123456789-0123456789-0123456789".to_owned(),
        ),
        (
            "the victim's verifier",
            &stolen[1],
            stolen[1].1.pkce_verifier.clone(),
        ),
    ] {
        let (client, jar) = browser_with_jar();
        let attacker = TestApp::sharing(&app, client);
        let state = "AttackerStateAttackerSt".to_owned();
        plant_pending_login(
            &app,
            &jar,
            &PendingLogin {
                state: state.clone(),
                nonce: victims.nonce.clone(),
                pkce_verifier: verifier,
                return_to: ReturnTo::home(),
                created_at: keycloak_bff::server::unix_now(),
                order: 0,
                prompt: Default::default(),
                action: None,
                acr: None,
            },
        );
        let r = attacker
            .get(&format!(
                "/auth/callback?code={code}&state={state}&iss={ISSUER_PARAM}"
            ))
            .await;
        if case == "another verifier" {
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{case}");
            assert!(
                r.text()
                    .await
                    .expect("html")
                    .contains("Keycloak did not accept this sign-in"),
                "{case}: the token endpoint refused the code"
            );
            assert_eq!(attacker.current_user().await, Value::Null, "{case}");
        } else {
            // Without PKCE, this is what the stolen code would give the attacker.
            assert_eq!(r.status(), StatusCode::SEE_OTHER, "{case}");
            assert_eq!(attacker.current_user().await["username"], "paul", "{case}");
        }
    }
}

#[tokio::test]
async fn a08_starting_sign_ins_writes_nothing_on_the_server_however_many_clients_try() {
    let app = spawn_app().await;
    let store = app.state.auth.store();
    let flood: Vec<_> = (0..300)
        .map(|i| {
            let url = app.url(&format!("/auth/login?return_to=/{}", "x".repeat(i % 1500)));
            tokio::spawn(async move { browser().get(url).send().await.map(|r| r.status()) })
        })
        .collect();
    for started in flood {
        let status = started.await.expect("task").expect("login");
        assert_eq!(status, StatusCode::SEE_OTHER);
    }
    assert_eq!(store.len().await.expect("count"), 0, "no session record");
}

#[tokio::test]
async fn a08_many_tabs_each_get_a_login_and_only_the_newest_few_are_kept() {
    let (client, jar) = browser_with_jar();
    let server = spawn_app().await;
    let app = TestApp::sharing(&server, client);
    let mut authorizations = Vec::new();
    for _ in 0..12 {
        let r = app.get("/auth/login?return_to=/profile").await;
        for c in r.headers().get_all(SET_COOKIE) {
            assert!(c.len() < 1024, "a small cookie per login: {}", c.len());
        }
        authorizations.push(location(&r));
    }
    let held = cookies_sent(&jar, &app, "/auth/callback");
    assert_eq!(
        held.matches("kc_leptos_session_login_").count(),
        5,
        "{held}"
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
async fn f02_sign_out_awaits_no_return_from_keycloak_and_a_forged_return_changes_nothing() {
    let app = spawn_app().await;
    app.sign_in("erin").await;
    let other = TestApp::sharing(&app, browser());
    other.sign_in("paul").await;
    // Sign-out ends both sessions from the server and goes home: no state travels.
    let r = app.post("/auth/logout", Some(PUBLIC_ORIGIN)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/");
    // Whatever a forged "return from Keycloak" carries, it ends and starts nothing.
    for path in ["/?state=forged", "/?state=", "/", "/?state=%00"] {
        assert_eq!(other.get(path).await.status(), StatusCode::OK, "{path}");
        assert_eq!(app.get(path).await.status(), StatusCode::OK, "{path}");
    }
    assert_eq!(other.current_user().await["username"], "paul");
    assert_eq!(app.current_user().await, Value::Null);
}

#[tokio::test]
async fn g02_under_an_https_public_url_the_login_cookie_is_secure_and_scoped_to_the_auth_routes() {
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
        .find(|c| c.starts_with("__Secure-kc_leptos_session_login_"))
        .expect("a __Secure- login cookie")
        .to_owned();
    for flag in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/auth"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    assert!(!cookie.to_ascii_lowercase().contains("domain="), "{cookie}");
    // HSTS under https.
    assert_eq!(
        r.headers()
            .get("strict-transport-security")
            .and_then(|v| v.to_str().ok()),
        Some("max-age=63072000")
    );
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
async fn g01_a_real_session_id_planted_by_an_attacker_never_becomes_the_victims_session() {
    let app = spawn_app().await;
    // The attacker gets a real session id of their own, which the store knows.
    let attacker = TestApp::sharing(&app, browser());
    let r = attacker.login_as("erin", "/").await;
    let planted = session_cookie_value(&set_cookies(&r)).expect("attacker's session id");
    // ...and plants it in the victim's browser, who then signs in.
    let (client, jar) = browser_with_jar();
    let origin = url::Url::parse(&app.base).expect("url");
    jar.add_cookie_str(&format!("kc_leptos_session={planted}; Path=/"), &origin);
    let victim = TestApp::sharing(&app, client);
    let r = victim.login_as("paul", "/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let issued = session_cookie_value(&set_cookies(&r)).expect("a new session cookie");
    assert_ne!(issued, planted, "the session id changes at sign-in");
    assert_eq!(victim.current_user().await["username"], "paul");
    // The attacker's id does not open the victim's session.
    let r = app.current_user_with_cookie(&planted).await;
    assert_ne!(r.json::<Value>().await.expect("json")["username"], "paul");
}

#[tokio::test]
async fn pages_allow_only_their_own_script_nonce_and_forms_only_to_the_app_and_keycloak() {
    let app = spawn_app().await;
    let mut nonces = Vec::new();
    for _ in 0..2 {
        let r = app.get("/").await;
        let csp = r
            .headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .expect("a policy")
            .to_owned();
        assert!(csp.starts_with("default-src 'self';"), "{csp}");
        assert!(
            csp.ends_with("form-action 'self' http://localhost:8080"),
            "{csp}"
        );
        assert_eq!(
            keycloak_bff::core::csp::unsafe_script_sources(&csp),
            Vec::<&str>::new(),
            "no source that runs an injected script: {csp}"
        );
        assert_eq!(
            keycloak_bff::core::csp::script_sources(&csp).len(),
            3,
            "'self', the page's nonce and WebAssembly only: {csp}"
        );
        assert_eq!(r.headers()["cross-origin-opener-policy"], "same-origin");
        let permissions = r.headers()["permissions-policy"]
            .to_str()
            .unwrap_or_default();
        for feature in ["camera=()", "microphone=()", "geolocation=()", "payment=()"] {
            assert!(permissions.contains(feature), "{permissions}");
        }
        let nonce = csp
            .split("'nonce-")
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .expect("a script nonce")
            .to_owned();
        let html = r.text().await.expect("html");
        assert!(
            html.contains(&format!("nonce=\"{nonce}\"")),
            "the hydration script carries the policy's nonce"
        );
        nonces.push(nonce);
    }
    assert_ne!(nonces[0], nonces[1], "a new nonce per page");
    let r = app.get("/auth/login").await;
    assert!(r
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|csp| csp.contains("script-src 'self' 'wasm-unsafe-eval';")));
    assert!(
        r.headers().get("strict-transport-security").is_none(),
        "no HSTS over plain http"
    );
}
