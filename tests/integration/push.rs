//! The session event stream (`GET /auth/events`) that replaced polling: what an open page hears,
//! from its own process and, on Redis, from any replica, against the real Keycloak (`demo-short`:
//! 10-second access tokens).

use crate::common::*;
use keycloak_bff::server::test_support::Internals as _;
use keycloak_bff::server::test_support::TestRedis;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::{Duration, Instant};

/// How soon a change must reach an open page.
const PUSH_WITHIN: Duration = Duration::from_secs(2);

/// An open event stream, read as a browser's `EventSource` would.
struct Events {
    response: reqwest::Response,
    buffer: String,
    /// Everything received, to check that no token ever went out.
    raw: String,
}

impl Events {
    async fn open(app: &TestApp) -> Events {
        let response = app.get("/auth/events").await;
        assert_eq!(response.status(), StatusCode::OK, "the stream opens");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "Server-Sent Events"
        );
        assert_eq!(response.headers()["cache-control"], "no-store");
        Events {
            response,
            buffer: String::new(),
            raw: String::new(),
        }
    }

    /// The next `status` event's data, or `None` when the stream ended or `within` passed.
    async fn next_status(&mut self, within: Duration) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = "message";
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(name) = line.strip_prefix("event:") {
                        event = name.trim();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                if event == "status" {
                    return Some(serde_json::from_str(&data).expect("a JSON status"));
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => {
                    let text = String::from_utf8_lossy(&chunk).into_owned();
                    self.raw.push_str(&text);
                    self.buffer.push_str(&text);
                }
                Ok(_) | Err(_) => return None,
            }
        }
    }

    /// Whether the server ended the stream within `within`: the response's body ends (HTTP's own
    /// end of a chunked body). Data may come first (a last event, a keep-alive); a connection cut
    /// or reset is not an end and fails the test.
    async fn ends(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(None)) => return true,
                Ok(Ok(Some(chunk))) => self.raw.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(Err(e)) => panic!("the stream was cut, not ended: {e}"),
                Err(_) => return false,
            }
        }
    }
}

#[tokio::test]
async fn a_signed_out_browser_gets_one_signed_out_status_and_no_open_stream() {
    let app = spawn_app().await;
    let r = app.get("/auth/events").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    // The whole body arrives and ends: nothing stays open.
    let body = tokio::time::timeout(Duration::from_secs(5), r.text())
        .await
        .expect("the response ends")
        .expect("body");
    let data = body
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("one status");
    assert_eq!(
        serde_json::from_str::<Value>(data).expect("json")["signed_in"],
        false
    );
    assert!(body.starts_with("event: status\n"), "{body}");
}

#[tokio::test]
async fn the_stream_opens_with_the_user_and_when_to_ask_again_and_never_a_token() {
    let (admin, user, app) = signed_in_short_user("push-open", &["viewer"]).await;
    let mut events = Events::open(&app).await;
    let first = events
        .next_status(PUSH_WITHIN)
        .await
        .expect("a first status");
    assert_eq!(first["signed_in"], true);
    assert_eq!(first["user"]["username"], user.username.as_str());
    assert_eq!(strings(&first["user"]["client_roles"]), vec!["viewer"]);
    let check_in = first["check_in_secs"].as_i64().expect("check_in_secs");
    // 10-second tokens: ask once, when the token expires (the server refreshes it then).
    assert!((9..=10).contains(&check_in), "check_in_secs {check_in}");
    assert!(!contains_jwt(&events.raw), "no token on the stream");
    admin.delete_user(&user).await;
}

#[tokio::test]
async fn a_refresh_is_pushed_and_a_sign_out_ends_the_stream_at_once() {
    let (admin, user, app) = signed_in_short_user("push-single", &["viewer"]).await;
    let mut events = Events::open(&app).await;
    let first = events.next_status(PUSH_WITHIN).await.expect("first");
    tokio::time::sleep(Duration::from_secs(SHORT_TOKEN_SECS + 1)).await;
    // Another request of the browser refreshes the expired tokens: the stream says so.
    assert_eq!(app.current_user().await["username"], user.username.as_str());
    let refreshed = events.next_status(PUSH_WITHIN).await.expect("pushed");
    assert!(
        refreshed["access_expires_at"].as_i64() > first["access_expires_at"].as_i64(),
        "{refreshed} after {first}"
    );
    let started = Instant::now();
    assert_eq!(
        app.post("/auth/logout", Some(PUBLIC_ORIGIN)).await.status(),
        StatusCode::SEE_OTHER
    );
    let ended = events.next_status(PUSH_WITHIN).await.expect("pushed");
    assert_eq!(ended["signed_in"], false);
    assert!(events.ends(PUSH_WITHIN).await, "the stream closes");
    assert!(started.elapsed() < PUSH_WITHIN);
    assert!(!contains_jwt(&events.raw), "no token on the stream");
    admin.delete_user(&user).await;
}

#[tokio::test]
async fn what_one_replica_does_to_a_session_reaches_a_stream_held_by_another() {
    let redis = TestRedis::start().expect("redis-server");
    let admin = KeycloakAdmin::new("demo-short");
    let user = admin.create_user("push-replicas", &["viewer"]).await;
    let (a, b) = crate::replicas::two_replicas(&redis.url()).await;
    assert_eq!(
        a.login_as(&user.username, "/").await.status(),
        StatusCode::SEE_OTHER
    );
    let mut events = Events::open(&b).await;
    let first = events.next_status(PUSH_WITHIN).await.expect("first");
    assert_eq!(first["user"]["username"], user.username.as_str());

    // A refreshes; B's stream hears of it through Redis.
    tokio::time::sleep(Duration::from_secs(SHORT_TOKEN_SECS + 1)).await;
    assert_eq!(
        a.post("/auth/refresh", Some(PUBLIC_ORIGIN)).await.status(),
        StatusCode::OK
    );
    let refreshed = events.next_status(PUSH_WITHIN).await.expect("pushed");
    assert!(refreshed["access_expires_at"].as_i64() > first["access_expires_at"].as_i64());

    // A signs out; B's stream says so at once and closes.
    let started = Instant::now();
    assert_eq!(
        a.post("/auth/logout", Some(PUBLIC_ORIGIN)).await.status(),
        StatusCode::SEE_OTHER
    );
    let ended = events.next_status(PUSH_WITHIN).await.expect("pushed");
    assert_eq!(ended["signed_in"], false);
    assert!(started.elapsed() < PUSH_WITHIN);
    assert!(events.ends(PUSH_WITHIN).await, "the stream closes");
    admin.delete_user(&user).await;
}

#[tokio::test]
async fn an_open_stream_does_not_hold_up_a_graceful_shutdown() {
    let app = spawn_app().await;
    app.sign_in("paul").await;
    let mut events = Events::open(&app).await;
    assert!(events.next_status(PUSH_WITHIN).await.is_some());
    assert_eq!(metric_gauge(&app), 1, "one open stream counted");
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), app.stop())
        .await
        .expect("the server stops although a page listens");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(events.ends(PUSH_WITHIN).await, "the stream ended");
}

fn metric_gauge(app: &TestApp) -> i64 {
    app.state.auth.metrics().event_streams.get()
}

#[tokio::test]
async fn one_session_cannot_hold_more_than_a_few_streams_open() {
    let app = spawn_app().await;
    app.sign_in("paul").await;
    let max = keycloak_bff::server::test_support::MAX_STREAMS_PER_SESSION;
    // Ten at once: exactly the limit opens, the rest get 429.
    let mut tries = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (client, url) = (app.client.clone(), app.url("/auth/events"));
        tries.spawn(async move { client.get(url).send().await });
    }
    let answers: Vec<reqwest::Response> = tries
        .join_all()
        .await
        .into_iter()
        .map(|r| r.expect("an answer"))
        .collect();
    let (mut open, refused): (Vec<_>, Vec<_>) = answers
        .into_iter()
        .partition(|r| r.status() == StatusCode::OK);
    assert_eq!(open.len(), max, "exactly the limit opens");
    assert!(refused
        .iter()
        .all(|r| r.status() == StatusCode::TOO_MANY_REQUESTS));
    let refused = app.get("/auth/events").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    // One closes: there is room again.
    drop(open.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = Events::open(&app).await;
    assert!(again.next_status(PUSH_WITHIN).await.is_some());
}

/// Two replicas on `redis` against `demo-short`, with `overrides` added, sharing one browser.
async fn two_replicas_with(redis: &TestRedis, overrides: &[(&str, &str)]) -> (TestApp, TestApp) {
    let url = redis.url();
    let mut all = SHORT_REALM.to_vec();
    all.extend_from_slice(&[
        ("APP_SESSION_STORE", "redis"),
        ("APP_SESSION_REDIS_URL", &url),
    ]);
    all.extend_from_slice(overrides);
    let browser = browser();
    let a = spawn_app_in(tempfile::tempdir().expect("tmp"), browser.clone(), &all).await;
    let b = spawn_app_in(tempfile::tempdir().expect("tmp"), browser, &all).await;
    (a, b)
}

#[tokio::test]
async fn a_sessions_streams_are_capped_across_replicas_and_a_users_across_their_sessions() {
    let redis = TestRedis::start().expect("redis-server");
    let (a, b) =
        two_replicas_with(&redis, &[("APP_SESSION_MAX_EVENT_STREAMS_PER_USER", "6")]).await;
    let admin = KeycloakAdmin::new("demo-short");
    let user = admin.create_user("streams", &["viewer"]).await;
    assert_eq!(
        a.login_as(&user.username, "/").await.status(),
        StatusCode::SEE_OTHER
    );
    // The session's four, two on each replica: a fifth is refused on either.
    let mut held = Vec::new();
    for app in [&a, &b, &a, &b] {
        held.push(Events::open(app).await);
    }
    for app in [&a, &b] {
        let refused = app.get("/auth/events").await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.text().await.expect("text").contains("this session"));
    }
    // The same user in another browser: two more, then the user's limit (6) on every replica.
    let elsewhere = TestApp::sharing(&b, browser());
    assert_eq!(
        elsewhere.login_as(&user.username, "/").await.status(),
        StatusCode::SEE_OTHER
    );
    let elsewhere_on_a = TestApp::sharing(&a, elsewhere.client.clone());
    held.push(Events::open(&elsewhere).await);
    held.push(Events::open(&elsewhere_on_a).await);
    let refused = elsewhere_on_a.get("/auth/events").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.text().await.expect("text").contains("this user"));
    // A stream that ends gives its lease back: room again for the user.
    drop(held.pop());
    let mut again = None;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = elsewhere.get("/auth/events").await;
        if r.status() == StatusCode::OK {
            again = Some(r);
            break;
        }
    }
    assert!(again.is_some(), "room again once a stream closed");
    admin.delete_user(&user).await;
}

#[tokio::test]
async fn a_process_holds_no_more_streams_than_its_limit_and_says_503() {
    let app = spawn_app_in(
        tempfile::tempdir().expect("tmp"),
        browser(),
        &[("APP_SESSION_MAX_EVENT_STREAMS", "2")],
    )
    .await;
    app.sign_in("paul").await;
    let first = Events::open(&app).await;
    let other = TestApp::sharing(&app, browser());
    other.sign_in("alice").await;
    let _second = Events::open(&other).await;
    let refused = other.get("/auth/events").await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused
        .text()
        .await
        .expect("text")
        .contains("on this server"));
    drop(first);
    let mut reopened = false;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if other.get("/auth/events").await.status() == StatusCode::OK {
            reopened = true;
            break;
        }
    }
    assert!(reopened, "room again once a stream closed");
}

#[tokio::test]
async fn a_stream_is_closed_at_its_maximum_age_after_telling_the_browser_when_to_come_back() {
    let app = spawn_app_in(
        tempfile::tempdir().expect("tmp"),
        browser(),
        &[("APP_SESSION_MAX_EVENT_STREAM_AGE_SECS", "2")],
    )
    .await;
    app.sign_in("paul").await;
    let opened = Instant::now();
    let mut events = Events::open(&app).await;
    assert!(events.next_status(PUSH_WITHIN).await.is_some());
    assert!(
        events.ends(Duration::from_secs(6)).await,
        "closed at its maximum age"
    );
    assert!(
        opened.elapsed() >= Duration::from_millis(1_700),
        "not before"
    );
    let retry: u64 = events
        .raw
        .lines()
        .find_map(|l| l.strip_prefix("retry:"))
        .and_then(|ms| ms.trim().parse().ok())
        .expect("a retry field");
    assert!(
        (2_000..=5_000).contains(&retry),
        "reconnect after {retry} ms"
    );
    // The browser's new stream opens at once: the closed one gave its place back.
    let mut again = Events::open(&app).await;
    assert!(again.next_status(PUSH_WITHIN).await.is_some());
}

#[tokio::test]
async fn after_a_store_error_a_stream_reads_again_only_after_a_growing_pause() {
    use tower_sessions::SessionStore;
    let mut redis = TestRedis::start().expect("redis-server");
    let url = redis.url();
    let app = spawn_app_on_redis(&url).await;
    let r = app.login_as("paul", "/profile").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = session_cookie_value(&set_cookies(&r)).expect("session cookie");
    let mut events = Events::open(&app).await;
    assert!(events.next_status(PUSH_WITHIN).await.is_some());
    // The session's end comes in 2 s (as Keycloak's would), and the stream hears of it.
    let store = app.state.auth.store();
    let id: tower_sessions::session::Id = cookie.parse().expect("a session id");
    let mut record = store.load(&id).await.expect("load").expect("the record");
    let end = keycloak_bff::server::unix_now() + 2;
    record.data.get_mut("auth").expect("signed in")["user"]["session_expires_at"] =
        Value::from(end);
    store.save(&record).await.expect("save");
    let moved = events.next_status(PUSH_WITHIN).await.expect("the new end");
    assert_eq!(moved["session_expires_at"], end);
    // Redis goes away: at the end the stream cannot read the session. It says so, then waits
    // longer each time, instead of asking again and again.
    redis.stop();
    let _ = events.next_status(Duration::from_secs(5)).await;
    let said = events.raw.matches(": store unavailable").count();
    assert!(
        (1..=3).contains(&said),
        "{said} reads of a store that is down in the 3 s after the end"
    );
}
