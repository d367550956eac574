//! Remote API routes: the browser calls `<path>/…` on the app's origin, and the call goes on to
//! the route's upstream with a token the browser never sees. The request and response bodies
//! stream (a Server-Sent Events answer arrives event by event); only listed headers cross, in
//! either direction; the token is added after a refresh when it is about to expire, or exchanged
//! for one made for the route's audience.
//!
//! Before any upstream call: the method must be listed (405), the path must stay under the
//! route's prefix (400), the call must be same-origin and, when it changes something, carry
//! `X-CSRF: 1` (403), and a route with the user's token needs someone signed in (401). An
//! upstream that fails is a 502, one that does not answer in time a 504, each with a generic
//! message; the detail goes to the log.
//!
//! Catalogue: P01 (cross-origin and header-less calls), P02 (`Cookie`, `Authorization` and
//! `Set-Cookie` never cross), P03 (path safety), P04 (the session's token never reaches an
//! upstream with an audience), P06 (a failing upstream gives 502/504, never a hang or a 500).

use crate::error::AppError;
use crate::server::base::clock::unix_now;
use crate::server::base::metrics::RouteMetrics;
use crate::server::base::remote_api::RemoteApi;
use crate::server::keycloak_api::upstream_tokens::UpstreamTokens;
use crate::server::oidc::dpop_key::{bearer, token_headers, CallToken};
use crate::server::web::remote_ws;
use crate::server::web::state::KeycloakAuth;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use keycloak_bff_core::remote::{
    check_call, forwards_request_header, forwards_response_header, upstream_suffix, CallOrigin,
    CsrfRefusal, PathRefusal, UpstreamToken, CSRF_HEADER,
};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone)]
struct Route {
    auth: KeycloakAuth,
    api: Arc<RemoteApi>,
    /// The app's origin (`auth.public_url`'s), which same-origin calls come from.
    origin: Arc<str>,
    metrics: Arc<RouteMetrics>,
}

/// The routes of `[[apis]]`: each path, and everything below it.
pub fn remote_routes<S: Clone + Send + Sync + 'static>(auth: &KeycloakAuth) -> Router<S> {
    let mut router = Router::new();
    for api in &auth.settings().apis {
        let route = Route {
            auth: auth.clone(),
            api: Arc::new(api.clone()),
            origin: auth.settings().public_origin().into(),
            metrics: Arc::new(RouteMetrics::new(api.path())),
        };
        router = router.merge(
            Router::new()
                .route(api.path(), any(proxy))
                .route(&format!("{}/{{*rest}}", api.path()), any(proxy))
                .with_state(route),
        );
    }
    router
}

/// A refusal of the proxy's own, answered in the JSON shape of [`AppError`]'s.
struct Refusal {
    status: StatusCode,
    error: &'static str,
    description: String,
    /// The methods of the route, on a 405.
    allow: Option<String>,
}

fn refusal(status: StatusCode, error: &'static str, description: &str) -> Refusal {
    Refusal {
        status,
        error,
        description: description.to_owned(),
        allow: None,
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(
                serde_json::json!({ "error": self.error, "error_description": self.description }),
            ),
        )
            .into_response();
        if let Some(v) = self.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            r.headers_mut().insert(header::ALLOW, v);
        }
        r
    }
}

async fn proxy(State(route): State<Route>, request: Request) -> Response {
    let started = Instant::now();
    let (response, upstream_seconds) = forward(&route, request, started).await;
    route.auth.metrics().remote_counted(
        &route.metrics,
        response.status().as_u16(),
        upstream_seconds,
    );
    response
}

/// The checks made before any upstream call: the rest of the path to forward (checked), or the
/// refusal to answer with when one fails.
fn admit(route: &Route, request: &Request) -> Result<String, Refusal> {
    let api = &route.api;
    if !api.methods.contains(request.method()) {
        let allow = api
            .methods
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let mut r = refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this method is not allowed on this route",
        );
        r.allow = Some(allow);
        return Err(r);
    }
    let suffix = match upstream_suffix(api.path(), request.uri().path()) {
        Ok(suffix) => suffix.to_owned(),
        Err(e) => {
            let status = match e {
                PathRefusal::NotUnder => StatusCode::NOT_FOUND,
                _ => StatusCode::BAD_REQUEST,
            };
            tracing::info!(route = api.path(), reason = %e, "refused a remote API path");
            return Err(refusal(status, "invalid_request", &e.to_string()));
        }
    };
    let headers = request.headers();
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if remote_ws::is_upgrade(headers) {
        if !api.websocket {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "this route does not take WebSocket connections",
            ));
        }
        // Browsers always send Origin on a WebSocket; the page must be the app's own.
        if text(header::ORIGIN.as_str()) != Some(&*route.origin) {
            tracing::info!(
                route = api.path(),
                "refused a WebSocket from another origin"
            );
            return Err(refusal(
                StatusCode::FORBIDDEN,
                "cross_origin",
                "cross-origin request refused",
            ));
        }
    }
    let call = CallOrigin {
        safe_method: matches!(*request.method(), Method::GET | Method::HEAD),
        origin: text(header::ORIGIN.as_str()),
        sec_fetch_site: text("sec-fetch-site"),
        csrf_header: text(CSRF_HEADER),
    };
    if let Err(e) = check_call(&call, &route.origin) {
        tracing::info!(route = api.path(), reason = %e, "refused a remote API call");
        let error = match e {
            CsrfRefusal::CrossOrigin => "cross_origin",
            CsrfRefusal::MissingHeader => "csrf_header_missing",
        };
        return Err(refusal(StatusCode::FORBIDDEN, error, &e.to_string()));
    }
    Ok(suffix)
}

/// The token for this call: `None` when the route sends none (or nobody is signed in on a
/// `user_or_none` route).
async fn token_for(
    route: &Route,
    session: Option<tower_sessions::Session>,
) -> Result<Option<CallToken>, AppError> {
    let auth = &route.auth;
    let api = &route.api;
    let now = unix_now();
    match api.token {
        UpstreamToken::None => Ok(None),
        UpstreamToken::Client => auth
            .remote_apis()
            .ok_or(AppError::Internal)?
            .tokens
            .client(auth.oidc(), now)
            .await
            .map(Some),
        UpstreamToken::User | UpstreamToken::UserOrNone => {
            let session = session.ok_or(AppError::Internal)?;
            let Some(signed_in) = auth.fresh_auth(&session, now).await? else {
                return match api.token {
                    UpstreamToken::User => Err(AppError::NotSignedIn),
                    _ => Ok(None),
                };
            };
            let Some(audience) = &api.audience else {
                return Ok(Some(CallToken::new(
                    SecretString::from(signed_in.access_token.clone()),
                    signed_in.dpop_jkt.is_some(),
                )));
            };
            let tokens = &auth.remote_apis().ok_or(AppError::Internal)?.tokens;
            let session_key =
                UpstreamTokens::session_key(signed_in.sid.as_deref(), &signed_in.access_token);
            let exchanged = tokens
                .exchanged(
                    auth.oidc(),
                    &session_key,
                    &signed_in.access_token,
                    audience,
                    now,
                )
                .await;
            match exchanged {
                Ok((token, fresh)) => {
                    if fresh {
                        auth.metrics().token_exchange(audience, "ok");
                    }
                    Ok(Some(token))
                }
                Err(e) => {
                    auth.metrics().token_exchange(audience, "refused");
                    Err(e)
                }
            }
        }
    }
}

/// The upstream's URL for this request: the route's upstream, the rest of the path (`suffix`,
/// checked by [`admit`]: no dot segment, no encoded separator, so nothing for a URL parser to
/// normalize) and the query.
fn upstream_target(api: &RemoteApi, suffix: &str, request: &Request) -> String {
    let mut text = format!("{}{suffix}", api.upstream().as_str().trim_end_matches('/'));
    if let Some(query) = request.uri().query() {
        text.push('?');
        text.push_str(query);
    }
    text
}

/// Where the call goes: `target` as it is; for a DPoP-bound token, `target` as the url crate
/// writes it, the URL its proof names (`htu`), returned too.
fn call_target(
    target: String,
    token: Option<&CallToken>,
) -> Option<(axum::http::Uri, Option<url::Url>)> {
    if token.is_some_and(CallToken::is_bound) {
        let url = url::Url::parse(&target).ok()?;
        let uri = axum::http::Uri::try_from(url.as_str()).ok()?;
        return Some((uri, Some(url)));
    }
    Some((axum::http::Uri::try_from(target).ok()?, None))
}

fn cannot_forward() -> (Response, Option<f64>) {
    (
        AppError::BadRequest("the path or query cannot be forwarded".into()).into_response(),
        None,
    )
}

async fn forward(route: &Route, request: Request, started: Instant) -> (Response, Option<f64>) {
    let suffix = match admit(route, &request) {
        Ok(suffix) => suffix,
        Err(refused) => return (refused.into_response(), None),
    };
    let session = request
        .extensions()
        .get::<tower_sessions::Session>()
        .cloned();
    let session_id = session.as_ref().and_then(tower_sessions::Session::id);
    let token = match token_for(route, session).await {
        Ok(token) => token,
        Err(e) => return (e.into_response(), None),
    };
    let api = &route.api;
    let target = upstream_target(api, &suffix, &request);
    if remote_ws::is_upgrade(request.headers()) {
        let Ok(url) = url::Url::parse(&target) else {
            return cannot_forward();
        };
        let response = socket(route, request, url, token, session_id).await;
        return (response, Some(started.elapsed().as_secs_f64()));
    }
    let Some(remote) = route.auth.remote_apis() else {
        return (AppError::Internal.into_response(), None);
    };
    let Some((uri, url)) = call_target(target, token.as_ref()) else {
        return cannot_forward();
    };
    let (parts, body) = request.into_parts();
    let mut outgoing =
        axum::http::Request::new(if matches!(parts.method, Method::GET | Method::HEAD) {
            Body::empty()
        } else {
            body
        });
    *outgoing.method_mut() = parts.method.clone();
    *outgoing.uri_mut() = uri;
    // Room for the token, its proof and the client's `Host`: made once, never grown (hyper
    // admits 100 headers at most; the bound keeps `with_capacity` far from its limit anyway).
    *outgoing.headers_mut() =
        axum::http::HeaderMap::with_capacity(parts.headers.len().min(MAX_HEADERS) + 3);
    let headers = outgoing.headers_mut();
    for (name, value) in &parts.headers {
        if forwards_request_header(name.as_str()) {
            headers.append(name, value.clone());
        }
    }
    let dpop = route.auth.oidc().dpop();
    if let Some(token) = &token {
        let sent = match &url {
            Some(url) => token_headers(dpop, token, &parts.method, url, unix_now()),
            None => bearer(token).map(|authorization| (authorization, None)),
        };
        let Ok((authorization, proof)) = sent else {
            tracing::warn!(
                route = api.path(),
                "the token could not be sent (no DPoP proof)"
            );
            return (AppError::Internal.into_response(), None);
        };
        headers.insert(header::AUTHORIZATION, authorization);
        if let Some(proof) = proof {
            headers.insert("dpop", proof);
        }
    }
    let answer = tokio::time::timeout(api.timeout, remote.upstream.request(outgoing)).await;
    let seconds = Some(started.elapsed().as_secs_f64());
    let answer = match answer {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => return (upstream_failed(api, Some(&e)), seconds),
        Err(_) => return (upstream_failed(api, None), seconds),
    };
    if let (Some(key), Some(url)) = (dpop, &url) {
        // The nonce it asks for (on a refusal, or for the next call) goes into the next proofs.
        key.note_answer(url, answer.headers());
    }
    (streamed(answer), seconds)
}

/// The answer when the upstream call failed (`Some`) or did not answer in time (`None`): 502 or
/// 504 with a generic message; the detail goes to the log.
fn upstream_failed(
    api: &RemoteApi,
    failed: Option<&hyper_util::client::legacy::Error>,
) -> Response {
    let Some(e) = failed else {
        tracing::warn!(route = api.path(), "the upstream did not answer in time");
        return refusal(
            StatusCode::GATEWAY_TIMEOUT,
            "gateway_timeout",
            "the service did not answer in time",
        )
        .into_response();
    };
    // hyper's errors say what failed in their sources (refused, reset, timed out).
    let mut detail = e.to_string();
    let mut timed_out = false;
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        timed_out |= cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
        source = cause.source();
    }
    tracing::warn!(route = api.path(), error = %detail, "the upstream call failed");
    let (status, error) = if timed_out {
        (StatusCode::GATEWAY_TIMEOUT, "gateway_timeout")
    } else {
        (StatusCode::BAD_GATEWAY, "bad_gateway")
    };
    refusal(status, error, "the service is unavailable").into_response()
}

/// A WebSocket through the route; one opened with the user's token closes with the session.
async fn socket(
    route: &Route,
    request: Request,
    url: url::Url,
    token: Option<CallToken>,
    session_id: Option<tower_sessions::session::Id>,
) -> Response {
    let api = &route.api;
    let users_token = matches!(api.token, UpstreamToken::User | UpstreamToken::UserOrNone);
    let watch = session_id
        .filter(|_| users_token && token.is_some())
        .map(|id| {
            let store = route.auth.store();
            remote_ws::SessionWatch {
                subscription: store.events().subscribe(&store.event_key(&id)),
                id,
            }
        });
    let (parts, _) = request.into_parts();
    remote_ws::open(route.auth.clone(), api, url, token, watch, parts).await
}

/// Headers a map is made for at most at once (more grow it as usual).
const MAX_HEADERS: usize = 128;

/// The upstream's answer for the browser: its status, the headers that may cross, and its body
/// as it arrives.
fn streamed<B>(answer: axum::http::Response<B>) -> Response
where
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let (parts, body) = answer.into_parts();
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = parts.status;
    // Room for the security headers too: the map is made once, never grown.
    *response.headers_mut() =
        axum::http::HeaderMap::with_capacity(parts.headers.len().min(MAX_HEADERS) + 10);
    let headers = response.headers_mut();
    // By reference: every value of a header sent more than once (a clone shares its bytes).
    for (name, value) in &parts.headers {
        if forwards_response_header(name.as_str()) {
            headers.append(name, value.clone());
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_header_sent_twice_crosses_with_both_values_and_set_cookie_never() {
        let answer = axum::http::Response::builder()
            .status(StatusCode::CREATED)
            .header(header::CACHE_CONTROL, "no-store")
            .header(header::CACHE_CONTROL, "private")
            .header(header::SET_COOKIE, "upstream=1")
            .header(header::SET_COOKIE, "other=2")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::empty())
            .unwrap_or_else(|e| panic!("{e}"));
        let response = streamed(answer);
        assert_eq!(response.status(), StatusCode::CREATED);
        let values: Vec<_> = response
            .headers()
            .get_all(header::CACHE_CONTROL)
            .iter()
            .map(|v| v.to_str().unwrap_or_default())
            .collect();
        assert_eq!(values, ["no-store", "private"]);
        assert!(response.headers().get(header::SET_COOKIE).is_none());
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE),
            Some(&HeaderValue::from_static("application/json"))
        );
    }
}
