//! A hostile OpenID provider for the tests: discovery, key set, authorization redirect, token
//! endpoint (code with PKCE, refresh) and userinfo, served on loopback, signing with a key pair of
//! the tests, and misbehaving in exactly the way a test asks. Keycloak never issues a bad token;
//! this does, so the app's real validation code can be shown to refuse each kind.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use sha2::Digest;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const CLIENT_ID: &str = "demo-app";
/// A client secret with `:` and `%`, which must be form-urlencoded before HTTP Basic (D07).
pub const CLIENT_SECRET: &str = "s3cr:et%25va lue";
pub const SUBJECT: &str = "hostile-user-1";

/// How the ID token's JOSE header and signature are made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Signing {
    /// RS256 with the provider's key and its `kid`.
    #[default]
    Normal,
    /// Signed by another key, but claiming the provider's `kid` (a bad signature).
    OtherKeySameKid,
    /// No `kid` in the header.
    NoKid,
    /// `alg: none`, no signature.
    AlgNone,
    /// HS256 with the client secret as the key.
    Hs256WithClientSecret,
    /// PS256 with the provider's own key and `kid`: a good signature in an algorithm that the
    /// settings do not list.
    Ps256,
}

/// What the provider does wrong; the default is a well-behaved provider.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Merged into the ID token's claims (`null` removes a claim).
    pub id_claims: Value,
    /// Merged into the access token's claims.
    pub access_claims: Value,
    pub id_signing: Signing,
    pub omit_id_token: bool,
    pub token_type: Option<String>,
    pub omit_expires_in: bool,
    /// The `iss` sent back with the authorization code; `None`: the right one.
    pub callback_iss: Option<String>,
    /// Send no `iss` with the authorization code, while discovery says it is sent (RFC 9207).
    pub omit_callback_iss: bool,
    /// A provider without RFC 9207: discovery does not advertise `iss`, and none is sent.
    pub no_iss_support: bool,
    /// Answer discovery with this status (and no document).
    pub discovery_status: Option<u16>,
    /// Pad the discovery document to a megabyte.
    pub discovery_huge: bool,
    /// Publish a second signing key in the key set.
    pub two_keys: bool,
    /// Seconds the key set takes to answer.
    pub jwks_delay_secs: u64,
    /// Answer the key set with a huge body.
    pub jwks_huge: bool,
    /// Answer the token endpoint with this status (and no tokens).
    pub token_status: Option<u16>,
    /// Answer the token endpoint with this body instead of tokens (malformed or huge).
    pub token_body: Option<String>,
    /// Answer the key set with this status.
    pub jwks_status: Option<u16>,
    /// Rotate keys just before signing: sign with the second key, now published in the key set.
    pub rotate_key: bool,
    /// With `rotate_key`: the key set does not list the new key yet.
    pub jwks_lags_rotation: bool,
    /// Answer the key set with `{"keys": []}`.
    pub jwks_empty: bool,
    /// The key set no longer lists the first key (withdrawn), only the second.
    pub withdraw_first_key: bool,
    /// Publish the keys without their `alg`.
    pub jwks_without_alg: bool,
    /// Answer the end-session endpoint with this status.
    pub logout_status: Option<u16>,
}

struct Pending {
    nonce: String,
    challenge: String,
}

#[derive(Default)]
struct Inner {
    behaviour: Behaviour,
    codes: HashMap<String, Pending>,
    /// The only refresh token accepted (rotation with reuse 0, like the realm's setting).
    valid_refresh: Option<String>,
    /// (Authorization header, form) of every token request.
    token_calls: Vec<(Option<String>, HashMap<String, String>)>,
    jwks_calls: u32,
    discovery_calls: u32,
    userinfo_calls: u32,
    /// (Authorization header, form) of every back-channel call to the end-session endpoint.
    logout_calls: Vec<(Option<String>, HashMap<String, String>)>,
    /// The `prompt` of every authorization request (`None`: none sent).
    prompts: Vec<Option<String>>,
    counter: u64,
}

#[derive(Clone)]
pub struct HostileOp {
    /// The `iss` of its tokens and discovery: its own address, or the public issuer it stands
    /// behind ([`HostileOp::start_behind`]).
    pub issuer: String,
    /// Where it really listens.
    pub address: String,
    inner: Arc<Mutex<Inner>>,
}

fn merge(base: &mut Value, patch: &Value) {
    if let (Some(b), Some(p)) = (base.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            if v.is_null() {
                b.remove(k);
            } else {
                b.insert(k.clone(), v.clone());
            }
        }
    }
}

fn key(der: &[u8]) -> jsonwebtoken::EncodingKey {
    jsonwebtoken::EncodingKey::from_rsa_der(der)
}

fn now() -> i64 {
    keycloak_bff::server::unix_now()
}

impl HostileOp {
    pub async fn start() -> Self {
        Self::start_behind(None).await
    }

    /// A provider whose public issuer (`iss`, every URL in its discovery document) is `public`,
    /// while it listens on a loopback address of its own: Keycloak behind a private address.
    pub async fn start_behind(public: Option<&str>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let address = format!("http://127.0.0.1:{port}");
        let op = HostileOp {
            issuer: public.map_or_else(|| address.clone(), str::to_owned),
            address,
            inner: Arc::default(),
        };
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/userinfo", get(userinfo))
            .route("/logout", get(|| async { "signed out" }).post(end_session))
            .with_state(op.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        op
    }

    pub fn set(&self, behaviour: Behaviour) {
        self.inner.lock().unwrap().behaviour = behaviour;
    }

    pub fn discovery_calls(&self) -> u32 {
        self.inner.lock().unwrap().discovery_calls
    }

    pub fn token_calls(&self) -> usize {
        self.inner.lock().unwrap().token_calls.len()
    }

    pub fn last_basic_auth(&self) -> Option<String> {
        self.inner
            .lock()
            .unwrap()
            .token_calls
            .last()
            .and_then(|c| c.0.clone())
    }

    pub fn jwks_calls(&self) -> u32 {
        self.inner.lock().unwrap().jwks_calls
    }

    /// The forms the app posted to the end-session endpoint, with their Authorization header.
    pub fn logout_calls(&self) -> Vec<(Option<String>, HashMap<String, String>)> {
        self.inner.lock().unwrap().logout_calls.clone()
    }

    /// The refresh token the provider accepts now (the latest it issued).
    pub fn valid_refresh_token(&self) -> Option<String> {
        self.inner.lock().unwrap().valid_refresh.clone()
    }

    /// The `prompt` parameter of each authorization request so far.
    pub fn prompts(&self) -> Vec<Option<String>> {
        self.inner.lock().unwrap().prompts.clone()
    }

    pub fn userinfo_calls(&self) -> u32 {
        self.inner.lock().unwrap().userinfo_calls
    }

    /// An access token for this app, as the token endpoint would answer it now (signed as the
    /// behaviour says).
    pub fn access_token(&self) -> String {
        let tokens = self.tokens(None).expect("tokens");
        tokens["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// The token response, or the failing status the test asked for.
    fn tokens(&self, nonce: Option<&str>) -> Result<Value, StatusCode> {
        let b = self.inner.lock().unwrap().behaviour.clone();
        if let Some(status) = b.token_status {
            return Err(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
        }
        let t = now();
        let mut access = json!({"iss": self.issuer, "sub": SUBJECT, "aud": [CLIENT_ID], "azp": CLIENT_ID,
            "typ": "Bearer", "exp": t + 300, "iat": t, "sid": "op-session-1",
            "preferred_username": "mallory", "name": "Hostile User",
            "realm_access": {"roles": ["user"]}, "resource_access": {CLIENT_ID: {"roles": ["viewer"]}}});
        merge(&mut access, &b.access_claims);
        let (kid, signer): (&str, &[u8]) = if b.rotate_key {
            (
                "other-1",
                include_bytes!("../fixtures/other-signer.key.der"),
            )
        } else {
            (
                "hostile-1",
                include_bytes!("../fixtures/hostile-signer.key.der"),
            )
        };
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = Some(kid.into());
        let access_token = jsonwebtoken::encode(&h, &access, &key(signer)).expect("sign");
        let mut id = json!({"iss": self.issuer, "sub": SUBJECT, "aud": CLIENT_ID, "azp": CLIENT_ID, "typ": "ID",
            "exp": t + 300, "iat": t, "sid": "op-session-1", "name": "Hostile User",
            "preferred_username": "mallory"});
        if let Some(n) = nonce {
            id["nonce"] = json!(n);
        }
        let digest = sha2::Sha256::digest(access_token.as_bytes());
        id["at_hash"] = json!(URL_SAFE_NO_PAD.encode(&digest[..16]));
        merge(&mut id, &b.id_claims);
        let id_token = match b.id_signing {
            Signing::Ps256 => {
                let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::PS256);
                h.kid = Some(kid.into());
                jsonwebtoken::encode(&h, &id, &key(signer)).expect("sign")
            }
            Signing::Normal | Signing::NoKid | Signing::OtherKeySameKid => {
                let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
                h.kid = (b.id_signing != Signing::NoKid).then(|| kid.into());
                let der: &[u8] = if b.id_signing == Signing::OtherKeySameKid {
                    include_bytes!("../fixtures/other-signer.key.der")
                } else {
                    signer
                };
                jsonwebtoken::encode(&h, &id, &key(der)).expect("sign")
            }
            Signing::AlgNone => format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": "hostile-1"}).to_string()),
                URL_SAFE_NO_PAD.encode(id.to_string())
            ),
            Signing::Hs256WithClientSecret => {
                let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
                h.kid = Some("hostile-1".into());
                jsonwebtoken::encode(
                    &h,
                    &id,
                    &jsonwebtoken::EncodingKey::from_secret(CLIENT_SECRET.as_bytes()),
                )
                .expect("sign")
            }
        };
        let refresh_token = {
            let mut inner = self.inner.lock().unwrap();
            inner.counter += 1;
            let rt = format!("rt-{t}-{}", inner.counter);
            inner.valid_refresh = Some(rt.clone());
            rt
        };
        let mut body = json!({"access_token": access_token, "token_type": b.token_type.as_deref().unwrap_or("Bearer"),
            "expires_in": 300, "refresh_token": refresh_token, "refresh_expires_in": 1800, "id_token": id_token});
        if b.omit_id_token {
            body.as_object_mut().unwrap().remove("id_token");
        }
        if b.omit_expires_in {
            body.as_object_mut().unwrap().remove("expires_in");
        }
        Ok(body)
    }
}

async fn discovery(State(op): State<HostileOp>) -> Response {
    let i = &op.issuer;
    let b = {
        let mut inner = op.inner.lock().unwrap();
        inner.discovery_calls += 1;
        inner.behaviour.clone()
    };
    if let Some(status) = b.discovery_status {
        return StatusCode::from_u16(status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response();
    }
    let iss_supported = !b.no_iss_support;
    let mut doc = json!({
        "issuer": i, "authorization_endpoint": format!("{i}/authorize"), "token_endpoint": format!("{i}/token"),
        "jwks_uri": format!("{i}/jwks"), "userinfo_endpoint": format!("{i}/userinfo"),
        "end_session_endpoint": format!("{i}/logout"), "response_types_supported": ["code"],
        "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
        "authorization_response_iss_parameter_supported": iss_supported
    });
    if b.discovery_huge {
        doc["padding"] = json!("x".repeat(1024 * 1024));
    }
    Json(doc).into_response()
}

async fn jwks(State(op): State<HostileOp>) -> Response {
    let b = {
        let mut inner = op.inner.lock().unwrap();
        inner.jwks_calls += 1;
        inner.behaviour.clone()
    };
    if b.jwks_delay_secs > 0 {
        tokio::time::sleep(std::time::Duration::from_secs(b.jwks_delay_secs)).await;
    }
    if let Some(status) = b.jwks_status {
        return StatusCode::from_u16(status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response();
    }
    if b.jwks_huge {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            " ".repeat(4 * 1024 * 1024),
        )
            .into_response();
    }
    if b.jwks_empty {
        return Json(json!({ "keys": [] })).into_response();
    }
    let mut keys =
        vec![
            serde_json::from_str::<Value>(include_str!("../fixtures/hostile-signer.jwk.json"))
                .unwrap(),
        ];
    if b.withdraw_first_key {
        keys.clear();
    }
    if b.two_keys || (b.rotate_key && !b.jwks_lags_rotation) {
        keys.push(
            serde_json::from_str::<Value>(include_str!("../fixtures/other-signer.jwk.json"))
                .unwrap(),
        );
    }
    if b.jwks_without_alg {
        for k in &mut keys {
            k.as_object_mut().unwrap().remove("alg");
        }
    }
    Json(json!({ "keys": keys })).into_response()
}

async fn authorize(
    State(op): State<HostileOp>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut inner = op.inner.lock().unwrap();
    inner.counter += 1;
    inner.prompts.push(q.get("prompt").cloned());
    let code = format!("code-{}", inner.counter);
    inner.codes.insert(
        code.clone(),
        Pending {
            nonce: q.get("nonce").cloned().unwrap_or_default(),
            challenge: q.get("code_challenge").cloned().unwrap_or_default(),
        },
    );
    let iss = inner
        .behaviour
        .callback_iss
        .clone()
        .unwrap_or_else(|| op.issuer.clone());
    let mut to = url::Url::parse(
        q.get("redirect_uri")
            .map(String::as_str)
            .unwrap_or("http://invalid/"),
    )
    .expect("redirect_uri");
    to.query_pairs_mut().append_pair("code", &code).append_pair(
        "state",
        q.get("state").map(String::as_str).unwrap_or_default(),
    );
    if !(inner.behaviour.omit_callback_iss || inner.behaviour.no_iss_support) {
        to.query_pairs_mut().append_pair("iss", &iss);
    }
    Redirect::to(to.as_str()).into_response()
}

/// The Authorization header and the form of a call by the app.
fn client_call(headers: &HeaderMap, body: &str) -> (Option<String>, HashMap<String, String>) {
    let form = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (auth, form)
}

fn form_encoded(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn token(State(op): State<HostileOp>, headers: HeaderMap, body: String) -> Response {
    let (auth, form) = client_call(&headers, &body);
    op.inner
        .lock()
        .unwrap()
        .token_calls
        .push((auth.clone(), form.clone()));
    // RFC 6749 §2.3.1: client id and secret are form-urlencoded, then joined with ':' for Basic.
    let expected = format!(
        "Basic {}",
        STANDARD.encode(format!(
            "{}:{}",
            form_encoded(CLIENT_ID),
            form_encoded(CLIENT_SECRET)
        ))
    );
    if auth.as_deref() != Some(expected.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let grant = form.get("grant_type").map(String::as_str);
    let nonce = match grant {
        Some("authorization_code") => {
            let pending = op
                .inner
                .lock()
                .unwrap()
                .codes
                .remove(form.get("code").map(String::as_str).unwrap_or_default());
            let Some(p) = pending else {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": "invalid_grant"})),
                )
                    .into_response();
            };
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            if URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes())) != p.challenge {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": "invalid_grant", "error_description": "PKCE"})),
                )
                    .into_response();
            }
            Some(p.nonce)
        }
        Some("refresh_token") => {
            let valid = op.inner.lock().unwrap().valid_refresh.clone();
            if valid.is_none() || form.get("refresh_token") != valid.as_ref() {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": "invalid_grant", "error_description": "Stale token"})),
                )
                    .into_response();
            }
            None
        }
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "unsupported_grant_type"})),
            )
                .into_response()
        }
    };
    if let Some(body) = op.inner.lock().unwrap().behaviour.token_body.clone() {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
    }
    match op.tokens(nonce.as_deref()) {
        Ok(body) => Json(body).into_response(),
        Err(status) => (status, Json(json!({"error": "server_error"}))).into_response(),
    }
}

/// Keycloak's logout endpoint called by the app itself: the refresh token in a form, the client
/// authenticated. Answers 204 like Keycloak, or the status the test asked for.
async fn end_session(State(op): State<HostileOp>, headers: HeaderMap, body: String) -> Response {
    let (auth, form) = client_call(&headers, &body);
    let mut inner = op.inner.lock().unwrap();
    inner.logout_calls.push((auth, form));
    match inner.behaviour.logout_status {
        Some(status) => StatusCode::from_u16(status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
        None => {
            inner.valid_refresh = None;
            StatusCode::NO_CONTENT.into_response()
        }
    }
}

async fn userinfo(State(op): State<HostileOp>) -> Json<Value> {
    op.inner.lock().unwrap().userinfo_calls += 1;
    Json(json!({"sub": "somebody-else", "name": "Not The User"}))
}
