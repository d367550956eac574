//! orders-api: the demo's resource server, a separate program that the app's remote API route
//! `/remote/orders` forwards to. It trusts nothing but the token it receives, and checks it with
//! `keycloak-bff-core` the way any API of the realm should: the signature against the realm's
//! published keys, the issuer, the audience (`orders-api`: a token made for the app itself is
//! refused), the expiry and the type. Each user sees and creates their own orders, by the
//! `orders-api` client roles `read` and `create`.
//!
//! For the curious and for the tests, every answer says what the API saw of the token (`aud`,
//! `azp`, `sub`, the token's type), and `GET /_requests` lists every request it received (method,
//! path, whether a cookie or which kind of authorization came with it): the tests read it to show
//! what never reaches an upstream. It serves only loopback unless told otherwise.
//!
//! Settings (environment): `ORDERS_API_ADDR` (default `127.0.0.1:4001`), `ORDERS_API_ISSUERS`
//! (comma-separated realm URLs, default `http://localhost:8080/realms/demo`),
//! `ORDERS_API_AUDIENCE` (default `orders-api`), `ORDERS_API_TRUST_FORWARDED_TOKEN` (`1`: without
//! an `Authorization` header, read the token from `X-Forwarded-Access-Token`, the header
//! oauth2-proxy's `--pass-access-token` sets; the benchmark puts oauth2-proxy in front of this
//! API that way. Off by default: only a proxy that strips the header from the outside may be
//! trusted to set it).
//!
//! A DPoP-bound token (`cnf.jkt`, RFC 9449) counts only as `Authorization: DPoP` with a proof of
//! its key made for this very request (method, URL, the token's hash, a fresh `iat`, a `jti` not
//! seen before); as `Bearer`, or with a proof for another URL or used twice, it is refused.
//!
//! Catalogue: P04 (a token for another audience is refused), P02 (the request log shows what
//! crossed the proxy), P10 (a stolen bound token alone, a replayed or misdirected proof).

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use keycloak_bff_core::dpop;
use keycloak_bff_core::jwt::{check_claims, parse_header, unverified_claims, Expected, Kind};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Requests kept in the log.
const MAX_LOG: usize = 1_000;
/// The key set is fetched again for an unknown `kid` at most this often.
const REFETCH_EVERY: Duration = Duration::from_secs(10);
/// The longest item text accepted.
const MAX_ITEM: usize = 200;

#[derive(Clone, Serialize)]
struct Order {
    id: u64,
    item: String,
    created_at: u64,
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, Arc<DecodingKey>>,
    fetched_at: Option<Instant>,
}

struct Issuer {
    url: String,
    keys: tokio::sync::Mutex<Keys>,
}

struct AppState {
    issuers: Vec<Issuer>,
    audience: String,
    trust_forwarded_token: bool,
    http: reqwest::Client,
    orders: Mutex<HashMap<String, Vec<Order>>>,
    log: Mutex<Vec<Value>>,
    next_id: std::sync::atomic::AtomicU64,
    /// DPoP proofs seen (`jkt:jti` → until when it is kept), so that none is used twice.
    proofs_seen: Mutex<HashMap<String, i64>>,
}

type Shared = Arc<AppState>;

/// What the API saw of a valid token.
struct Caller {
    sub: String,
    roles: HashSet<String>,
    seen: Value,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A refusal, answered as RFC 6750's JSON error with a challenge on 401.
struct Problem {
    status: StatusCode,
    error: &'static str,
    description: String,
}

fn problem(status: StatusCode, error: &'static str, description: &str) -> Problem {
    Problem {
        status,
        error,
        description: description.to_owned(),
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(json!({ "error": self.error, "error_description": self.description })),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = format!(r#"Bearer error="{}""#, self.error);
            if let Ok(v) = header::HeaderValue::from_str(&challenge) {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        r
    }
}

impl Issuer {
    /// The key `kid`, from the key set fetched once, and again (at most every 10 s) when a token
    /// names a key not yet known (Keycloak rotated its keys).
    async fn key(&self, http: &reqwest::Client, kid: &str) -> Option<Arc<DecodingKey>> {
        let mut keys = self.keys.lock().await;
        if let Some(k) = keys.by_kid.get(kid) {
            return Some(k.clone());
        }
        if keys.fetched_at.is_some_and(|t| t.elapsed() < REFETCH_EVERY) {
            return None;
        }
        keys.fetched_at = Some(Instant::now());
        let url = format!("{}/protocol/openid-connect/certs", self.url);
        let set: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
        let mut by_kid = HashMap::new();
        for raw in set
            .get("keys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if raw.get("use").and_then(Value::as_str) != Some("sig") {
                continue;
            }
            let (Some(id), Ok(jwk)) = (
                raw.get("kid").and_then(Value::as_str),
                serde_json::from_value::<Jwk>(raw.clone()),
            ) else {
                continue;
            };
            if let Ok(key) = DecodingKey::from_jwk(&jwk) {
                by_kid.insert(id.to_owned(), Arc::new(key));
            }
        }
        if !by_kid.is_empty() {
            keys.by_kid = by_kid;
        }
        keys.by_kid.get(kid).cloned()
    }
}

/// The DPoP proof of the request for the bound token `token` (key `jkt`): made by that key for
/// this method and URL (`http://<Host><path>`, as the caller addressed it), with the token's
/// hash, fresh, and never seen before.
fn check_proof(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    token: &str,
    jkt: &str,
) -> Result<(), String> {
    let mut proofs = headers.get_all("dpop").iter();
    let (Some(proof), None) = (proofs.next(), proofs.next()) else {
        return Err("exactly one DPoP proof is needed with a DPoP-bound token".into());
    };
    let proof = proof.to_str().map_err(|_| "malformed DPoP header")?;
    let (header, claims) = dpop::decode(proof).map_err(|e| e.to_string())?;
    let jwk = dpop::check_header(&header).map_err(|e| e.to_string())?;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or("no Host header")?;
    let url = format!("http://{host}{}", uri.path());
    let now = now() as i64;
    let expected = dpop::ProofFor {
        method: method.as_str(),
        url: &url,
        access_token: token,
        now,
    };
    let jti = dpop::check_claims(&claims, &expected).map_err(|e| e.to_string())?;
    if dpop::jwk_thumbprint(jwk).as_deref() != Some(jkt) {
        return Err(dpop::DpopError::Binding.to_string());
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(|a| a.parse::<Algorithm>().ok())
        .ok_or("unknown algorithm")?;
    let key = serde_json::from_value::<Jwk>(jwk.clone())
        .ok()
        .and_then(|jwk| DecodingKey::from_jwk(&jwk).ok())
        .ok_or("unusable key")?;
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims = HashSet::new();
    jsonwebtoken::decode::<Value>(proof, &key, &validation)
        .map_err(|_| "the DPoP proof's signature does not verify")?;
    let mut seen = state.proofs_seen.lock().map_err(|_| "busy")?;
    seen.retain(|_, until| *until > now);
    let first = seen
        .insert(format!("{jkt}:{jti}"), now + 2 * dpop::PROOF_WINDOW_SECS)
        .is_none();
    if first {
        Ok(())
    } else {
        Err("this DPoP proof was used before".into())
    }
}

/// The token of the request (`Bearer`, or `DPoP` with its proof), checked; the refusal otherwise.
async fn caller(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Caller, Problem> {
    let unauthorized = |why: &str| problem(StatusCode::UNAUTHORIZED, "invalid_token", why);
    let forwarded = headers
        .get("x-forwarded-access-token")
        .filter(|_| state.trust_forwarded_token)
        .and_then(|v| v.to_str().ok());
    let (token, dpop_scheme) = match (headers.get(header::AUTHORIZATION), forwarded) {
        (Some(value), _) => {
            let text = value
                .to_str()
                .map_err(|_| unauthorized("malformed header"))?;
            let Some((scheme, token)) = text.split_once(' ') else {
                return Err(unauthorized("malformed header"));
            };
            let dpop_scheme = scheme.eq_ignore_ascii_case("dpop");
            if !dpop_scheme && !scheme.eq_ignore_ascii_case("bearer") {
                return Err(unauthorized("expected a Bearer or DPoP token"));
            }
            (token.trim(), dpop_scheme)
        }
        (None, Some(token)) => (token.trim(), false),
        (None, None) => return Err(unauthorized("a bearer token is required")),
    };
    let header =
        parse_header(token, &["RS256".to_owned()]).map_err(|e| unauthorized(&e.to_string()))?;
    let iss = unverified_claims(token)
        .and_then(|c| c.get("iss").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    let issuer = state
        .issuers
        .iter()
        .find(|i| i.url == iss)
        .ok_or_else(|| unauthorized("the token is from an issuer this API does not trust"))?;
    let kid = header.kid.unwrap_or_default();
    let key = issuer
        .key(&state.http, &kid)
        .await
        .ok_or_else(|| unauthorized("the token is signed by an unknown key"))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims = HashSet::new();
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map_err(|_| unauthorized("the token's signature does not verify"))?
        .claims;
    let expected = Expected {
        issuer: &issuer.url,
        client_id: &state.audience,
        kind: Kind::Access,
        nonce: None,
        azp_must_be_client: false,
        leeway: 30,
        now: now() as i64,
    };
    check_claims(&claims, &expected).map_err(|e| unauthorized(&e.to_string()))?;
    let binding = dpop::token_binding(&claims);
    match (binding, dpop_scheme) {
        (Some(jkt), true) => check_proof(state, method, uri, headers, token, jkt)
            .map_err(|why| unauthorized(&why))?,
        (Some(_), false) => {
            return Err(unauthorized(
                "a DPoP-bound token is sent as Authorization: DPoP with a proof",
            ))
        }
        (None, true) => return Err(unauthorized("the token is not DPoP-bound")),
        (None, false) => {}
    }
    let roles = claims
        .pointer(&format!("/resource_access/{}/roles", state.audience))
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let digest = sha2::Sha256::digest(token.as_bytes());
    let fingerprint: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Ok(Caller {
        sub: claims["sub"].as_str().unwrap_or_default().to_owned(),
        roles,
        seen: json!({
            "aud": claims.get("aud"),
            "azp": claims.get("azp"),
            "sub": claims.get("sub"),
            "preferred_username": claims.get("preferred_username"),
            "binding": binding.map_or(json!("none (a bearer token)"), |j| json!(format!("DPoP key {j}, proof checked"))),
            "token_sha256_prefix": fingerprint,
        }),
    })
}

/// Writes one request into the log the tests read.
fn remember(state: &AppState, method: &Method, uri: &Uri, headers: &HeaderMap) {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(' ').next().unwrap_or_default().to_ascii_lowercase());
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' ').map(|(_, t)| t.trim().to_owned()));
    let claims = token.as_deref().and_then(unverified_claims);
    let entry = json!({
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "cookie": headers.contains_key(header::COOKIE),
        "authorization": authorization,
        "aud": claims.as_ref().and_then(|c| c.get("aud").cloned()),
        "azp": claims.as_ref().and_then(|c| c.get("azp").cloned()),
        "sub": claims.as_ref().and_then(|c| c.get("sub").cloned()),
        "headers": headers.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
    });
    if let Ok(mut log) = state.log.lock() {
        if log.len() >= MAX_LOG {
            log.remove(0);
        }
        log.push(entry);
    }
}

fn require(caller: &Caller, role: &str) -> Result<(), Problem> {
    if caller.roles.contains(role) {
        Ok(())
    } else {
        Err(problem(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            &format!("the role orders-api:{role} is needed"),
        ))
    }
}

/// The request logged, then its token checked and the role `role` required: the caller, or the
/// refusal to answer with.
async fn admitted(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    role: &str,
) -> Result<Caller, Problem> {
    remember(state, method, uri, headers);
    let caller = caller(state, method, uri, headers).await?;
    require(&caller, role)?;
    Ok(caller)
}

async fn list(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let caller = match admitted(&state, &method, &uri, &headers, "read").await {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let orders = state
        .orders
        .lock()
        .map(|o| o.get(&caller.sub).cloned().unwrap_or_default())
        .unwrap_or_default();
    (
        // An upstream's cookie must never reach the browser through the app (catalogue P02).
        [(header::SET_COOKIE, "orders_api_session=leak; Path=/")],
        Json(json!({ "orders": orders, "seen": caller.seen })),
    )
        .into_response()
}

#[derive(Deserialize)]
struct NewOrder {
    item: String,
}

async fn create(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let caller = match admitted(&state, &method, &uri, &headers, "create").await {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let Ok(new) = serde_json::from_slice::<NewOrder>(&body) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected {\"item\": \"…\"}",
        )
        .into_response();
    };
    let item = new.item.trim();
    if item.is_empty() || item.chars().count() > MAX_ITEM {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "an item is 1 to 200 characters",
        )
        .into_response();
    }
    let order = Order {
        id: state
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        item: item.to_owned(),
        created_at: now(),
    };
    if let Ok(mut orders) = state.orders.lock() {
        orders
            .entry(caller.sub.clone())
            .or_default()
            .push(order.clone());
    }
    (
        StatusCode::CREATED,
        Json(json!({ "order": order, "seen": caller.seen })),
    )
        .into_response()
}

/// A Server-Sent Events stream: an event at once, then one a second, for as long as the caller
/// listens (the tests see the first event while the stream is still open).
async fn events(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admitted(&state, &method, &uri, &headers, "read").await {
        return r.into_response();
    }
    let stream = futures_util::stream::unfold(0u64, |n| async move {
        if n > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let event = Event::default()
            .event("tick")
            .data(format!("{{\"n\":{n}}}"));
        Some((Ok::<_, std::convert::Infallible>(event), n + 1))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[derive(Deserialize)]
struct Slow {
    ms: Option<u64>,
}

/// Answers after `ms` milliseconds (at most a minute): what a route's time limit is tested with.
async fn slow(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<Slow>,
) -> Response {
    remember(&state, &method, &uri, &headers);
    tokio::time::sleep(Duration::from_millis(q.ms.unwrap_or(0).min(60_000))).await;
    Json(json!({ "slept_ms": q.ms })).into_response()
}

/// A WebSocket (`/orders/ws`): a greeting that says what the API saw of the token on the upgrade
/// request, then every text message echoed back.
async fn socket(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let caller = match admitted(&state, &method, &uri, &headers, "read").await {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    ws.on_upgrade(move |mut socket: WebSocket| async move {
        let hello = json!({ "hello": caller.sub, "seen": caller.seen }).to_string();
        if socket.send(Message::text(hello)).await.is_err() {
            return;
        }
        while let Some(Ok(message)) = socket.recv().await {
            let reply = match message {
                Message::Text(t) => Message::text(format!("echo: {}", t.as_str())),
                Message::Close(_) => break,
                _ => continue,
            };
            if socket.send(reply).await.is_err() {
                break;
            }
        }
    })
}

/// Anything else under `/orders/`: logged (so the tests see whether it arrived) and 404.
async fn other(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    remember(&state, &method, &uri, &headers);
    problem(StatusCode::NOT_FOUND, "not_found", "no such resource").into_response()
}

async fn requests(State(state): State<Shared>, method: Method) -> Response {
    let Ok(mut log) = state.log.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if method == Method::DELETE {
        log.clear();
        return StatusCode::NO_CONTENT.into_response();
    }
    Json(Value::Array(log.clone())).into_response()
}

fn app(state: Shared) -> Router {
    Router::new()
        .route("/orders", get(list).post(create))
        .route("/orders/events", get(events))
        .route("/orders/slow", get(slow))
        .route("/orders/ws", get(socket))
        .route("/orders/{*rest}", axum::routing::any(other))
        .route("/_requests", get(requests).delete(requests))
        .route("/health", get(|| async { "ok" }))
        .with_state(state)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let var =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let addr = var("ORDERS_API_ADDR", "127.0.0.1:4001");
    let issuers = var("ORDERS_API_ISSUERS", "http://localhost:8080/realms/demo")
        .split(',')
        .map(|s| s.trim().trim_end_matches('/').to_owned())
        .filter(|s| !s.is_empty())
        .map(|url| Issuer {
            url,
            keys: tokio::sync::Mutex::new(Keys::default()),
        })
        .collect();
    let state = Arc::new(AppState {
        issuers,
        audience: var("ORDERS_API_AUDIENCE", "orders-api"),
        trust_forwarded_token: var("ORDERS_API_TRUST_FORWARDED_TOKEN", "0") == "1",
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        orders: Mutex::new(HashMap::new()),
        log: Mutex::new(Vec::new()),
        next_id: std::sync::atomic::AtomicU64::new(1),
        proofs_seen: Mutex::new(HashMap::new()),
    });
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("orders-api listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(state)).await?;
    Ok(())
}
