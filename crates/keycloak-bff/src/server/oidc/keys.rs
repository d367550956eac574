//! Keycloak's signing keys, cached by `kid`, and JWT signature verification.
//!
//! Keys come only from the configured issuer's key set (never from a token header). An unknown
//! `kid` triggers one refetch; refetches are single-flight and at most one per
//! `MIN_REFETCH_INTERVAL`, so a flood of random `kid`s cannot hammer Keycloak. Tokens that came
//! straight from Keycloak's token endpoint ([`Source::TokenEndpoint`]) are not held back by that
//! window (a stranger's random `kid`s must not make a refresh fail), only by
//! `MIN_TRUSTED_REFETCH_INTERVAL`. When Keycloak is down, or answers a key set without a usable
//! key, the last good keys stay in use (catalogue C02, C05).

use crate::server::base::http_client::read_limited;
use crate::server::base::metrics::Counter;
use aws_lc_rs::signature::{self as lc, ParsedPublicKey, RsaParameters, RsaPublicKeyComponents};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use keycloak_bff_core::jwt::{self, Header, TokenError};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use url::Url;

const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(10);
const MIN_TRUSTED_REFETCH_INTERVAL: Duration = Duration::from_secs(1);

/// Where a token to verify came from: it decides how eagerly an unknown `kid` refetches the keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Anyone could have sent it (a bearer token, a logout token).
    Untrusted,
    /// Keycloak's token endpoint answered it to this server, over the authenticated channel.
    TokenEndpoint,
}
const MAX_JWKS_BYTES: usize = 256 * 1024;
const MAX_KEYS: usize = 64;

#[derive(Clone)]
struct SigningKey {
    key: Arc<DecodingKey>,
    alg: Option<String>,
    /// For an RSA key: the key parsed once for each RSA algorithm, so that a check does not
    /// rebuild it from `n` and `e` (a third of the cost of a check).
    rsa: Option<Arc<ParsedRsa>>,
}

/// The RSA algorithms a key may be used with, as aws-lc names their verification.
const RSA_ALGORITHMS: [(&str, &RsaParameters); 6] = [
    ("RS256", &lc::RSA_PKCS1_2048_8192_SHA256),
    ("RS384", &lc::RSA_PKCS1_2048_8192_SHA384),
    ("RS512", &lc::RSA_PKCS1_2048_8192_SHA512),
    ("PS256", &lc::RSA_PSS_2048_8192_SHA256),
    ("PS384", &lc::RSA_PSS_2048_8192_SHA384),
    ("PS512", &lc::RSA_PSS_2048_8192_SHA512),
];

struct ParsedRsa(Vec<(&'static str, ParsedPublicKey)>);

impl ParsedRsa {
    /// The key of an RSA JWK (`kty` RSA, `n`, `e` in base64url), parsed for every RSA algorithm;
    /// `None` for other keys (they go through `jsonwebtoken`).
    fn from_jwk(raw: &Value) -> Option<Self> {
        if raw.get("kty").and_then(Value::as_str) != Some("RSA") {
            return None;
        }
        let component = |name: &str| {
            let bytes = URL_SAFE_NO_PAD.decode(raw.get(name)?.as_str()?).ok()?;
            let start = bytes.iter().position(|b| *b != 0)?;
            Some(bytes[start..].to_vec())
        };
        let (n, e) = (component("n")?, component("e")?);
        let components = RsaPublicKeyComponents { n: &n, e: &e };
        let parsed: Vec<_> = RSA_ALGORITHMS
            .iter()
            .filter_map(|(alg, params)| Some((*alg, components.to_parsed_public_key(params).ok()?)))
            .collect();
        (!parsed.is_empty()).then_some(ParsedRsa(parsed))
    }

    fn get(&self, alg: &str) -> Option<&ParsedPublicKey> {
        self.0.iter().find(|(a, _)| *a == alg).map(|(_, k)| k)
    }
}

/// Checks the signature of `token` (already shaped by [`jwt::parse_header`]: three non-empty
/// parts) with a parsed RSA key, and decodes its claims.
fn verify_rsa(token: &str, key: &ParsedPublicKey) -> Result<Value, TokenError> {
    let (signed, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed)?;
    key.verify_sig(signed.as_bytes(), &signature)
        .map_err(|_| TokenError::BadSignature)?;
    jwt::unverified_claims(token).ok_or(TokenError::Malformed)
}

#[derive(Default)]
struct Cached {
    by_kid: HashMap<String, SigningKey>,
    without_kid: Vec<SigningKey>,
    last_attempt: Option<Instant>,
}

pub struct KeyCache {
    http: reqwest::Client,
    fetch_counter: Counter,
    cached: RwLock<Cached>,
    refetch: tokio::sync::Mutex<()>,
}

impl KeyCache {
    pub fn new(http: reqwest::Client, fetch_counter: Counter) -> Self {
        Self {
            http,
            fetch_counter,
            cached: RwLock::new(Cached::default()),
            refetch: tokio::sync::Mutex::new(()),
        }
    }

    /// How many times the key set was fetched (successfully or not) since start.
    pub fn fetch_count(&self) -> u64 {
        self.fetch_counter.get()
    }

    fn find(&self, header: &Header) -> Option<SigningKey> {
        let cached = self.cached.read().ok()?;
        let candidate = match &header.kid {
            Some(kid) => cached.by_kid.get(kid).cloned(),
            None => {
                // No kid: acceptable only when exactly one signing key could have made it.
                let mut all = cached
                    .by_kid
                    .values()
                    .chain(cached.without_kid.iter())
                    .filter(|k| k.alg.as_deref().is_none_or(|a| a == header.alg));
                match (all.next(), all.next()) {
                    (Some(only), None) => Some(only.clone()),
                    _ => None,
                }
            }
        }?;
        match &candidate.alg {
            Some(alg) if *alg != header.alg => None,
            _ => Some(candidate),
        }
    }

    /// Verifies the signature of `token` with the issuer's keys and returns its header and claims.
    /// Claims are not checked here; see [`jwt::check_claims`].
    pub async fn verify(
        &self,
        jwks_uri: &Url,
        token: &str,
        allowed_algs: &[String],
        source: Source,
    ) -> Result<(Header, Value), TokenError> {
        let header = jwt::parse_header(token, allowed_algs)?;
        let key = match self.find(&header) {
            Some(k) => k,
            None => {
                let interval = match source {
                    Source::Untrusted => MIN_REFETCH_INTERVAL,
                    Source::TokenEndpoint => MIN_TRUSTED_REFETCH_INTERVAL,
                };
                self.refetch_within(jwks_uri, interval).await;
                self.find(&header).ok_or(match header.kid {
                    Some(_) => TokenError::UnknownKey,
                    None => TokenError::AmbiguousKey,
                })?
            }
        };
        if let Some(parsed) = key.rsa.as_ref().and_then(|rsa| rsa.get(&header.alg)) {
            return verify_rsa(token, parsed).map(|claims| (header, claims));
        }
        let alg = Algorithm::from_str(&header.alg)
            .map_err(|_| TokenError::AlgorithmNotAllowed(header.alg.clone()))?;
        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::new();
        jsonwebtoken::decode::<Value>(token, &key.key, &validation)
            .map(|data| (header, data.claims))
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
                _ => TokenError::Malformed,
            })
    }

    /// Fetches the key set again unless another request just did, or one was tried within
    /// `MIN_REFETCH_INTERVAL`. Failures keep the keys already cached.
    #[cfg_attr(not(any(test, feature = "test-support")), allow(dead_code))] // tests only
    pub async fn refetch(&self, jwks_uri: &Url) {
        self.refetch_within(jwks_uri, MIN_REFETCH_INTERVAL).await
    }

    async fn refetch_within(&self, jwks_uri: &Url, interval: Duration) {
        let waited_since = Instant::now();
        let _single_flight = self.refetch.lock().await;
        {
            let Ok(cached) = self.cached.read() else {
                return;
            };
            if let Some(last) = cached.last_attempt {
                if last >= waited_since || last.elapsed() < interval {
                    return;
                }
            }
        }
        if let Ok(mut cached) = self.cached.write() {
            cached.last_attempt = Some(Instant::now());
        }
        self.fetch_counter.inc();
        match self.fetch(jwks_uri).await {
            Ok((by_kid, without_kid)) => {
                if let Ok(mut cached) = self.cached.write() {
                    tracing::info!(
                        keys = by_kid.len() + without_kid.len(),
                        "fetched the key set"
                    );
                    cached.by_kid = by_kid;
                    cached.without_kid = without_kid;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not use the key set; keeping cached keys")
            }
        }
    }

    #[allow(clippy::type_complexity)]
    async fn fetch(
        &self,
        jwks_uri: &Url,
    ) -> Result<(HashMap<String, SigningKey>, Vec<SigningKey>), String> {
        let response = self
            .http
            .get(jwks_uri.clone())
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let body = read_limited(response, MAX_JWKS_BYTES).await?;
        let set: Value = serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))?;
        let keys = set
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("no keys array")?;
        let mut by_kid = HashMap::new();
        let mut without_kid = Vec::new();
        for raw in keys.iter().take(MAX_KEYS) {
            if raw
                .get("use")
                .and_then(Value::as_str)
                .is_some_and(|u| u != "sig")
            {
                continue;
            }
            let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
                continue;
            };
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            let entry = SigningKey {
                key: Arc::new(key),
                alg: raw.get("alg").and_then(Value::as_str).map(str::to_owned),
                rsa: ParsedRsa::from_jwk(raw).map(Arc::new),
            };
            match raw.get("kid").and_then(Value::as_str) {
                Some(kid) => {
                    by_kid.insert(kid.to_owned(), entry);
                }
                None => without_kid.push(entry),
            }
        }
        if by_kid.is_empty() && without_kid.is_empty() {
            return Err("the key set has no usable signing key".into());
        }
        Ok((by_kid, without_kid))
    }
}
