//! Cross-cutting protections applied to every response and request, and the hand-over of the
//! library's state (and of a page's user, resolved before the page renders) to server functions
//! and pages: the layers around the whole app, two hand-written services on either side of the
//! session layer.
//!
//! Catalogue: F03, G03 (cross-origin requests refused), E03 (a session the store could not save
//! is a 503, never an empty 500), G (security headers on every response).

use crate::error::AppError;
use crate::server::web::guard::{is_remote_api, resolve_page_user};
use crate::server::web::silent_sso::silent_sso;
use crate::server::web::state::KeycloakAuth;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::response::{IntoResponse, Redirect, Response};
use keycloak_bff_core::csp::PageNonce;
use keycloak_bff_core::{cookie, csp};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower_service::Service;

/// What the library's layers answer with: one box per request and layer group.
type Answer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// The library's layers outside the session layer `S`, in this order from the outside: the
/// security headers, the canonical host, the browser-session cookie, the session layer's failed
/// save. One hand-written service rather than one `from_fn` layer each: such a layer boxes a
/// future, the service under it and that service's future for every request (three
/// allocations), where this boxes one future.
#[derive(Clone)]
pub(crate) struct OuterLayers<S> {
    auth: KeycloakAuth,
    inner: S,
}

impl<S> OuterLayers<S> {
    pub(crate) fn new(auth: KeycloakAuth, inner: S) -> Self {
        Self { auth, inner }
    }
}

impl<S> Service<Request> for OuterLayers<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Answer {
        // The service made ready is the one called; the clone waits for the next request.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let auth = self.auth.clone();
        Box::pin(async move {
            let is_static = is_static_asset(request.uri().path(), &auth);
            // The app's own answers only: an upstream's HTML lends no nonce to the policy.
            let may_be_page = !is_static && !is_remote_api(&auth, request.uri().path());
            let response = match canonical_host(&auth, &request) {
                Some(redirect) => redirect,
                None => {
                    let Ok(response) = inner.call(request).await;
                    browser_session_cookie(&auth, session_save_failed(response))
                }
            };
            let (response, nonce) = if may_be_page {
                page_nonce(response).await
            } else {
                (response, None)
            };
            Ok(security_headers(&auth, is_static, nonce, response))
        })
    }
}

/// The library's layers inside the session layer, around the app `S`, in this order from the
/// outside: the origin check, silent sign-on, the state for server functions and pages, and the
/// mark of the app's own answers ([`AnsweredByApp`]). One service, as [`OuterLayers`].
#[derive(Clone)]
pub(crate) struct InnerLayers<S> {
    auth: KeycloakAuth,
    inner: S,
}

impl<S> InnerLayers<S> {
    pub(crate) fn new(auth: KeycloakAuth, inner: S) -> Self {
        Self { auth, inner }
    }
}

impl<S> Service<Request> for InnerLayers<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Answer {
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let auth = self.auth.clone();
        Box::pin(async move {
            if let Some(refused) = origin_check(&auth, &request) {
                return Ok(refused);
            }
            let (mut parts, body) = request.into_parts();
            if let Some(redirect) = silent_sso(&auth, &parts).await {
                return Ok(redirect);
            }
            // A page shows its user as soon as it renders: resolved before the app runs.
            if !is_static_asset(parts.uri.path(), &auth) {
                resolve_page_user(&auth, &mut parts).await;
            }
            // Where server functions and pages find it (leptos_axum provides the request's
            // parts as context).
            parts.extensions.insert(auth);
            let Ok(response) = inner.call(Request::from_parts(parts, body)).await;
            Ok(answered_by_app(response))
        })
    }
}

/// Marks a response that Keycloak's own pages may frame (the front-channel logout page): it gets
/// [`csp::framed_by_issuer`] and no `X-Frame-Options`.
#[derive(Clone, Copy, Debug)]
pub struct FramedByIssuer;

fn is_static_asset(path: &str, auth: &KeycloakAuth) -> bool {
    path.starts_with(auth.pkg_prefix()) || auth.settings().static_paths.iter().any(|p| p == path)
}

/// A page opened on another loopback name of the public URL's host (`127.0.0.1` for
/// `localhost`, the URL cargo-leptos prints) goes to the public URL first, before anything sets a
/// cookie: see [`keycloak_bff_core::host`]. Outermost but for the security headers; only top-level
/// page loads (GET, `Sec-Fetch-Mode: navigate`, `Sec-Fetch-Dest: document`). `Some`: the
/// redirect that answers instead of the app.
fn canonical_host(auth: &KeycloakAuth, request: &Request) -> Option<Response> {
    use keycloak_bff_core::host::{self, HostCheck};
    let headers = request.headers();
    let is = |name: &str, value: &str| {
        headers
            .get(name)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(value.as_bytes()))
    };
    let navigation = request.method() == Method::GET
        && is("sec-fetch-mode", "navigate")
        && is("sec-fetch-dest", "document");
    let host_header = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let (Some(host_header), true) = (host_header, navigation) else {
        return None;
    };
    let public = &auth.settings().public_url;
    let (Some(public_host), Some(public_port)) =
        (public.host_str(), public.port_or_known_default())
    else {
        return None;
    };
    let uri = request.uri();
    let marked = host::is_marked(uri.query());
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let to = match host::check((public_host, public_port), host_header, marked) {
        HostCheck::Serve => return None,
        HostCheck::HostRewritten => {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    host = host_header,
                    public_url = %public,
                    "a page arrived on another name of auth.public_url's host after being sent \
                     there: something between the browser and the app rewrites Host; serving it"
                );
            });
            return None;
        }
        HostCheck::ToPublic => auth
            .settings()
            .absolute(&host::marked(path_and_query, true)),
        // Absolute as well: a path such as `//evil.example/` must stay a path of this origin,
        // never become a protocol-relative URL (an open redirect).
        HostCheck::Unmark => auth
            .settings()
            .absolute(&host::marked(path_and_query, false)),
    };
    Some(Redirect::to(&to).into_response())
}

/// Marks every response the app itself made (the innermost layer), so that
/// [`session_save_failed`] can tell the session layer's own failure from it.
#[derive(Clone, Copy, Debug)]
struct AnsweredByApp;

/// The innermost layer: see [`AnsweredByApp`].
fn answered_by_app(mut response: Response) -> Response {
    response.extensions_mut().insert(AnsweredByApp);
    response
}

/// Just outside the session layer: when the layer could not save a changed session after the
/// app answered (the store went away in between, a Redis failover), it drops the app's answer
/// for an empty 500. That is a store outage like any other: 503 with the usual plain reason
/// (catalogue E03, G: never a 500), and the browser keeps its cookie and its session.
fn session_save_failed(response: Response) -> Response {
    if response.status() == axum::http::StatusCode::INTERNAL_SERVER_ERROR
        && response.extensions().get::<AnsweredByApp>().is_none()
    {
        return AppError::StoreUnavailable.into_response();
    }
    response
}

/// How much of a page is read, at most, for its script nonce before its headers go: a page's
/// head is a few KB.
const NONCE_SCAN_LIMIT: usize = 64 * 1024;

/// The script nonce of an HTML response, read from its body: what Leptos wrote on the page's
/// first script tag ([`csp::page_script_nonce`]). The policy then allows exactly the scripts the
/// page carries. Handing the nonce over through the response's options instead
/// (`ResponseOptions`) lost it now and then under load: the page arrived with a policy without
/// it, its scripts were blocked and it never hydrated (seen in CI).
///
/// The body's first parts are read until the first script tag or the end of the head (a rendered
/// page's first part holds its whole head: no wait), then sent on unchanged with the rest.
async fn page_nonce(response: Response) -> (Response, Option<String>) {
    use futures_util::StreamExt;
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"text/html"));
    if !is_html || response.extensions().get::<FramedByIssuer>().is_some() {
        return (response, None);
    }
    let (parts, body) = response.into_parts();
    let mut rest = body.into_data_stream();
    let mut read: Vec<Result<Bytes, axum::Error>> = Vec::new();
    let mut start: Vec<u8> = Vec::new();
    let nonce = loop {
        let Some(part) = rest.next().await else {
            break None;
        };
        let bytes = match part {
            Ok(bytes) => bytes,
            Err(error) => {
                read.push(Err(error));
                break None;
            }
        };
        // Most pages: their first part holds the whole head, scanned where it is. Otherwise
        // the parts so far are scanned together.
        let scanned: Scan = if read.is_empty() {
            csp::page_script_nonce(&bytes).into()
        } else {
            start.extend_from_slice(&bytes);
            csp::page_script_nonce(&start).into()
        };
        if read.is_empty() && matches!(scanned, Scan::ReadMore) {
            start.extend_from_slice(&bytes);
        }
        read.push(Ok(bytes));
        match scanned {
            Scan::Found(nonce) => break Some(nonce),
            Scan::Absent => break None,
            Scan::ReadMore if start.len() > NONCE_SCAN_LIMIT => break None,
            Scan::ReadMore => {}
        }
    };
    let body = Body::from_stream(futures_util::stream::iter(read).chain(rest));
    (Response::from_parts(parts, body), nonce)
}

/// [`PageNonce`], owned.
enum Scan {
    Found(String),
    Absent,
    ReadMore,
}

impl From<PageNonce<'_>> for Scan {
    fn from(nonce: PageNonce<'_>) -> Self {
        match nonce {
            PageNonce::Found(n) => Scan::Found(n.to_owned()),
            PageNonce::Absent => Scan::Absent,
            PageNonce::ReadMore => Scan::ReadMore,
        }
    }
}

/// Security headers on every response: the Content-Security-Policy ([`csp::policy`], with the
/// page's script nonce ([`page_nonce`]); not on static files), HSTS under https, and
/// `Cache-Control: no-store` on everything that is not a static asset, so pages that show a user
/// are never cached and the back button after sign-out asks the server again. `is_static`:
/// whether the request was for a static asset ([`is_static_asset`]).
fn security_headers(
    auth: &KeycloakAuth,
    is_static: bool,
    nonce: Option<String>,
    mut response: Response,
) -> Response {
    let framed = response.extensions().get::<FramedByIssuer>().is_some();
    let headers = response.headers_mut();
    // A policy only means something for documents: scripts, WebAssembly and stylesheets go
    // without (and without the cost of writing it). The front-channel logout page has its own.
    let nonce = nonce.as_deref();
    let policy = if framed {
        HeaderValue::from_str(&csp::framed_by_issuer(auth.issuer_origin())).ok()
    } else if is_static {
        None
    } else if let Some(nonce) = nonce {
        HeaderValue::from_str(&csp::policy(
            Some(nonce),
            auth.issuer_origin(),
            auth.dev_reload_socket(),
        ))
        .ok()
    } else {
        // Without a nonce it is the same every time: made once, at start-up.
        auth.plain_policy().cloned()
    };
    if let Some(value) = policy {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    if let Some(hsts) = csp::hsts(auth.settings().public_url_is_https()) {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(hsts),
        );
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !framed {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !is_static {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static(csp::OPENER_POLICY),
        );
        headers.insert(
            HeaderName::from_static("permissions-policy"),
            HeaderValue::from_static(csp::PERMISSIONS_POLICY),
        );
    }
    response
}

/// Refuses state-changing requests from another origin (catalogue F03, G03): every request other
/// than GET, HEAD and OPTIONS (server functions, the auth routes, a JSON API) must carry our
/// `Origin` or, without one, a `Sec-Fetch-Site` of `same-origin`. Non-browser clients that send
/// neither are let through: they carry no ambient cookies that a third-party site could abuse.
/// The back-channel logout is exempt: it comes from Keycloak, authenticated by its signed token.
/// `Some`: the refusal that answers instead of the app.
fn origin_check(auth: &KeycloakAuth, request: &Request) -> Option<Response> {
    let method = request.method();
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let path = request.uri().path();
    if safe || path == auth.ui_config().route("/backchannel-logout") {
        return None;
    }
    let headers = request.headers();
    let allowed = match headers.get(header::ORIGIN) {
        Some(origin) => origin.as_bytes() == auth.settings().public_origin().as_bytes(),
        None => match headers.get("sec-fetch-site") {
            Some(site) => site.as_bytes() == b"same-origin",
            None => true,
        },
    };
    if allowed {
        return None;
    }
    tracing::info!(path, "refused a cross-origin request");
    Some(
        (
            axum::http::StatusCode::FORBIDDEN,
            "cross-origin request refused\n",
        )
            .into_response(),
    )
}

/// Keeps the session cookie a browser-session cookie (`session.persistent_cookie = false`, the
/// default): tower-sessions writes `Max-Age` up to the end of Keycloak's session, which the
/// server-side record keeps, but the browser forgets the cookie when it closes (a shared
/// computer, a kiosk). A removal (`Max-Age=0`, at sign-out) is kept as it is.
fn browser_session_cookie(auth: &KeycloakAuth, mut response: Response) -> Response {
    let settings = auth.settings();
    if settings.session.persistent_cookie || !response.headers().contains_key(header::SET_COOKIE) {
        return response;
    }
    let name = cookie::policy(
        settings.public_url_is_https(),
        &settings.session.cookie_name,
    )
    .name;
    let headers = response.headers_mut();
    let values: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|value| until_browser_closes(value, &name).unwrap_or_else(|| value.clone()))
        .collect();
    headers.remove(header::SET_COOKIE);
    for value in values {
        headers.append(header::SET_COOKIE, value);
    }
    response
}

/// `value` without its lifetime when it sets the cookie `name` for a while; `None`: unchanged.
fn until_browser_closes(value: &HeaderValue, name: &str) -> Option<HeaderValue> {
    let mut parsed = ::cookie::Cookie::parse(value.to_str().ok()?).ok()?;
    let lasts = parsed.max_age().is_some_and(|age| age.is_positive());
    if parsed.name() != name || !lasts {
        return None;
    }
    parsed.set_max_age(None);
    parsed.unset_expires();
    HeaderValue::from_str(&parsed.to_string()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    /// The app answers `status` (marked by the innermost layer); the session layer then drops
    /// the answer for an empty 500 when `save_fails` (what tower-sessions does when the store
    /// fails at its save); what [`session_save_failed`] makes of it.
    async fn answer(status: StatusCode, save_fails: bool) -> (StatusCode, String) {
        let app = answered_by_app((status, "the app's answer").into_response());
        let from_session_layer = if save_fails {
            let mut failed = Response::default();
            *failed.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            failed
        } else {
            app
        };
        let response = session_save_failed(from_session_layer);
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap_or_default();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_session_the_store_could_not_save_after_the_answer_is_a_503_not_an_empty_500() {
        let (status, body) = answer(StatusCode::OK, true).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("session store unavailable"), "{body}");
    }

    #[tokio::test]
    async fn the_apps_own_answers_pass_unchanged_even_a_500() {
        assert_eq!(
            answer(StatusCode::OK, false).await,
            (StatusCode::OK, "the app's answer".to_owned())
        );
        assert_eq!(
            answer(StatusCode::INTERNAL_SERVER_ERROR, false).await,
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the app's answer".to_owned()
            )
        );
    }

    /// An HTML response whose body comes in `parts`; its nonce as [`page_nonce`] reads it, and
    /// the body the browser then gets.
    async fn scanned(
        parts: &[&'static str],
        content_type: &'static str,
    ) -> (Option<String>, String) {
        let parts: Vec<Result<&'static str, std::io::Error>> =
            parts.iter().map(|p| Ok(*p)).collect();
        let response = (
            [(header::CONTENT_TYPE, content_type)],
            Body::from_stream(futures_util::stream::iter(parts)),
        )
            .into_response();
        let (response, nonce) = page_nonce(response).await;
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        (nonce, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_page_gets_the_nonce_of_its_first_script_even_split_across_parts_and_its_body_unchanged(
    ) {
        let parts = [
            "<html><head><scr",
            "ipt type=\"module\" nonce=\"abc_12",
            "3\">x</script>",
            "</head><body>rest</body>",
        ];
        assert_eq!(
            scanned(&parts, "text/html; charset=utf-8").await,
            (Some("abc_123".to_owned()), parts.concat())
        );
    }

    #[tokio::test]
    async fn a_page_without_a_script_nonce_and_anything_but_html_get_none() {
        let page = [
            "<html><head><title>t</title></head>",
            "<body><script nonce=\"late\">",
        ];
        assert_eq!(scanned(&page, "text/html").await, (None, page.concat()));
        let json = ["{\"a\":\"<script nonce=\\\"x\\\">\"}"];
        assert_eq!(
            scanned(&json, "application/json").await,
            (None, json.concat())
        );
        // A body that ends before any tag.
        assert_eq!(
            scanned(&["<html>"], "text/html").await,
            (None, "<html>".to_owned())
        );
    }
}
