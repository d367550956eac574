//! The library's layers cannot be skipped: a route an app adds anywhere, even as the very last
//! thing before serving (the way a newcomer adds one), gets the origin check, the security
//! headers and the session, because `KeycloakAuth::serve_until` (and `into_make_service`) put
//! them around the finished router. Catalogue: B (CSRF), G (headers).

use crate::common::*;
use axum::routing::{get, post};
use axum::Router;
use keycloak_bff::server::KeycloakAuth;
use reqwest::StatusCode;

#[tokio::test]
async fn a_route_added_last_is_still_behind_the_origin_check_the_headers_and_the_session() {
    let dir = tempfile::tempdir().expect("tmp");
    let auth = KeycloakAuth::new(settings(dir.path(), &[]).auth, &leptos_options())
        .await
        .expect("auth");
    let app = Router::new()
        .merge(auth.routes())
        .route("/early", get(|| async { "early" }))
        // Added after everything else, just before serving.
        .route("/late", post(|| async { "changed something" }))
        .route("/late-page", get(|| async { "a page" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn({
        let auth = auth.clone();
        async move {
            auth.serve_until(listener, app, async {
                let _ = stopped.await;
            })
            .await
        }
    });
    let url = |path: &str| format!("http://localhost:{port}{path}");
    let client = browser();
    let cross_site = client
        .post(url("/late"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("POST");
    assert_eq!(
        cross_site.status(),
        StatusCode::FORBIDDEN,
        "the origin check"
    );
    let same_site = client
        .post(url("/late"))
        .header("origin", PUBLIC_ORIGIN)
        .send()
        .await
        .expect("POST");
    assert_eq!(same_site.status(), StatusCode::OK);
    let page = client.get(url("/late-page")).send().await.expect("GET");
    assert!(
        page.headers().contains_key("content-security-policy"),
        "the security headers: {:?}",
        page.headers()
    );
    assert_eq!(page.headers()["cache-control"], "no-store");
    let _ = stop.send(());
    let _ = server.await;
}
