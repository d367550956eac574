//! Keycloak out of the app's reach (catalogue C05, D05). With Keycloak unreachable the app
//! starts and serves its public pages; sign-in answers 503 with a clear page; once Keycloak is
//! back, sign-in works without restarting the app. An outage during a session signs nobody out:
//! the app keeps using the valid access token (nothing calls Keycloak per request), answers 503
//! once it has expired, and continues the same session when Keycloak is back.
//!
//! The outage is a cut TCP relay between the app and the real Keycloak (`common::relay`, given to
//! the app as `keycloak.internal_url`): to the app it is Keycloak gone (connections refused),
//! while the tests beside, and the test's own browser at Keycloak's pages, keep the real one.

use crate::common::relay::Relay;
use crate::common::*;
use keycloak_bff::server::test_support::Internals as _;
use reqwest::StatusCode;

/// The app calling Keycloak through `relay`: against `demo-short` (10-second tokens) when `short`,
/// else against the default realm.
async fn app_behind(relay: &Relay, short: bool) -> TestApp {
    let url = relay.url();
    let mut overrides: Vec<(&str, &str)> = if short {
        SHORT_REALM.to_vec()
    } else {
        Vec::new()
    };
    overrides.push(("APP_KEYCLOAK_INTERNAL_URL", url.as_str()));
    spawn_app_in(tempfile::tempdir().expect("tempdir"), browser(), &overrides).await
}

#[tokio::test]
async fn the_app_works_without_keycloak_and_signs_in_as_soon_as_it_is_back() {
    let mut relay = Relay::open().await;
    relay.cut().await;

    let app = app_behind(&relay, false).await;
    let home = app.get("/").await;
    assert_eq!(
        home.status(),
        StatusCode::OK,
        "public pages work while Keycloak is out of reach"
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

    relay.restore().await;
    // A failed discovery is remembered for 5 s (catalogue C05): sign-in works once that passes.
    let started = std::time::Instant::now();
    while app.get("/auth/login").await.status() == StatusCode::SERVICE_UNAVAILABLE {
        assert!(
            started.elapsed().as_secs() < 15,
            "sign-in did not come back with Keycloak"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
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
    let mut relay = Relay::open().await;
    let admin = KeycloakAdmin::new("demo-short");
    let user = admin.create_user("outage", &["editor"]).await;
    let app = app_behind(&relay, true).await;
    assert_eq!(
        app.login_as(&user.username, "/").await.status(),
        StatusCode::SEE_OTHER,
        "{} signs in",
        user.username
    );
    relay.cut().await;

    // The access token is still valid: everything works without Keycloak.
    assert_eq!(app.current_user().await["username"], user.username.as_str());
    assert_eq!(app.get("/editor").await.status(), StatusCode::OK);

    tokio::time::sleep(std::time::Duration::from_secs(SHORT_TOKEN_SECS + 1)).await;
    let r = app.post("/api/current_user", Some(PUBLIC_ORIGIN)).await;
    assert_eq!(
        r.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "expired token, Keycloak out of reach: 503"
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

    relay.restore().await;
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
