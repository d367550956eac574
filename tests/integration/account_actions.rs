//! Account actions (Keycloak's application-initiated actions) against the real Keycloak's own
//! pages: the app sends the signed-in user into one of them with `kc_action`, Keycloak's form is
//! filled in as a browser would, and the callback brings the outcome back to the page. Throw-away
//! users of the `demo` realm, one per test.
//!
//! Catalogue: AA01 (an action outside the allow-list), AA02 (a forged `kc_action_status`), AA03
//! (a deleted account's other sessions end, and Keycloak no longer has the user).

use crate::common::*;
use reqwest::StatusCode;
use serde_json::Value;

/// The form of a Keycloak page (the first one with an `action`) and its hidden fields.
pub(crate) fn page_form(html: &str) -> (String, Vec<(String, String)>) {
    let doc = scraper::Html::parse_document(html);
    let forms = scraper::Selector::parse("form[action]").expect("selector");
    let hidden = scraper::Selector::parse("input[type=hidden]").expect("selector");
    let form = doc.select(&forms).next().unwrap_or_else(|| {
        panic!(
            "no form on Keycloak's page: {}",
            html.get(html.len().saturating_sub(6000)..).unwrap_or(html)
        )
    });
    let action = form.value().attr("action").unwrap_or_default().to_owned();
    let fields = form
        .select(&hidden)
        .filter_map(|i| {
            Some((
                i.value().attr("name")?.to_owned(),
                i.value().attr("value").unwrap_or_default().to_owned(),
            ))
        })
        .collect();
    (action, fields)
}

/// Posts Keycloak's page `html`'s form with its hidden fields and `fields`.
async fn submit(app: &TestApp, html: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    let (action, mut form) = page_form(html);
    form.extend(
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    app.client
        .post(action.replace("&amp;", "&"))
        .form(&form)
        .send()
        .await
        .expect("Keycloak form POST")
}

/// `r`, or the page Keycloak's redirects on its own origin lead to from it.
async fn follow_keycloak(app: &TestApp, mut r: reqwest::Response) -> reqwest::Response {
    while r.status() == StatusCode::FOUND && location(&r).starts_with(KEYCLOAK) {
        let next = location(&r);
        r = app.client.get(&next).send().await.expect("Keycloak");
    }
    r
}

/// Starts `action` from the app and returns Keycloak's first page (HTML).
async fn open_action(app: &TestApp, action: &str) -> String {
    let r = app
        .get(&format!("/auth/action/{action}?return_to=/security"))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let authorize = location(&r);
    assert!(authorize.contains("kc_action="), "{authorize}");
    let page = app.client.get(&authorize).send().await.expect("Keycloak");
    // Keycloak goes on to its required-action page on its own origin.
    let page = follow_keycloak(app, page).await;
    assert_eq!(
        page.status(),
        StatusCode::OK,
        "Keycloak shows its page: {}",
        location(&page)
    );
    page.text().await.expect("page")
}

async fn signed_in_user(prefix: &str) -> (KeycloakAdmin, TestUser, TestApp) {
    let admin = KeycloakAdmin::new("demo");
    let user = admin.create_user(prefix, &[]).await;
    let app = spawn_app().await;
    let r = app.login_as(&user.username, "/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "signs in");
    (admin, user, app)
}

#[tokio::test]
async fn changing_the_password_comes_back_with_success_and_only_the_new_password_signs_in() {
    let (admin, user, app) = signed_in_user("aia-password").await;
    let html = open_action(&app, "update-password").await;
    assert!(html.contains("password-new"), "the password form");
    let new_password = format!("{}-new-pw", user.username);
    let done = submit(
        &app,
        &html,
        &[
            ("password-new", new_password.as_str()),
            ("password-confirm", new_password.as_str()),
        ],
    )
    .await;
    let r = app.follow_callback(&done).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&r),
        "/security?account_action=update-password&outcome=success"
    );
    assert_eq!(
        app.current_user().await["username"],
        user.username.as_str(),
        "still signed in"
    );
    let page = app
        .get("/security?account_action=update-password&outcome=success")
        .await;
    let html = page.text().await.expect("page");
    assert!(
        html.contains("Your password was changed."),
        "the page says so"
    );
    // Another browser: the new password signs in.
    let other = TestApp::sharing(&app, browser());
    let r = other
        .login_with_password(&user.username, &new_password, "/")
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "the new password works");
    admin.delete_user(&user).await;
}

#[tokio::test]
async fn cancelling_an_action_comes_back_cancelled_and_changes_nothing() {
    let (admin, user, app) = signed_in_user("aia-cancel").await;
    let html = open_action(&app, "update-password").await;
    let cancelled = submit(&app, &html, &[("cancel-aia", "true")]).await;
    let r = app.follow_callback(&cancelled).await;
    assert_eq!(
        location(&r),
        "/security?account_action=update-password&outcome=cancelled"
    );
    assert_eq!(app.current_user().await["username"], user.username.as_str());
    // The old password still signs in.
    let other = TestApp::sharing(&app, browser());
    assert_eq!(
        other.login_as(&user.username, "/").await.status(),
        StatusCode::SEE_OTHER
    );
    admin.delete_user(&user).await;
}

#[tokio::test]
async fn only_the_listed_actions_start_and_a_signed_out_browser_signs_in_first() {
    let app = spawn_app().await;
    for outside in [
        "UPDATE_PASSWORD",
        "idp_link:github",
        "delete_account",
        "nope",
    ] {
        let r = app.get(&format!("/auth/action/{outside}")).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{outside}");
    }
    let r = app
        .get("/auth/action/configure-totp?return_to=/security")
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = location(&r);
    assert!(to.starts_with("/auth/login?return_to="), "{to}");
    assert!(
        to.contains("%2Fauth%2Faction%2Fconfigure-totp%3Freturn_to%3D%2Fsecurity"),
        "{to}"
    );
}

#[tokio::test]
async fn a_kc_action_status_added_to_a_plain_sign_in_counts_for_nothing() {
    let admin = KeycloakAdmin::new("demo");
    let user = admin.create_user("aia-forged", &[]).await;
    let app = spawn_app().await;
    let authorize = app.start_login("/profile").await;
    let callback = app
        .keycloak_login(
            &authorize,
            &user.username,
            &format!("{}-dev-pw", user.username),
        )
        .await;
    let r = app
        .client
        .get(format!("{callback}&kc_action_status=success"))
        .send()
        .await
        .expect("callback");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/profile", "no outcome made up");
    admin.delete_user(&user).await;
}

#[tokio::test]
async fn deleting_the_account_ends_every_session_of_the_user_and_keycloak_forgets_them() {
    let admin = KeycloakAdmin::new("demo");
    let user = admin.create_user("aia-delete", &[]).await;
    admin
        .grant_role_of(&user, "account", "delete-account")
        .await;
    let app = spawn_app().await;
    assert_eq!(
        app.login_as(&user.username, "/").await.status(),
        StatusCode::SEE_OTHER
    );
    let elsewhere = TestApp::sharing(&app, browser());
    assert_eq!(
        elsewhere.login_as(&user.username, "/").await.status(),
        StatusCode::SEE_OTHER
    );
    let mut html = open_action(&app, "delete-account").await;
    // A tab of this browser left open, nobody touching it: its idle check comes back within
    // seconds while the deletion is watched (otherwise at the session's end, long after it).
    let idle = idle_check(&app).await;
    assert_eq!(idle["signed_in"], true, "{idle}");
    assert!(
        idle["check_in_secs"]
            .as_i64()
            .is_some_and(|s| s <= keycloak_bff::core::account_action::DELETION_IDLE_CHECK_SECS),
        "{idle}"
    );
    // Keycloak asks for the password again (when the sign-in is not recent), then for the
    // confirmation, then shows its own "deleted" page: it does not come back to the app.
    let password = format!("{}-dev-pw", user.username);
    for _ in 0..4 {
        if html.contains("User deleted successfully") {
            break;
        }
        let fields: Vec<(&str, &str)> = if html.contains("name=\"password\"") {
            vec![
                ("username", user.username.as_str()),
                ("password", password.as_str()),
            ]
        } else {
            Vec::new()
        };
        // Keycloak may go on to its next page by a redirect on its own origin.
        let r = follow_keycloak(&app, submit(&app, &html, &fields).await).await;
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "Keycloak's next page: {}",
            location(&r)
        );
        html = r.text().await.expect("next page");
    }
    assert!(html.contains("User deleted successfully"), "{html}");
    // The tab left open asks again (Keycloak's page never comes back to the app): the session
    // checks with Keycloak (at most every 2 s), finds the account gone, and every session of the
    // user ends, the other browser's too. The tab hears it at once.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let idle = idle_check(&app).await;
    assert_eq!(
        idle["signed_in"], false,
        "the idle tab learns of the deletion: {idle}"
    );
    let home = app.get("/").await;
    assert_eq!(home.status(), StatusCode::OK);
    for (browser, who) in [(&app, "this browser"), (&elsewhere, "the other browser")] {
        let me = browser.current_user().await;
        assert!(me.is_null(), "{who} is signed out: {me}");
    }
    assert_eq!(
        admin
            .send(reqwest::Method::GET, &format!("/users/{}", user.id), None)
            .await,
        StatusCode::NOT_FOUND,
        "Keycloak no longer has the user"
    );
}

/// The check of an open page nobody touches (`POST /auth/refresh?idle=1`), answered 200.
async fn idle_check(app: &TestApp) -> Value {
    let r = app.post("/auth/refresh?idle=1", Some(PUBLIC_ORIGIN)).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.expect("json")
}
