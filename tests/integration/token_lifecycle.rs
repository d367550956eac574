//! The token lifecycle against the real Keycloak, in the `demo-short` realm (10-second access
//! tokens): server-side refresh with a single flight per session, roles and disabling picked up at
//! refresh, app restarts, the silent refresh route, and back-channel logout. Catalogue D03, D04,
//! D06 (a refresh the browser gave up on still saves the rotated tokens).

use crate::common::keycloak_proxy::{keycloak_proxy, TokenCalls};
use crate::common::*;
use crate::replicas::refresh_events;
use keycloak_bff::server::test_support::Internals as _;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

/// Waits until the access token of a session signed in now has expired.
async fn wait_for_token_expiry() {
    tokio::time::sleep(Duration::from_secs(SHORT_TOKEN_SECS + 1)).await;
}

#[tokio::test]
async fn fifty_concurrent_calls_after_the_token_expired_make_exactly_one_refresh() {
    let (admin, user, app) = signed_in_short_user("flight", &["viewer"]).await;
    assert_eq!(metric(&app.state.auth.metrics().token_refreshes), 0);
    wait_for_token_expiry().await;

    let results = concurrent_current_user(&[&app], 50).await;
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
        metric(&app.state.auth.metrics().sessions_ended_by_server),
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

/// Every session row of the app's SQLite store, as bytes.
async fn raw_sqlite_rows(db: &std::path::Path) -> Vec<Vec<u8>> {
    let pool = keycloak_bff::server::open_sqlite(db).await.expect("sqlite");
    let rows: Vec<Vec<u8>> = sqlx::query_scalar("SELECT data FROM tower_sessions")
        .fetch_all(&pool)
        .await
        .expect("rows");
    pool.close().await;
    rows
}

#[tokio::test]
async fn tokens_at_rest_are_sealed_and_a_process_without_a_secret_keeps_its_sessions_across_a_restart(
) {
    // No session.secret: the key is generated once beside the database.
    let no_secret = [("APP_SESSION_SECRET", "")];
    let app = spawn_app_in(tempfile::tempdir().expect("tmp"), browser(), &no_secret).await;
    app.sign_in("paul").await;
    let db = app.data_dir.path().join("sessions.sqlite3");
    let rows = raw_sqlite_rows(&db).await;
    assert!(!rows.is_empty());
    for row in &rows {
        let text = String::from_utf8_lossy(row);
        assert!(!contains_jwt(&text), "a token in clear in SQLite: {text}");
    }
    let key = app.data_dir.path().join("sessions.sqlite3.key");
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&key)
            .expect("the key file")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode, 0o600, "the owner's alone");
    let (data_dir, client) = app.stop().await;
    let again = spawn_app_in(data_dir, client, &no_secret).await;
    assert_eq!(
        again.current_user().await["username"],
        "paul",
        "kept across the restart"
    );
}

#[tokio::test]
async fn a_second_process_on_the_same_sqlite_file_stops_at_start_with_a_message_that_names_redis() {
    let app = spawn_app().await;
    let sessions = app.data_dir.path().join("sessions.sqlite3");
    // A rolling deploy: the real server binary, started on the file the running app uses.
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_kc-leptos"))
        .current_dir(repo())
        .envs([
            ("LEPTOS_OUTPUT_NAME", "kc-leptos"),
            ("LEPTOS_SITE_ROOT", "target/site"),
            ("LEPTOS_SITE_PKG_DIR", "pkg"),
            ("LEPTOS_SITE_ADDR", "127.0.0.1:0"),
            (
                "APP_APP_DATA_DIR",
                &app.data_dir.path().display().to_string(),
            ),
            ("APP_SESSION_SQLITE_FILE", &sessions.display().to_string()),
            ("APP_KEYCLOAK_CLIENT_SECRET", &realm_client_secret()),
            ("APP_AUTH_METRICS_ADDR", "127.0.0.1:0"),
            ("RUST_LOG", "warn"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the second process");
    let mut status = None;
    for _ in 0..100 {
        status = second.try_wait().expect("wait");
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if status.is_none() {
        let _ = second.kill();
    }
    let output = second.wait_with_output().expect("output");
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(status.is_some_and(|s| !s.success()), "it stopped: {said}");
    assert!(
        said.contains("in use by another process") && said.contains("redis"),
        "{said}"
    );
    // The first one serves on; once it stops, the file is free again.
    assert_eq!(app.get("/health/ready").await.status(), StatusCode::OK);
    let (data_dir, client) = app.stop().await;
    let again = spawn_app_in(data_dir, client, &[]).await;
    assert_eq!(again.get("/health/ready").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_session_in_use_is_kept_alive_near_its_idle_end_and_an_idle_check_refreshes_nothing() {
    // The realm demo: 5-minute tokens, Keycloak's idle end 30 minutes away. A warning of
    // 1,790 s puts that end within the keep-alive's reach (warning + 10 s) at once; the default
    // warning (2 minutes) leaves it far.
    let app = spawn_app_in(
        tempfile::tempdir().expect("tmp"),
        browser(),
        &[("APP_SESSION_EXPIRY_WARNING_SECS", "1790")],
    )
    .await;
    let far = spawn_app().await;
    app.sign_in("paul").await;
    far.sign_in("paul").await;
    let refreshes = |app: &TestApp| metric(&app.state.auth.metrics().token_refreshes);
    // Moments after the sign-in: nothing to keep alive yet.
    check(&app, "/auth/refresh").await;
    assert_eq!(refreshes(&app), 0, "refreshed moments ago");
    tokio::time::sleep(Duration::from_secs(
        keycloak_bff::core::refresh::KEEP_ALIVE_MIN_INTERVAL_SECS as u64 + 1,
    ))
    .await;
    // An idle check never refreshes, and asks the page back at the session's end.
    let idle = check(&app, "/auth/refresh?idle=1").await;
    assert_eq!(refreshes(&app), 0, "an idle check refreshes nothing");
    let until_end =
        idle["session_expires_at"].as_i64().expect("end") - keycloak_bff::server::unix_now();
    let check_in = idle["check_in_secs"].as_i64().expect("check_in");
    assert!(
        (until_end - 2..=until_end + 2).contains(&check_in),
        "{idle}"
    );
    // A request of the session near its idle end keeps it alive, although the token is fresh.
    let kept = check(&app, "/auth/refresh").await;
    assert_eq!(refreshes(&app), 1, "kept alive");
    assert!(kept["access_expires_at"].as_i64() > idle["access_expires_at"].as_i64());
    // Far from the end, a fresh token is left alone.
    check(&far, "/auth/refresh").await;
    assert_eq!(refreshes(&far), 0);
}

#[tokio::test]
async fn the_silent_refresh_route_answers_the_user_and_the_new_expiry_never_a_token() {
    let admin = KeycloakAdmin::new("demo-short");
    let user = admin.create_user("silent", &["viewer"]).await;
    let app = spawn_short_app().await;
    let r = app.post("/auth/refresh", Some(PUBLIC_ORIGIN)).await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "signed out is an answer, not an error"
    );
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

/// The page's check (`path`: `/auth/refresh`, with `?idle=1` or not), answered 200.
async fn check(app: &TestApp, path: &str) -> Value {
    let r = app.post(path, Some(PUBLIC_ORIGIN)).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.expect("json")
}

#[tokio::test]
async fn a_browser_that_gives_up_during_a_refresh_loses_no_rotated_token() {
    use std::sync::atomic::Ordering;
    // Keycloak rotates the refresh token at once, and the app hears of it 2 s later.
    let (proxy, delayed) = keycloak_proxy(TokenCalls::DelayAnswers(Duration::from_secs(2))).await;
    let admin = KeycloakAdmin::new("demo-short");
    let user = admin.create_user("gives-up", &["viewer"]).await;
    let mut overrides = SHORT_REALM.to_vec();
    overrides.extend_from_slice(&[
        ("APP_KEYCLOAK_INTERNAL_URL", proxy.as_str()),
        ("APP_KEYCLOAK_HTTP_TIMEOUT_SECS", "60"),
    ]);
    let app = spawn_app_in(tempfile::tempdir().expect("tmp"), browser(), &overrides).await;
    assert_eq!(
        app.login_as(&user.username, "/").await.status(),
        StatusCode::SEE_OTHER
    );
    tokio::time::sleep(Duration::from_secs(SHORT_TOKEN_SECS)).await;
    // The browser's request needs a refresh, and the browser goes away while it is under way (a
    // tab closed, a page left): its connection closes before the app has Keycloak's answer.
    let given_up = app
        .client
        .post(app.url("/api/current_user"))
        .header("origin", PUBLIC_ORIGIN)
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(given_up.is_err(), "the browser gave up: {given_up:?}");
    assert_eq!(
        delayed.load(Ordering::SeqCst),
        1,
        "the refresh is under way"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The rotated tokens were saved all the same: the next request finds the session, and no
    // refresh token was spent twice (demo-short ends a session whose old token comes back).
    assert_eq!(
        app.current_user().await["username"],
        user.username.as_str(),
        "still signed in after the browser gave up"
    );
    let kinds = refresh_events(&admin, &user).await;
    assert!(
        kinds.iter().all(|k| k == "REFRESH_TOKEN"),
        "no refresh token was spent twice: {kinds:?}"
    );
    admin.delete_user(&user).await;
}
