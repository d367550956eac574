//! Several replicas of the app on one Redis (`session.store = "redis"`): what one replica does to
//! a session, every replica sees, and a session is refreshed once however many replicas serve
//! it at the same moment. Real Redis (a throw-away `redis-server`), real Keycloak (`demo-short`:
//! 10-second access tokens, refresh tokens rotated with reuse 0).

use crate::common::keycloak_proxy::{keycloak_proxy, TokenCalls};
use crate::common::*;
use keycloak_bff::server::test_support::Internals as _;
use keycloak_bff::server::test_support::TestRedis;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

/// Two replicas of the app on the Redis at `url`, against `demo-short`, sharing one browser.
pub(crate) async fn two_replicas(url: &str) -> (TestApp, TestApp) {
    let mut overrides = SHORT_REALM.to_vec();
    overrides.extend_from_slice(&[
        ("APP_SESSION_STORE", "redis"),
        ("APP_SESSION_REDIS_URL", url),
    ]);
    let browser = browser();
    let a = spawn_app_in(
        tempfile::tempdir().expect("tmp"),
        browser.clone(),
        &overrides,
    )
    .await;
    let b = spawn_app_in(tempfile::tempdir().expect("tmp"), browser, &overrides).await;
    (a, b)
}

/// The kinds of Keycloak's refresh events of `user` (`REFRESH_TOKEN`, `REFRESH_TOKEN_ERROR`),
/// as demo-short records them.
pub(crate) async fn refresh_events(admin: &KeycloakAdmin, user: &TestUser) -> Vec<String> {
    let events = admin
        .get(&format!(
            "/events?user={}&type=REFRESH_TOKEN&type=REFRESH_TOKEN_ERROR",
            user.id
        ))
        .await;
    events
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["type"].as_str().map(str::to_owned))
        .collect()
}

fn refreshes(apps: &[&TestApp]) -> u64 {
    apps.iter()
        .map(|app| metric(&app.state.auth.metrics().token_refreshes))
        .sum()
}

#[tokio::test]
async fn two_hundred_calls_spread_over_two_replicas_after_expiry_make_exactly_one_refresh() {
    let redis = TestRedis::start().expect("redis-server");
    let admin = KeycloakAdmin::new("demo-short");
    let user = admin.create_user("replicas", &["viewer"]).await;
    let (a, b) = two_replicas(&redis.url()).await;
    assert_eq!(
        a.login_as(&user.username, "/").await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        b.current_user().await["username"],
        user.username.as_str(),
        "the session signed in on A is there on B"
    );
    tokio::time::sleep(Duration::from_secs(SHORT_TOKEN_SECS + 1)).await;

    for (status, user_json) in concurrent_current_user(&[&a, &b], 200).await {
        assert_eq!(status, StatusCode::OK);
        assert_eq!(user_json["username"], user.username.as_str(), "signed in");
    }
    assert_eq!(refreshes(&[&a, &b]), 1, "one refresh for both replicas");
    // Keycloak rotates refresh tokens with reuse 0: a second use would have ended the session.
    assert_eq!(a.current_user().await["username"], user.username.as_str());
    assert_eq!(b.current_user().await["username"], user.username.as_str());
    assert_eq!(refreshes(&[&a, &b]), 1, "the fresh tokens are shared");
    // Keycloak saw one refresh too (demo-short records refresh events).
    let kinds = refresh_events(&admin, &user).await;
    assert_eq!(kinds, ["REFRESH_TOKEN"], "Keycloak's events");
    admin.delete_user(&user).await;
}

#[tokio::test]
async fn signing_out_on_one_replica_signs_out_on_every_replica() {
    let redis = TestRedis::start().expect("redis-server");
    let (a, b) = two_replicas(&redis.url()).await;
    a.sign_in("paul").await;
    assert_eq!(b.current_user().await["username"], "paul");
    assert_eq!(
        b.post("/auth/logout", Some(PUBLIC_ORIGIN)).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(a.current_user().await, Value::Null);
}

#[tokio::test]
async fn with_redis_down_pages_answer_503_nobody_is_signed_out_and_it_heals_by_itself() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut redis = TestRedis::start_persistent(dir.path()).expect("redis-server");
    let (a, _b) = two_replicas(&redis.url()).await;
    a.sign_in("paul").await;
    redis.stop();
    let r = a.post("/api/current_user", Some(PUBLIC_ORIGIN)).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let page = a.get("/profile").await;
    assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
    let html = page.text().await.expect("html");
    assert!(
        html.contains("Sessions are unavailable right now"),
        "{html}"
    );
    assert!(
        !html.contains(">Sign in</a>"),
        "the page does not pretend the user signed out"
    );
    redis.restart().expect("redis back");
    let mut user = Value::Null;
    for _ in 0..50 {
        let r = a.post("/api/current_user", Some(PUBLIC_ORIGIN)).await;
        if r.status() == StatusCode::OK {
            user = r.json().await.expect("JSON");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(user["username"], "paul", "healed, still signed in");
}

/// Everything Redis publishes on any channel for `within`, read as a subscriber would (RESP).
async fn published(port: u16, within: Duration) -> tokio::task::JoinHandle<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("redis");
    stream
        .write_all(b"*2\r\n$10\r\nPSUBSCRIBE\r\n$1\r\n*\r\n")
        .await
        .expect("psubscribe");
    let handle = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + within;
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        seen
    });
    // The subscription is in place before anything is published.
    tokio::time::sleep(Duration::from_millis(200)).await;
    handle
}

/// Every key Redis holds.
fn redis_keys(port: u16) -> Vec<String> {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--scan"])
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn nothing_in_redis_names_a_session_or_a_keycloak_session_in_clear() {
    let redis = TestRedis::start().expect("redis-server");
    let admin = KeycloakAdmin::new("demo-short");
    let user = admin.create_user("hashed", &["viewer"]).await;
    let (a, b) = two_replicas(&redis.url()).await;
    let listener = published(redis.port(), Duration::from_secs(15)).await;
    let r = a.login_as(&user.username, "/").await;
    let cookie = session_cookie_value(&set_cookies(&r)).expect("a session cookie");
    assert_eq!(b.current_user().await["username"], user.username.as_str());
    let sessions = admin.get(&format!("/users/{}/sessions", user.id)).await;
    let sid = sessions[0]["id"].as_str().expect("sid").to_owned();
    let keys = redis_keys(redis.port());
    assert!(keys.len() >= 4, "{keys:?}");
    // The records hold no token in clear either.
    for key in keys.iter().filter(|k| k.contains(":s:")) {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &redis.port().to_string(), "GET", key])
            .output()
            .expect("redis-cli");
        let value = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(value.contains("sealed:v1:"), "{value}");
        assert!(!contains_jwt(&value), "a token in clear in Redis: {value}");
    }
    for key in &keys {
        assert!(
            key.starts_with("kcbff:demo-app:"),
            "{key}: the app's namespace"
        );
        for (secret, what) in [(&cookie, "session id"), (&sid, "sid"), (&user.id, "sub")] {
            assert!(!key.contains(secret.as_str()), "{key} names the {what}");
        }
    }
    // A refresh and a sign-out announce the session to every replica, by its hash.
    wait_for_expiry_of_short_token().await;
    assert_eq!(a.current_user().await["username"], user.username.as_str());
    assert_eq!(
        b.post("/auth/logout", Some(PUBLIC_ORIGIN)).await.status(),
        StatusCode::SEE_OTHER
    );
    let seen = String::from_utf8_lossy(&listener.await.expect("listener")).into_owned();
    assert!(seen.contains("kcbff:demo-app:events:0"), "{seen}");
    assert!(
        !seen.contains(cookie.as_str()),
        "the cookie value was published: {seen}"
    );
    assert!(!seen.contains(sid.as_str()));
    admin.delete_user(&user).await;
}

async fn wait_for_expiry_of_short_token() {
    tokio::time::sleep(Duration::from_secs(SHORT_TOKEN_SECS - 2)).await;
}

#[tokio::test]
async fn replicas_share_sessions_over_tls_with_the_operators_ca_and_refuse_another_ca() {
    let dir = tempfile::tempdir().expect("tmp");
    let redis = TestRedis::start_tls(dir.path()).expect("redis-server with TLS");
    let url = redis.url();
    assert!(url.starts_with("rediss://"), "{url}");
    let ca = dir.path().join("ca.pem").display().to_string();
    let mut overrides = SHORT_REALM.to_vec();
    overrides.extend_from_slice(&[
        ("APP_SESSION_STORE", "redis"),
        ("APP_SESSION_REDIS_URL", url.as_str()),
        ("APP_SESSION_REDIS_CA_FILE", ca.as_str()),
    ]);
    let one_browser = browser();
    let a = spawn_app_in(
        tempfile::tempdir().expect("tmp"),
        one_browser.clone(),
        &overrides,
    )
    .await;
    let b = spawn_app_in(tempfile::tempdir().expect("tmp"), one_browser, &overrides).await;
    a.sign_in("paul").await;
    assert_eq!(
        b.current_user().await["username"],
        "paul",
        "shared over TLS"
    );
    // A certificate that does not chain to the CA named: the app does not start.
    let stranger = tempfile::tempdir().expect("tmp");
    let other = TestRedis::start_tls(stranger.path()).expect("another redis-server with TLS");
    let wrong_ca = stranger.path().join("ca.pem").display().to_string();
    overrides.retain(|(k, _)| *k != "APP_SESSION_REDIS_CA_FILE");
    overrides.push(("APP_SESSION_REDIS_CA_FILE", wrong_ca.as_str()));
    let refused = tokio::time::timeout(
        Duration::from_secs(20),
        kc_leptos::server::startup::Application::build(
            settings(tempfile::tempdir().expect("tmp").path(), &overrides),
            leptos_options(),
        ),
    )
    .await
    .expect("an answer");
    assert!(
        refused.is_err(),
        "a Redis whose certificate another CA signed"
    );
    drop(other);
}

#[tokio::test]
async fn two_apps_on_one_redis_share_no_session() {
    let redis = TestRedis::start().expect("redis-server");
    let url = redis.url();
    let (a, _b) = two_replicas(&url).await;
    let r = a.login_as("paul", "/").await;
    let cookie = session_cookie_value(&set_cookies(&r)).expect("a session cookie");
    let minimal_secret = realm_secret_of("minimal-app");
    let mut overrides = SHORT_REALM.to_vec();
    overrides.extend_from_slice(&[
        ("APP_SESSION_STORE", "redis"),
        ("APP_SESSION_REDIS_URL", url.as_str()),
        ("APP_KEYCLOAK_CLIENT_ID", "minimal-app"),
        ("APP_KEYCLOAK_CLIENT_SECRET", minimal_secret.as_str()),
    ]);
    let other = spawn_app_in(tempfile::tempdir().expect("tmp"), browser(), &overrides).await;
    let mine = a.current_user_with_cookie(&cookie).await;
    assert_eq!(
        mine.json::<Value>().await.expect("json")["username"],
        "paul"
    );
    let theirs = other.current_user_with_cookie(&cookie).await;
    assert_eq!(theirs.status(), StatusCode::OK);
    assert_eq!(
        theirs.json::<Value>().await.expect("json"),
        Value::Null,
        "another app on the same Redis does not know this session"
    );
}

#[tokio::test]
async fn a_stuck_redis_answers_503_within_the_redis_timeout_not_keycloaks() {
    let redis = TestRedis::start().expect("redis-server");
    let url = redis.url();
    let mut overrides = SHORT_REALM.to_vec();
    overrides.extend_from_slice(&[
        ("APP_SESSION_STORE", "redis"),
        ("APP_SESSION_REDIS_URL", url.as_str()),
        ("APP_SESSION_REDIS_TIMEOUT_MS", "300"),
        ("APP_KEYCLOAK_HTTP_TIMEOUT_SECS", "20"),
    ]);
    let app = spawn_app_in(tempfile::tempdir().expect("tmp"), browser(), &overrides).await;
    app.sign_in("paul").await;
    redis.pause();
    // Keycloak's timeout is 20 s; the answer must come long before (the client gives up at 3).
    let r = app
        .client
        .post(app.url("/api/current_user"))
        .header("origin", PUBLIC_ORIGIN)
        .timeout(Duration::from_secs(3))
        .send()
        .await;
    redis.resume();
    let r = r.expect("an answer while Redis is stuck");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    until_ready(&app).await;
    assert_eq!(
        app.current_user().await["username"],
        "paul",
        "nobody signed out"
    );
}

/// Waits until the app answers readiness again (Redis restarted and reconnected).
async fn until_ready(app: &TestApp) {
    for _ in 0..50 {
        if ready(app).await.0 == StatusCode::OK {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the app did not become ready again");
}

#[tokio::test]
async fn a_sign_in_that_returns_while_redis_is_down_gets_a_503_page_and_completes_once_it_is_back()
{
    let dir = tempfile::tempdir().expect("tmp");
    let mut redis = TestRedis::start_persistent(dir.path()).expect("redis-server");
    let (a, _b) = two_replicas(&redis.url()).await;
    let authorize = a.start_login("/profile").await;
    let callback = a.keycloak_login(&authorize, "paul", "paul-dev-pw").await;
    redis.stop();
    let r = a.client.get(&callback).send().await.expect("callback");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "not a 500");
    let html = r.text().await.expect("html");
    assert!(
        html.contains("Sessions are unavailable right now"),
        "{html}"
    );
    assert!(
        html.contains(r#"href="/auth/login?return_to=%2Fprofile""#),
        "offers to try again, to the same page: {html}"
    );
    redis.restart().expect("redis back");
    until_ready(&a).await;
    // Trying again: Keycloak's session signs the browser in without the password.
    let r = a.login_by_single_sign_on("/profile").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/profile");
    assert_eq!(a.current_user().await["username"], "paul");
}

#[tokio::test]
async fn a_sign_in_whose_session_no_redis_replica_confirms_gets_a_503_page_and_works_once_one_does()
{
    use keycloak_bff::server::test_support::TestSentinel;
    let dir = tempfile::tempdir().expect("tmp");
    let sentinel = TestSentinel::start(dir.path()).expect("master, replica, sentinels");
    let url = sentinel.url();
    let app = spawn_app_on_redis(&url).await;
    let authorize = app.start_login("/profile").await;
    let callback = app.keycloak_login(&authorize, "paul", "paul-dev-pw").await;
    // The replica stays connected and confirms nothing: a write the app cannot be sure survives
    // a failover is not a session.
    sentinel.freeze_replica(true);
    let r = app.client.get(&callback).send().await.expect("callback");
    sentinel.freeze_replica(false);
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "not a 500");
    assert_eq!(
        session_cookie_value(&set_cookies(&r)),
        None,
        "no session cookie"
    );
    let html = r.text().await.expect("body");
    assert!(
        html.contains("<h1>Sessions are unavailable right now</h1>"),
        "a page a person can read: {html}"
    );
    assert!(
        html.contains(r#"href="/auth/login?return_to=%2Fprofile">Try again</a>"#),
        "offers to try again, to the same page: {html}"
    );
    assert_eq!(app.current_user().await, Value::Null);
    // Once the replica confirms again, trying again signs in (Keycloak's session, no password).
    // A replica just thawed on a loaded machine may take a moment to confirm writes again (seen
    // in CI: a try 0.4 s after the thaw still got the 503 page): as a person would, try again.
    let started = std::time::Instant::now();
    let r = loop {
        let r = app.login_by_single_sign_on("/profile").await;
        if r.status() != StatusCode::SERVICE_UNAVAILABLE || started.elapsed().as_secs() >= 10 {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/profile");
    assert_eq!(app.current_user().await["username"], "paul");
}

#[tokio::test]
async fn signing_out_while_redis_is_down_drops_the_cookie_and_ends_the_session_once_redis_is_back()
{
    let dir = tempfile::tempdir().expect("tmp");
    let mut redis = TestRedis::start_persistent(dir.path()).expect("redis-server");
    let (a, b) = two_replicas(&redis.url()).await;
    let r = a.login_as("paul", "/profile").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // A copy of the cookie (another tab's, or a thief's): the sign-out must end it too.
    let copy = session_cookie_value(&set_cookies(&r)).expect("a session cookie");
    redis.stop();
    let r = a.post("/auth/logout", Some(PUBLIC_ORIGIN)).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "not a 500");
    let cookies = set_cookies(&r);
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("kc_leptos_session=;") && c.contains("Max-Age=0")),
        "the browser drops its session cookie: {cookies:?}"
    );
    let html = r.text().await.expect("html");
    assert!(html.contains("Signed out of this browser"), "{html}");
    assert!(
        html.contains("as soon as sessions are available again"),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            "{KEYCLOAK}/realms/demo-short/protocol/openid-connect/logout?"
        )),
        "offers Keycloak's own sign-out: {html}"
    );
    redis.restart().expect("redis back");
    until_ready(&a).await;
    assert_eq!(
        a.current_user().await,
        Value::Null,
        "this browser stays signed out once the store is back"
    );
    // The server ends the session itself once Redis answers (retried 1, 2, 4… s apart): the copy
    // of the cookie stops working on every replica.
    let mut ended = false;
    for _ in 0..40 {
        let on_a: Value = a
            .current_user_with_cookie(&copy)
            .await
            .json()
            .await
            .expect("JSON");
        let on_b: Value = b
            .current_user_with_cookie(&copy)
            .await
            .json()
            .await
            .expect("JSON");
        if on_a == Value::Null && on_b == Value::Null {
            ended = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(
        ended,
        "the sign-out taken while Redis was down holds once it is back"
    );
}

async fn ready(app: &TestApp) -> (StatusCode, Value) {
    let r = app.get("/health/ready").await;
    (r.status(), r.json().await.expect("JSON"))
}

async fn ready_in_detail(app: &TestApp) -> (StatusCode, Value) {
    let r = app.get_operator("/health/ready").await;
    (r.status(), r.json().await.expect("JSON"))
}

#[tokio::test]
async fn readiness_follows_the_session_store_and_names_the_failing_part_only_to_operators() {
    let mut redis = TestRedis::start().expect("redis-server");
    let (a, _b) = two_replicas(&redis.url()).await;
    assert_eq!(a.get("/health/live").await.status(), StatusCode::OK);
    let (status, body) = ready(&a).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"status": "ready"}));
    redis.stop();
    let (status, body) = ready(&a).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        json!({"status": "not ready"}),
        "the public probe names no part"
    );
    let (status, body) = ready_in_detail(&a).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["store"], "unavailable");
    assert_eq!(body["keycloak"], "ready");
    assert_eq!(a.get("/health/live").await.status(), StatusCode::OK);
    redis.restart().expect("redis back");
    let mut back = false;
    for _ in 0..50 {
        if ready(&a).await.0 == StatusCode::OK {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "ready again once Redis is back");
}

/// The value of the Prometheus sample `name` (with its labels as written), 0 when absent.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_the_sign_ins_refreshes_and_refused_tokens_the_test_caused() {
    let app = spawn_app_in(
        tempfile::tempdir().expect("tmp"),
        browser(),
        &[("APP_SESSION_REFRESH_MARGIN_SECS", "3600")],
    )
    .await;
    app.sign_in("paul").await;
    // A margin longer than the token's life: this call refreshes.
    assert_eq!(app.current_user().await["username"], "paul");
    let refused = app
        .client
        .get(app.url("/api/v1/me"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .expect("bearer");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let r = app.get_operator("/metrics").await;
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.expect("text");
    assert_eq!(
        sample(&text, r#"keycloak_bff_sign_ins_total{outcome="started"}"#),
        1.0
    );
    assert_eq!(
        sample(&text, r#"keycloak_bff_sign_ins_total{outcome="completed"}"#),
        1.0
    );
    assert!(
        sample(&text, r#"keycloak_bff_refreshes_total{outcome="ok"}"#) >= 1.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"keycloak_bff_bearer_refused_total{reason="malformed"}"#
        ),
        1.0
    );
    assert!(
        sample(
            &text,
            r#"keycloak_bff_auth_request_seconds_count{route="callback"}"#
        ) >= 1.0,
        "{text}"
    );
    assert!(!contains_jwt(&text));
}

#[tokio::test]
async fn metrics_are_served_only_on_the_operators_address_and_not_at_all_when_off() {
    let app = spawn_app().await;
    let public = app.get("/metrics").await;
    assert_eq!(
        public.status(),
        StatusCode::NOT_FOUND,
        "not on the app's port"
    );
    let addr = app.state.auth.metrics_addr().expect("served");
    assert!(addr.ip().is_loopback());
    let r = app.get_operator("/metrics").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r
        .text()
        .await
        .expect("text")
        .contains("# TYPE keycloak_bff_sign_ins counter"));
    let off = spawn_app_in(
        tempfile::tempdir().expect("tmp"),
        browser(),
        &[("APP_AUTH_METRICS_ADDR", "off")],
    )
    .await;
    assert_eq!(off.state.auth.metrics_addr(), None);
    assert_eq!(off.get("/metrics").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(off.get("/health/ready").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn sessions_survive_a_restart_of_a_persistent_redis() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut redis = TestRedis::start_persistent(dir.path()).expect("redis-server");
    let (a, b) = two_replicas(&redis.url()).await;
    a.sign_in("erin").await;
    redis.restart().expect("redis back");
    let mut user = Value::Null;
    for _ in 0..50 {
        let r = b.post("/api/current_user", Some(PUBLIC_ORIGIN)).await;
        if r.status() == StatusCode::OK {
            user = r.json().await.expect("JSON");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        user["username"], "erin",
        "still signed in after Redis restarted"
    );
}

async fn stalling_proxy() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    keycloak_proxy(TokenCalls::Stall).await
}

#[tokio::test]
async fn a_refresh_slower_than_the_lock_lifetime_keeps_its_lock_and_nobody_is_signed_out() {
    use std::sync::atomic::Ordering;
    let redis = TestRedis::start().expect("redis-server");
    let url = redis.url();
    let ttl = Duration::from_millis(keycloak_bff::server::test_support::LOCK_TTL_MS as u64);
    // Keycloak answers replica A's refresh this late: past the lock's lifetime.
    let (proxy, delayed) =
        keycloak_proxy(TokenCalls::DelayAnswers(ttl + Duration::from_secs(4))).await;
    let admin = KeycloakAdmin::new("demo-short");
    let user = admin.create_user("slow", &["viewer"]).await;
    let mut overrides = SHORT_REALM.to_vec();
    overrides.extend_from_slice(&[
        ("APP_SESSION_STORE", "redis"),
        ("APP_SESSION_REDIS_URL", url.as_str()),
        ("APP_KEYCLOAK_HTTP_TIMEOUT_SECS", "60"),
    ]);
    let one_browser = browser();
    let b = spawn_app_in(
        tempfile::tempdir().expect("tmp"),
        one_browser.clone(),
        &overrides,
    )
    .await;
    overrides.push(("APP_KEYCLOAK_INTERNAL_URL", proxy.as_str()));
    let a = spawn_app_in(tempfile::tempdir().expect("tmp"), one_browser, &overrides).await;
    assert_eq!(
        a.login_as(&user.username, "/").await.status(),
        StatusCode::SEE_OTHER
    );
    tokio::time::sleep(Duration::from_secs(SHORT_TOKEN_SECS)).await;
    // A refreshes (Keycloak rotates at once, A hears it late); B asks past the lock's lifetime.
    let slow = tokio::spawn({
        let (client, at) = (a.client.clone(), a.url("/api/current_user"));
        async move { client.post(at).header("origin", PUBLIC_ORIGIN).send().await }
    });
    tokio::time::sleep(ttl + Duration::from_secs(1)).await;
    assert_eq!(
        delayed.load(Ordering::SeqCst),
        1,
        "A's refresh is in flight"
    );
    assert_eq!(
        b.current_user().await["username"],
        user.username.as_str(),
        "B waited for A"
    );
    let from_a: Value = slow
        .await
        .expect("task")
        .expect("A answers")
        .json()
        .await
        .expect("json");
    assert_eq!(
        from_a["username"],
        user.username.as_str(),
        "A signed nobody out"
    );
    // A's tokens arrive already expired (10-second tokens, held 19 s): B refreshes once more,
    // with the token A saved, never with the one A spent.
    let made = refreshes(&[&a, &b]);
    let kinds = refresh_events(&admin, &user).await;
    assert!(
        kinds.iter().all(|k| k == "REFRESH_TOKEN"),
        "no refresh token was spent twice: {kinds:?}"
    );
    assert_eq!(
        kinds.len() as u64,
        made,
        "Keycloak saw each refresh the replicas made"
    );
    admin.delete_user(&user).await;
}

#[tokio::test]
async fn a_replica_killed_mid_refresh_loses_no_session_and_the_other_replica_finishes_the_storm() {
    use std::sync::atomic::Ordering;
    let redis = TestRedis::start().expect("redis-server");
    let (proxy, held) = stalling_proxy().await;
    let admin = KeycloakAdmin::new("demo-short");
    let user = admin.create_user("killed", &["viewer"]).await;
    let mut overrides = SHORT_REALM.to_vec();
    let url = redis.url();
    overrides.extend_from_slice(&[
        ("APP_SESSION_STORE", "redis"),
        ("APP_SESSION_REDIS_URL", &url),
    ]);
    let a = spawn_app_in(tempfile::tempdir().expect("tmp"), browser(), &overrides).await;

    // Replica B: the real server binary, in a process of its own, reaching Keycloak through the
    // proxy that stalls its token calls.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let data = tempfile::tempdir().expect("tmp");
    let mut b = std::process::Command::new(env!("CARGO_BIN_EXE_kc-leptos"))
        .current_dir(repo())
        .envs([
            ("LEPTOS_OUTPUT_NAME", "kc-leptos"),
            ("LEPTOS_SITE_ROOT", "target/site"),
            ("LEPTOS_SITE_PKG_DIR", "pkg"),
            ("LEPTOS_SITE_ADDR", &format!("127.0.0.1:{port}")),
            ("APP_APP_DATA_DIR", &data.path().display().to_string()),
            ("APP_KEYCLOAK_CLIENT_SECRET", &realm_client_secret()),
            ("APP_KEYCLOAK_INTERNAL_URL", &proxy),
            ("APP_KEYCLOAK_HTTP_TIMEOUT_SECS", "60"),
            ("APP_SESSION_SECRET", TEST_SESSION_SECRET),
            ("APP_AUTH_METRICS_ADDR", "127.0.0.1:0"),
            ("RUST_LOG", "warn"),
        ])
        .envs(overrides.iter().map(|(k, v)| (*k, *v)))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("replica B");
    let b_url = format!("http://localhost:{port}/api/current_user");
    let call_b = || a.client.post(&b_url).header("origin", PUBLIC_ORIGIN).send();
    assert_eq!(
        a.login_as(&user.username, "/").await.status(),
        StatusCode::SEE_OTHER
    );
    let mut up = false;
    for _ in 0..100 {
        if let Ok(r) = call_b().await {
            let signed_in: Value = r.json().await.unwrap_or(Value::Null);
            assert_eq!(
                signed_in["username"],
                user.username.as_str(),
                "B sees the session"
            );
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "replica B answers");
    tokio::time::sleep(Duration::from_secs(SHORT_TOKEN_SECS + 1)).await;

    // B takes the refresh lock and calls Keycloak's token endpoint; the call hangs in the proxy.
    let stuck = tokio::spawn(call_b());
    while held.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The storm arrives on A meanwhile, and B dies mid-refresh.
    let replicas = [&a];
    let (storm, ()) = tokio::join!(concurrent_current_user(&replicas, 100), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        b.kill().expect("kill -9");
        let _ = b.wait();
    });
    assert!(
        stuck.await.expect("task").is_err(),
        "B's request died with B"
    );

    for (status, answer) in storm {
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            answer["username"],
            user.username.as_str(),
            "nobody signed out"
        );
    }
    assert_eq!(
        metric(&a.state.auth.metrics().token_refreshes),
        1,
        "A refreshed once, after B's lock expired"
    );
    assert_eq!(a.current_user().await["username"], user.username.as_str());
    assert_eq!(
        refresh_events(&admin, &user).await.len(),
        1,
        "one refresh reached Keycloak"
    );
    admin.delete_user(&user).await;
}
