//! Back-channel logout against the real Keycloak: what Keycloak posts to the app's registered
//! back-channel URL, http://localhost:3000/auth/backchannel-logout.
//!
//! These tests listen on port 3000, where Keycloak delivers every back-channel logout of the realm's
//! `demo-app` sessions, so they live in their own binary: beside the other integration tests, a
//! sign-out there would post to whatever these tests left listening on the port, and Keycloak's
//! end-session would wait on it. Within this binary they take turns on the port.
#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail by panicking

use keycloak_bff::server::test_support::Internals as _;
// The integration binary's helpers; this binary uses only some of them.
#[allow(dead_code)]
#[path = "integration/common/mod.rs"]
mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::{Duration, Instant};

static PORT_3000: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Ends all of the user's Keycloak sessions; Keycloak sends back-channel logout tokens.
async fn logout_user(admin: &KeycloakAdmin, user: &TestUser) {
    let status = admin
        .send(
            reqwest::Method::POST,
            &format!("/users/{}/logout", user.id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
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
    logout_user(&admin, &leaving).await;
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
                // Like the app: Keycloak must not keep a pooled connection to this short-lived
                // server for the next test's delivery.
                ([(axum::http::header::CONNECTION, "close")], "{}")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000")
        .await
        .expect("port 3000");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    logout_user(admin, user).await;
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

/// Two replicas with `overrides` (one shared Redis), reached by one browser.
async fn two_replicas_of_one_browser(overrides: &[(&str, &str)]) -> (TestApp, TestApp) {
    let browser_of_user = browser();
    let a = spawn_app_in(
        tempfile::tempdir().expect("tmp"),
        browser_of_user.clone(),
        overrides,
    )
    .await;
    let b = spawn_app_in(
        tempfile::tempdir().expect("tmp"),
        browser_of_user,
        overrides,
    )
    .await;
    (a, b)
}

fn hostile_token(header: Value, claims: &Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_rsa_der(include_bytes!(
        "integration/fixtures/hostile-signer.key.der"
    ));
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
    let post = |body: String| logout_post(&app, body);
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
    assert_eq!(
        first.headers()["connection"],
        "close",
        "Keycloak must not reuse the connection for the next delivery"
    );
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

fn logout_post(
    app: &TestApp,
    body: String,
) -> impl std::future::Future<Output = reqwest::Response> {
    let (client, url) = (browser(), app.url("/auth/backchannel-logout"));
    async move {
        client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("POST")
    }
}

#[tokio::test]
async fn a_replayed_logout_token_is_refused_after_a_restart_of_the_app_on_sqlite() {
    let _port = PORT_3000.lock().await;
    let (admin, user, app) = signed_in_short_user("replay-restart", &["viewer"]).await;
    let body = capture_logout_token(&admin, &user).await;
    assert_eq!(
        logout_post(&app, body.clone()).await.status(),
        StatusCode::OK
    );
    let (data, client) = app.stop().await;
    let restarted = spawn_app_in(data, client, SHORT_REALM).await;
    assert_eq!(
        logout_post(&restarted, body).await.status(),
        StatusCode::BAD_REQUEST,
        "the used token id survived the restart"
    );
    admin.delete_user(&user).await;
}

#[tokio::test]
async fn on_redis_a_logout_delivered_to_one_replica_ends_the_session_everywhere_and_replays_fail_on_every_replica(
) {
    let _port = PORT_3000.lock().await;
    let redis = keycloak_bff::server::test_support::TestRedis::start().expect("redis-server");
    let url = redis.url();
    let mut overrides = SHORT_REALM.to_vec();
    overrides.extend_from_slice(&[
        ("APP_SESSION_STORE", "redis"),
        ("APP_SESSION_REDIS_URL", &url),
    ]);
    let (a, b) = two_replicas_of_one_browser(&overrides).await;
    let admin = KeycloakAdmin::new("demo-short");
    let user = admin.create_user("replica-logout", &["viewer"]).await;
    assert_eq!(
        a.login_as(&user.username, "/").await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(b.current_user().await["username"], user.username.as_str());

    let body = capture_logout_token(&admin, &user).await;
    assert_eq!(logout_post(&a, body.clone()).await.status(), StatusCode::OK);
    assert_eq!(
        b.current_user().await,
        Value::Null,
        "ended on the other replica too"
    );
    assert_eq!(
        logout_post(&b, body.clone()).await.status(),
        StatusCode::BAD_REQUEST,
        "replayed to the other replica"
    );
    a.stop().await;
    b.stop().await;
    let c = spawn_app_in(tempfile::tempdir().expect("tmp"), browser(), &overrides).await;
    assert_eq!(
        logout_post(&c, body).await.status(),
        StatusCode::BAD_REQUEST,
        "replayed to a replica started afterwards"
    );
    admin.delete_user(&user).await;
}

#[tokio::test]
async fn on_redis_a_logout_that_came_while_redis_was_down_is_done_once_it_is_back() {
    let _port = PORT_3000.lock().await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut redis = keycloak_bff::server::test_support::TestRedis::start_persistent(dir.path())
        .expect("redis-server");
    let url = redis.url();
    // Realm demo: 5-minute tokens, so no refresh (which Keycloak would refuse for the session it
    // ended) can end the app's session in the test's place.
    // Redis writes its append-only file before it answers (`appendfsync always`, so that the
    // session survives the kill below). Beside the test command's parallel build the sign-in
    // was once a 503 (CI), most likely an fsync over the 500 ms default command limit. A longer
    // limit can only delay the outage's 503 below, which is what the test expects there.
    let overrides = [
        ("APP_SESSION_STORE", "redis"),
        ("APP_SESSION_REDIS_URL", url.as_str()),
        ("APP_SESSION_REDIS_TIMEOUT_MS", "3000"),
    ];
    let (a, b) = two_replicas_of_one_browser(&overrides).await;
    let admin = KeycloakAdmin::new("demo");
    let user = admin.create_user("logout-in-outage", &["viewer"]).await;
    let signed_in = a.login_as(&user.username, "/").await;
    let status = signed_in.status();
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "signs in: {}",
        signed_in.text().await.unwrap_or_default()
    );
    let body = capture_logout_token(&admin, &user).await;
    // Keycloak delivers it while Redis is down (and never delivers it again).
    redis.stop();
    let r = logout_post(&a, body).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "not a 500");
    redis.restart().expect("redis back");
    let started = Instant::now();
    loop {
        let r = b.post("/api/current_user", Some(PUBLIC_ORIGIN)).await;
        if r.status() == StatusCode::OK && r.json::<Value>().await.expect("JSON") == Value::Null {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the logout was lost: still signed in 30 s after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    admin.delete_user(&user).await;
}
