//! Sign-in, sessions, gated pages and sign-out, end to end against the real Keycloak.

use crate::common::*;
use reqwest::StatusCode;

#[tokio::test]
async fn signing_in_as_the_admin_gives_a_rotated_http_only_session_and_the_keycloak_roles() {
    let app = spawn_app().await;
    let authorize = app.start_login("/profile").await;
    // The authorization request is a code flow with PKCE S256, state and nonce.
    let url = url::Url::parse(&authorize).expect("URL");
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q.get("response_type").map(String::as_str), Some("code"));
    assert_eq!(
        q.get("code_challenge_method").map(String::as_str),
        Some("S256")
    );
    assert!(q.get("state").is_some_and(|s| s.len() >= 16));
    assert!(q.get("nonce").is_some_and(|s| s.len() >= 16));
    assert_eq!(
        q.get("redirect_uri").map(String::as_str),
        Some("http://localhost:3000/auth/callback")
    );
    assert!(q
        .get("scope")
        .is_some_and(|s| s.split(' ').any(|x| x == "openid")));

    let pre_login = {
        // The pre-login cookie the browser got when the login started.
        let r = app.get("/auth/login?return_to=/profile").await;
        session_cookie_value(&set_cookies(&r))
    };
    let callback = app
        .keycloak_login(&authorize, "alice", "alice-dev-pw")
        .await;
    let r = app.client.get(&callback).send().await.expect("callback");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/profile");
    let cookies = set_cookies(&r);
    let cookie = cookies
        .iter()
        .find(|c| c.starts_with("kc_leptos_session="))
        .expect("the callback sets the session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    assert!(!cookie.to_ascii_lowercase().contains("domain="), "{cookie}");
    assert_ne!(
        session_cookie_value(&cookies),
        pre_login,
        "the session id is rotated at login"
    );
    assert!(!contains_jwt(cookie), "the cookie holds no token");

    let user = app.current_user().await;
    assert_eq!(user["username"], "alice");
    assert_eq!(user["display_name"], "Alice Admin");
    // A sign-in with the password just now: level 1, which the realm's ACR → LoA map names
    // `password`.
    assert_eq!(user["acr"], "password", "{user}");
    assert_eq!(user["email"], "alice@example.test");
    let realm = strings(&user["realm_roles"]);
    assert!(
        realm.contains(&"admin".into()) && realm.contains(&"user".into()),
        "{realm:?}"
    );
    // editor and viewer reach alice through the composite realm role admin.
    let client = strings(&user["client_roles"]);
    assert!(
        client.contains(&"editor".into()) && client.contains(&"viewer".into()),
        "{client:?}"
    );
    assert_eq!(strings(&user["groups"]), vec!["/staff"]);
    assert!(user["session_expires_at"].as_i64().unwrap_or(0) > keycloak_bff::server::unix_now());
    let raw = user.to_string();
    assert!(
        !contains_jwt(&raw) && !raw.contains("token"),
        "current_user never carries a token: {raw}"
    );

    let profile = app.get("/profile").await;
    assert_eq!(profile.status(), StatusCode::OK);
    let html = profile.text().await.expect("html");
    assert!(
        html.contains("Alice Admin") && html.contains("/staff"),
        "profile shows the user"
    );
    assert!(
        html.contains(r#"href="/admin""#),
        "the admin sees the admin link"
    );
    assert!(!contains_jwt(&html), "no token in the HTML");

    let admin = app.get("/admin").await;
    assert_eq!(admin.status(), StatusCode::OK);
    let html = admin.text().await.expect("html");
    assert!(html.contains("Administration") && html.contains("http://localhost:8080/realms/demo"));
}

#[tokio::test]
async fn the_editor_reaches_the_editor_page_through_the_group_but_not_the_admin_page() {
    let app = spawn_app().await;
    app.sign_in("erin").await;
    let user = app.current_user().await;
    assert_eq!(strings(&user["client_roles"]), vec!["editor", "viewer"]);
    assert_eq!(strings(&user["groups"]), vec!["/staff/editors"]);
    assert!(!strings(&user["realm_roles"]).contains(&"admin".into()));

    let editor = app.get("/editor").await;
    assert_eq!(editor.status(), StatusCode::OK);
    let html = editor.text().await.expect("html");
    assert!(
        html.contains("Editor&#x27;s desk") || html.contains("Editor's desk"),
        "{html}"
    );
    assert!(html.contains(r#"href="/editor""#) && !html.contains(r#"href="/admin""#));

    let admin = app.get("/admin").await;
    assert_eq!(admin.status(), StatusCode::FORBIDDEN);
    assert!(admin.text().await.expect("html").contains("403"));
}

#[tokio::test]
async fn a_plain_user_is_refused_the_admin_and_editor_pages_and_their_server_functions() {
    let app = spawn_app().await;
    app.sign_in("paul").await;
    let home = app.get("/").await.text().await.expect("html");
    assert!(home.contains("Paul Plain"), "signed in on the home page");
    assert!(!home.contains(r#"href="/admin""#) && !home.contains(r#"href="/editor""#));
    for page in ["/admin", "/editor"] {
        let r = app.get(page).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{page}");
        let html = r.text().await.expect("html");
        assert!(html.contains("403 · Not allowed"), "{page}");
        assert!(!html.contains("Administration") && !html.contains("Editor's desk"));
    }
    for function in ["/api/admin_overview", "/api/editor_desk"] {
        let r = app.post(function, Some(PUBLIC_ORIGIN)).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{function}");
    }
    assert_eq!(app.get("/profile").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn roles_of_another_client_never_count_as_this_apps_roles() {
    let app = spawn_app().await;
    app.sign_in("nora").await;
    let user = app.current_user().await;
    assert!(strings(&user["client_roles"]).is_empty(), "{user}");
    assert!(!strings(&user["realm_roles"]).contains(&"admin".into()));
    assert_eq!(app.get("/editor").await.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.get("/admin").await.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_signed_out_browser_is_sent_to_sign_in_and_comes_back_to_the_page_it_asked_for() {
    let app = spawn_app().await;
    for function in ["/api/admin_overview", "/api/editor_desk"] {
        let r = app.post(function, Some(PUBLIC_ORIGIN)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{function}");
    }
    assert_eq!(app.current_user().await, serde_json::Value::Null);
    let r = app.get("/admin?tab=keys").await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(location(&r), "/auth/login?return_to=%2Fadmin%3Ftab%3Dkeys");
    let r = app.login_as("alice", "/admin?tab=keys").await;
    assert_eq!(location(&r), "/admin?tab=keys");
    assert_eq!(app.get("/admin?tab=keys").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_open_redirect_in_return_to_lands_on_the_home_page() {
    let app = spawn_app().await;
    let r = app.login_as("paul", "//evil.example/phish").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/");
}

#[tokio::test]
async fn a_replayed_callback_is_refused_and_the_signed_in_session_survives() {
    let app = spawn_app().await;
    let authorize = app.start_login("/profile").await;
    let callback = app.keycloak_login(&authorize, "erin", "erin-dev-pw").await;
    let first = app.client.get(&callback).send().await.expect("callback");
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let replay = app.client.get(&callback).send().await.expect("replay");
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert!(replay.text().await.expect("html").contains("already used"));
    assert_eq!(
        app.current_user().await["username"],
        "erin",
        "the good session is kept"
    );
}

#[tokio::test]
async fn a_forged_or_foreign_state_is_refused_before_any_token_exchange() {
    let victim = spawn_app().await;
    let authorize = victim.start_login("/").await;
    let callback = victim
        .keycloak_login(&authorize, "paul", "paul-dev-pw")
        .await;

    // Another browser (its own cookie jar) presents the victim's code and state: login CSRF.
    let attacker = browser();
    let r = attacker.get(&callback).send().await.expect("callback");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A state nobody issued.
    let forged = callback.replace("state=", "state=forged");
    assert_eq!(
        victim
            .client
            .get(&forged)
            .send()
            .await
            .expect("cb")
            .status(),
        StatusCode::BAD_REQUEST
    );
    // The victim's own login still works afterwards: nothing was spent by the attempts.
    let r = victim.client.get(&callback).send().await.expect("callback");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(victim.current_user().await["username"], "paul");
}

#[tokio::test]
async fn malformed_callbacks_get_a_400_page_never_a_500() {
    let app = spawn_app().await;
    let _ = app.start_login("/").await;
    let long = "a".repeat(10_000);
    for query in [
        "".to_owned(),
        "?".to_owned(),
        "?code=abc".to_owned(),
        "?state=".to_owned(),
        "?state=x&state=y&code=1".to_owned(),
        "?state=%ZZ&code=%".to_owned(),
        format!("?state={long}&code=x"),
        "?error=access_denied&state=unknown".to_owned(),
        "?state=%00%01&code=%FF%FE".to_owned(),
    ] {
        let r = app.get(&format!("/auth/callback{query}")).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        assert!(
            r.text().await.expect("html").contains("Sign-in failed"),
            "{query}"
        );
    }
}

#[tokio::test]
async fn keycloak_errors_on_the_callback_show_a_clear_page_and_spend_the_state() {
    let app = spawn_app().await;
    let authorize = app.start_login("/editor").await;
    let state = url::Url::parse(&authorize)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("state");
    let r = app
        .get(&format!("/auth/callback?error=access_denied&state={state}"))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let html = r.text().await.expect("html");
    assert!(html.contains("cancelled or refused"));
    assert!(
        html.contains("/auth/login?return_to=%2Feditor"),
        "offers to sign in again"
    );
    let again = app
        .get(&format!("/auth/callback?code=x&state={state}"))
        .await;
    assert_eq!(
        again.status(),
        StatusCode::BAD_REQUEST,
        "the state was spent"
    );
}

#[tokio::test]
async fn signing_out_ends_the_keycloak_session_from_the_server_and_no_token_reaches_the_browser() {
    let app = spawn_app().await;
    app.sign_in("alice").await;
    // While Keycloak's session lives, a new sign-in needs no password (single sign-on).
    let authorize = app.start_login("/").await;
    let sso = app.client.get(&authorize).send().await.expect("authorize");
    assert_eq!(sso.status(), StatusCode::FOUND, "signed in at Keycloak");

    let r = app.post("/auth/logout", Some(PUBLIC_ORIGIN)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/", "straight home, not through Keycloak");
    let headers = format!("{:?}", r.headers());
    let body = r.text().await.expect("body");
    assert!(
        !contains_jwt(&headers) && !contains_jwt(&body),
        "no token in the answer: {headers}"
    );

    // Keycloak's session has ended too: signing in again asks for the password.
    let authorize = app.start_login("/").await;
    let page = app.client.get(&authorize).send().await.expect("authorize");
    assert_eq!(
        page.status(),
        StatusCode::OK,
        "Keycloak shows its login form"
    );
    assert!(page.text().await.expect("html").contains("kc-form-login"));

    assert_eq!(app.current_user().await, serde_json::Value::Null);
    let r = app.get("/profile").await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(location(&r).starts_with("/auth/login"));
}

#[tokio::test]
async fn a_browser_closed_right_after_signing_out_still_ends_the_keycloak_session() {
    use crate::common::keycloak_proxy::{keycloak_proxy, TokenCalls};
    use std::sync::atomic::Ordering;
    use std::time::Duration;
    // The app's call that ends Keycloak's session reaches Keycloak 2 s after it is made.
    let (proxy, held) = keycloak_proxy(TokenCalls::HoldLogouts(Duration::from_secs(2))).await;
    let admin = KeycloakAdmin::new("demo-short");
    let user = admin.create_user("closes", &["viewer"]).await;
    let mut overrides = SHORT_REALM.to_vec();
    overrides.push(("APP_KEYCLOAK_INTERNAL_URL", proxy.as_str()));
    let app = spawn_app_in(tempfile::tempdir().expect("tmp"), browser(), &overrides).await;
    assert_eq!(
        app.login_as(&user.username, "/").await.status(),
        StatusCode::SEE_OTHER
    );
    let sessions = admin.get(&format!("/users/{}/sessions", user.id)).await;
    assert_eq!(
        sessions.as_array().map(Vec::len),
        Some(1),
        "signed in at Keycloak"
    );
    // "Sign out", and the tab is closed at once: the browser's connection goes before the answer.
    let closed = app
        .client
        .post(app.url("/auth/logout"))
        .header("origin", PUBLIC_ORIGIN)
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(closed.is_err(), "the browser went away: {closed:?}");
    assert_eq!(
        held.load(Ordering::SeqCst),
        1,
        "the app's logout call is under way"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Keycloak's session ended all the same: the next sign-in from this browser asks for a
    // password instead of letting anyone in as this user.
    let sessions = admin.get(&format!("/users/{}/sessions", user.id)).await;
    assert_eq!(
        sessions.as_array().map(Vec::len),
        Some(0),
        "Keycloak's session ended: {sessions}"
    );
    assert_eq!(app.current_user().await, serde_json::Value::Null);
    admin.delete_user(&user).await;
}

#[tokio::test]
async fn an_old_session_cookie_is_worthless_after_sign_out() {
    let app = spawn_app().await;
    let r = app.login_as("paul", "/").await;
    let cookie = session_cookie_value(&set_cookies(&r)).expect("session cookie");
    assert_eq!(
        app.post("/auth/logout", Some(PUBLIC_ORIGIN)).await.status(),
        StatusCode::SEE_OTHER
    );
    let replay = app.current_user_with_cookie(&cookie).await;
    assert_eq!(
        replay.json::<serde_json::Value>().await.expect("json"),
        serde_json::Value::Null
    );
}

#[tokio::test]
async fn sign_out_from_another_origin_or_by_get_is_refused_and_keeps_the_session() {
    let app = spawn_app().await;
    app.sign_in("erin").await;
    let r = app.post("/auth/logout", Some("http://evil.example")).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .client
        .post(app.url("/auth/logout"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.get("/auth/logout").await.status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
    let r = app
        .post("/api/current_user", Some("http://evil.example"))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.current_user().await["username"], "erin");
}

#[tokio::test]
async fn a_session_survives_an_app_restart() {
    let app = spawn_app().await;
    app.sign_in("alice").await;
    let (data_dir, client) = app.stop().await;
    let app = spawn_app_in(data_dir, client, &[]).await;
    assert_eq!(app.current_user().await["username"], "alice");
    assert_eq!(app.get("/admin").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_garbage_or_huge_session_cookie_counts_as_no_session() {
    let app = spawn_app().await;
    let huge = "A".repeat(3_000);
    for cookie in [
        "garbage",
        "%%%",
        "",
        huge.as_str(),
        "AAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let r = app.current_user_with_cookie(cookie).await;
        assert_eq!(r.status(), StatusCode::OK, "{cookie:.20}");
        assert_eq!(
            r.json::<serde_json::Value>().await.expect("json"),
            serde_json::Value::Null
        );
        let page = browser()
            .get(app.url("/"))
            .header("cookie", format!("kc_leptos_session={cookie}"))
            .send()
            .await
            .expect("GET");
        assert_eq!(page.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn public_pages_are_served_signed_out_and_never_cached() {
    let app = spawn_app().await;
    let r = app.get("/").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let html = r.text().await.expect("html");
    assert!(html.contains("Sign in"));
    assert!(!html.contains(r#"href="/admin""#));
    assert_eq!(
        app.get("/no/such/page").await.status(),
        StatusCode::NOT_FOUND
    );
}

/// The session cookie's lifetime attributes as the callback set them.
async fn session_cookie_of_a_sign_in(app: &TestApp) -> String {
    let r = app.login_as("alice", "/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    set_cookies(&r)
        .into_iter()
        .find(|c| c.starts_with("kc_leptos_session="))
        .expect("the callback sets the session cookie")
}

#[tokio::test]
async fn the_session_cookie_lasts_until_the_browser_closes_unless_a_persistent_one_is_asked_for() {
    let app = spawn_app().await;
    let cookie = session_cookie_of_a_sign_in(&app).await.to_ascii_lowercase();
    assert!(
        !cookie.contains("max-age") && !cookie.contains("expires"),
        "a browser-session cookie by default: {cookie}"
    );
    // The server-side session still ends with Keycloak's, and signing out still removes it.
    assert_eq!(app.current_user().await["username"], "alice", "signed in");
    let out = app.post("/auth/logout", Some(PUBLIC_ORIGIN)).await;
    let removal = set_cookies(&out)
        .into_iter()
        .find(|c| c.starts_with("kc_leptos_session="))
        .unwrap_or_default();
    assert!(removal.contains("Max-Age=0"), "{removal}");

    let dir = tempfile::tempdir().expect("tempdir");
    let persistent =
        spawn_app_in(dir, browser(), &[("APP_SESSION_PERSISTENT_COOKIE", "true")]).await;
    let cookie = session_cookie_of_a_sign_in(&persistent).await;
    assert!(
        cookie.contains("Max-Age=") || cookie.contains("Expires="),
        "session.persistent_cookie keeps it past the browser: {cookie}"
    );
}
