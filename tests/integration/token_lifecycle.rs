//! The token lifecycle against the real Keycloak, in the `demo-short` realm (10-second access
//! tokens): server-side refresh with a single flight per session, roles and disabling picked up at
//! refresh, app restarts, the silent refresh route, and back-channel logout.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Keycloak's back-channel logout URL for `demo-app` is http://localhost:3000/...: tests that need
/// what Keycloak sends there take turns on the port.
static PORT_3000: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits until the access token of a session signed in now has expired.
async fn wait_for_token_expiry() {
    tokio::time::sleep(Duration::from_secs(SHORT_TOKEN_SECS + 1)).await;
}

#[tokio::test]
async fn fifty_concurrent_calls_after_the_token_expired_make_exactly_one_refresh() {
    let (admin, user, app) = signed_in_short_user("flight", &["viewer"]).await;
    assert_eq!(metric(&app.state.auth.metrics().token_refreshes), 0);
    wait_for_token_expiry().await;

    let calls = (0..50).map(|_| {
        let client = app.client.clone();
        let url = app.url("/api/current_user");
        tokio::spawn(async move {
            let r = client
                .post(url)
                .header("origin", PUBLIC_ORIGIN)
                .send()
                .await
                .expect("POST");
            (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
        })
    });
    let results = futures_join_all(calls).await;
    for (status, user_json) in &results {
        assert_eq!(*status, StatusCode::OK);
        assert_eq!(
            user_json["username"],
            user.username.as_str(),
            "every call is signed in"
        );
    }
    assert_eq!(
        metric(&app.state.auth.metrics().token_refreshes),
        1,
        "one refresh call for 50 concurrent requests"
    );
    // Keycloak rotates refresh tokens with reuse 0: a second use would have ended the session.
    assert_eq!(app.current_user().await["username"], user.username.as_str());
    assert_eq!(
        metric(&app.state.auth.metrics().token_refreshes),
        1,
        "the fresh token is reused"
    );
    admin.delete_user(&user).await;
}

async fn futures_join_all<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test]
async fn a_role_granted_in_keycloak_mid_session_shows_after_the_next_refresh() {
    let (admin, user, app) = signed_in_short_user("grant", &["viewer"]).await;
    let before = app.current_user().await;
    assert_eq!(strings(&before["client_roles"]), vec!["viewer"]);
    assert_eq!(app.get("/editor").await.status(), StatusCode::FORBIDDEN);

    admin.grant_client_role(&user, "editor").await;
    wait_for_token_expiry().await;
    let after = app.current_user().await;
    assert_eq!(strings(&after["client_roles"]), vec!["editor", "viewer"]);
    assert_eq!(app.get("/editor").await.status(), StatusCode::OK);
    assert!(after["session_expires_at"].as_i64() >= before["session_expires_at"].as_i64());
    admin.delete_user(&user).await;
}

#[tokio::test]
async fn a_user_disabled_in_keycloak_is_signed_out_at_the_next_refresh() {
    let (admin, user, app) = signed_in_short_user("disabled", &["editor"]).await;
    assert_eq!(app.get("/editor").await.status(), StatusCode::OK);

    admin.set_enabled(&user, false).await;
    wait_for_token_expiry().await;
    let r = app.post("/api/editor_desk", Some(PUBLIC_ORIGIN)).await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "the server function answers 401"
    );
    assert_eq!(app.current_user().await, Value::Null);
    assert_eq!(
        metric(&app.state.auth.metrics().sessions_ended_by_refresh),
        1
    );
    let page = app.get("/editor").await;
    assert_eq!(
        page.status(),
        StatusCode::FOUND,
        "the page asks for a new sign-in"
    );
    assert_eq!(location(&page), "/auth/login?return_to=%2Feditor");
    admin.delete_user(&user).await;
}

#[tokio::test]
async fn a_session_survives_an_app_restart_and_is_refreshed_by_the_new_process() {
    let (admin, user, app) = signed_in_short_user("restart", &["viewer"]).await;
    let (data_dir, client) = app.stop().await;
    wait_for_token_expiry().await;
    let app = spawn_app_in(data_dir, client, SHORT_REALM).await;
    assert_eq!(app.current_user().await["username"], user.username.as_str());
    assert_eq!(metric(&app.state.auth.metrics().token_refreshes), 1);
    admin.delete_user(&user).await;
}

#[tokio::test]
async fn the_silent_refresh_route_answers_the_user_and_the_new_expiry_never_a_token() {
    let admin = KeycloakAdmin::new("demo-short");
    let user = admin.create_user("silent", &["viewer"]).await;
    let app = spawn_short_app().await;
    let r = app.post("/auth/refresh", Some(PUBLIC_ORIGIN)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await.expect("json")["signed_in"], false);

    app.login_as(&user.username, "/").await;
    let r = app.post("/auth/refresh", Some(PUBLIC_ORIGIN)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let first: Value = r.json().await.expect("json");
    assert_eq!(first["signed_in"], true);
    assert_eq!(first["user"]["username"], user.username.as_str());
    assert_eq!(
        metric(&app.state.auth.metrics().token_refreshes),
        0,
        "no refresh needed yet"
    );

    wait_for_token_expiry().await;
    let r = app.post("/auth/refresh", Some(PUBLIC_ORIGIN)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let text = r.text().await.expect("text");
    assert!(!contains_jwt(&text) && !text.contains("token\""), "{text}");
    let second: Value = serde_json::from_str(&text).expect("json");
    assert!(second["access_expires_at"].as_i64() > first["access_expires_at"].as_i64());
    assert_eq!(metric(&app.state.auth.metrics().token_refreshes), 1);

    let cross = app.post("/auth/refresh", Some("http://evil.example")).await;
    assert_eq!(cross.status(), StatusCode::FORBIDDEN, "same-origin only");
    admin.delete_user(&user).await;
}

#[tokio::test]
async fn an_admin_logout_in_keycloak_reaches_the_app_and_ends_the_session_within_two_seconds() {
    let _port = PORT_3000.lock().await;
    let admin = KeycloakAdmin::new("demo-short");
    let leaving = admin.create_user("leaving", &["viewer"]).await;
    let staying = admin.create_user("staying", &["viewer"]).await;
    let app = spawn_app_on(
        tempfile::tempdir().expect("tmp"),
        browser(),
        SHORT_REALM,
        3000,
    )
    .await;
    app.login_as(&leaving.username, "/").await;
    // A second browser on the same app, signed in as someone else.
    let second_browser = TestApp::sharing(&app, browser());
    second_browser.login_as(&staying.username, "/").await;

    let started = Instant::now();
    admin.logout_user(&leaving).await;
    loop {
        if app.current_user().await == Value::Null {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "still signed in after 2 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(metric(&app.state.auth.metrics().backchannel_logouts), 1);
    assert_eq!(
        second_browser.current_user().await["username"],
        staying.username.as_str(),
        "another user's session is untouched"
    );
    app.stop().await;
    admin.delete_user(&leaving).await;
    admin.delete_user(&staying).await;
}

/// Receives what Keycloak posts to http://localhost:3000/auth/backchannel-logout.
async fn capture_logout_token(admin: &KeycloakAdmin, user: &TestUser) -> String {
    let captured = std::sync::Arc::new(tokio::sync::Mutex::new(None::<String>));
    let sink = captured.clone();
    let router = axum::Router::new().route(
        "/auth/backchannel-logout",
        axum::routing::post(move |body: String| {
            let sink = sink.clone();
            async move {
                *sink.lock().await = Some(body);
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000")
        .await
        .expect("port 3000");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    admin.logout_user(user).await;
    let started = Instant::now();
    let body = loop {
        if let Some(b) = captured.lock().await.clone() {
            break b;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "Keycloak sent no logout token"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    server.abort();
    body
}

fn hostile_token(header: Value, claims: &Value) -> String {
    let key =
        jsonwebtoken::EncodingKey::from_rsa_der(include_bytes!("fixtures/hostile-signer.key.der"));
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = header["kid"].as_str().map(str::to_owned);
    h.typ = Some("logout+jwt".into());
    jsonwebtoken::encode(&h, claims, &key).expect("sign")
}

fn b64(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn forged_and_replayed_logout_tokens_are_refused_and_delete_nothing() {
    let _port = PORT_3000.lock().await;
    let (admin, user, app) = signed_in_short_user("logout-target", &["viewer"]).await;
    let me = app.current_user().await;
    let sub = me["subject"].as_str().expect("subject").to_owned();

    let certs: Value = reqwest::get(format!(
        "{KEYCLOAK}/realms/demo-short/protocol/openid-connect/certs"
    ))
    .await
    .expect("certs")
    .json()
    .await
    .expect("json");
    let real_kid = certs["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["use"] == "sig" && k["alg"] == "RS256")
        .and_then(|k| k["kid"].as_str())
        .expect("kid")
        .to_owned();
    let now = keycloak_bff::server::unix_now();
    let claims = serde_json::json!({
        "iss": "http://localhost:8080/realms/demo-short", "aud": "demo-app", "sub": sub,
        "iat": now, "exp": now + 120, "jti": format!("forged-{now}"), "typ": "Logout",
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}}
    });
    let forged_sig = hostile_token(serde_json::json!({"kid": real_kid}), &claims);
    let forged_kid = hostile_token(serde_json::json!({"kid": "attacker-key"}), &claims);
    let none = format!(
        "{}.{}.",
        b64(&serde_json::json!({"alg": "none", "typ": "logout+jwt"})),
        b64(&claims)
    );
    let hs256 = {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some(real_kid.clone());
        jsonwebtoken::encode(
            &h,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"demo-app-dev-secret"),
        )
        .expect("hs256")
    };
    let fetches_before = app.state.auth.oidc().keys().fetch_count();
    let post = |body: String| {
        let client = browser();
        let url = app.url("/auth/backchannel-logout");
        async move {
            client
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .expect("POST")
        }
    };
    let enc = |t: &str| url::form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>();
    for (what, body) in [
        (
            "bad signature with Keycloak's kid",
            format!("logout_token={}", enc(&forged_sig)),
        ),
        ("unknown kid", format!("logout_token={}", enc(&forged_kid))),
        ("alg none", format!("logout_token={}", enc(&none))),
        (
            "HS256 with the client secret",
            format!("logout_token={}", enc(&hs256)),
        ),
        ("garbage", "logout_token=not.a.jwt".to_owned()),
        ("no token", String::new()),
        (
            "two tokens",
            format!("logout_token={0}&logout_token={0}", enc(&forged_sig)),
        ),
        (
            "oversized body",
            format!("logout_token={}", "A".repeat(40_000)),
        ),
    ] {
        let r = post(body).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{what}");
        assert_eq!(r.headers()["cache-control"], "no-store", "{what}");
        assert_eq!(
            app.current_user().await["username"],
            user.username.as_str(),
            "{what}: nothing deleted"
        );
    }
    assert!(
        app.state.auth.oidc().keys().fetch_count() <= fetches_before + 1,
        "forged tokens cost at most one key-set fetch"
    );
    assert_eq!(metric(&app.state.auth.metrics().backchannel_logouts), 0);

    // Keycloak's real logout token for this user: accepted once, refused when replayed.
    let body = capture_logout_token(&admin, &user).await;
    let first = post(body.clone()).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["cache-control"], "no-store");
    assert_eq!(app.current_user().await, Value::Null, "the session is gone");
    let replay = post(body).await;
    assert_eq!(
        replay.status(),
        StatusCode::BAD_REQUEST,
        "a replayed logout token is refused"
    );
    assert_eq!(metric(&app.state.auth.metrics().backchannel_logouts), 1);
    admin.delete_user(&user).await;
}
