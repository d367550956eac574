//! Issue 12's server side against the real Keycloak: silent single sign-on, step-up, "Stay
//! signed in", front-channel logout, the user's own sessions through the Account API, and the
//! admins' user directory through the Admin API.

use crate::authorization::call;
use crate::common::*;
use keycloak_bff::server::test_support::Internals as _;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn a_first_page_load_tries_a_silent_sign_in_once_and_comes_back_signed_out() {
    let app = spawn_app().await;
    // First, one round trip that shows the browser keeps cookies.
    let r = navigate(&app, "/notes?x=1").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/notes?x=1&kc_sso_probe=1");
    let marker = set_cookies(&r);
    assert!(
        marker
            .iter()
            .any(|c| c.starts_with("kc_leptos_session_sso=0;") && !c.contains("Max-Age")),
        "{marker:?}"
    );
    let r = navigate(&app, &location(&r)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&r),
        "/auth/login?return_to=%2Fnotes%3Fx%3D1&prompt=none",
        "the probe parameter is not kept"
    );
    let marker = set_cookies(&r);
    assert!(
        marker
            .iter()
            .any(|c| c.starts_with("kc_leptos_session_sso=1;") && !c.contains("Max-Age")),
        "{marker:?}"
    );
    // To Keycloak with prompt=none, and back with login_required: the page, signed out, no error.
    let r = app.get(&location(&r)).await;
    let authorize = location(&r);
    assert!(authorize.contains("prompt=none"), "{authorize}");
    let kc = app.client.get(&authorize).send().await.expect("Keycloak");
    assert_eq!(kc.status(), StatusCode::FOUND);
    let callback = location(&kc);
    assert!(callback.contains("error=login_required"), "{callback}");
    let back = app
        .get(callback.strip_prefix(PUBLIC_ORIGIN).expect("our callback"))
        .await;
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&back), "/notes?x=1");
    // Not again in this browser session.
    assert_eq!(navigate(&app, "/").await.status(), StatusCode::OK);
    // Never for what is not a top-level page load, although the same browser's first page load
    // would be redirected (the control at the end).
    let other = TestApp::sharing(&app, browser());
    let headers = |mode: &'static str, dest: &'static str| {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            "sec-fetch-mode",
            reqwest::header::HeaderValue::from_static(mode),
        );
        h.insert(
            "sec-fetch-dest",
            reqwest::header::HeaderValue::from_static(dest),
        );
        h
    };
    for (path, mode, dest, why) in [
        ("/", "cors", "empty", "a script's fetch"),
        ("/", "navigate", "iframe", "a frame"),
        ("/api/v1/me", "navigate", "document", "the JSON API"),
        ("/health/live", "navigate", "document", "a probe"),
        ("/auth/refresh", "navigate", "document", "an auth route"),
    ] {
        let r = other
            .client
            .get(other.url(path))
            .headers(headers(mode, dest))
            .send()
            .await
            .expect("GET");
        assert_ne!(r.status(), StatusCode::SEE_OTHER, "{why}");
    }
    let prefetch = other
        .client
        .get(other.url("/"))
        .headers(headers("navigate", "document"))
        .header("sec-purpose", "prefetch")
        .send()
        .await
        .expect("GET");
    assert_eq!(prefetch.status(), StatusCode::OK, "a prefetch");
    assert_eq!(other.get("/").await.status(), StatusCode::OK, "no browser");
    assert_eq!(
        navigate(&other, "/").await.status(),
        StatusCode::SEE_OTHER,
        "the same browser's page load"
    );
    // A signed-in browser is left alone.
    let signed_in = TestApp::sharing(&app, browser());
    signed_in.sign_in("paul").await;
    assert_eq!(navigate(&signed_in, "/").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_browser_that_keeps_no_cookies_gets_its_page_and_never_goes_to_keycloak() {
    let app = spawn_app().await;
    let no_cookies = TestApp::sharing(
        &app,
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
    );
    let r = navigate(&no_cookies, "/?x=1").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/?x=1&kc_sso_probe=1");
    // The marker did not come back: the page, with no error and no loop.
    let r = navigate(&no_cookies, &location(&r)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.expect("html").contains("Sign in"));
}

#[tokio::test]
async fn silent_sign_in_can_be_turned_off() {
    let app = spawn_app_in(
        tempfile::tempdir().expect("tmp"),
        browser(),
        &[("APP_AUTH_SILENT_SSO", "false")],
    )
    .await;
    assert_eq!(navigate(&app, "/").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_step_up_sign_in_asks_keycloak_for_the_password_again() {
    let app = spawn_app().await;
    // Keycloak knows this browser now (its session cookie is in the jar).
    app.sign_in("alice").await;
    // A normal sign-in goes straight back to the app: Keycloak's session answers.
    let r = app.get("/auth/login?return_to=%2F").await;
    let at_keycloak = app.client.get(location(&r)).send().await.expect("keycloak");
    assert_eq!(at_keycloak.status(), StatusCode::FOUND);
    assert!(
        location(&at_keycloak).starts_with(&format!("{PUBLIC_ORIGIN}/auth/callback?")),
        "{}",
        location(&at_keycloak)
    );
    // A step-up: Keycloak shows its password form again, whatever its session.
    let r = app
        .get("/auth/login?return_to=%2Fadmin%2Fusers&prompt=login")
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(location(&r).contains("prompt=login"), "{}", location(&r));
    let page = app.client.get(location(&r)).send().await.expect("keycloak");
    assert_eq!(
        page.status(),
        StatusCode::OK,
        "Keycloak answers with a page"
    );
    let html = page.text().await.expect("html");
    assert!(
        html.contains("kc-form-login") && html.contains("password"),
        "the password form: {}",
        &html[..html.len().min(300)]
    );
    // Any other prompt value is a normal sign-in.
    let r = app.get("/auth/login?return_to=%2F&prompt=consent").await;
    assert!(!location(&r).contains("prompt="), "{}", location(&r));
}

#[tokio::test]
async fn a_stale_sign_in_cannot_delete_or_overwrite_someone_elses_note_or_read_the_directory_until_it_steps_up(
) {
    let data = tempfile::tempdir().expect("tmp");
    let erin = spawn_app_in(data, browser(), &[("APP_AUTH_STEP_UP_MAX_AGE_SECS", "10")]).await;
    erin.sign_in("erin").await;
    let alice = TestApp::sharing(&erin, browser());
    alice.sign_in("alice").await;
    let (status, body) = call(&erin, "create_note", &[("body", "erin's, to keep")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = serde_json::from_str::<Value>(&body).expect("note")["id"]
        .as_i64()
        .expect("id")
        .to_string();
    let (status, body) = call(&alice, "create_note", &[("body", "alice's own")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let own = serde_json::from_str::<Value>(&body).expect("note")["id"]
        .as_i64()
        .expect("id")
        .to_string();
    let (status, _) = call(&alice, "user_directory", &[("search", ""), ("page", "0")]).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a fresh sign-in reads the directory"
    );

    tokio::time::sleep(std::time::Duration::from_secs(11)).await;

    let (status, body) = call(&alice, "delete_note", &[("id", &id)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("StepUpRequired"), "{body}");
    // Writing over erin's note is the same damage: refused the same way.
    let (status, body) = call(&alice, "update_note", &[("id", &id), ("body", "defaced")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("StepUpRequired"), "{body}");
    let (_, board) = call(&alice, "list_notes", &[]).await;
    assert!(board.contains("erin's, to keep"), "nothing was deleted");
    assert!(!board.contains("defaced"), "nothing was overwritten");
    // Her own note she edits without a step-up.
    let (status, body) = call(
        &alice,
        "update_note",
        &[("id", &own), ("body", "alice's, edited")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = call(&alice, "user_directory", &[("search", ""), ("page", "0")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let page = alice.get("/admin/users").await;
    assert_eq!(page.status(), StatusCode::FOUND);
    assert_eq!(
        location(&page),
        "/auth/login?return_to=%2Fadmin%2Fusers&prompt=login"
    );
    // Her own note needs no step-up.
    assert_eq!(
        call(&alice, "delete_note", &[("id", &own)]).await.0,
        StatusCode::OK
    );

    // The password again (prompt=login), then the action succeeds.
    let r = alice
        .get("/auth/login?return_to=%2Fnotes&prompt=login")
        .await;
    let callback = alice
        .keycloak_login(&location(&r), "alice", "alice-dev-pw")
        .await;
    let back = alice.client.get(&callback).send().await.expect("callback");
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&back), "/notes");
    let (status, body) = call(&alice, "update_note", &[("id", &id), ("body", "moderated")]).await;
    assert_eq!(status, StatusCode::OK, "after the step-up: {body}");
    assert_eq!(
        call(&alice, "delete_note", &[("id", &id)]).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn stay_signed_in_refreshes_even_a_fresh_token_and_needs_a_session() {
    let app = spawn_app().await;
    assert_eq!(
        app.post("/auth/extend", Some(PUBLIC_ORIGIN)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.sign_in("nora").await;
    let before = metric(&app.state.auth.metrics().token_refreshes);
    let r = app.post("/auth/extend", Some(PUBLIC_ORIGIN)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let status: Value = r.json().await.expect("status");
    assert_eq!(status["signed_in"], true);
    assert!(
        status.get("at_maximum").is_none(),
        "demo's sessions last 10 h: {status}"
    );
    assert!(!contains_jwt(&status.to_string()));
    assert_eq!(
        metric(&app.state.auth.metrics().token_refreshes),
        before + 1,
        "one refresh, although the token was fresh"
    );
    // A cross-site page cannot extend a session.
    assert_eq!(
        app.post("/auth/extend", Some("https://evil.example"))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn front_channel_logout_ends_the_session_of_its_sid_only_when_enabled_and_iss_matches() {
    let off = spawn_app().await;
    assert_eq!(
        off.get("/auth/frontchannel-logout?iss=x&sid=y")
            .await
            .status(),
        StatusCode::NOT_FOUND,
        "off by default"
    );
    let app = spawn_app_in(
        tempfile::tempdir().expect("tmp"),
        browser(),
        &[("APP_SESSION_FRONTCHANNEL_LOGOUT", "true")],
    )
    .await;
    app.sign_in("erin").await;
    // Another browser, another user, another Keycloak session: it must survive.
    let other = TestApp::sharing(&app, browser());
    other.sign_in("nora").await;
    // erin's Keycloak session id, as the app indexed it (the browser never sees one).
    let db = app.data_dir.path().join("sessions.sqlite3");
    let sid = sid_of(
        &db,
        app.current_user().await["subject"].as_str().expect("sub"),
    )
    .await;
    let issuer = "http%3A%2F%2Flocalhost%3A8080%2Frealms%2Fdemo";
    for bad in [
        format!("/auth/frontchannel-logout?iss=http%3A%2F%2Fevil.example&sid={sid}"),
        format!("/auth/frontchannel-logout?iss={issuer}"),
        "/auth/frontchannel-logout".to_owned(),
        format!("/auth/frontchannel-logout?iss={issuer}&sid=&sid=x"),
    ] {
        let r = TestApp::sharing(&app, browser()).get(&bad).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(
            app.current_user().await["username"],
            "erin",
            "{bad} changed nothing"
        );
    }
    // A well-formed request naming a Keycloak session that no app session is bound to ends
    // nothing here.
    let r = TestApp::sharing(&app, browser())
        .get(&format!(
            "/auth/frontchannel-logout?iss={issuer}&sid=0f2e4a1c-9d8b-4c7e-a6f5-3b2d1c0e9f8a"
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.current_user().await["username"], "erin");
    assert_eq!(other.current_user().await["username"], "nora");
    // Made-up sids store nothing (the route needs no credentials): only a sid with app
    // sessions is remembered as ended.
    for i in 0..20 {
        let made_up = format!("/auth/frontchannel-logout?iss={issuer}&sid=made-up-{i}");
        assert_eq!(app.get(&made_up).await.status(), StatusCode::OK);
    }
    assert_eq!(
        ended_sids(&db).await,
        0,
        "nothing stored for sids with no session"
    );
    // Keycloak's logout page loads it in an iframe, from another browser context than the app's.
    let r = TestApp::sharing(&app, browser())
        .get(&format!("/auth/frontchannel-logout?iss={issuer}&sid={sid}"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let csp = header_text(&r, "content-security-policy");
    assert!(
        csp.contains("frame-ancestors http://localhost:8080"),
        "{csp}"
    );
    assert!(r.headers().get("x-frame-options").is_none());
    assert_eq!(app.current_user().await, Value::Null, "the session ended");
    assert_eq!(
        other.current_user().await["username"],
        "nora",
        "the session of another sid lives on"
    );
    assert_eq!(ended_sids(&db).await, 1, "the real sid is remembered");
    // A flood is cut off before the store: at most 50 a second.
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..120 {
        let (client, url) = (
            app.client.clone(),
            app.url(&format!(
                "/auth/frontchannel-logout?iss={issuer}&sid=flood-{i}"
            )),
        );
        requests.spawn(async move { client.get(url).send().await.map(|r| r.status()) });
    }
    let flood: Vec<StatusCode> = requests
        .join_all()
        .await
        .into_iter()
        .map(|r| r.expect("an answer"))
        .collect();
    assert!(flood.contains(&StatusCode::TOO_MANY_REQUESTS), "{flood:?}");
    assert!(flood.iter().filter(|s| **s == StatusCode::OK).count() <= 100);
}

/// How many ended Keycloak sessions the SQLite store at `db` remembers.
/// The Keycloak session id the app's SQLite index holds for the user `sub`.
async fn sid_of(db: &std::path::Path, sub: &str) -> String {
    let pool = keycloak_bff::server::open_sqlite(db).await.expect("sqlite");
    let sid: String = sqlx::query_scalar("SELECT sid FROM kc_session_index WHERE sub = ?")
        .bind(sub)
        .fetch_one(&pool)
        .await
        .expect("indexed");
    pool.close().await;
    sid
}

async fn ended_sids(db: &std::path::Path) -> i64 {
    let pool = keycloak_bff::server::open_sqlite(db).await.expect("sqlite");
    let n = sqlx::query_scalar("SELECT COUNT(*) FROM kc_ended_sid")
        .fetch_one(&pool)
        .await
        .expect("count");
    pool.close().await;
    n
}

#[tokio::test]
async fn my_sessions_lists_the_users_browsers_and_ends_another_one_but_not_the_current() {
    let (admin, user, a) = signed_in_short_user("sessions", &["viewer"]).await;
    let b = TestApp::sharing(&a, browser());
    let r = b.login_as(&user.username, "/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    let (status, body) = call(&a, "my_sessions", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!contains_jwt(&body));
    let sessions: Vec<Value> = serde_json::from_str(&body).expect("sessions");
    assert_eq!(sessions.len(), 2, "{body}");
    assert_eq!(sessions[0]["current"], true, "the current session first");
    assert!(
        sessions[1]["clients"]
            .to_string()
            .contains("kc-leptos demo app"),
        "{body}"
    );
    // Keycloak's session ids (front-channel logout credentials) stay on the server.
    let sids: Vec<String> = admin
        .get(&format!("/users/{}/sessions", user.id))
        .await
        .as_array()
        .expect("sessions")
        .iter()
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(sids.len(), 2);
    for sid in &sids {
        assert!(
            !body.contains(sid.as_str()),
            "{sid} reached the browser: {body}"
        );
    }
    let mine = sessions[0]["id"].as_str().expect("id").to_owned();
    let other = sessions[1]["id"].as_str().expect("id").to_owned();

    for (id, why) in [
        (mine.as_str(), "the current one"),
        ("../../admin", "a path"),
        (sids[0].as_str(), "a sid instead of a handle"),
        (sids[1].as_str(), "the other sid instead of a handle"),
        ("AAAAAAAAAAAAAAAAAAAAAA", "a made-up handle"),
    ] {
        let (status, body) = call(&a, "end_my_session", &[("id", id)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {body}");
    }
    let (status, body) = call(&a, "end_my_session", &[("id", &other)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = call(&a, "my_sessions", &[]).await;
    let left: Vec<Value> = serde_json::from_str(&body).expect("sessions");
    assert_eq!(left.len(), 1, "{body}");
    assert_eq!(left[0]["id"], mine.as_str());
    // Signed out: nothing to list.
    let nobody = TestApp::sharing(&a, browser());
    assert_eq!(
        call(&nobody, "my_sessions", &[]).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_directory_lists_users_with_effective_roles_and_groups_searches_and_pages() {
    let app = spawn_app().await;
    app.sign_in("alice").await;
    let (status, body) = call(&app, "user_directory", &[("search", ""), ("page", "0")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!contains_jwt(&body));
    let page: Value = serde_json::from_str(&body).expect("page");
    let user = |name: &str| {
        page["users"]
            .as_array()
            .and_then(|u| u.iter().find(|u| u["username"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {page}"))
    };
    assert_eq!(strings(&user("erin")["client_roles"]), ["editor", "viewer"]);
    assert_eq!(strings(&user("erin")["groups"]), ["/staff/editors"]);
    assert_eq!(strings(&user("alice")["realm_roles"]), ["admin", "user"]);
    assert!(
        strings(&user("nora")["client_roles"]).is_empty(),
        "other-app's roles never count"
    );
    assert!(!body.contains("service-account-"), "clients are not people");

    let (_, body) = call(&app, "user_directory", &[("search", "erin"), ("page", "0")]).await;
    let found: Value = serde_json::from_str(&body).expect("page");
    let names: Vec<&str> = found["users"]
        .as_array()
        .map(|u| u.iter().filter_map(|u| u["username"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["erin"]);

    let (_, body) = call(
        &app,
        "user_directory",
        &[("search", ""), ("page", "1"), ("per_page", "2")],
    )
    .await;
    let second: Value = serde_json::from_str(&body).expect("page");
    assert_eq!(second["per_page"], 2);
    assert_eq!(
        second["users"].as_array().map(Vec::len),
        Some(2),
        "{second}"
    );
    assert_eq!(
        app.state.auth.directory().map(|d| d.tokens_fetched()),
        Some(1),
        "the service account's token is cached"
    );
    // Not for other users.
    let paul = TestApp::sharing(&app, browser());
    paul.sign_in("paul").await;
    assert_eq!(
        call(&paul, "user_directory", &[("search", ""), ("page", "0")])
            .await
            .0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn keycloak_refusing_the_directory_gives_a_plain_notice() {
    for (overrides, says) in [
        (
            vec![("APP_KEYCLOAK_DIRECTORY_CLIENT_SECRET", "not-the-secret")],
            "refused the directory's service account",
        ),
        (
            vec![
                ("APP_KEYCLOAK_DIRECTORY_CLIENT_ID", "notes-reader"),
                (
                    "APP_KEYCLOAK_DIRECTORY_CLIENT_SECRET",
                    "notes-reader-dev-secret",
                ),
            ],
            "lacks",
        ),
    ] {
        let app = spawn_app_in(tempfile::tempdir().expect("tmp"), browser(), &overrides).await;
        app.sign_in("alice").await;
        let (status, body) = call(&app, "user_directory", &[("search", ""), ("page", "0")]).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        assert!(body.contains(says), "{body}");
        assert!(!body.contains("not-the-secret") && !body.contains("dev-secret"));
    }
}
