//! `keycloak-bff client check|create`: checks (or creates) the Keycloak client of an app through
//! Keycloak's Admin REST API, and names every setting that differs from what the library needs,
//! in the admin console's own words ([`keycloak_bff_core::client_setup`]). A client made in the
//! console with its defaults fails silently otherwise (front-channel logout on: sign-out from
//! elsewhere never reaches the app).
//!
//! ```text
//! keycloak-bff client check  --issuer http://localhost:8080/realms/demo --client-id my-app \
//!                            --public-url http://localhost:3000 [--route-prefix /auth]
//! keycloak-bff client create ...the same... [--secret-file .secrets/client-secret]
//! ```
//! The administrator signs in with `KEYCLOAK_ADMIN_USER` and `KEYCLOAK_ADMIN_PASSWORD` (the
//! `master` realm's `admin-cli`, or `KEYCLOAK_ADMIN_REALM`); a password never comes from an
//! argument, so it stays out of shell histories and process lists. Exit status: 0 when the
//! client is right (or was created), 1 when settings differ, 2 on a usage or connection error.

use keycloak_bff_core::client_setup::{self, Expected};
use serde_json::Value;
use std::process::ExitCode;

const USAGE: &str = "usage: keycloak-bff client check|create --issuer <issuer URL> \
--client-id <id> --public-url <app URL> [--route-prefix /auth] [--secret-file <path>]
(the administrator: KEYCLOAK_ADMIN_USER, KEYCLOAK_ADMIN_PASSWORD, KEYCLOAK_ADMIN_REALM=master)";

struct Args {
    create: bool,
    issuer: String,
    client_id: String,
    public_url: String,
    route_prefix: String,
    secret_file: Option<std::path::PathBuf>,
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let create = match (argv.next().as_deref(), argv.next().as_deref()) {
        (Some("client"), Some("check")) => false,
        (Some("client"), Some("create")) => true,
        _ => return Err(USAGE.into()),
    };
    let mut args = Args {
        create,
        issuer: String::new(),
        client_id: String::new(),
        public_url: String::new(),
        route_prefix: "/auth".into(),
        secret_file: None,
    };
    while let Some(flag) = argv.next() {
        let value = argv
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--issuer" => args.issuer = value.trim_end_matches('/').to_owned(),
            "--client-id" => args.client_id = value,
            "--public-url" => args.public_url = value.trim_end_matches('/').to_owned(),
            "--route-prefix" => args.route_prefix = value,
            "--secret-file" => args.secret_file = Some(value.into()),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    if args.issuer.is_empty() || args.client_id.is_empty() || args.public_url.is_empty() {
        return Err(USAGE.into());
    }
    Ok(args)
}

/// Keycloak's base URL and realm, from an issuer URL (`<base>/realms/<realm>`).
fn realm_of(issuer: &str) -> Result<(&str, &str), String> {
    issuer
        .rsplit_once("/realms/")
        .filter(|(_, realm)| !realm.is_empty() && !realm.contains('/'))
        .ok_or_else(|| format!("--issuer {issuer} is not <Keycloak URL>/realms/<realm>"))
}

struct Admin {
    http: reqwest::Client,
    base: String,
    realm: String,
    token: String,
}

impl Admin {
    async fn sign_in(base: &str, realm: &str) -> Result<Self, String> {
        let env =
            |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set\n{USAGE}"));
        let (user, password) = (env("KEYCLOAK_ADMIN_USER")?, env("KEYCLOAK_ADMIN_PASSWORD")?);
        let admin_realm = std::env::var("KEYCLOAK_ADMIN_REALM").unwrap_or_else(|_| "master".into());
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .map_err(|e| e.to_string())?;
        let answer = http
            .post(format!(
                "{base}/realms/{admin_realm}/protocol/openid-connect/token"
            ))
            .form(&[
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", user.as_str()),
                ("password", password.as_str()),
            ])
            .send()
            .await
            .map_err(|e| format!("cannot reach Keycloak at {base}: {e}"))?;
        if !answer.status().is_success() {
            return Err(format!(
                "the administrator could not sign in to the realm {admin_realm}: {}",
                answer.status()
            ));
        }
        let token: Value = answer.json().await.map_err(|e| e.to_string())?;
        let token = token["access_token"]
            .as_str()
            .ok_or("Keycloak answered no access token")?
            .to_owned();
        Ok(Self {
            http,
            base: base.to_owned(),
            realm: realm.to_owned(),
            token,
        })
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::Response, String> {
        let url = format!("{}/admin/realms/{}{path}", self.base, self.realm);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let answer = request.send().await.map_err(|e| format!("{url}: {e}"))?;
        if answer.status().is_success() {
            Ok(answer)
        } else {
            Err(format!("{url}: {}", answer.status()))
        }
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        let answer = self.request(reqwest::Method::GET, path, None).await?;
        answer.json().await.map_err(|e| format!("{path}: {e}"))
    }

    /// The client named `client_id`, if the realm has it.
    async fn client(&self, client_id: &str) -> Result<Option<Value>, String> {
        let found = self
            .get(&format!("/clients?clientId={}", urlencode(client_id)))
            .await?;
        Ok(found.as_array().and_then(|a| a.first().cloned()))
    }

    /// The mappers that reach the client's tokens: its own and its default client scopes'.
    async fn mappers(&self, client: &Value) -> Result<Vec<Value>, String> {
        let mut mappers = client["protocolMappers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let id = client["id"].as_str().unwrap_or_default();
        let scopes = self
            .get(&format!("/clients/{id}/default-client-scopes"))
            .await?;
        for scope in scopes.as_array().into_iter().flatten() {
            let scope_id = scope["id"].as_str().unwrap_or_default();
            let of_scope = self
                .get(&format!(
                    "/client-scopes/{scope_id}/protocol-mappers/models"
                ))
                .await?;
            mappers.extend(of_scope.as_array().into_iter().flatten().cloned());
        }
        Ok(mappers)
    }
}

fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Writes the client's secret to `path`, readable by its owner only.
fn write_secret(path: &std::path::Path, secret: &str) -> Result<(), String> {
    use std::io::Write;
    let shown = path.display();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| format!("{shown}: {e}"))?;
    file.write_all(secret.as_bytes())
        .map_err(|e| format!("{shown}: {e}"))
}

async fn run(args: Args) -> Result<bool, String> {
    let (base, realm) = realm_of(&args.issuer)?;
    let expected = Expected {
        client_id: &args.client_id,
        public_url: &args.public_url,
        route_prefix: &args.route_prefix,
    };
    let admin = Admin::sign_in(base, realm).await?;
    let client = match (admin.client(&args.client_id).await?, args.create) {
        (Some(client), _) => client,
        (None, false) => {
            return Err(format!(
                "the realm {realm} has no client {}; `keycloak-bff client create` makes it",
                args.client_id
            ))
        }
        (None, true) => {
            let wanted = client_setup::representation(&expected);
            admin
                .request(reqwest::Method::POST, "/clients", Some(&wanted))
                .await?;
            println!("created the client {} in the realm {realm}", args.client_id);
            admin
                .client(&args.client_id)
                .await?
                .ok_or("the client just created cannot be read back")?
        }
    };
    if args.create {
        if let Some(path) = &args.secret_file {
            let id = client["id"].as_str().unwrap_or_default();
            let secret = admin.get(&format!("/clients/{id}/client-secret")).await?;
            let secret = secret["value"]
                .as_str()
                .ok_or("Keycloak answered no secret")?;
            write_secret(path, secret)?;
            println!(
                "its secret is in {} (owner only): give it to the app as \
                 APP_KEYCLOAK_CLIENT_SECRET_FILE",
                path.display()
            );
        }
    }
    let findings = client_setup::check(&client, &admin.mappers(&client).await?, &expected);
    if findings.is_empty() {
        println!(
            "client {} in the realm {realm}: every setting is as keycloak-bff needs",
            args.client_id
        );
        return Ok(true);
    }
    println!(
        "client {} in the realm {realm}: {} setting(s) differ from what keycloak-bff needs \
         (Clients > {} in the admin console):",
        args.client_id,
        findings.len(),
        args.client_id
    );
    for finding in &findings {
        println!("  - {finding}");
    }
    Ok(false)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(usage) => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("keycloak-bff: {e}");
            ExitCode::from(2)
        }
    }
}
