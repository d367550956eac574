//! Levels of authentication against the real Keycloak: the realm's browser flow
//! (`browser-by-level`) asks for the password at level 1 (`acr` `password`) and, when the app asks
//! for `otp`, for a code of the authenticator app too. The tests make users with a known TOTP
//! secret (RFC 6238 codes computed here), sign in through Keycloak's real pages, and call the
//! demo's user directory for programs (`GET /api/v1/users`: admins at level `otp`).
//!
//! Catalogue: AA04 (the level is read from the tokens that came back, and a weaker session or
//! token gets RFC 9470's challenge), AA05 (a level the app does not rank is refused before
//! Keycloak).

use crate::common::*;
use aws_lc_rs::hmac;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// An RFC 6238 code (HMAC-SHA1, 6 digits, 30 s) of `secret` for the Unix time `now`; Keycloak
/// keys the HMAC with the secret's bytes as stored.
fn totp(secret: &str, now: u64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let tag = hmac::sign(&key, &(now / 30).to_be_bytes());
    let h = tag.as_ref();
    let offset = usize::from(h[h.len() - 1] & 0x0f);
    let word = u32::from_be_bytes([h[offset], h[offset + 1], h[offset + 2], h[offset + 3]]);
    format!("{:06}", (word & 0x7fff_ffff) % 1_000_000)
}

#[test]
fn the_totp_codes_are_those_of_rfc_6238() {
    // RFC 6238 appendix B, SHA-1, 8 digits there: the last 6 of each.
    let secret = "12345678901234567890";
    assert_eq!(totp(secret, 59), "287082");
    assert_eq!(totp(secret, 1_111_111_109), "081804");
    assert_eq!(totp(secret, 2_000_000_000), "279037");
}

/// A throw-away admin of `admin`'s realm with a password and an authenticator app whose secret is
/// returned.
async fn admin_with_authenticator(admin: &KeycloakAdmin) -> (TestUser, String) {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let username = format!("otp-{n}-{}", keycloak_bff::server::unix_now());
    let secret = format!("{username}-totp-secret");
    let status = admin
        .send(
            reqwest::Method::POST,
            "/users",
            Some(json!({
                "username": username, "enabled": true, "emailVerified": true,
                "email": format!("{username}@example.test"), "firstName": "Test", "lastName": "Otp",
                "credentials": [
                    {"type": "password", "value": format!("{username}-dev-pw"), "temporary": false},
                    {"type": "otp", "secretData": json!({"value": secret}).to_string(),
                     "credentialData": json!({"subType": "totp", "digits": 6, "counter": 0,
                        "period": 30, "algorithm": "HmacSHA1"}).to_string()}
                ]
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "user with an authenticator");
    let id = admin.user_id(&username).await;
    let role = admin.get("/roles/admin").await;
    let status = admin
        .send(
            reqwest::Method::POST,
            &format!("/users/{id}/role-mappings/realm"),
            Some(json!([role])),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "admin role");
    (TestUser { id, username }, secret)
}

/// Follows Keycloak's pages from `authorize`: the password form when shown, then the code form
/// with the current code; returns the app's answer to the callback.
async fn sign_in_at_keycloak(
    app: &TestApp,
    authorize: &str,
    user: &TestUser,
    secret: &str,
) -> reqwest::Response {
    let mut page = app.client.get(authorize).send().await.expect("Keycloak");
    let mut asked_for_password = false;
    for _ in 0..3 {
        if page.status() == StatusCode::FOUND {
            break;
        }
        assert_eq!(page.status(), StatusCode::OK, "a Keycloak page");
        let html = page.text().await.expect("page");
        let action = form_action(&html);
        let form: Vec<(&str, String)> = if html.contains("id=\"password\"") {
            assert!(!asked_for_password, "the password is asked once");
            asked_for_password = true;
            vec![
                ("username", user.username.clone()),
                ("password", format!("{}-dev-pw", user.username)),
                ("credentialId", String::new()),
            ]
        } else {
            assert!(html.contains("name=\"otp\""), "the code form: {html:.300}");
            vec![("otp", totp(secret, now_secs()))]
        };
        page = app
            .client
            .post(&action)
            .form(&form)
            .send()
            .await
            .expect("Keycloak form");
    }
    assert!(
        asked_for_password,
        "a new browser is asked for the password first"
    );
    app.follow_callback(&page).await
}

/// Where the form of Keycloak's page `html` posts.
fn form_action(html: &str) -> String {
    crate::account_actions::page_form(html).0
}

fn now_secs() -> u64 {
    keycloak_bff::server::unix_now().max(0) as u64
}

/// The app's sign-in route for `acr`, and where it sends the browser.
async fn start_at_level(app: &TestApp, acr: &str) -> String {
    let r = app
        .get(&format!("/auth/login?return_to=%2Fadmin&acr={acr}"))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    location(&r)
}

async fn users_api(app: &TestApp, bearer: Option<&str>) -> reqwest::Response {
    let mut r = app.client.get(app.url("/api/v1/users?search=&page=0"));
    if let Some(token) = bearer {
        r = r.bearer_auth(token);
    }
    r.send().await.expect("GET /api/v1/users")
}

fn challenge(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_password_session_gets_rfc_9470s_challenge_and_a_code_from_the_authenticator_lets_it_in()
{
    let admin = KeycloakAdmin::new("demo");
    let (user, secret) = admin_with_authenticator(&admin).await;
    let app = spawn_app().await;

    // Signed in with the password only: level `password`, and the directory for programs says
    // which level would do.
    let r = app.login_as(&user.username, "/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.current_user().await["acr"], "password");
    let r = users_api(&app, None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let said = challenge(&r);
    assert!(
        said.contains(r#"error="insufficient_user_authentication""#)
            && said.contains(r#"acr_values="otp""#),
        "{said}"
    );
    let body: Value = r.json().await.expect("JSON");
    assert_eq!(body["error"], "insufficient_user_authentication");
    // The page's server function says the same, with the level it needs, and calls nobody.
    let (status, body) = crate::authorization::call(&app, "user_detail", &[("id", &user.id)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body.contains("LevelRequired") && body.contains("otp"),
        "{body}"
    );

    // The step-up for the level: Keycloak knows the browser, so it asks only for the code.
    let authorize = start_at_level(&app, "otp").await;
    assert!(
        authorize.contains("claims="),
        "an essential acr: {authorize}"
    );
    let page = app.client.get(&authorize).send().await.expect("Keycloak");
    let html = page.text().await.expect("page");
    assert!(
        html.contains("name=\"otp\"") && !html.contains("id=\"password\""),
        "only the code is asked: {html:.300}"
    );
    let action = form_action(&html);
    let page = app
        .client
        .post(&action)
        .form(&[("otp", totp(&secret, now_secs()))])
        .send()
        .await
        .expect("code");
    let r = app.follow_callback(&page).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "signed in at the level");
    assert_eq!(location(&r), "/admin");
    assert_eq!(app.current_user().await["acr"], "otp");

    let r = users_api(&app, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let page: Value = r.json().await.expect("JSON");
    assert!(page["users"].as_array().is_some_and(|u| !u.is_empty()));
    // The detail: where the user is signed in (this very session), and the authenticator.
    let (status, body) = crate::authorization::call(&app, "user_detail", &[("id", &user.id)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let detail: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(detail["user"]["username"], user.username.as_str());
    assert_eq!(detail["has_authenticator"], true);
    assert!(
        detail["user"]["realm_roles"].to_string().contains("admin"),
        "{detail}"
    );
    let clients = detail["sessions"][0]["clients"].to_string();
    assert!(clients.contains("demo-app"), "{detail}");
    // An id that is not one never reaches Keycloak; an unknown one is 404.
    let (status, _) =
        crate::authorization::call(&app, "user_detail", &[("id", "../clients")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let unknown = "00000000-0000-0000-0000-000000000000";
    let (status, _) = crate::authorization::call(&app, "user_detail", &[("id", unknown)]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    admin.delete_user(&user).await;
}

#[tokio::test]
async fn a_sign_in_at_the_otp_level_asks_for_the_password_then_the_code_on_keycloaks_pages() {
    let admin = KeycloakAdmin::new("demo");
    let (user, secret) = admin_with_authenticator(&admin).await;
    let app = spawn_app().await;
    let authorize = start_at_level(&app, "otp").await;
    let r = sign_in_at_keycloak(&app, &authorize, &user, &secret).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let me = app.current_user().await;
    assert_eq!(me["acr"], "otp", "{me}");
    assert_eq!(users_api(&app, None).await.status(), StatusCode::OK);
    admin.delete_user(&user).await;
}

#[tokio::test]
async fn the_level_stays_through_a_refresh_of_the_tokens() {
    let admin = KeycloakAdmin::new("demo-short");
    let (user, secret) = admin_with_authenticator(&admin).await;
    let app = spawn_short_app().await;
    let authorize = start_at_level(&app, "otp").await;
    let r = sign_in_at_keycloak(&app, &authorize, &user, &secret).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = session_cookie_value(&set_cookies(&r)).expect("session cookie");
    let generation = stored_generation(&app, &cookie).await;
    // The access token lives 10 s and is refreshed 3 s ahead: the next call refreshes it.
    tokio::time::sleep(std::time::Duration::from_secs(SHORT_TOKEN_SECS - 2)).await;
    assert_eq!(users_api(&app, None).await.status(), StatusCode::OK);
    assert!(
        stored_generation(&app, &cookie).await > generation,
        "refreshed"
    );
    assert_eq!(app.current_user().await["acr"], "otp");
    admin.delete_user(&user).await;
}

async fn stored_generation(app: &TestApp, cookie: &str) -> u64 {
    crate::dpop::stored_session(app, cookie).await.2
}

#[tokio::test]
async fn a_bearer_token_of_the_password_level_gets_the_challenge_and_a_non_admin_gets_403() {
    let app = spawn_app_in(
        tempfile::tempdir().expect("tmp"),
        browser(),
        &[("APP_KEYCLOAK_BEARER_CLIENTS", "notes-reader,api-tester")],
    )
    .await;
    let token = |username| crate::authorization::access_token("demo", username);
    let r = users_api(&app, Some(&token("alice").await)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        challenge(&r).contains(r#"acr_values="otp""#),
        "{}",
        challenge(&r)
    );
    // The rule first: someone who is not an admin learns nothing of levels.
    let r = users_api(&app, Some(&token("paul").await)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(!challenge(&r).contains("acr_values"));
}

#[tokio::test]
async fn a_level_the_app_does_not_rank_is_refused_before_keycloak() {
    let app = spawn_app().await;
    for acr in ["gold", "2", "otp%22%3E", ""] {
        let r = app
            .get(&format!("/auth/login?return_to=%2F&acr={acr}"))
            .await;
        if acr.is_empty() {
            // An empty value is no level: a normal sign-in.
            assert_eq!(r.status(), StatusCode::SEE_OTHER);
            continue;
        }
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{acr}");
        assert!(r.headers().get("location").is_none());
        let body = r.text().await.expect("page");
        assert!(body.contains("level of authentication"), "{body:.300}");
    }
    let r = app
        .get("/auth/login?return_to=%2F&acr=otp&prompt=none")
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "silent and a level");
}
