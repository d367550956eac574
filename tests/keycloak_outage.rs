//! With Keycloak down the app starts and serves its public pages; sign-in answers 503 with a
//! clear page; once Keycloak is back, sign-in works without restarting the app.
//!
//! A Keycloak outage during a session signs nobody out: the app keeps using the valid access token
//! (nothing calls Keycloak per request), answers 503 once it has expired, and continues the same
//! session when Keycloak is back.
//!
//! These stop and start the real Keycloak with the scripts in `keycloak/`, so they live in their
//! own test binary (cargo runs test binaries one after another) and take turns.
#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail by panicking

use keycloak_bff::server::test_support::Internals as _;
// The integration binary's helpers; this binary uses only some of them.
#[allow(dead_code)]
#[path = "integration/common/mod.rs"]
mod common;

use common::*;
use reqwest::StatusCode;
use std::process::Command;

fn script(name: &str) {
    let status = Command::new("bash")
        .arg(repo().join("keycloak").join(name))
        .status()
        .unwrap_or_else(|e| panic!("running keycloak/{name}: {e}"));
    assert!(status.success(), "keycloak/{name} failed");
}

/// Starts Keycloak again even when an assertion fails, so later tests find it running.
struct RestartKeycloakOnDrop;

impl Drop for RestartKeycloakOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = Command::new("bash")
                .arg(repo().join("keycloak/start.sh"))
                .status();
        }
    }
}

/// The tests here stop Keycloak: one at a time.
static KEYCLOAK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn the_app_works_without_keycloak_and_signs_in_as_soon_as_it_is_back() {
    let _one_at_a_time = KEYCLOAK.lock().await;
    let _guard = RestartKeycloakOnDrop;
    script("stop.sh");

    let app = spawn_app().await;
    let home = app.get("/").await;
    assert_eq!(
        home.status(),
        StatusCode::OK,
        "public pages work while Keycloak is down"
    );
    assert!(home.text().await.expect("html").contains("Sign in"));
    assert_eq!(app.current_user().await, serde_json::Value::Null);

    let r = app.get("/auth/login?return_to=/profile").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let html = r.text().await.expect("html");
    assert!(html.contains("Identity provider unavailable"), "{html}");
    assert!(
        html.contains("/auth/login?return_to=%2Fprofile"),
        "offers to try again"
    );

    script("start.sh");
    let r = app.login_as("erin", "/profile").await;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "sign-in works once Keycloak is back"
    );
    assert_eq!(location(&r), "/profile");
    assert_eq!(app.current_user().await["username"], "erin");
}

#[tokio::test]
async fn a_keycloak_outage_during_a_session_signs_nobody_out() {
    let _one_at_a_time = KEYCLOAK.lock().await;
    let _guard = RestartKeycloakOnDrop;
    let (admin, user, app) = signed_in_short_user("outage", &["editor"]).await;
    script("stop.sh");

    // The access token is still valid: everything works without Keycloak.
    assert_eq!(app.current_user().await["username"], user.username.as_str());
    assert_eq!(app.get("/editor").await.status(), StatusCode::OK);

    tokio::time::sleep(std::time::Duration::from_secs(SHORT_TOKEN_SECS + 1)).await;
    let r = app.post("/api/current_user", Some(PUBLIC_ORIGIN)).await;
    assert_eq!(
        r.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "expired token, Keycloak down: 503"
    );
    assert!(r.text().await.expect("body").contains("IdpUnavailable"));
    let r = app.post("/auth/refresh", Some(PUBLIC_ORIGIN)).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let page = app.get("/editor").await;
    assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(page
        .text()
        .await
        .expect("html")
        .contains("identity provider is unavailable"));
    assert_eq!(
        app.get("/").await.status(),
        StatusCode::OK,
        "public pages keep working"
    );

    script("start.sh");
    // The same session continues once a retry is due (back-off is at most 30 s).
    let started = std::time::Instant::now();
    loop {
        let r = app.post("/api/current_user", Some(PUBLIC_ORIGIN)).await;
        match r.status() {
            StatusCode::OK => {
                let body: serde_json::Value = r.json().await.expect("json");
                assert_eq!(body["username"], user.username.as_str(), "still signed in");
                break;
            }
            StatusCode::SERVICE_UNAVAILABLE => {}
            other => {
                panic!("unexpected {other} while Keycloak came back: nobody may be signed out")
            }
        }
        assert!(
            started.elapsed().as_secs() < 60,
            "the session did not continue"
        );
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    assert_eq!(app.get("/editor").await.status(), StatusCode::OK);
    assert_eq!(
        metric(&app.state.auth.metrics().sessions_ended_by_server),
        0
    );
    admin.delete_user(&user).await;
}
