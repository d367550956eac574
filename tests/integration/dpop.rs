//! DPoP (RFC 9449) on the app's JSON API against the real Keycloak: a test-only client of the
//! realm (`api-tester-dpop`, "require DPoP bound tokens") gives a user a token bound to the test's
//! own P-256 key; `/api/v1/me` accepts it only with a fresh proof of that key for that request.
//!
//! Catalogue: P09 (a stolen bound token alone, a replayed proof, a proof of another key or for
//! another request).

use crate::common::*;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Digest;

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

/// A P-256 key of the test's own, and its public JWK.
struct Key {
    pair: EcdsaKeyPair,
    jwk: Value,
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
        Key { pair, jwk }
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
