//! Redis behind Sentinel (`redis+sentinel://`): a master, a replica and three sentinels, two
//! replicas of the app, and the Redis master killed (`SIGKILL`) in the middle of a refresh storm.
//! After the failover every session is still signed in, no write the app acknowledged before the
//! kill is lost (a lost token rotation would make the next refresh spend a used refresh token,
//! which `demo-short` answers by ending the session; a lost sign-out would bring a session back),
//! and requests during the failover answer 503, never "signed out". Catalogue: E03 across a
//! failover, D02 (one refresh per session) across a failover.
//!
//! How long the sentinels take to promote the replica is theirs, not the app's (usually about 2 s
//! here; longer on a loaded machine, and a split vote waits out an election). So the storm lasts
//! until [`HEAL`] after the promotion that the sentinels announce, and the app must answer again
//! by then. That includes a session whose refresh lock was taken just before the kill: the lock
//! reached the replica while the confirmation of its write died with the old master, so it lives
//! on the new master; its holder releases it once the store answers again
//! (`store/orphans.rs`), instead of every refresh of the session waiting out `LOCK_TTL_MS`
//! (seen in CI before that: a call waited until 15.0 s after the kill). A failure names when the
//! master died, when the replica took over, and every answer that was not a 200, each with the
//! time it came (catalogue D03 across a failover).

use crate::common::*;
use keycloak_bff::server::test_support::TestSentinel;
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the storm lasts at least, and when in it the master dies.
const STORM: Duration = Duration::from_secs(16);
const KILL_AT: Duration = Duration::from_secs(3);
/// How long the storm goes on after the sentinels name the new master: the app finds it within
/// its reconnection back-off (2 s at most) and answers again.
const HEAL: Duration = Duration::from_secs(8);
/// How long the sentinels get to promote the replica.
const PROMOTION_LIMIT: Duration = Duration::from_secs(40);

/// One signed-in browser, on both replicas.
struct Browser {
    user: TestUser,
    on_a: TestApp,
    on_b: TestApp,
}

/// What a browser's request got during the storm: when it was asked, when its answer came, the
/// status, the user named (if any).
type Answer = (Duration, Duration, StatusCode, Option<String>);

/// A browser's storm: six calls at once, spread over both replicas, every 100 ms, until `end_ms`
/// after `started` (moved later once the new master is known).
fn storm(
    browser: &Browser,
    started: Instant,
    end_ms: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<Vec<Answer>> {
    let client = browser.on_a.client.clone();
    let urls = [
        browser.on_a.url("/api/current_user"),
        browser.on_b.url("/api/current_user"),
    ];
    tokio::spawn(async move {
        let mut answers = Vec::new();
        while started.elapsed() < Duration::from_millis(end_ms.load(Ordering::Relaxed)) {
            let calls: Vec<_> = (0..6)
                .map(|i| {
                    let call = client
                        .post(&urls[i % 2])
                        .header("origin", PUBLIC_ORIGIN)
                        .send();
                    let asked = started.elapsed();
                    tokio::spawn(async move {
                        let r = call.await.expect("POST");
                        let status = r.status();
                        let text = r.text().await.unwrap_or_default();
                        let at = started.elapsed();
                        let user = serde_json::from_str::<Value>(&text).unwrap_or(Value::Null);
                        match user["username"].as_str() {
                            Some(name) => (asked, at, status, Some(name.to_owned())),
                            // Not signed in, or not a user at all: what was said, for the report.
                            None if status == StatusCode::OK => (asked, at, status, None),
                            None => (asked, at, status, Some(text)),
                        }
                    })
                })
                .collect();
            for call in calls {
                answers.push(call.await.expect("task"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        answers
    })
}

async fn refresh_errors(admin: &KeycloakAdmin, user: &TestUser) -> Vec<Value> {
    let events = admin
        .get(&format!(
            "/events?user={}&type=REFRESH_TOKEN_ERROR",
            user.id
        ))
        .await;
    events.as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn killing_the_redis_master_in_a_refresh_storm_signs_nobody_out_and_loses_no_write() {
    let dir = tempfile::tempdir().expect("tmp");
    let sentinel = TestSentinel::start(dir.path()).expect("master, replica, sentinels");
    let first_master = sentinel.master_port();
    let url = sentinel.url();
    // Shared with the blocking calls that ask the sentinels (redis-cli) off the test's runtime,
    // which also runs both apps.
    let sentinel = Arc::new(Mutex::new(sentinel));
    let admin = KeycloakAdmin::new("demo-short");
    // Access tokens live 10 s and are refreshed 8 s before their end: every session refreshes
    // about every 2 s, so refreshes are under way when the master dies.
    let mut overrides = SHORT_REALM.to_vec();
    overrides.extend_from_slice(&[
        ("APP_SESSION_STORE", "redis"),
        ("APP_SESSION_REDIS_URL", &url),
        ("APP_SESSION_REFRESH_MARGIN_SECS", "8"),
        // The test command runs four tests at once on two cores: a replica may take a while to
        // confirm a write. The 503s of the failover then take up to this long each.
        ("APP_SESSION_REDIS_TIMEOUT_MS", "1500"),
    ]);
    let a = spawn_app_in(tempfile::tempdir().expect("tmp"), browser(), &overrides).await;
    let b = spawn_app_in(tempfile::tempdir().expect("tmp"), browser(), &overrides).await;
    let mut browsers = Vec::new();
    for _ in 0..4 {
        let user = admin.create_user("failover", &["viewer"]).await;
        let client = browser();
        let on_a = TestApp::sharing(&a, client.clone());
        let on_b = TestApp::sharing(&b, client);
        assert_eq!(
            on_a.login_as(&user.username, "/").await.status(),
            StatusCode::SEE_OTHER
        );
        browsers.push(Browser { user, on_a, on_b });
    }
    // A session signed out (and acknowledged) just before the kill must stay signed out.
    let leaver = admin.create_user("failover-leaver", &["viewer"]).await;
    let leaving = TestApp::sharing(&b, browser());
    let r = leaving.login_as(&leaver.username, "/").await;
    let cookie = session_cookie_value(&set_cookies(&r)).expect("session cookie");

    let started = Instant::now();
    let end_ms = Arc::new(AtomicU64::new(STORM.as_millis() as u64));
    let storms: Vec<_> = browsers
        .iter()
        .map(|b| storm(b, started, end_ms.clone()))
        .collect();
    let killed = async {
        tokio::time::sleep(KILL_AT - Duration::from_millis(200)).await;
        assert_eq!(
            leaving
                .post("/auth/logout", Some(PUBLIC_ORIGIN))
                .await
                .status(),
            StatusCode::SEE_OTHER,
            "signed out before the kill"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        // An answer may fail the instant the master dies, before the kill's own call returns.
        let killing_at = started.elapsed();
        let killed = {
            let sentinel = sentinel.clone();
            tokio::task::spawn_blocking(move || {
                sentinel
                    .lock()
                    .map_err(|_| "poisoned")?
                    .kill_master()
                    .ok_or("no master")
            })
            .await
            .expect("kill")
        };
        let killed_at = started.elapsed();
        // The storm goes on until HEAL after the sentinels name another master.
        let mut promoted = None;
        while promoted.is_none() && started.elapsed() < KILL_AT + PROMOTION_LIMIT {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let sentinel = sentinel.clone();
            let master = tokio::task::spawn_blocking(move || {
                sentinel.lock().ok().and_then(|s| s.master_port())
            })
            .await
            .expect("ask the sentinels");
            if master.is_some() && master != first_master {
                let at = started.elapsed();
                promoted = Some((master, at));
                let end = STORM.max(at + HEAL);
                end_ms.store(end.as_millis() as u64, Ordering::Relaxed);
            }
        }
        (killed, killing_at, killed_at, promoted)
    }
    .await;
    let mut answers = Vec::new();
    for storm in storms {
        answers.push(storm.await.expect("storm"));
    }
    let (killed, killing_at, killed_at, promoted) = killed;
    assert!(killed.is_ok(), "a master was killed: {killed:?}");
    let Some((new_master, promoted_at)) = promoted else {
        panic!(
            "the sentinels promoted no replica within {PROMOTION_LIMIT:?} of the kill (master \
             {first_master:?} killed at {killed_at:?})"
        );
    };

    let mut unavailable = Vec::new();
    for (browser, answers) in browsers.iter().zip(&answers) {
        for (asked, at, status, user) in answers {
            match *status {
                StatusCode::OK => assert_eq!(
                    user.as_deref(),
                    Some(browser.user.username.as_str()),
                    "at {at:?} (master killed at {killed_at:?}): {} was signed out",
                    browser.user.username
                ),
                StatusCode::SERVICE_UNAVAILABLE => unavailable.push(*at),
                other => panic!("at {at:?}: {other} {user:?} (master killed at {killed_at:?})"),
            }
            // No call waits long for the store: not past HEAL after it was asked or after the
            // promotion (a refresh lock left over from the kill would hold it until its expiry).
            assert!(
                *at <= (*asked).max(promoted_at) + HEAL,
                "a call asked at {asked:?} was answered at {at:?} ({status}): master \
                 {first_master:?} killed at {killed_at:?}, {new_master:?} named master at \
                 {promoted_at:?}"
            );
        }
        let last = answers
            .iter()
            .max_by_key(|(_, at, _, _)| *at)
            .expect("answers");
        let not_ok: Vec<_> = answers
            .iter()
            .filter(|(_, _, status, _)| *status != StatusCode::OK)
            .map(|(_, at, status, said)| (at.as_millis(), status.as_u16(), said.clone()))
            .collect();
        assert_eq!(
            last.2,
            StatusCode::OK,
            "healed within {HEAL:?} of the promotion: master {first_master:?} killed at \
             {killed_at:?}, {new_master:?} named master at {promoted_at:?}, the last answer came \
             at {:?}; the answers that were not 200 (ms, status, body): {not_ok:?}",
            last.1
        );
    }
    assert!(
        unavailable.iter().all(|at| *at >= killing_at),
        "503 only after the kill: {unavailable:?}, kill from {killing_at:?} to {killed_at:?}"
    );

    // After the failover, every session refreshes again with the token the last acknowledged
    // save holds: a lost save would spend a used token and end the session.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for browser in &browsers {
        for app in [&browser.on_a, &browser.on_b] {
            assert_eq!(
                app.current_user().await["username"],
                browser.user.username.as_str(),
                "still signed in after the failover"
            );
        }
        let errors = refresh_errors(&admin, &browser.user).await;
        assert!(
            errors.is_empty(),
            "no refresh token was spent twice: {errors:?}"
        );
    }
    let came_back = a.current_user_with_cookie(&cookie).await;
    assert_eq!(came_back.status(), StatusCode::OK);
    assert_eq!(
        came_back.json::<Value>().await.expect("JSON"),
        Value::Null,
        "a sign-out acknowledged before the kill stays done"
    );
    for browser in browsers {
        admin.delete_user(&browser.user).await;
    }
    admin.delete_user(&leaver).await;
}
