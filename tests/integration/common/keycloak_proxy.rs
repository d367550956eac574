//! A proxy between the app and Keycloak (the app's `keycloak.internal_url`) for the faults a real
//! Keycloak cannot be asked to make: a token call that never comes back, an answer that comes
//! late after Keycloak acted on the call, a logout call that reaches Keycloak late. Everything
//! else goes through to the real Keycloak unchanged. Catalogue: D03, D06 (a refresh cut short),
//! F01 (a sign-out cut short).

use super::KEYCLOAK;
use std::time::Duration;

/// What the proxy does to the app's calls to Keycloak.
#[derive(Clone, Copy)]
pub enum TokenCalls {
    /// Holds every token call for ever, before Keycloak sees it.
    Stall,
    /// Forwards refresh calls at once and holds Keycloak's answer this long.
    DelayAnswers(Duration),
    /// Holds each call to Keycloak's logout endpoint this long before forwarding it (token calls
    /// go through at once).
    HoldLogouts(Duration),
}

/// Starts the proxy on a free port: its URL (the app's `keycloak.internal_url`), and how many
/// calls it has held.
pub async fn keycloak_proxy(
    calls: TokenCalls,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let held = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = held.clone();
    let http = reqwest::Client::new();
    let router = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let (held, http) = (counter.clone(), http.clone());
        async move {
            let (parts, body) = request.into_parts();
            let target = format!(
                "{KEYCLOAK}{}",
                parts.uri.path_and_query().map_or("/", |p| p.as_str())
            );
            let token_call = parts.method == axum::http::Method::POST && target.ends_with("/token");
            if token_call && matches!(calls, TokenCalls::Stall) {
                held.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
            }
            let logout_call =
                parts.method == axum::http::Method::POST && parts.uri.path().ends_with("/logout");
            if let (true, TokenCalls::HoldLogouts(delay)) = (logout_call, calls) {
                held.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
            }
            let body = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default();
            let refresh =
                token_call && String::from_utf8_lossy(&body).contains("grant_type=refresh_token");
            let mut forward = http.request(parts.method.clone(), &target).body(body);
            for name in ["content-type", "authorization", "accept"] {
                if let Some(v) = parts.headers.get(name) {
                    forward = forward.header(name, v.as_bytes());
                }
            }
            let answer = forward.send().await.expect("Keycloak");
            if let (true, TokenCalls::DelayAnswers(delay)) = (refresh, calls) {
                // Keycloak has rotated the refresh token; the app hears of it late.
                held.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
            }
            let status = answer.status().as_u16();
            let kind = answer
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json")
                .to_owned();
            let bytes = answer.bytes().await.unwrap_or_default();
            axum::response::Response::builder()
                .status(status)
                .header("content-type", kind)
                .body(axum::body::Body::from(bytes))
                .expect("response")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://127.0.0.1:{port}"), held)
}
