//! How long each auth route takes: a middleware on the auth routes that records
//! `auth_request_seconds{route}` (the route's last path segment, from a fixed set of labels, so a
//! request cannot make up label values).

use crate::server::web::state::KeycloakAuth;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// Records how long each auth route takes (`auth_request_seconds{route}`).
pub async fn measure(State(auth): State<KeycloakAuth>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().rsplit('/').next().unwrap_or_default().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let label = match route.as_deref() {
        Some("login") => "login",
        Some("callback") => "callback",
        Some("logout") => "logout",
        Some("refresh") => "refresh",
        Some("extend") => "extend",
        Some("backchannel-logout") => "backchannel_logout",
        Some("frontchannel-logout") => "frontchannel_logout",
        _ => "other",
    };
    auth.metrics()
        .observe(label, started.elapsed().as_secs_f64());
    response
}
