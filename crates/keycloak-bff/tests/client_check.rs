//! `keycloak-bff client check|create` against the real Keycloak (started by `keycloak/start.sh`):
//! a client made with the admin console's defaults is told every setting that differs, in the
//! console's words; the README's example client passes; a client the tool creates passes its
//! own check, and its secret lands in a file only its owner reads.
#![cfg(feature = "ssr")]
#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail by panicking

use serde_json::{json, Value};
use std::process::Command;

const KEYCLOAK: &str = "http://localhost:8080";
const ISSUER: &str = "http://localhost:8080/realms/demo";

fn tool(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keycloak-bff"))
        .args(args)
        .env("KEYCLOAK_ADMIN_USER", "admin")
        .env("KEYCLOAK_ADMIN_PASSWORD", "admin")
        .output()
        .expect("keycloak-bff");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn admin_token(http: &reqwest::Client) -> String {
    let r: Value = http
        .post(format!(
            "{KEYCLOAK}/realms/master/protocol/openid-connect/token"
        ))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "admin-cli"),
            ("username", "admin"),
            ("password", "admin"),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("JSON");
    r["access_token"].as_str().expect("access_token").to_owned()
}

async fn delete_client(http: &reqwest::Client, client_id: &str) {
    let token = admin_token(http).await;
    let found: Value = http
        .get(format!(
            "{KEYCLOAK}/admin/realms/demo/clients?clientId={client_id}"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    if let Some(id) = found[0]["id"].as_str() {
        http.delete(format!("{KEYCLOAK}/admin/realms/demo/clients/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("DELETE");
    }
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

#[tokio::test]
async fn a_client_made_with_the_consoles_defaults_is_told_every_setting_that_differs() {
    let http = reqwest::Client::new();
    let client_id = unique("console-default");
    // What the console's "Create client" makes with client authentication on and a redirect
    // URI entered (its other switches as they come).
    let console = json!({
        "clientId": client_id, "protocol": "openid-connect", "publicClient": false,
        "standardFlowEnabled": true, "directAccessGrantsEnabled": true,
        "frontchannelLogout": true, "redirectUris": ["http://localhost:3999/*"],
    });
    let created = http
        .post(format!("{KEYCLOAK}/admin/realms/demo/clients"))
        .bearer_auth(admin_token(&http).await)
        .json(&console)
        .send()
        .await
        .expect("POST");
    assert!(created.status().is_success(), "{}", created.status());
    let (code, out, err) = tool(&[
        "client",
        "check",
        "--issuer",
        ISSUER,
        "--client-id",
        &client_id,
        "--public-url",
        "http://localhost:3999",
    ]);
    delete_client(&http, &client_id).await;
    assert_eq!(code, 1, "{out}{err}");
    for setting in [
        "Front channel logout: should be Off, is On",
        "Direct access grants: should be Off, is On",
        "Proof Key for Code Exchange Code Challenge Method: should be S256",
        "Backchannel logout URL: should be http://localhost:3999/auth/backchannel-logout",
        "Valid redirect URIs: should be http://localhost:3999/auth/callback (and no wildcard)",
        "Valid post logout redirect URIs: should be http://localhost:3999/",
        "Mapper \"Group Membership\"",
        "Mapper \"Audience\"",
    ] {
        assert!(out.contains(setting), "{setting} in:\n{out}");
    }
    assert!(!out.contains("Client authentication"), "{out}");
}

#[tokio::test]
async fn the_readme_example_client_passes_and_a_created_client_passes_its_own_check() {
    let (code, out, err) = tool(&[
        "client",
        "check",
        "--issuer",
        ISSUER,
        "--client-id",
        "minimal-app",
        "--public-url",
        "http://localhost:3002",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("every setting is as keycloak-bff needs"),
        "{out}"
    );

    let http = reqwest::Client::new();
    let client_id = unique("created");
    let dir = tempfile::tempdir().expect("tmp");
    let secret_file = dir.path().join(".secrets/client-secret");
    let secret_arg = secret_file.display().to_string();
    let (code, out, err) = tool(&[
        "client",
        "create",
        "--issuer",
        ISSUER,
        "--client-id",
        &client_id,
        "--public-url",
        "https://app.example",
        "--secret-file",
        &secret_arg,
    ]);
    let (again, again_out, _) = tool(&[
        "client",
        "check",
        "--issuer",
        ISSUER,
        "--client-id",
        &client_id,
        "--public-url",
        "https://app.example",
    ]);
    delete_client(&http, &client_id).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(again, 0, "{again_out}");
    let secret = std::fs::read_to_string(&secret_file).expect("secret file");
    assert!(secret.len() >= 16, "a secret");
    assert!(!out.contains(&secret), "the secret is not printed");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&secret_file)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn a_missing_client_or_bad_usage_is_a_plain_message_and_exit_2() {
    let (code, _, err) = tool(&["client", "check", "--issuer", ISSUER]);
    assert_eq!(code, 2);
    assert!(err.contains("usage: keycloak-bff client"), "{err}");
    let (code, _, err) = tool(&[
        "client",
        "check",
        "--issuer",
        ISSUER,
        "--client-id",
        "no-such-client",
        "--public-url",
        "http://localhost:3999",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("has no client no-such-client"), "{err}");
}
