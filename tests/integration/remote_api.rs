//! Remote API routes against the real Keycloak (`demo-short`) and a real upstream process
//! (`examples/orders-api`, started per test on a free port): the token exchange, what crosses the
//! proxy and what never does, the refusals made before any upstream call, streaming, and a
//! failing upstream, and an https upstream spoken to over TLS only. The upstream's own request log
//! (`GET /_requests`) is the witness.
//!
//! Catalogue: P01 (cross-origin, header-less), P02 (`Cookie`, `Authorization`, `Set-Cookie`),
//! P03 (path safety), P04 (the session's token never reaches an upstream with an audience), P06
//! (a failing upstream), P07 (a WebSocket from another origin), P08 (a WebSocket outliving its
//! session), G04 (an upstream's HTML lends no script nonce to the app's policy).

use crate::common::*;
use keycloak_bff::server::{RemoteApi, UpstreamToken};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::io::BufRead;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// The orders-api program, listening on a free port, killed when dropped.
pub(crate) struct OrdersApi {
    child: std::process::Child,
    pub(crate) base: String,
}

impl Drop for OrdersApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The orders-api binary, built beside the tests (`cargo build -p orders-api`, as
/// `scripts/test.sh` does before running them).
fn orders_api_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    // target/debug/deps/integration-… → target/debug/orders-api
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let bin = dir.join("orders-api");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p orders-api` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

impl OrdersApi {
    pub(crate) fn start() -> Self {
        let mut child = std::process::Command::new(orders_api_binary())
            .env("ORDERS_API_ADDR", "127.0.0.1:0")
            .env(
                "ORDERS_API_ISSUERS",
                format!("{KEYCLOAK}/realms/demo-short"),
            )
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("orders-api starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("orders-api says where it listens");
        let base = line
            .trim()
            .strip_prefix("orders-api listening on ")
            .expect("the listening line")
            .to_owned();
        OrdersApi { child, base }
    }

    pub(crate) async fn requests(&self) -> Vec<Value> {
        reqwest::get(format!("{}/_requests", self.base))
            .await
            .expect("request log")
            .json::<Vec<Value>>()
            .await
            .expect("request log JSON")
    }
}

/// The app on `demo-short` with the routes of these tests, each to `upstream`.
async fn app_with_routes(upstream: &str) -> TestApp {
    let orders = RemoteApi::new("/remote/orders", &format!("{upstream}/orders"))
        .expect("route")
        .audience("orders-api")
        .methods(&[Method::GET, Method::POST])
        .timeout(Duration::from_secs(1))
        .websocket(true);
    let as_app = RemoteApi::new("/remote/as-app", &format!("{upstream}/orders"))
        .expect("route")
        .token(UpstreamToken::Client);
    let open = RemoteApi::new("/remote/open", &format!("{upstream}/orders"))
        .expect("route")
        .token(UpstreamToken::None);
    // No `websocket`: upgrades are refused.
    let relayed = RemoteApi::new("/remote/relayed", &format!("{upstream}/orders"))
        .expect("route")
        .token(UpstreamToken::User);
    app_with_apis([orders, as_app, open, relayed]).await
}

/// The app on `demo-short` with `apis` as its only remote API routes.
async fn app_with_apis(apis: impl IntoIterator<Item = RemoteApi>) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = settings(dir.path(), SHORT_REALM);
    let mut auth = settings.auth.clone();
    auth.apis.clear();
    for api in apis {
        auth = auth.with_api(api).expect("routes fit");
    }
    settings.auth = auth;
    spawn_app_with(settings, dir, browser(), 0).await
}

/// A fresh user of `demo-short` with `orders-api` roles, signed in to `app`.
async fn sign_in_with_order_roles(app: &TestApp, roles: &[&str]) -> (KeycloakAdmin, TestUser) {
    let admin = KeycloakAdmin::new("demo-short");
    let user = admin.create_user("orders", &[]).await;
    for role in roles {
        admin.grant_role_of(&user, "orders-api", role).await;
    }
    let r = app.login_as(&user.username, "/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "signs in");
    (admin, user)
}

/// A call as the app's own page makes it: same origin, and the header on writes.
pub(crate) async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut r = app
        .client
        .request(method.clone(), app.url(path))
        .header("origin", PUBLIC_ORIGIN)
        .header("sec-fetch-site", "same-origin");
    if method != Method::GET {
        r = r.header("x-csrf", "1");
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    r.send().await.expect("call")
}

async fn token_exchanges(admin: &KeycloakAdmin, user: &TestUser) -> usize {
    admin
        .get(&format!(
            "/events?user={}&type=TOKEN_EXCHANGE&max=100",
            user.id
        ))
        .await
        .as_array()
        .map_or(0, Vec::len)
}

fn audiences(seen: &Value) -> Vec<String> {
    match &seen["aud"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

#[tokio::test]
async fn the_upstream_gets_a_token_exchanged_for_its_audience_and_never_the_cookie() {
    let upstream = OrdersApi::start();
    let app = app_with_routes(&upstream.base).await;
    let (admin, user) = sign_in_with_order_roles(&app, &["read", "create"]).await;

    let created = call(
        &app,
        Method::POST,
        "/remote/orders",
        Some(serde_json::json!({"item": "a blue mug"})),
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let listed = call(&app, Method::GET, "/remote/orders", None).await;
    assert_eq!(listed.status(), StatusCode::OK);
    assert!(
        listed.headers().get("set-cookie").is_none(),
        "the upstream's cookie never reaches the browser"
    );
    let body: Value = listed.json().await.expect("JSON");
    assert_eq!(body["orders"][0]["item"], "a blue mug");
    let seen = &body["seen"];
    // Exchanged: made for orders-api alone, by demo-app, for this user. The session's own token
    // names demo-app in its audience; this one does not, so it is not the session's.
    assert_eq!(audiences(seen), ["orders-api"], "{seen}");
    assert_eq!(seen["azp"], "demo-app");
    assert_eq!(seen["sub"], user.id.as_str());
    assert_eq!(
        token_exchanges(&admin, &user).await,
        1,
        "two calls, one exchange (Keycloak's events)"
    );
    assert_eq!(app.state.auth.counters().token_exchanges, 1);

    for request in upstream.requests().await {
        assert_eq!(request["cookie"], false, "{request}");
        assert_eq!(request["authorization"], "bearer", "{request}");
        assert_eq!(request["aud"], "orders-api", "{request}");
        let headers = request["headers"].to_string();
        for never in [
            "\"cookie\"",
            "\"origin\"",
            "\"x-csrf\"",
            "\"sec-fetch-site\"",
        ] {
            assert!(!headers.contains(never), "{never} crossed: {headers}");
        }
    }

    // A refresh (the expiry warning's "Stay signed in") gives a new session token: the next
    // call exchanges again instead of using the token made for the old one.
    let extended = app.post("/auth/extend", Some(PUBLIC_ORIGIN)).await;
    assert!(extended.status().is_success(), "{}", extended.status());
    let again = call(&app, Method::GET, "/remote/orders", None).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(token_exchanges(&admin, &user).await, 2);
    assert_eq!(app.state.auth.counters().exchanged_tokens_held, 1);

    // Signing out drops what was exchanged for the session.
    let out = app.post("/auth/logout", Some(PUBLIC_ORIGIN)).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.state.auth.counters().exchanged_tokens_held, 0);
    let after = call(&app, Method::GET, "/remote/orders", None).await;
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);

    let metrics = app
        .get_operator("/metrics")
        .await
        .text()
        .await
        .expect("metrics");
    assert!(
        metrics.contains(
            r#"keycloak_bff_remote_requests_total{route="/remote/orders",status="200"} 2"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"keycloak_bff_token_exchanges_total{audience="orders-api",outcome="ok"} 2"#
        ),
        "{metrics}"
    );
    admin.delete_user(&user).await;
}

/// A raw HTTP/1.1 GET of `target` exactly as written (an HTTP client would normalise `..`).
async fn raw_get(app: &TestApp, target: &str) -> u16 {
    let host = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host.replace("localhost", "127.0.0.1"))
        .await
        .expect("connect");
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nSec-Fetch-Site: same-origin\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text}"))
}

#[tokio::test]
async fn calls_the_proxy_refuses_never_reach_the_upstream() {
    let upstream = OrdersApi::start();
    let app = app_with_routes(&upstream.base).await;
    let (admin, user) = sign_in_with_order_roles(&app, &["read", "create"]).await;
    let url = app.url("/remote/orders");

    let cross_origin = app
        .client
        .get(&url)
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("GET");
    assert_eq!(cross_origin.status(), StatusCode::FORBIDDEN);
    let cross_site = app
        .client
        .get(&url)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .expect("GET");
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    let without_header = app
        .client
        .post(&url)
        .header("origin", PUBLIC_ORIGIN)
        .header("sec-fetch-site", "same-origin")
        .json(&serde_json::json!({"item": "forged"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(without_header.status(), StatusCode::FORBIDDEN);
    let body: Value = without_header.json().await.expect("JSON");
    assert_eq!(body["error"], "csrf_header_missing");
    let not_listed = call(&app, Method::DELETE, "/remote/orders/1", None).await;
    assert_eq!(not_listed.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        not_listed
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok()),
        Some("GET, POST")
    );
    for target in [
        "/remote/orders/../../_requests",
        "/remote/orders/%2e%2e/_requests",
        "/remote/orders/.%2E/_requests",
        "/remote/orders/a%2f..%2f..%2f_requests",
        "/remote/orders/a%5Cb",
        "/remote/orders//evil.example/x",
        "/remote/orders/http://evil.example/x",
    ] {
        assert_eq!(raw_get(&app, target).await, 400, "{target}");
    }
    assert_eq!(
        upstream.requests().await,
        Vec::<Value>::new(),
        "no refused call reached the upstream"
    );

    // The same session's proper call still works: nothing above signed it out.
    let fine = call(&app, Method::GET, "/remote/orders/7", None).await;
    assert_eq!(
        fine.status(),
        StatusCode::NOT_FOUND,
        "the upstream's own 404"
    );
    let log = upstream.requests().await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["path"], "/orders/7");
    admin.delete_user(&user).await;
}

#[tokio::test]
async fn a_signed_out_caller_gets_401_and_the_upstream_is_not_called() {
    let upstream = OrdersApi::start();
    let app = app_with_routes(&upstream.base).await;
    for path in ["/remote/orders", "/remote/relayed"] {
        let r = call(&app, Method::GET, path, None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(upstream.requests().await, Vec::<Value>::new());
    // A route with no token calls the upstream without one: its own refusal comes back.
    let open = call(&app, Method::GET, "/remote/open", None).await;
    assert_eq!(open.status(), StatusCode::UNAUTHORIZED);
    let log = upstream.requests().await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["authorization"], Value::Null);
}

#[tokio::test]
async fn a_client_route_sends_the_apps_own_token_and_a_relay_route_the_users() {
    let upstream = OrdersApi::start();
    let app = app_with_routes(&upstream.base).await;
    let (admin, user) = sign_in_with_order_roles(&app, &["read"]).await;

    let as_app = call(&app, Method::GET, "/remote/as-app", None).await;
    assert_eq!(as_app.status(), StatusCode::OK);
    let seen = as_app.json::<Value>().await.expect("JSON")["seen"].clone();
    assert_eq!(seen["azp"], "demo-app");
    assert_eq!(seen["preferred_username"], "service-account-demo-app");

    // Relayed as it is: the session's own token (its audience names demo-app too).
    let relayed = call(&app, Method::GET, "/remote/relayed", None).await;
    assert_eq!(relayed.status(), StatusCode::OK);
    let seen = relayed.json::<Value>().await.expect("JSON")["seen"].clone();
    assert!(audiences(&seen).contains(&"demo-app".to_owned()), "{seen}");
    assert_eq!(seen["sub"], user.id.as_str());
    assert_eq!(token_exchanges(&admin, &user).await, 0);

    // The upstream decides what the user may do: paul-like users read but cannot create.
    let refused = call(
        &app,
        Method::POST,
        "/remote/orders",
        Some(serde_json::json!({"item": "not mine to buy"})),
    )
    .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        refused.json::<Value>().await.expect("JSON")["error_description"],
        "the role orders-api:create is needed"
    );
    admin.delete_user(&user).await;
}

#[tokio::test]
async fn an_event_stream_passes_through_as_the_upstream_writes_it() {
    let upstream = OrdersApi::start();
    let app = app_with_routes(&upstream.base).await;
    let (admin, user) = sign_in_with_order_roles(&app, &["read"]).await;
    let mut stream = app
        .client
        .get(app.url("/remote/orders/events"))
        .header("accept", "text/event-stream")
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .expect("GET");
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(
        stream
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    // The first event arrives while the upstream keeps the stream open (it never ends by
    // itself): nothing waits for the whole body.
    let mut seen = String::new();
    while !seen.contains("\"n\":1") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
            .await
            .expect("an event within 5 s")
            .expect("chunk")
            .expect("the stream is still open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: tick"), "{seen}");
    drop(stream);
    admin.delete_user(&user).await;
}

#[tokio::test]
async fn a_failing_upstream_is_502_and_a_slow_one_504_with_a_generic_message() {
    let upstream = OrdersApi::start();
    let app = app_with_routes(&upstream.base).await;
    let (admin, user) = sign_in_with_order_roles(&app, &["read"]).await;

    let slow = call(&app, Method::GET, "/remote/orders/slow?ms=4000", None).await;
    assert_eq!(slow.status(), StatusCode::GATEWAY_TIMEOUT);
    let body: Value = slow.json().await.expect("JSON");
    assert_eq!(
        body["error_description"],
        "the service did not answer in time"
    );

    drop(upstream);
    let down = call(&app, Method::GET, "/remote/orders", None).await;
    assert_eq!(down.status(), StatusCode::BAD_GATEWAY);
    let text = down.text().await.expect("body");
    assert!(text.contains("the service is unavailable"), "{text}");
    assert!(
        !text.contains("127.0.0.1") && !text.to_lowercase().contains("refused"),
        "no detail of the upstream reaches the browser: {text}"
    );
    // The session is untouched.
    assert_eq!(app.current_user().await["username"], user.username.as_str());
    admin.delete_user(&user).await;
}

/// Opens a WebSocket on the app at `path` as a browser of `origin` with the session `cookie`.
pub(crate) async fn open_socket(
    app: &TestApp,
    path: &str,
    origin: &str,
    cookie: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::Error,
> {
    let url = app.url(path).replace("http://", "ws://");
    let mut request = url.into_client_request().expect("request");
    let headers = request.headers_mut();
    headers.insert("origin", origin.parse().expect("origin"));
    headers.insert(
        "cookie",
        format!("kc_leptos_session={cookie}")
            .parse()
            .expect("cookie"),
    );
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(s, _)| s)
}

/// The next text message, within 5 s.
pub(crate) async fn next_text<S>(socket: &mut S) -> String
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    use futures_util::StreamExt;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a message within 5 s")
            .expect("the socket is open")
            .expect("a message");
        if let Message::Text(t) = m {
            return t.as_str().to_owned();
        }
    }
}

#[tokio::test]
async fn a_websocket_passes_through_with_the_exchanged_token_and_closes_when_the_session_ends() {
    use futures_util::{SinkExt, StreamExt};
    let upstream = OrdersApi::start();
    let app = app_with_routes(&upstream.base).await;
    let admin = KeycloakAdmin::new("demo-short");
    let user = admin.create_user("socket", &[]).await;
    admin.grant_role_of(&user, "orders-api", "read").await;
    let signed_in = app.login_as(&user.username, "/").await;
    let cookie = session_cookie_value(&set_cookies(&signed_in)).expect("session cookie");

    let mut socket = open_socket(&app, "/remote/orders/ws", PUBLIC_ORIGIN, &cookie)
        .await
        .expect("the socket opens");
    let hello: Value = serde_json::from_str(&next_text(&mut socket).await).expect("JSON");
    assert_eq!(hello["hello"], user.id.as_str());
    assert_eq!(audiences(&hello["seen"]), ["orders-api"], "{hello}");
    socket
        .send(Message::text("hello upstream"))
        .await
        .expect("send");
    assert_eq!(next_text(&mut socket).await, "echo: hello upstream");
    let upgrade = upstream
        .requests()
        .await
        .into_iter()
        .find(|r| r["path"] == "/orders/ws")
        .expect("the upgrade reached the upstream");
    assert_eq!(upgrade["cookie"], false);
    assert_eq!(upgrade["aud"], "orders-api");

    // Signing out (here, from another request of the same browser) closes the socket.
    let out = app.post("/auth/logout", Some(PUBLIC_ORIGIN)).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("the socket closes within 5 s of the sign-out");
    assert_eq!(closed, Some(1008), "closed because the session ended");
    admin.delete_user(&user).await;
}

#[tokio::test]
async fn a_websocket_from_another_origin_or_on_a_route_without_sockets_is_refused() {
    let upstream = OrdersApi::start();
    let app = app_with_routes(&upstream.base).await;
    let (admin, user) = sign_in_with_order_roles(&app, &["read"]).await;
    // A fresh sign-in of the same user in a browser whose cookie the test can read.
    let browser = TestApp::sharing(&app, browser());
    let signed_in = browser.login_as(&user.username, "/").await;
    let cookie = session_cookie_value(&set_cookies(&signed_in)).expect("session cookie");

    for (path, origin, status) in [
        ("/remote/orders/ws", "https://evil.example", 403),
        ("/remote/orders/ws", "http://localhost:3999", 403),
        ("/remote/relayed/ws", PUBLIC_ORIGIN, 400),
    ] {
        match open_socket(&browser, path, origin, &cookie).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status().as_u16(), status, "{path} from {origin}");
            }
            other => panic!("{path} from {origin}: {:?}", other.map(|_| "opened")),
        }
    }
    assert!(
        !upstream
            .requests()
            .await
            .iter()
            .any(|r| r["path"] == "/orders/ws"),
        "no refused socket reached the upstream"
    );
    admin.delete_user(&user).await;
}

#[tokio::test]
async fn an_https_upstream_is_called_over_tls_never_in_clear_and_a_failed_handshake_is_a_502() {
    // A listener that keeps the first bytes it is sent, and hangs up: what the app sent to an
    // https upstream.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let port = listener.local_addr().expect("address").port();
    let (first_bytes, received) = tokio::sync::oneshot::channel::<Vec<u8>>();
    tokio::spawn(async move {
        if let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = vec![0u8; 512];
            let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buffer))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0);
            buffer.truncate(n);
            let _ = first_bytes.send(buffer);
        }
    });
    let tls = RemoteApi::new("/remote/tls", &format!("https://127.0.0.1:{port}/orders"))
        .expect("route")
        .token(UpstreamToken::None);
    let app = app_with_apis([tls]).await;

    let r = call(&app, Method::GET, "/remote/tls/7?q=1", None).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let text = r.text().await.expect("body");
    assert!(text.contains("the service is unavailable"), "{text}");
    let sent = tokio::time::timeout(Duration::from_secs(5), received)
        .await
        .expect("the app called the upstream")
        .expect("bytes");
    assert_eq!(
        sent.first(),
        Some(&0x16),
        "a TLS handshake record first, got {:?}",
        String::from_utf8_lossy(&sent)
    );
    assert!(
        !String::from_utf8_lossy(&sent).contains("/orders/7"),
        "the request itself never crosses in clear"
    );
}

#[tokio::test]
async fn an_upstream_html_page_lends_no_script_nonce_to_the_apps_policy() {
    // An upstream that answers every request with an HTML page whose first script tag carries a
    // nonce: what a page of the app would look like to the policy's nonce scan.
    let page = "<!DOCTYPE html><html><head><script nonce=\"upstreamnonce123\">alert(1)</script>\
                </head><body>upstream</body></html>";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
            tokio::spawn(async move {
                let mut request = vec![0u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    let html = RemoteApi::new("/remote/html", &format!("http://127.0.0.1:{port}/page"))
        .expect("route")
        .token(UpstreamToken::None);
    let app = app_with_apis([html]).await;

    let r = call(&app, Method::GET, "/remote/html", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let policy = header_text(&r, "content-security-policy");
    assert!(
        policy.contains("script-src"),
        "the app's policy is on the upstream's answer: {policy}"
    );
    assert!(
        !policy.contains("'nonce-"),
        "the upstream's nonce is not allowed on the app's origin: {policy}"
    );
    let body = r.text().await.expect("body");
    assert!(
        body.contains("nonce=\"upstreamnonce123\""),
        "the page passes through unchanged: {body}"
    );
}
