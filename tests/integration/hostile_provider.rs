//! The catalogue's token cases that need tokens Keycloak would never issue (sections A, B, C, D,
//! E of `shared/security-catalogue.md`): the app's real login, callback and refresh code pointed at
//! the hostile provider in `tests/integration/hostile/` through its normal settings.

use crate::common::*;
use crate::hostile::{Behaviour, HostileOp, Signing, CLIENT_SECRET};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use keycloak_bff::server::test_support::Internals as _;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn app_against(op: &HostileOp, extra: &[(&str, &str)]) -> TestApp {
    let mut overrides = vec![
        ("APP_KEYCLOAK_ISSUER_URL", op.issuer.as_str()),
        ("APP_KEYCLOAK_CLIENT_SECRET", CLIENT_SECRET),
    ];
    overrides.extend_from_slice(extra);
    spawn_app_in(tempfile::tempdir().expect("tmp"), browser(), &overrides).await
}

/// Starts a login, lets the provider answer, and returns the app's answer to the callback.
async fn login(app: &TestApp) -> reqwest::Response {
    login_from(app, "/auth/login?return_to=/profile").await
}

/// The same, from the app's login URL `start` (a step-up: `&prompt=login`).
async fn login_from(app: &TestApp, start: &str) -> reqwest::Response {
    let r = app.get(start).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let authorize = location(&r);
    let r = app.client.get(&authorize).send().await.expect("authorize");
    let callback = location(&r);
    let rest = callback
        .strip_prefix(PUBLIC_ORIGIN)
        .expect("callback to the registered URI");
    app.client
        .get(app.url(rest))
        .send()
        .await
        .expect("callback")
}

async fn refused(op: &HostileOp, behaviour: Behaviour, case: &str) {
    op.set(behaviour);
    let app = app_against(op, &[]).await;
    let r = login(&app).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{case}");
    assert!(
        r.text().await.expect("html").contains("Sign-in failed"),
        "{case}"
    );
    assert_eq!(app.current_user().await, Value::Null, "{case}: no session");
}

fn id(claims: Value) -> Behaviour {
    Behaviour {
        id_claims: claims,
        ..Behaviour::default()
    }
}

#[tokio::test]
async fn b11_a_valid_login_is_accepted_and_d07_the_secret_is_form_encoded_for_basic_auth() {
    let op = HostileOp::start().await;
    let app = app_against(&op, &[]).await;
    let r = login(&app).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.current_user().await["display_name"], "Hostile User");
    // The provider refuses anything but `urlencode(id):urlencode(secret)` in Basic auth.
    assert!(op
        .last_basic_auth()
        .is_some_and(|h| h.starts_with("Basic ")));
    // E01: the app never asks the userinfo endpoint, so a userinfo `sub` cannot mislead it.
    assert_eq!(op.userinfo_calls(), 0);
}

#[tokio::test]
async fn id_tokens_with_bad_signatures_or_algorithms_are_refused() {
    let op = HostileOp::start().await;
    for (case, signing) in [
        ("B01 bad signature", Signing::OtherKeySameKid),
        ("B09 alg none", Signing::AlgNone),
        (
            "B10 HS256 with the client secret",
            Signing::Hs256WithClientSecret,
        ),
    ] {
        refused(
            &op,
            Behaviour {
                id_signing: signing,
                ..Behaviour::default()
            },
            case,
        )
        .await;
    }
}

#[tokio::test]
async fn id_token_claims_that_do_not_fit_the_login_are_refused() {
    let op = HostileOp::start().await;
    let t = keycloak_bff::server::unix_now();
    for (case, claims) in [
        ("B02 wrong iss", json!({"iss": "http://127.0.0.1:1/evil"})),
        ("B03 aud missing", json!({"aud": null})),
        ("B03 aud not ours", json!({"aud": "other-app"})),
        (
            "B04 several aud, azp missing",
            json!({"aud": ["demo-app", "other"], "azp": null}),
        ),
        (
            "B04 several aud, azp not ours",
            json!({"aud": ["demo-app", "other"], "azp": "other"}),
        ),
        ("B05 no iat", json!({"iat": null})),
        ("B06 no sub", json!({"sub": null})),
        ("B07 wrong nonce", json!({"nonce": "not-the-one"})),
        ("B07 no nonce", json!({"nonce": null})),
        ("B08 expired", json!({"exp": t - 3600})),
        ("B08 nbf in the future", json!({"nbf": t + 3600})),
        ("B08 iat in the future", json!({"iat": t + 3600})),
        ("B13 typ Bearer", json!({"typ": "Bearer"})),
        ("B13 typ Refresh", json!({"typ": "Refresh"})),
        (
            "B14 wrong at_hash",
            json!({"at_hash": "AAAAAAAAAAAAAAAAAAAAAA"}),
        ),
    ] {
        refused(&op, id(claims), case).await;
    }
}

#[tokio::test]
async fn b12_a_token_without_kid_is_accepted_with_one_key_and_refused_with_several() {
    let op = HostileOp::start().await;
    op.set(Behaviour {
        id_signing: Signing::NoKid,
        ..Behaviour::default()
    });
    let app = app_against(&op, &[]).await;
    assert_eq!(
        login(&app).await.status(),
        StatusCode::SEE_OTHER,
        "one key: accepted"
    );
    refused(
        &op,
        Behaviour {
            id_signing: Signing::NoKid,
            two_keys: true,
            ..Behaviour::default()
        },
        "several keys",
    )
    .await;
}

/// A first page load of `path` followed through the silent sign-in's redirects: the app's last
/// answer (the provider's redirects are followed; the app's are, up to the callback's).
async fn silent_attempt(app: &TestApp, path: &str) -> reqwest::Response {
    let probe = navigate(app, path).await;
    assert_eq!(probe.status(), StatusCode::SEE_OTHER, "the cookie probe");
    let r = navigate(app, &location(&probe)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let login = location(&r);
    assert!(login.contains("prompt=none"), "{login}");
    let r = app.get(&login).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = location(&r);
    if !to.starts_with("http") {
        return r; // the login route answered without the provider
    }
    let at_provider = app.client.get(&to).send().await.expect("authorize");
    let callback = location(&at_provider);
    let rest = callback.strip_prefix(PUBLIC_ORIGIN).expect("our callback");
    app.client
        .get(app.url(rest))
        .send()
        .await
        .expect("callback")
}

#[tokio::test]
async fn a_silent_sign_in_that_fails_lands_on_the_page_signed_out_and_is_not_tried_again() {
    let token_fails = Behaviour {
        token_status: Some(502),
        ..Behaviour::default()
    };
    let wrong_iss = Behaviour {
        callback_iss: Some("http://evil.example/realms/demo".into()),
        ..Behaviour::default()
    };
    for (behaviour, case) in [
        (token_fails, "token endpoint 502"),
        (wrong_iss, "wrong iss"),
    ] {
        let op = HostileOp::start().await;
        op.set(behaviour);
        let app = app_against(&op, &[]).await;
        let r = silent_attempt(&app, "/?x=1").await;
        assert_eq!(
            r.status(),
            StatusCode::SEE_OTHER,
            "{case}: not an error page"
        );
        assert_eq!(location(&r), "/?x=1", "{case}: the page asked for");
        assert_eq!(app.current_user().await, Value::Null, "{case}: signed out");
        assert_eq!(
            navigate(&app, "/").await.status(),
            StatusCode::OK,
            "{case}: once"
        );
    }
}

#[tokio::test]
async fn no_silent_sign_in_is_tried_while_keycloak_is_known_to_be_down() {
    let op = HostileOp::start().await;
    op.set(Behaviour {
        discovery_status: Some(503),
        ..Behaviour::default()
    });
    let app = app_against(&op, &[]).await;
    // Nobody knew yet: the attempt comes straight back to the page, signed out.
    let r = silent_attempt(&app, "/?x=1").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/?x=1");
    // Now it is known: another browser is not even sent to try.
    let other = TestApp::sharing(&app, browser());
    let probe = navigate(&other, "/").await;
    assert_eq!(probe.status(), StatusCode::OK, "not redirected at all");
}

#[tokio::test]
async fn a_step_up_answered_with_an_old_sign_in_is_refused_and_starts_no_session() {
    let op = HostileOp::start().await;
    let step_up = "/auth/login?return_to=/profile&prompt=login";
    // The provider ignores `prompt=login` and answers from a sign-in an hour old.
    op.set(id(
        json!({"auth_time": keycloak_bff::server::unix_now() - 3600}),
    ));
    let app = app_against(&op, &[]).await;
    let r = login_from(&app, step_up).await;
    assert_eq!(op.prompts(), vec![Some("login".to_owned())], "asked for");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let html = r.text().await.expect("html");
    assert!(
        html.contains("Keycloak did not ask for your password again"),
        "{html}"
    );
    assert_eq!(app.current_user().await, Value::Null, "no session");
    // The same provider with a sign-in made for this request: accepted.
    op.set(id(json!({"auth_time": keycloak_bff::server::unix_now()})));
    let r = login_from(&app, step_up).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/profile");
    assert_eq!(app.current_user().await["display_name"], "Hostile User");
}

#[tokio::test]
async fn aa04_a_sign_in_that_asked_for_a_level_and_came_back_weaker_is_refused_and_starts_no_session(
) {
    let op = HostileOp::start().await;
    let at_level = "/auth/login?return_to=/profile&acr=otp";
    // The provider ignores the essential `acr` asked for and answers with the password level.
    op.set(id(json!({"acr": "password"})));
    let app = app_against(&op, &[]).await;
    let r = login_from(&app, at_level).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let html = r.text().await.expect("html");
    assert!(
        html.contains("Keycloak did not confirm the stronger sign-in"),
        "{html}"
    );
    assert_eq!(app.current_user().await, Value::Null, "no session");
    // No acr at all is no level either.
    op.set(Behaviour::default());
    let r = login_from(&app, at_level).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.current_user().await, Value::Null, "no session");
    // The level asked for: accepted.
    op.set(id(json!({"acr": "otp"})));
    let r = login_from(&app, at_level).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.current_user().await["acr"], "otp");
}

#[tokio::test]
async fn a_kept_bearer_token_is_checked_again_after_a_minute_and_refused_once_its_key_is_withdrawn()
{
    let op = HostileOp::start().await;
    let app = app_against(&op, &[]).await;
    let oidc = app.state.auth.oidc();
    let now = keycloak_bff::server::unix_now();
    let old = op.access_token();
    assert!(oidc.validate_bearer(&old, now).await.is_ok());
    assert_eq!(oidc.bearer_checks(), 1);
    // The provider withdraws that key and signs with a new one.
    op.set(Behaviour {
        rotate_key: true,
        withdraw_first_key: true,
        ..Behaviour::default()
    });
    let new = op.access_token();
    // An unknown `kid` from anyone refetches the key set at most once in 10 s.
    tokio::time::sleep(std::time::Duration::from_millis(10_500)).await;
    let now = keycloak_bff::server::unix_now();
    assert!(oidc.validate_bearer(&new, now).await.is_ok(), "the new key");
    assert_eq!(oidc.bearer_checks(), 2);
    // Within the minute, the kept token still counts (the documented window)...
    assert!(oidc.validate_bearer(&old, now).await.is_ok());
    assert_eq!(oidc.bearer_checks(), 2, "kept");
    // ...and a minute after its check it is checked again, and its key is gone.
    let later = now + 61;
    assert!(oidc.validate_bearer(&old, later).await.is_err());
    assert_eq!(oidc.bearer_checks(), 3, "checked again");
    assert!(oidc.validate_bearer(&new, later).await.is_ok());
}

#[tokio::test]
async fn a06_a_callback_from_another_issuer_is_refused_before_any_token_call() {
    let op = HostileOp::start().await;
    op.set(Behaviour {
        callback_iss: Some("http://127.0.0.1:1/evil".into()),
        ..Behaviour::default()
    });
    let app = app_against(&op, &[]).await;
    assert_eq!(login(&app).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(op.token_calls(), 0);
}

#[tokio::test]
async fn a06_a_callback_without_iss_is_refused_when_the_provider_says_it_sends_one() {
    let op = HostileOp::start().await;
    op.set(Behaviour {
        omit_callback_iss: true,
        ..Behaviour::default()
    });
    let app = app_against(&op, &[]).await;
    assert_eq!(login(&app).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(op.token_calls(), 0);
}

#[tokio::test]
async fn a06_a_provider_without_rfc_9207_signs_in_without_iss() {
    let op = HostileOp::start().await;
    op.set(Behaviour {
        no_iss_support: true,
        ..Behaviour::default()
    });
    let app = app_against(&op, &[]).await;
    assert_eq!(login(&app).await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn c05_a_failing_discovery_is_not_retried_by_every_request_and_heals_by_itself() {
    let op = HostileOp::start().await;
    op.set(Behaviour {
        discovery_status: Some(500),
        ..Behaviour::default()
    });
    let app = app_against(&op, &[]).await;
    // Twenty sign-ins at once, all in flight before the first answer.
    let attempts: Vec<_> = (0..20)
        .map(|_| {
            let (client, url) = (browser(), app.url("/auth/login?return_to=/profile"));
            tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) })
        })
        .collect();
    for attempt in attempts {
        let status = attempt.await.expect("task").expect("answer");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(
        op.discovery_calls(),
        1,
        "one discovery for twenty requests, not one each"
    );
    // Healed: after the short pause, the next request discovers again and signs in.
    op.set(Behaviour::default());
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    assert_eq!(login(&app).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(op.discovery_calls(), 2);
}

#[tokio::test]
async fn c05_a_huge_discovery_document_is_refused() {
    let op = HostileOp::start().await;
    op.set(Behaviour {
        discovery_huge: true,
        ..Behaviour::default()
    });
    let app = app_against(&op, &[]).await;
    let r = app.get("/auth/login?return_to=/profile").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a01_an_unknown_state_is_refused_before_any_token_call() {
    let op = HostileOp::start().await;
    let app = app_against(&op, &[]).await;
    let r = app
        .get("/auth/callback?code=code-1&state=never-issued")
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(op.token_calls(), 0);
}

#[tokio::test]
async fn d08_token_responses_without_id_token_or_bearer_type_are_refused_and_a_missing_expires_in_is_tolerated(
) {
    let op = HostileOp::start().await;
    refused(
        &op,
        Behaviour {
            omit_id_token: true,
            ..Behaviour::default()
        },
        "no id_token",
    )
    .await;
    refused(
        &op,
        Behaviour {
            token_type: Some("MAC".into()),
            ..Behaviour::default()
        },
        "token_type MAC",
    )
    .await;
    op.set(Behaviour {
        omit_expires_in: true,
        ..Behaviour::default()
    });
    let app = app_against(&op, &[]).await;
    assert_eq!(
        login(&app).await.status(),
        StatusCode::SEE_OTHER,
        "the token's own exp is used"
    );
}

/// Signs in with a margin so large that every request refreshes.
async fn signed_in_refreshing(op: &HostileOp) -> TestApp {
    op.set(Behaviour::default());
    let app = app_against(op, &[("APP_SESSION_REFRESH_MARGIN_SECS", "600")]).await;
    assert_eq!(login(&app).await.status(), StatusCode::SEE_OTHER);
    app
}

#[tokio::test]
async fn d01_d02_a_refresh_that_changes_iss_sub_aud_or_azp_ends_the_session() {
    let op = HostileOp::start().await;
    for (case, behaviour) in [
        (
            "D01 sub",
            Behaviour {
                id_claims: json!({"sub": "someone-else"}),
                access_claims: json!({"sub": "someone-else"}),
                ..Behaviour::default()
            },
        ),
        (
            "D01 iss",
            Behaviour {
                id_claims: json!({"iss": "http://127.0.0.1:1/evil"}),
                ..Behaviour::default()
            },
        ),
        (
            "D02 aud",
            Behaviour {
                access_claims: json!({"aud": ["other-app"]}),
                ..Behaviour::default()
            },
        ),
        (
            "D02 azp",
            Behaviour {
                id_claims: json!({"azp": "other-app"}),
                access_claims: json!({"azp": "other-app"}),
                ..Behaviour::default()
            },
        ),
    ] {
        let app = signed_in_refreshing(&op).await;
        assert_eq!(
            app.current_user().await["display_name"],
            "Hostile User",
            "{case}: a good refresh"
        );
        op.set(behaviour);
        assert_eq!(
            app.current_user().await,
            Value::Null,
            "{case}: the session ends"
        );
    }
}

#[tokio::test]
async fn d05_a_failing_token_endpoint_keeps_the_session_while_the_token_is_valid() {
    let op = HostileOp::start().await;
    let app = signed_in_refreshing(&op).await;
    for status in [500, 502, 503] {
        op.set(Behaviour {
            token_status: Some(status),
            ..Behaviour::default()
        });
        assert_eq!(
            app.current_user().await["display_name"],
            "Hostile User",
            "{status}: session kept"
        );
    }
    op.set(Behaviour::default());
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(app.current_user().await["display_name"], "Hostile User");
}

#[tokio::test]
async fn c05_a_slow_or_huge_key_set_gives_503_and_the_app_keeps_serving() {
    let op = HostileOp::start().await;
    op.set(Behaviour {
        jwks_delay_secs: 3,
        ..Behaviour::default()
    });
    let app = app_against(&op, &[("APP_KEYCLOAK_HTTP_TIMEOUT_SECS", "1")]).await;
    assert_eq!(
        app.get("/").await.status(),
        StatusCode::OK,
        "the app starts and serves"
    );
    let r = app.get("/auth/login").await;
    assert_eq!(
        r.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "discovery times out"
    );

    op.set(Behaviour {
        jwks_huge: true,
        ..Behaviour::default()
    });
    let app = app_against(&op, &[]).await;
    let r = app.get("/auth/login").await;
    assert!(
        r.status() == StatusCode::SERVICE_UNAVAILABLE || r.status() == StatusCode::SEE_OTHER,
        "{}",
        r.status()
    );
    if r.status() == StatusCode::SEE_OTHER {
        let authorize = location(&r);
        let cb = location(&app.client.get(&authorize).send().await.expect("authorize"));
        let rest = cb.strip_prefix(PUBLIC_ORIGIN).expect("callback");
        let r = app
            .client
            .get(app.url(rest))
            .send()
            .await
            .expect("callback");
        assert!(
            r.status().is_client_error() || r.status() == StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            r.status()
        );
    }
    assert_eq!(app.get("/").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn c01_keys_rotated_just_before_signing_are_fetched_once_and_accepted() {
    let op = HostileOp::start().await;
    let app = app_against(&op, &[]).await;
    assert_eq!(login(&app).await.status(), StatusCode::SEE_OTHER);
    let fetches = app.state.auth.oidc().keys().fetch_count();
    // A second later (well inside the 10 s that strangers' tokens must wait between fetches),
    // Keycloak signs with a new key: tokens from its token endpoint may fetch the key set again.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    op.set(Behaviour {
        rotate_key: true,
        ..Behaviour::default()
    });
    let other = TestApp::sharing(&app, browser());
    assert_eq!(
        login(&other).await.status(),
        StatusCode::SEE_OTHER,
        "the new key is accepted"
    );
    assert_eq!(
        app.state.auth.oidc().keys().fetch_count(),
        fetches + 1,
        "one key-set fetch"
    );
}

#[tokio::test]
async fn c02_a_key_miss_at_refresh_keeps_the_session_and_the_refresh_token_keycloak_rotated() {
    let op = HostileOp::start().await;
    let app = signed_in_refreshing(&op).await;
    // Strangers' tokens with random `kid`s keep the key set's refetch window busy...
    for i in 0..20 {
        let forged = format!(
            "{}.{}.AAAA",
            URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"RS256","kid":"random-{i}"}}"#)),
            URL_SAFE_NO_PAD.encode(r#"{"sub":"x"}"#)
        );
        let r = app
            .client
            .get(app.url("/api/v1/me"))
            .bearer_auth(forged)
            .send()
            .await
            .expect("bearer");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // ...and Keycloak rotates its key, but its key set does not list the new one yet.
    op.set(Behaviour {
        rotate_key: true,
        jwks_lags_rotation: true,
        ..Behaviour::default()
    });
    assert_eq!(
        app.current_user().await["display_name"],
        "Hostile User",
        "the session stays (its access token is still valid)"
    );
    // Keycloak rotated the refresh token in that answer; the session kept the new one, which is
    // now the only one Keycloak accepts.
    op.set(Behaviour::default());
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        app.current_user().await["display_name"],
        "Hostile User",
        "the next refresh, with the rotated token, works"
    );
}

#[tokio::test]
async fn c02_an_empty_key_set_never_replaces_the_good_keys() {
    let op = HostileOp::start().await;
    let app = signed_in_refreshing(&op).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // A refresh signed by an unknown key makes the app fetch the key set: it answers no key.
    op.set(Behaviour {
        rotate_key: true,
        jwks_empty: true,
        ..Behaviour::default()
    });
    assert_eq!(app.current_user().await["display_name"], "Hostile User");
    let fetches = op.jwks_calls();
    assert!(fetches >= 2, "the key set was fetched again");
    // Keycloak signs with its usual key again (and the user's name changed); the key set still
    // answers nothing, so only the keys cached before the empty answer can verify the refresh.
    op.set(Behaviour {
        jwks_empty: true,
        id_claims: json!({"name": "Renamed User"}),
        access_claims: json!({"name": "Renamed User"}),
        ..Behaviour::default()
    });
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        app.current_user().await["display_name"],
        "Renamed User",
        "refreshed, verified with the cached key"
    );
    assert_eq!(
        metric(&app.state.auth.metrics().sessions_ended_by_server),
        0,
        "nobody was signed out"
    );
}

#[tokio::test]
async fn b09_b10_an_algorithm_the_settings_do_not_list_is_refused_even_with_a_good_signature() {
    let op = HostileOp::start().await;
    // PS256 signed by the provider's own key, published without `alg`: jsonwebtoken would
    // verify it; only the app's pinned list (RS256) refuses it.
    let behaviour = Behaviour {
        id_signing: Signing::Ps256,
        jwks_without_alg: true,
        ..Behaviour::default()
    };
    refused(&op, behaviour.clone(), "PS256 not listed").await;
    op.set(behaviour);
    let listed = app_against(&op, &[("APP_KEYCLOAK_ALGORITHMS", "RS256,PS256")]).await;
    assert_eq!(
        login(&listed).await.status(),
        StatusCode::SEE_OTHER,
        "the same token passes once PS256 is listed: the pin alone refused it"
    );
}

#[tokio::test]
async fn f01_sign_out_ends_keycloaks_session_with_the_refresh_token_from_the_server() {
    let op = HostileOp::start().await;
    let app = app_against(&op, &[]).await;
    assert_eq!(login(&app).await.status(), StatusCode::SEE_OTHER);
    let refresh_token = op.valid_refresh_token().expect("issued");
    let r = app.post("/auth/logout", Some(PUBLIC_ORIGIN)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/");
    let calls = op.logout_calls();
    assert_eq!(calls.len(), 1, "one call to the end-session endpoint");
    let (authorization, form) = &calls[0];
    assert!(authorization
        .as_deref()
        .is_some_and(|a| a.starts_with("Basic ")));
    assert_eq!(form.get("refresh_token"), Some(&refresh_token));
    assert!(!form.contains_key("id_token_hint"));
    assert_eq!(app.current_user().await, Value::Null);
}

#[tokio::test]
async fn f01_when_keycloak_cannot_end_its_session_the_user_is_told_and_offered_to_end_it() {
    let op = HostileOp::start().await;
    let app = app_against(&op, &[]).await;
    assert_eq!(login(&app).await.status(), StatusCode::SEE_OTHER);
    op.set(Behaviour {
        logout_status: Some(503),
        ..Behaviour::default()
    });
    let r = app.post("/auth/logout", Some(PUBLIC_ORIGIN)).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let html = r.text().await.expect("html");
    assert!(html.contains("Keycloak could not be reached"), "{html}");
    assert!(!contains_jwt(&html), "no token in the page");
    // The retry: Keycloak's own end-session page, from this browser, without any token.
    let doc = scraper::Html::parse_document(&html);
    let link = doc
        .select(&scraper::Selector::parse("a.button").expect("selector"))
        .filter_map(|a| a.value().attr("href"))
        .find(|h| h.starts_with(&op.issuer))
        .expect("a link to Keycloak")
        .to_owned();
    let to = url::Url::parse(&link).expect("url");
    assert_eq!(to.path(), "/logout");
    let q: std::collections::HashMap<_, _> = to.query_pairs().into_owned().collect();
    assert_eq!(q.get("client_id").map(String::as_str), Some("demo-app"));
    assert_eq!(
        q.get("post_logout_redirect_uri").map(String::as_str),
        Some("http://localhost:3000/")
    );
    assert_eq!(q.len(), 2, "nothing else: {q:?}");
    // The app's own session has ended all the same.
    assert_eq!(app.current_user().await, Value::Null);
}

#[tokio::test]
async fn d03_sign_ins_started_while_tokens_rotate_never_restore_a_spent_refresh_token() {
    let op = HostileOp::start().await;
    let app = signed_in_refreshing(&op).await;
    let records = app.state.auth.store().len().await.expect("count");
    for round in 0..15 {
        // Tab A refreshes (every call rotates the refresh token) while tab B starts a sign-in
        // on the same session.
        let (user, started) = tokio::join!(app.current_user(), app.get("/auth/login?return_to=/"));
        assert_eq!(user["display_name"], "Hostile User", "round {round}");
        assert_eq!(started.status(), StatusCode::SEE_OTHER);
    }
    assert_eq!(
        app.current_user().await["display_name"],
        "Hostile User",
        "the latest refresh token is still the session's"
    );
    assert_eq!(
        app.state.auth.store().len().await.expect("count"),
        records,
        "starting sign-ins wrote no record"
    );
}

#[tokio::test]
async fn d08_a_malformed_or_huge_token_response_is_a_clean_refusal() {
    let op = HostileOp::start().await;
    for (case, body) in [
        ("not JSON", "not json".to_owned()),
        ("truncated JSON", "{\"access_token\": ".to_owned()),
        (
            "wrong types",
            "{\"access_token\": 5, \"token_type\": []}".to_owned(),
        ),
        (
            "huge",
            format!("{{\"access_token\": \"{}\"}}", "A".repeat(200_000)),
        ),
    ] {
        refused(
            &op,
            Behaviour {
                token_body: Some(body),
                ..Behaviour::default()
            },
            case,
        )
        .await;
    }
}

#[tokio::test]
async fn c05_a_failing_key_set_stops_new_logins_with_503_but_cached_keys_keep_sessions_refreshing()
{
    let op = HostileOp::start().await;
    op.set(Behaviour {
        jwks_status: Some(500),
        ..Behaviour::default()
    });
    let fresh = app_against(&op, &[]).await;
    assert_eq!(
        fresh.get("/auth/login").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    let app = signed_in_refreshing(&op).await;
    let fetches = op.jwks_calls();
    op.set(Behaviour {
        jwks_status: Some(500),
        ..Behaviour::default()
    });
    for _ in 0..3 {
        assert_eq!(
            app.current_user().await["display_name"],
            "Hostile User",
            "refreshed with cached keys"
        );
    }
    assert_eq!(op.jwks_calls(), fetches, "no key-set call needed");
}

#[tokio::test]
async fn d06_the_rotated_refresh_token_is_saved_before_the_answer_so_a_new_process_continues() {
    let op = HostileOp::start().await;
    let app = signed_in_refreshing(&op).await;
    // Each request refreshes; the provider accepts only the latest refresh token.
    assert_eq!(app.current_user().await["display_name"], "Hostile User");
    assert_eq!(app.current_user().await["display_name"], "Hostile User");
    // The process ends right after answering: whatever it had not saved is lost.
    let (data, client) = app.stop().await;
    let overrides = [
        ("APP_KEYCLOAK_ISSUER_URL", op.issuer.as_str()),
        ("APP_KEYCLOAK_CLIENT_SECRET", CLIENT_SECRET),
        ("APP_SESSION_REFRESH_MARGIN_SECS", "600"),
    ];
    let app = spawn_app_in(data, client, &overrides).await;
    assert_eq!(
        app.current_user().await["display_name"],
        "Hostile User",
        "the new process refreshed with the rotated token it found in the store"
    );
}

#[tokio::test]
async fn the_app_calls_keycloak_on_its_internal_url_while_browsers_and_iss_stay_public() {
    // The public issuer is a loopback port where nothing listens: any call the app made there
    // would fail. Only its internal URL reaches the provider.
    let public = "http://localhost:9";
    let op = HostileOp::start_behind(Some(public)).await;
    let app = spawn_app_in(
        tempfile::tempdir().expect("tmp"),
        browser(),
        &[
            ("APP_KEYCLOAK_ISSUER_URL", public),
            ("APP_KEYCLOAK_INTERNAL_URL", op.address.as_str()),
            ("APP_KEYCLOAK_CLIENT_SECRET", CLIENT_SECRET),
            ("APP_SESSION_REFRESH_MARGIN_SECS", "600"),
        ],
    )
    .await;
    let r = app.get("/auth/login?return_to=/profile").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let authorize = location(&r);
    assert!(
        authorize.starts_with("http://localhost:9/authorize?"),
        "the browser is sent to the public issuer: {authorize}"
    );
    // The browser's network resolves the public name to the provider.
    let reached = authorize.replacen(public, &op.address, 1);
    let callback = location(&app.client.get(&reached).send().await.expect("authorize"));
    let rest = callback.strip_prefix(PUBLIC_ORIGIN).expect("callback");
    let r = app
        .client
        .get(app.url(rest))
        .send()
        .await
        .expect("callback");
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "signed in with iss = the public issuer"
    );
    assert_eq!(app.current_user().await["display_name"], "Hostile User");
    assert!(
        op.token_calls() >= 2,
        "code exchange and refresh went to the internal URL"
    );
    assert!(op.jwks_calls() >= 1 && op.discovery_calls() >= 1);
    assert_eq!(
        app.post("/auth/logout", Some(PUBLIC_ORIGIN)).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        op.logout_calls().len(),
        1,
        "sign-out reached Keycloak internally"
    );
}
