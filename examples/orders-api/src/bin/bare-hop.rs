//! bare-hop: a proxy hop with nothing else, for the benchmark's reference row. axum in front and
//! hyper's pooled client behind (the stack keycloak-bff's remote API routes are built on), no
//! session, no token of its own: the caller's `Authorization` and `Accept` pass on to the upstream,
//! as nginx's `proxy_pass` passes them in the row beside it. What a hop on this stack costs by
//! itself; the difference from the app's `/remote/orders` is what the library does per call.
//!
//! Not for anything but measuring: it checks nothing and passes any bearer token on.
//!
//! Settings (environment): `BARE_HOP_ADDR` (default `127.0.0.1:4193`), `BARE_HOP_UPSTREAM` (an
//! `http://host:port` without a path, default `http://127.0.0.1:4001`).
//!
//! Catalogue: none (a benchmark's reference; never started by the app or its tests).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[derive(Clone)]
struct Hop {
    client: Client<HttpConnector, Body>,
    upstream: String,
}

async fn hop(State(hop): State<Hop>, request: Request) -> Response {
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let Ok(uri) = Uri::try_from(format!("{}{target}", hop.upstream)) else {
        return (StatusCode::BAD_REQUEST, "a path that cannot be forwarded").into_response();
    };
    let mut outgoing = axum::http::Request::new(Body::empty());
    *outgoing.uri_mut() = uri;
    for name in [header::AUTHORIZATION, header::ACCEPT] {
        if let Some(value) = request.headers().get(&name) {
            outgoing.headers_mut().insert(name, value.clone());
        }
    }
    match hop.client.request(outgoing).await {
        Ok(answer) => {
            let (parts, body) = answer.into_parts();
            let mut response = Response::new(Body::new(body));
            *response.status_mut() = parts.status;
            if let Some(kind) = parts.headers.get(header::CONTENT_TYPE) {
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, kind.clone());
            }
            response
        }
        Err(e) => {
            eprintln!("bare-hop: the upstream call failed: {e}");
            StatusCode::BAD_GATEWAY.into_response()
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("BARE_HOP_ADDR").unwrap_or_else(|_| "127.0.0.1:4193".into());
    let upstream =
        std::env::var("BARE_HOP_UPSTREAM").unwrap_or_else(|_| "http://127.0.0.1:4001".into());
    let upstream = upstream.trim_end_matches('/').to_owned();
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new()).build(connector);
    let app = axum::Router::new()
        .fallback(hop)
        .with_state(Hop { client, upstream });
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("bare-hop on http://{addr}");
    axum::serve(listener, app).await?;
    Ok(())
}
