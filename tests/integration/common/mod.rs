//! Test harness: the real app on a free port, against the real Keycloak from `keycloak/start.sh`,
//! driven by an HTTP client that keeps cookies and does not follow redirects.

use kc_leptos::server::startup::Application;
use kc_leptos::server::Settings;
use reqwest::header::{HeaderMap, LOCATION, ORIGIN};
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio::sync::oneshot;

pub mod keycloak_proxy;
pub mod relay;

pub const PUBLIC_ORIGIN: &str = "http://localhost:3000";
/// The `session.secret` of every app the tests start (replicas must share one).
pub const TEST_SESSION_SECRET: &str = "the tests' session secret, 32 bytes or more";
pub const KEYCLOAK: &str = "http://localhost:8080";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The dev client secret of demo-app, read from the realm file that Keycloak imported.
pub fn realm_client_secret() -> String {
    realm_secret_of("demo-app")
}

/// The dev secret of the realm's client `client_id`.
pub fn realm_secret_of(client_id: &str) -> String {
    let text =
        std::fs::read_to_string(repo().join("keycloak/demo-realm.json")).expect("realm file");
    let realm: Value = serde_json::from_str(&text).expect("realm JSON");
    realm["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .find(|c| c["clientId"] == client_id)
        .and_then(|c| c["secret"].as_str())
        .expect("client secret")
        .to_owned()
}

/// The repository's own Leptos.toml with test overrides, the way an operator would set them.
pub fn settings(data_dir: &Path, overrides: &[(&str, &str)]) -> Settings {
    let text = std::fs::read_to_string(repo().join("Leptos.toml")).expect("Leptos.toml");
    let mut env = BTreeMap::new();
    env.insert(
        "APP_KEYCLOAK_CLIENT_SECRET".to_owned(),
        realm_client_secret(),
    );
    env.insert(
        "APP_KEYCLOAK_DIRECTORY_CLIENT_SECRET".to_owned(),
        realm_secret_of("user-directory"),
    );
    // Many apps run at once in a test process: each gets a free port for its metrics.
    env.insert("APP_AUTH_METRICS_ADDR".to_owned(), "127.0.0.1:0".to_owned());
    // Replicas share it (the Redis store needs one).
    env.insert(
        "APP_SESSION_SECRET".to_owned(),
        TEST_SESSION_SECRET.to_owned(),
    );
    env.insert(
        "APP_APP_DATA_DIR".to_owned(),
        data_dir.display().to_string(),
    );
    env.insert(
        "APP_SESSION_SQLITE_FILE".to_owned(),
        data_dir.join("sessions.sqlite3").display().to_string(),
    );
    for (k, v) in overrides {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    // An empty override unsets the variable (say, the session secret).
    env.retain(|_, v| !v.is_empty());
    Settings::from_parts(&text, &env).expect("settings")
}

pub fn leptos_options() -> leptos::config::LeptosOptions {
    leptos::config::LeptosOptions::builder()
        .output_name("kc-leptos")
        .site_root("target/site")
        .site_addr(SocketAddr::from(([127, 0, 0, 1], 0)))
        .build()
}

pub fn browser() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

pub struct TestApp {
    pub base: String,
    pub client: Client,
    pub state: kc_leptos::server::state::AppState,
    pub data_dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

/// Starts the app on a free port with its own SQLite session store.
pub async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    spawn_app_in(dir, browser(), &[]).await
}

pub async fn spawn_app_in(
    data_dir: tempfile::TempDir,
    client: Client,
    overrides: &[(&str, &str)],
) -> TestApp {
    spawn_app_on(data_dir, client, overrides, 0).await
}

/// Starts the app (default realm) with its sessions on the Redis at `url`.
pub async fn spawn_app_on_redis(url: &str) -> TestApp {
    spawn_app_in(
        tempfile::tempdir().expect("tempdir"),
        browser(),
        &[
            ("APP_SESSION_STORE", "redis"),
            ("APP_SESSION_REDIS_URL", url),
        ],
    )
    .await
}

/// Starts the app on `port` (0: a free one).
pub async fn spawn_app_on(
    data_dir: tempfile::TempDir,
    client: Client,
    overrides: &[(&str, &str)],
    port: u16,
) -> TestApp {
    let settings = settings(data_dir.path(), overrides);
    spawn_app_with(settings, data_dir, client, port).await
}

/// Starts the app with `settings` as they are (a test may have changed them in code).
pub async fn spawn_app_with(
    settings: Settings,
    data_dir: tempfile::TempDir,
    client: Client,
    port: u16,
) -> TestApp {
    let mut options = leptos_options();
    options.site_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let app = Application::build(settings, options)
        .await
        .expect("app builds");
    let state = app.state();
    let port = app.local_addr().expect("addr").port();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let _ = app
            .run_until(async {
                let _ = rx.await;
            })
            .await;
    });
    TestApp {
        base: format!("http://localhost:{port}"),
        client,
        state,
        data_dir,
        shutdown: Some(tx),
        handle: Some(handle),
    }
}

pub fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect()
}

pub fn session_cookie_value(set_cookie: &[String]) -> Option<String> {
    set_cookie.iter().find_map(|c| {
        c.strip_prefix("kc_leptos_session=")
            .map(|rest| rest.split(';').next().unwrap_or_default().to_owned())
    })
}

pub fn location(response: &Response) -> String {
    header_text(response, LOCATION.as_str())
}

/// The text of `response`'s header `name`; empty when it has none (or none in text).
pub fn header_text(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn keycloak_form_action(html: &str) -> String {
    let doc = scraper::Html::parse_document(html);
    let selector = scraper::Selector::parse("form#kc-form-login").expect("selector");
    doc.select(&selector)
        .next()
        .and_then(|f| f.value().attr("action"))
        .unwrap_or_else(|| {
            panic!(
                "no Keycloak login form in: {}",
                &html[..html.len().min(500)]
            )
        })
        .to_owned()
}

/// A browser's top-level page load of `path` (the navigation headers Chromium sends).
pub async fn navigate(app: &TestApp, path: &str) -> Response {
    app.client
        .get(app.url(path))
        .header("sec-fetch-mode", "navigate")
        .header("sec-fetch-dest", "document")
        .header("sec-fetch-site", "none")
        .send()
        .await
        .expect("GET")
}

impl TestApp {
    /// Another browser (its own cookies) on the same running app.
    pub fn sharing(app: &TestApp, client: Client) -> TestApp {
        TestApp {
            base: app.base.clone(),
            client,
            state: app.state.clone(),
            data_dir: tempfile::tempdir().expect("tempdir"),
            shutdown: None,
            handle: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Stops the server and hands back its data folder and the browser (with its cookies).
    pub async fn stop(mut self) -> (tempfile::TempDir, Client) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
        (self.data_dir, self.client)
    }

    /// `path` on the operators' address (`auth.metrics_addr`), not the app's public one.
    pub async fn get_operator(&self, path: &str) -> Response {
        let addr = self.state.auth.metrics_addr().expect("metrics served");
        self.client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .expect("GET")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn post(&self, path: &str, origin: Option<&str>) -> Response {
        let mut headers = HeaderMap::new();
        if let Some(o) = origin {
            headers.insert(ORIGIN, o.parse().expect("origin"));
        }
        self.client
            .post(self.url(path))
            .headers(headers)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("")
            .send()
            .await
            .expect("POST")
    }

    /// Starts a login in this browser and returns Keycloak's authorization URL.
    pub async fn start_login(&self, return_to: &str) -> String {
        let r = self
            .get(&format!(
                "/auth/login?return_to={}",
                url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect::<String>()
            ))
            .await;
        assert_eq!(
            r.status(),
            StatusCode::SEE_OTHER,
            "login starts with a redirect"
        );
        let to = location(&r);
        assert!(to.starts_with(KEYCLOAK), "login goes to Keycloak: {to}");
        to
    }

    /// Fills in Keycloak's real login form and returns the callback URL Keycloak redirects to,
    /// with its origin rewritten to this test app's port.
    pub async fn keycloak_login(
        &self,
        authorize_url: &str,
        username: &str,
        password: &str,
    ) -> String {
        let page = self
            .client
            .get(authorize_url)
            .send()
            .await
            .expect("Keycloak login page");
        assert_eq!(
            page.status(),
            StatusCode::OK,
            "Keycloak shows its login page"
        );
        let action = keycloak_form_action(&page.text().await.expect("page text"));
        let r = self
            .client
            .post(&action)
            .form(&[
                ("username", username),
                ("password", password),
                ("credentialId", ""),
            ])
            .send()
            .await
            .expect("Keycloak login POST");
        assert_eq!(
            r.status(),
            StatusCode::FOUND,
            "Keycloak accepts {username}'s password"
        );
        let callback = location(&r);
        let rest = callback
            .strip_prefix(PUBLIC_ORIGIN)
            .unwrap_or_else(|| panic!("Keycloak redirects to the registered callback: {callback}"));
        assert!(rest.starts_with("/auth/callback?"), "{callback}");
        self.url(rest)
    }

    /// A sign-in that Keycloak's own session answers without its form (single sign-on, an
    /// impersonation); returns the app's answer to the callback.
    pub async fn login_by_single_sign_on(&self, return_to: &str) -> Response {
        let authorize = self.start_login(return_to).await;
        let r = self.client.get(&authorize).send().await.expect("authorize");
        assert_eq!(r.status(), StatusCode::FOUND, "no password asked");
        self.follow_callback(&r).await
    }

    /// The app's answer to Keycloak's redirect back (the registered callback URL, rewritten to
    /// this test app).
    pub async fn follow_callback(&self, keycloak_answer: &Response) -> Response {
        assert_eq!(
            keycloak_answer.status(),
            StatusCode::FOUND,
            "Keycloak redirects back"
        );
        let callback = location(keycloak_answer);
        let rest = callback
            .strip_prefix(PUBLIC_ORIGIN)
            .unwrap_or_else(|| panic!("back to the registered callback: {callback}"));
        self.client
            .get(self.url(rest))
            .send()
            .await
            .expect("callback")
    }

    /// The whole sign-in; returns the app's answer to the callback.
    pub async fn login_as(&self, username: &str, return_to: &str) -> Response {
        self.login_with_password(username, &format!("{username}-dev-pw"), return_to)
            .await
    }

    pub async fn login_with_password(
        &self,
        username: &str,
        password: &str,
        return_to: &str,
    ) -> Response {
        let authorize = self.start_login(return_to).await;
        let callback = self.keycloak_login(&authorize, username, password).await;
        self.client.get(callback).send().await.expect("callback")
    }

    /// Signs in and checks that the app redirected to `return_to`.
    pub async fn sign_in(&self, username: &str) {
        let r = self.login_as(username, "/profile").await;
        assert_eq!(
            r.status(),
            StatusCode::SEE_OTHER,
            "{}",
            r.text().await.unwrap_or_default()
        );
        assert_eq!(location(&r), "/profile");
    }

    /// Calls `current_user` from a fresh browser that presents only `cookie` as its session.
    pub async fn current_user_with_cookie(&self, cookie: &str) -> Response {
        browser()
            .post(self.url("/api/current_user"))
            .header("cookie", format!("kc_leptos_session={cookie}"))
            .header("origin", PUBLIC_ORIGIN)
            .send()
            .await
            .expect("POST")
    }

    /// Calls the `current_user` server function as the browser would.
    pub async fn current_user(&self) -> Value {
        let r = self.post("/api/current_user", Some(PUBLIC_ORIGIN)).await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.expect("JSON")
    }
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `text` holds anything shaped like a JWT (three base64url parts starting `eyJ`).
pub fn contains_jwt(text: &str) -> bool {
    let bytes = text.as_bytes();
    text.match_indices("eyJ").any(|(i, _)| {
        let rest = &bytes[i..];
        let part = |s: &[u8]| {
            s.iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-' || **b == b'_')
                .count()
        };
        let a = part(rest);
        a > 10 && rest.get(a) == Some(&b'.') && {
            let b = part(&rest[a + 1..]);
            b > 10 && rest.get(a + 1 + b) == Some(&b'.')
        }
    })
}

/// Settings overrides for the `demo-short` realm (10-second access tokens) with a 3-second margin.
pub const SHORT_REALM: &[(&str, &str)] = &[
    (
        "APP_KEYCLOAK_ISSUER_URL",
        "http://localhost:8080/realms/demo-short",
    ),
    ("APP_SESSION_REFRESH_MARGIN_SECS", "3"),
];

/// Access-token lifetime of `demo-short`, seconds.
pub const SHORT_TOKEN_SECS: u64 = 10;

/// Starts the app against the `demo-short` realm.
pub async fn spawn_short_app() -> TestApp {
    spawn_app_in(
        tempfile::tempdir().expect("tempdir"),
        browser(),
        SHORT_REALM,
    )
    .await
}

/// A fresh user of `demo-short` with the given `demo-app` roles, signed in to a fresh app.
pub async fn signed_in_short_user(
    prefix: &str,
    client_roles: &[&str],
) -> (KeycloakAdmin, TestUser, TestApp) {
    let admin = KeycloakAdmin::new("demo-short");
    let user = admin.create_user(prefix, client_roles).await;
    let app = spawn_short_app().await;
    let r = app.login_as(&user.username, "/").await;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "{} signs in",
        user.username
    );
    (admin, user, app)
}

pub fn metric(counter: &keycloak_bff::server::test_support::Counter) -> u64 {
    keycloak_bff::server::test_support::Metrics::read(counter)
}

/// `n` calls of `current_user` at once, spread in turn over `apps` (replicas sharing a browser),
/// each answer's status and JSON.
pub async fn concurrent_current_user(apps: &[&TestApp], n: usize) -> Vec<(StatusCode, Value)> {
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let app = apps[i % apps.len()];
            let (client, url) = (app.client.clone(), app.url("/api/current_user"));
            tokio::spawn(async move {
                let r = client
                    .post(url)
                    .header("origin", PUBLIC_ORIGIN)
                    .send()
                    .await
                    .expect("POST");
                (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
            })
        })
        .collect();
    let mut out = Vec::new();
    for call in calls {
        out.push(call.await.expect("task"));
    }
    out
}

/// Keycloak's admin REST API, as the tests' realm administrator.
pub struct KeycloakAdmin {
    http: Client,
    realm: String,
}

/// A user made for one test, with the password `<username>-dev-pw`.
pub struct TestUser {
    pub id: String,
    pub username: String,
}

impl KeycloakAdmin {
    pub fn new(realm: &str) -> Self {
        Self {
            http: Client::new(),
            realm: realm.to_owned(),
        }
    }

    /// A realm of its own for a test that changes realm-wide settings (such as the signing keys),
    /// which would break the tests that run beside it on a shared realm: a copy of `demo` named
    /// `name`, made again from the realm file (a copy left by an interrupted run is deleted
    /// first). [`KeycloakAdmin::delete_realm`] removes it at the end.
    pub async fn copy_of_demo_realm(name: &str) -> Self {
        let text =
            std::fs::read_to_string(repo().join("keycloak/demo-realm.json")).expect("realm file");
        let default_roles = format!("default-roles-{name}");
        let text = text.replace("\"default-roles-demo\"", &format!("\"{default_roles}\""));
        let mut realm: Value = serde_json::from_str(&text).expect("realm JSON");
        realm["realm"] = Value::from(name);
        let admin = Self::new(name);
        admin.delete_realm().await;
        let r = admin
            .http
            .post(format!("{KEYCLOAK}/admin/realms"))
            .bearer_auth(admin.token().await)
            .json(&realm)
            .send()
            .await
            .expect("realm import");
        assert_eq!(r.status(), StatusCode::CREATED, "realm {name} imported");
        admin
    }

    /// Deletes this admin's realm, if it exists.
    pub async fn delete_realm(&self) {
        let status = self
            .http
            .delete(format!("{KEYCLOAK}/admin/realms/{}", self.realm))
            .bearer_auth(self.token().await)
            .send()
            .await
            .expect("realm deletion")
            .status();
        assert!(
            status.is_success() || status == StatusCode::NOT_FOUND,
            "delete realm {}: {status}",
            self.realm
        );
    }

    async fn token(&self) -> String {
        let r: Value = self
            .http
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
            .expect("admin token")
            .json()
            .await
            .expect("admin token JSON");
        r["access_token"].as_str().expect("access_token").to_owned()
    }

    fn url(&self, path: &str) -> String {
        format!("{KEYCLOAK}/admin/realms/{}{path}", self.realm)
    }

    pub async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(self.token().await)
            .send()
            .await
            .expect("admin GET");
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.expect("admin JSON")
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> StatusCode {
        let mut request = self
            .http
            .request(method, self.url(path))
            .bearer_auth(self.token().await);
        if let Some(b) = body {
            request = request.json(&b);
        }
        request.send().await.expect("admin request").status()
    }

    /// Opens a Keycloak session as the user `id` in `browser` (its cookies), as the admin console's
    /// "Impersonate" does: the tokens then name the realm administrator as `impersonator`.
    pub async fn impersonate(&self, browser: &Client, id: &str) {
        let r = browser
            .post(self.url(&format!("/users/{id}/impersonation")))
            .bearer_auth(self.token().await)
            .send()
            .await
            .expect("impersonation");
        assert_eq!(r.status(), StatusCode::OK, "impersonation");
    }

    /// The id of the user `username`.
    pub async fn user_id(&self, username: &str) -> String {
        self.get(&format!("/users?username={username}&exact=true"))
            .await[0]["id"]
            .as_str()
            .expect("user id")
            .to_owned()
    }

    /// Creates a user (all profile fields set, so Keycloak asks nothing at login) with the
    /// realm role `user` and the given roles of `demo-app`.
    pub async fn create_user(&self, prefix: &str, client_roles: &[&str]) -> TestUser {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let username = format!("{prefix}-{n}-{nanos}");
        let status = self
            .send(
                reqwest::Method::POST,
                "/users",
                Some(serde_json::json!({
                    "username": username, "enabled": true, "emailVerified": true,
                    "email": format!("{username}@example.test"),
                    "firstName": "Test", "lastName": prefix,
                    "credentials": [{"type": "password", "value": format!("{username}-dev-pw"), "temporary": false}]
                })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "create user {username}");
        let found = self
            .get(&format!("/users?username={username}&exact=true"))
            .await;
        let id = found[0]["id"].as_str().expect("user id").to_owned();
        let user = TestUser { id, username };
        for role in client_roles {
            self.grant_client_role(&user, role).await;
        }
        user
    }

    pub async fn grant_client_role(&self, user: &TestUser, role: &str) {
        self.grant_role_of(user, "demo-app", role).await;
    }

    /// Grants `user` the role `role` of the realm's client `client_id`.
    pub async fn grant_role_of(&self, user: &TestUser, client_id: &str, role: &str) {
        let clients = self.get(&format!("/clients?clientId={client_id}")).await;
        let client = clients[0]["id"].as_str().expect("client uuid").to_owned();
        let role_rep = self.get(&format!("/clients/{client}/roles/{role}")).await;
        let status = self
            .send(
                reqwest::Method::POST,
                &format!("/users/{}/role-mappings/clients/{client}", user.id),
                Some(serde_json::json!([role_rep])),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "grant {role}");
    }

    pub async fn set_enabled(&self, user: &TestUser, enabled: bool) {
        let status = self
            .send(
                reqwest::Method::PUT,
                &format!("/users/{}", user.id),
                Some(serde_json::json!({ "enabled": enabled })),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }

    pub async fn delete_user(&self, user: &TestUser) {
        let _ = self
            .send(
                reqwest::Method::DELETE,
                &format!("/users/{}", user.id),
                None,
            )
            .await;
    }
}
