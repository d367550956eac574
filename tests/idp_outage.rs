//! With Keycloak down the app starts and serves its public pages; sign-in answers 503 with a
//! clear page; once Keycloak is back, sign-in works without restarting the app.
//!
//! This stops and starts the real Keycloak with the scripts in `keycloak/`, so it lives in its own
//! test binary (cargo runs test binaries one after another) and is a single test.
#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail by panicking

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

#[tokio::test]
async fn the_app_works_without_keycloak_and_signs_in_as_soon_as_it_is_back() {
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
