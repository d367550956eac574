//! DPoP (RFC 9449) against the real Keycloak, both ways.
//!
//! The app's JSON API: a test-only client of the realm (`api-tester-dpop`, "require DPoP bound
//! tokens") gives a user a token bound to the test's own P-256 key; `/api/v1/me` accepts it only
//! with a fresh proof of that key for that request. The upstream (`examples/orders-api`, a real
//! process) checks proofs the same way.
//!
//! The app's own tokens (`keycloak.dpop`, the realm's client `demo-app-dpop`): bound to the app's
//! key at sign-in, refresh and token exchange; useless to whoever takes them from the store; the
//! app's own calls (Keycloak's Account API, a remote API route) carry proofs and work.
//!
//! Catalogue: P09 (a stolen bound token alone, a replayed proof, a proof of another key or for
//! another request), P10 (the app's own tokens bound to its key).

use crate::common::*;
use crate::remote_api::{call, next_text, open_socket, OrdersApi};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use keycloak_bff::server::test_support::Internals as _;
use keycloak_bff::server::RemoteApi;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Digest;
use std::time::Duration;

/// The clients whose tokens the JSON API accepts in these tests.
const WITH_DPOP_CLIENT: &[(&str, &str)] = &[
    (
        "APP_KEYCLOAK_ISSUER_URL",
        "http://localhost:8080/realms/demo-short",
    ),
    (
        "APP_KEYCLOAK_BEARER_CLIENTS",
        "notes-reader,api-tester-dpop",
    ),
];

/// A P-256 key of the test's own, its public JWK, and its PEM (to give the app).
struct Key {
    pair: EcdsaKeyPair,
    jwk: Value,
    pem: String,
}

impl Key {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .expect("key pair");
        // The uncompressed point: 0x04, x, y.
        let point = pair.public_key().as_ref().to_vec();
        let jwk = json!({
            "kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
        );
        Key { pair, jwk, pem }
    }

    /// The RFC 7638 thumbprint: what a token bound to this key names in `cnf.jkt`.
    fn thumbprint(&self) -> String {
        // RFC 7638: the required members, in order, no spaces.
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            self.jwk["x"].as_str().expect("x"),
            self.jwk["y"].as_str().expect("y")
        );
        URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(canonical.as_bytes()))
    }

    /// A DPoP proof for `method` `url` (and `token`, when presenting one), with `jti`.
    fn proof(&self, method: &str, url: &str, token: Option<&str>, jti: &str) -> String {
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk});
        let mut claims = json!({"htm": method, "htu": url, "jti": jti, "iat": unix_now()});
        if let Some(t) = token {
            claims["ath"] = json!(URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(t.as_bytes())));
        }
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("sign");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

fn unix_now() -> i64 {
    keycloak_bff::server::unix_now()
}

fn jti() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("random");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A DPoP-bound access token of `username` for `key` (password grant of `api-tester-dpop`).
async fn bound_token(key: &Key, username: &str) -> Value {
    let url = format!("{KEYCLOAK}/realms/demo-short/protocol/openid-connect/token");
    let r = reqwest::Client::new()
        .post(&url)
        .header("dpop", key.proof("POST", &url, None, &jti()))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "api-tester-dpop"),
            ("username", username),
            ("password", &format!("{username}-dev-pw")),
        ])
        .send()
        .await
        .expect("token request");
    assert_eq!(r.status(), StatusCode::OK, "Keycloak gives a bound token");
    r.json().await.expect("token JSON")
}

async fn me(app: &TestApp, authorization: &str, proof: Option<String>) -> reqwest::Response {
    let mut r = app
        .client
        .get(app.url("/api/v1/me"))
        .header("authorization", authorization);
    if let Some(p) = proof {
        r = r.header("dpop", p);
    }
    r.send().await.expect("GET")
}

#[tokio::test]
async fn a_dpop_bound_token_works_only_with_a_fresh_proof_of_its_own_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_app_in(dir, browser(), WITH_DPOP_CLIENT).await;
    let key = Key::new();
    let answer = bound_token(&key, "paul").await;
    assert_eq!(answer["token_type"], "DPoP");
    let token = answer["access_token"].as_str().expect("token").to_owned();
    // What the proofs name: the app's public URL, not the test's port.
    let url = format!("{PUBLIC_ORIGIN}/api/v1/me");
    let dpop = format!("DPoP {token}");

    let proof = key.proof("GET", &url, Some(&token), &jti());
    let ok = me(&app, &dpop, Some(proof.clone())).await;
    let status = ok.status();
    let body: Value = ok.json().await.expect("JSON");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["username"], "paul");

    // The same proof again: a replay.
    assert_eq!(
        me(&app, &dpop, Some(proof)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // The token alone, as a bearer token or without a proof: useless to whoever stole it.
    assert_eq!(
        me(&app, &format!("Bearer {token}"), None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        me(&app, &dpop, None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // A proof made by another key, for another URL, another method, or another token.
    let thief = Key::new();
    for (why, proof) in [
        (
            "another key",
            thief.proof("GET", &url, Some(&token), &jti()),
        ),
        (
            "another URL",
            key.proof(
                "GET",
                &format!("{PUBLIC_ORIGIN}/api/v1/notes"),
                Some(&token),
                &jti(),
            ),
        ),
        (
            "another method",
            key.proof("POST", &url, Some(&token), &jti()),
        ),
        (
            "another token",
            key.proof("GET", &url, Some("another"), &jti()),
        ),
        ("no token hash", key.proof("GET", &url, None, &jti())),
    ] {
        let r = me(&app, &dpop, Some(proof)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{why}");
        let body: Value = r.json().await.expect("JSON");
        assert_eq!(body["error"], "invalid_token", "{why}");
    }
    // A fresh proof still works: nothing above spent the token.
    let again = me(
        &app,
        &dpop,
        Some(key.proof("GET", &url, Some(&token), &jti())),
    )
    .await;
    assert_eq!(again.status(), StatusCode::OK);
}

/// A bound token of `username` for `key` that orders-api accepts (`aud` orders-api: the user
/// has its roles), and its proof for `method url`.
async fn upstream_call(
    key: &Key,
    token: &str,
    method: &str,
    url: &str,
    proof_url: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .request(method.parse().expect("method"), url)
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", key.proof(method, proof_url, Some(token), &jti()))
        .send()
        .await
        .expect("upstream call")
}

#[tokio::test]
async fn the_upstream_refuses_a_bound_token_without_its_proof_a_proof_for_another_url_and_a_replay()
{
    let upstream = OrdersApi::start();
    let key = Key::new();
    let answer = bound_token(&key, "alice").await;
    let token = answer["access_token"].as_str().expect("token").to_owned();
    let url = format!("{}/orders", upstream.base);

    let ok = upstream_call(&key, &token, "GET", &url, &url).await;
    let status = ok.status();
    let body: Value = ok.json().await.expect("JSON");
    assert_eq!(status, StatusCode::OK, "{body}");
    let binding = body["seen"]["binding"].as_str().unwrap_or_default();
    assert!(binding.contains(&key.thumbprint()), "{body}");

    let send = |proof: String, scheme: &str| {
        reqwest::Client::new()
            .get(&url)
            .header("authorization", format!("{scheme} {token}"))
            .header("dpop", proof)
            .send()
    };
    let proof = key.proof("GET", &url, Some(&token), &jti());
    assert_eq!(
        send(proof.clone(), "DPoP").await.expect("call").status(),
        StatusCode::OK
    );
    let replay = send(proof, "DPoP").await.expect("call");
    assert_eq!(
        replay.status(),
        StatusCode::UNAUTHORIZED,
        "a proof used twice"
    );
    let elsewhere = key.proof(
        "GET",
        &format!("{}/orders/other", upstream.base),
        Some(&token),
        &jti(),
    );
    assert_eq!(
        send(elsewhere, "DPoP").await.expect("call").status(),
        StatusCode::UNAUTHORIZED,
        "a proof for another URL (htu)"
    );
    let thief = Key::new();
    assert_eq!(
        send(thief.proof("GET", &url, Some(&token), &jti()), "DPoP")
            .await
            .expect("call")
            .status(),
        StatusCode::UNAUTHORIZED,
        "a proof of another key"
    );
    assert_eq!(
        send(key.proof("GET", &url, Some(&token), &jti()), "Bearer")
            .await
            .expect("call")
            .status(),
        StatusCode::UNAUTHORIZED,
        "the bound token as a bearer token"
    );
}

/// The app as the realm's DPoP client (`demo-app-dpop`) with the DPoP key `pem`, in `dir`, on
/// `demo-short` (10-second access tokens, refreshed 3 s before they expire); with the Orders
/// route to `upstream` when given.
async fn dpop_app(
    dir: tempfile::TempDir,
    client: reqwest::Client,
    pem: &str,
    upstream: Option<&str>,
) -> TestApp {
    let secret = realm_secret_of("demo-app-dpop");
    let overrides = [
        (
            "APP_KEYCLOAK_ISSUER_URL",
            "http://localhost:8080/realms/demo-short",
        ),
        ("APP_SESSION_REFRESH_MARGIN_SECS", "3"),
        ("APP_KEYCLOAK_CLIENT_ID", "demo-app-dpop"),
        ("APP_KEYCLOAK_CLIENT_SECRET", secret.as_str()),
        ("APP_KEYCLOAK_DPOP", "true"),
        ("APP_KEYCLOAK_DPOP_KEY", pem),
    ];
    let mut settings = settings(dir.path(), &overrides);
    let mut auth = settings.auth.clone();
    auth.apis.clear();
    if let Some(upstream) = upstream {
        let orders = RemoteApi::new("/remote/orders", &format!("{upstream}/orders"))
            .expect("route")
            .audience("orders-api")
            .methods(&[Method::GET, Method::POST])
            .websocket(true);
        auth = auth.with_api(orders).expect("the route fits");
    }
    settings.auth = auth;
    spawn_app_with(settings, dir, client, 0).await
}

/// The signed-in part of the session this browser holds, as the store keeps it.
pub(crate) async fn stored_session(app: &TestApp, cookie: &str) -> (String, Option<String>, u64) {
    let id: tower_sessions::session::Id = cookie.parse().expect("session id");
    let auth = app
        .state
        .auth
        .store()
        .load_auth(&id)
        .await
        .expect("store answers")
        .expect("signed in");
    (auth.access_token, auth.dpop_jkt, auth.generation)
}

fn claims_of(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64")).expect("claims")
}

#[tokio::test]
async fn the_apps_own_tokens_are_bound_to_its_key_useless_alone_and_work_through_the_app() {
    let upstream = OrdersApi::start();
    let key = Key::new();
    let app = dpop_app(
        tempfile::tempdir().expect("tmp"),
        browser(),
        &key.pem,
        Some(&upstream.base),
    )
    .await;
    let admin = KeycloakAdmin::new("demo-short");
    let user = admin.create_user("dpop", &[]).await;
    for role in ["read", "create"] {
        admin.grant_role_of(&user, "orders-api", role).await;
    }
    // The browser's cookie names the session; the test reads it as a thief of the store would.
    let r = app.login_as(&user.username, "/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "signs in");
    let cookie = session_cookie_value(&set_cookies(&r)).expect("session cookie");
    let (token, jkt, generation) = stored_session(&app, &cookie).await;
    assert_eq!(
        jkt.as_deref(),
        Some(key.thumbprint().as_str()),
        "bound to the app's key"
    );
    assert_eq!(claims_of(&token)["cnf"]["jkt"], key.thumbprint().as_str());

    // The stolen token alone: Keycloak's userinfo refuses it as a bearer token, and with a proof
    // of another key; with a proof of the app's key (which a thief lacks) it answers.
    let userinfo = format!("{KEYCLOAK}/realms/demo-short/protocol/openid-connect/userinfo");
    let http = reqwest::Client::new();
    let bearer = http
        .get(&userinfo)
        .bearer_auth(&token)
        .send()
        .await
        .expect("userinfo");
    assert_eq!(
        bearer.status(),
        StatusCode::UNAUTHORIZED,
        "the token replayed as Bearer"
    );
    let thief = Key::new();
    let with_proof = |k: &Key| {
        http.get(&userinfo)
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", k.proof("GET", &userinfo, Some(&token), &jti()))
            .send()
    };
    assert_eq!(
        with_proof(&thief).await.expect("userinfo").status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        with_proof(&key).await.expect("userinfo").status(),
        StatusCode::OK
    );

    // Through the app: Keycloak's Account API as the user (AsUser), and the remote API route
    // with a token exchanged for orders-api, both with proofs the app made.
    let (status, body) = crate::authorization::call(&app, "my_sessions", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!body.is_empty() && !contains_jwt(&body));
    let r = call(
        &app,
        Method::POST,
        "/remote/orders",
        Some(serde_json::json!({"item": "tea"})),
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap_or_default()
    );
    let r = call(&app, Method::GET, "/remote/orders", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let listed: Value = r.json().await.expect("JSON");
    assert_eq!(listed["seen"]["aud"], "orders-api", "{listed}");
    let binding = listed["seen"]["binding"].as_str().unwrap_or_default();
    assert!(
        binding.contains(&key.thumbprint()),
        "the exchanged token is bound too: {listed}"
    );
    // A WebSocket through the route: the upgrade request carries the bound token and its proof.
    let mut socket = open_socket(&app, "/remote/orders/ws", PUBLIC_ORIGIN, &cookie)
        .await
        .expect("the socket opens");
    let hello: Value = serde_json::from_str(&next_text(&mut socket).await).expect("JSON");
    let binding = hello["seen"]["binding"].as_str().unwrap_or_default();
    assert!(binding.contains(&key.thumbprint()), "{hello}");
    drop(socket);
    let log = upstream.requests().await;
    assert!(log.len() >= 3, "{log:?}");
    assert!(log.iter().all(|e| e["authorization"] == "dpop"), "{log:?}");

    // The access token expires (10 s, refreshed 3 s ahead): the refresh carries a proof too,
    // and the new token is bound to the same key.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (status, body) = crate::authorization::call(&app, "my_sessions", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (refreshed, jkt, later) = stored_session(&app, &cookie).await;
    assert!(later > generation, "refreshed");
    assert_ne!(refreshed, token);
    assert_eq!(jkt.as_deref(), Some(key.thumbprint().as_str()));
    assert_eq!(
        claims_of(&refreshed)["cnf"]["jkt"],
        key.thumbprint().as_str()
    );
    drop(admin);
}

#[tokio::test]
async fn a_session_bound_to_a_key_the_app_no_longer_has_is_refreshed_to_its_new_key() {
    let (old, new) = (Key::new(), Key::new());
    let app = dpop_app(tempfile::tempdir().expect("tmp"), browser(), &old.pem, None).await;
    let r = app.login_as("alice", "/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = session_cookie_value(&set_cookies(&r)).expect("session cookie");
    assert_eq!(
        stored_session(&app, &cookie).await.1,
        Some(old.thumbprint())
    );
    // A new process with another key (the operator replaced it): the user stays signed in, and
    // the session's token is bound to the new key before it is used.
    let (dir, client) = app.stop().await;
    let app = dpop_app(dir, client, &new.pem, None).await;
    let (status, body) = crate::authorization::call(&app, "my_sessions", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        stored_session(&app, &cookie).await.1,
        Some(new.thumbprint())
    );
}

#[tokio::test]
async fn replicas_without_a_shared_dpop_key_do_not_start_and_the_message_says_what_to_set() {
    let dir = tempfile::tempdir().expect("tmp");
    let settings = settings(
        dir.path(),
        &[
            ("APP_KEYCLOAK_DPOP", "true"),
            ("APP_SESSION_STORE", "redis"),
            // Nothing listens there: the key is checked before the store is opened.
            ("APP_SESSION_REDIS_URL", "redis://127.0.0.1:9"),
        ],
    );
    let refused = kc_leptos::server::startup::Application::build(settings, leptos_options()).await;
    let said = refused.map(|_| ()).expect_err("refused").to_string();
    assert!(
        said.contains("APP_KEYCLOAK_DPOP_KEY") && said.contains("share"),
        "{said}"
    );
}

#[tokio::test]
async fn a_proof_accepted_by_one_replica_is_refused_by_every_other() {
    let redis = keycloak_bff::server::test_support::TestRedis::start().expect("redis-server");
    let url = redis.url();
    let mut overrides = WITH_DPOP_CLIENT.to_vec();
    overrides.extend_from_slice(&[
        ("APP_SESSION_STORE", "redis"),
        ("APP_SESSION_REDIS_URL", url.as_str()),
    ]);
    let a = spawn_app_in(tempfile::tempdir().expect("tmp"), browser(), &overrides).await;
    let b = spawn_app_in(tempfile::tempdir().expect("tmp"), browser(), &overrides).await;
    let key = Key::new();
    let answer = bound_token(&key, "paul").await;
    let token = answer["access_token"].as_str().expect("token").to_owned();
    let (me_url, dpop) = (
        format!("{PUBLIC_ORIGIN}/api/v1/me"),
        format!("DPoP {token}"),
    );
    let proof = key.proof("GET", &me_url, Some(&token), &jti());
    assert_eq!(
        me(&a, &dpop, Some(proof.clone())).await.status(),
        StatusCode::OK
    );
    // The same proof at the other replica (a load balancer's choice, or a thief's): a replay.
    assert_eq!(
        me(&b, &dpop, Some(proof)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let fresh = key.proof("GET", &me_url, Some(&token), &jti());
    assert_eq!(me(&b, &dpop, Some(fresh)).await.status(), StatusCode::OK);
}
