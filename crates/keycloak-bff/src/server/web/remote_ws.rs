//! WebSocket upgrades through a remote API route (`websocket = true`): the browser opens a
//! WebSocket on the app's origin; the library opens one to the upstream with the route's token on
//! the upgrade request (over the same HTTP client as the other calls, so `wss://` upstreams use the
//! same TLS), then passes messages both ways. The browser's `Origin` must be the app's (a page of
//! another origin cannot open a socket with the user's cookie: cross-site WebSocket hijacking),
//! and a socket opened with the user's token closes when the session ends (sign-out, back-channel
//! logout, a refresh Keycloak refused: the store's announcements, as for the event stream) or the
//! server shuts down.
//!
//! Catalogue: P07 (a foreign `Origin`), P08 (a socket outliving its session).

use crate::error::AppError;
use crate::server::base::clock::unix_now;
use crate::server::base::remote_api::RemoteApi;
use crate::server::oidc::dpop_key::{with_token, CallToken, DpopKey};
use crate::server::session::events::Subscription;
use crate::server::web::state::KeycloakAuth;
use axum::extract::ws::{
    CloseFrame as ClientClose, Message as ToClient, WebSocket, WebSocketUpgrade,
};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame as UpstreamClose, Role};
use tokio_tungstenite::tungstenite::Message as ToUpstream;
use tokio_tungstenite::WebSocketStream;

/// The close code sent to both sides when the session ends (1008: policy violation).
const SESSION_ENDED: u16 = 1008;
/// The close code when the server shuts down (1001: going away).
const GOING_AWAY: u16 = 1001;

/// Whether the request asks for a WebSocket.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn plain(status: StatusCode, message: &'static str) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], message).into_response()
}

/// What a socket watches to close with its session: the store's announcements for it.
pub struct SessionWatch {
    pub subscription: Subscription,
    pub id: tower_sessions::session::Id,
}

/// Opens the upstream's socket at `url` (`http(s)`, made `ws(s)` by the upgrade) with `token`,
/// then upgrades the browser's connection and passes messages until either side closes or the
/// session ends.
pub async fn open(
    auth: KeycloakAuth,
    api: &RemoteApi,
    url: url::Url,
    token: Option<CallToken>,
    watch: Option<SessionWatch>,
    mut parts: Parts,
) -> Response {
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let key = generate_key();
    let Some(remote) = auth.remote_apis() else {
        return AppError::Internal.into_response();
    };
    let dpop = auth.oidc().dpop();
    let request = match upgrade_request(
        &remote.http,
        url,
        &key,
        &parts.headers,
        token.as_ref(),
        dpop,
    ) {
        Ok(request) => request,
        Err(e) => {
            tracing::warn!(route = api.path(), error = %e, "the token could not be sent");
            return AppError::Internal.into_response();
        }
    };
    let answer = match tokio::time::timeout(api.timeout, request.send()).await {
        Err(_) => {
            tracing::warn!(
                route = api.path(),
                "the upstream did not answer the upgrade in time"
            );
            return plain(
                StatusCode::GATEWAY_TIMEOUT,
                "the service did not answer in time\n",
            );
        }
        Ok(Err(e)) => {
            tracing::warn!(route = api.path(), error = %e, "the upstream's upgrade failed");
            return plain(StatusCode::BAD_GATEWAY, "the service is unavailable\n");
        }
        Ok(Ok(answer)) => answer,
    };
    let accepted = answer.status() == StatusCode::SWITCHING_PROTOCOLS
        && answer
            .headers()
            .get(header::SEC_WEBSOCKET_ACCEPT)
            .is_some_and(|v| v.as_bytes() == derive_accept_key(key.as_bytes()).as_bytes());
    if !accepted {
        tracing::warn!(route = api.path(), status = %answer.status(), "the upstream refused the WebSocket");
        // Its refusal (401, 403, 404…) as a plain status: the browser sees the socket fail.
        let status = if answer.status().is_success() {
            StatusCode::BAD_GATEWAY
        } else {
            answer.status()
        };
        return plain(status, "the service refused the connection\n");
    }
    let protocol = answer
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let upgraded = match answer.upgrade().await {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(route = api.path(), error = %e, "the upstream's socket could not be taken over");
            return plain(StatusCode::BAD_GATEWAY, "the service is unavailable\n");
        }
    };
    let upstream = WebSocketStream::from_raw_socket(upgraded, Role::Client, None).await;
    let ws = match protocol {
        Some(p) => ws.protocols([p]),
        None => ws,
    };
    let mut response = ws.on_upgrade(move |client| relay(client, upstream, auth, watch));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The upgrade request to the upstream: the WebSocket handshake's headers, the browser's
/// subprotocols, and the token.
fn upgrade_request(
    http: &reqwest::Client,
    url: url::Url,
    key: &str,
    browser: &HeaderMap,
    token: Option<&CallToken>,
    dpop: Option<&DpopKey>,
) -> Result<reqwest::RequestBuilder, String> {
    let mut r = http
        .get(url.clone())
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(header::SEC_WEBSOCKET_KEY, key);
    if let Some(protocols) = browser.get(header::SEC_WEBSOCKET_PROTOCOL) {
        r = r.header(header::SEC_WEBSOCKET_PROTOCOL, protocols);
    }
    match token {
        Some(token) => with_token(r, dpop, token, &reqwest::Method::GET, &url, unix_now()),
        None => Ok(r),
    }
}

fn to_upstream(m: ToClient) -> ToUpstream {
    match m {
        ToClient::Text(t) => ToUpstream::text(t.as_str()),
        ToClient::Binary(b) => ToUpstream::Binary(b),
        ToClient::Ping(b) => ToUpstream::Ping(b),
        ToClient::Pong(b) => ToUpstream::Pong(b),
        ToClient::Close(f) => ToUpstream::Close(f.map(|f| UpstreamClose {
            code: f.code.into(),
            reason: f.reason.as_str().into(),
        })),
    }
}

fn to_client(m: ToUpstream) -> Option<ToClient> {
    Some(match m {
        ToUpstream::Text(t) => ToClient::text(t.as_str()),
        ToUpstream::Binary(b) => ToClient::Binary(b),
        ToUpstream::Ping(b) => ToClient::Ping(b),
        ToUpstream::Pong(b) => ToClient::Pong(b),
        ToUpstream::Close(f) => ToClient::Close(f.map(|f| ClientClose {
            code: f.code.into(),
            reason: f.reason.as_str().into(),
        })),
        ToUpstream::Frame(_) => return None,
    })
}

/// Completes when the watched session has ended (never without a watch, nor while the store
/// does not answer: an outage closes no socket).
async fn session_ended(auth: &KeycloakAuth, watch: &mut Option<SessionWatch>) {
    let Some(watch) = watch else {
        return std::future::pending().await;
    };
    loop {
        watch.subscription.changed().await;
        match auth.store().load_auth(&watch.id).await {
            Ok(None) => return,
            Ok(Some(s)) if s.user.session_expires_at <= unix_now() => return,
            _ => {}
        }
    }
}

/// Completes when the server starts shutting down.
async fn shutting_down(closing: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` gives is dropped here: it must not live across the relay's awaits.
    let _ = closing.wait_for(|c| *c).await.map(|_| ());
}

/// Passes messages both ways until a side closes, the session ends or the server shuts down.
async fn relay<S>(
    client: WebSocket,
    upstream: WebSocketStream<S>,
    auth: KeycloakAuth,
    mut watch: Option<SessionWatch>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut to_browser, mut from_browser) = client.split();
    let (mut to_service, mut from_service) = upstream.split();
    let mut closing = auth.closing();
    let end = loop {
        tokio::select! {
            m = from_browser.next() => match m {
                Some(Ok(m)) => {
                    let close = matches!(m, ToClient::Close(_));
                    if to_service.send(to_upstream(m)).await.is_err() || close {
                        break None;
                    }
                }
                _ => break None,
            },
            m = from_service.next() => match m {
                Some(Ok(m)) => {
                    let Some(m) = to_client(m) else { continue };
                    let close = matches!(m, ToClient::Close(_));
                    if to_browser.send(m).await.is_err() || close {
                        break None;
                    }
                }
                _ => break None,
            },
            () = session_ended(&auth, &mut watch) => break Some((SESSION_ENDED, "the session ended")),
            () = shutting_down(&mut closing) => break Some((GOING_AWAY, "the server is shutting down")),
        }
    };
    if let Some((code, reason)) = end {
        let _ = to_service
            .send(ToUpstream::Close(Some(UpstreamClose {
                code: code.into(),
                reason: reason.into(),
            })))
            .await;
        let _ = to_browser
            .send(ToClient::Close(Some(ClientClose {
                code,
                reason: reason.into(),
            })))
            .await;
    }
    let _ = to_service.close().await;
    let _ = to_browser.close().await;
}
