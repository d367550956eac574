//! The app's own DPoP key (RFC 9449, `keycloak.dpop`): a P-256 key that Keycloak binds the app's
//! tokens to (`cnf.jkt`), so that a token taken from the store, a log or the wire is useless
//! without it. Every call that presents such a token carries a fresh proof of this key for that
//! very request: to Keycloak's token endpoint (code exchange, refresh, token exchange, client
//! credentials), to Keycloak's APIs (`AsUser`) and to upstreams (remote API routes, their
//! WebSockets). A server's `DPoP-Nonce` is kept per origin and put in the next proofs.
//!
//! The key comes from `keycloak.dpop_key_file` or `APP_KEYCLOAK_DPOP_KEY` (PEM, PKCS#8 or SEC1;
//! replicas share it), or is made at start-up for one process. What a proof says is decided in
//! `keycloak_bff_core::dpop`; this file holds the key and signs.
//!
//! Catalogue: P10 (the app's own tokens bound to its key: a stolen token alone is refused).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use keycloak_bff_core::dpop::{jwk_thumbprint, p256_jwk, signing_input, NewProof};
use reqwest::header::HeaderValue;
use reqwest::{Method, RequestBuilder};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use url::Url;

/// At most this many servers' nonces are kept.
const MAX_NONCES: usize = 64;

/// The app's DPoP key and the nonces servers asked for.
pub struct DpopKey {
    pair: EcdsaKeyPair,
    jwk: Value,
    thumbprint: String,
    random: SystemRandom,
    nonces: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopKey")
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl DpopKey {
    /// A P-256 private key in PEM: PKCS#8 (`BEGIN PRIVATE KEY`, as `openssl genpkey -algorithm EC
    /// -pkeyopt ec_paramgen_curve:P-256` writes it) or SEC1 (`BEGIN EC PRIVATE KEY`).
    pub fn from_pem(pem: &SecretString) -> Result<Self, String> {
        let text = pem.expose_secret();
        let begin = text
            .find("-----BEGIN ")
            .ok_or("not a PEM private key (no BEGIN line)")?;
        let rest = &text[begin + "-----BEGIN ".len()..];
        let label_end = rest.find("-----").ok_or("not a PEM private key")?;
        let label = &rest[..label_end];
        if !matches!(label, "PRIVATE KEY" | "EC PRIVATE KEY") {
            return Err(format!(
                "a PEM {label:?} is not an unencrypted P-256 private key (PRIVATE KEY or EC PRIVATE KEY)"
            ));
        }
        let body = &rest[label_end + 5..];
        let end = body
            .find("-----END ")
            .ok_or("the PEM key has no END line")?;
        let base64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
        let der = STANDARD
            .decode(base64)
            .map_err(|_| "the PEM key is not valid base64")?;
        let pair = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
            .map_err(|e| format!("not a P-256 private key: {e}"))?;
        Self::of(pair)
    }

    /// A new key, for this process alone.
    pub fn generate() -> Result<Self, String> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| "no random source for a DPoP key".to_owned())?;
        Self::of(pair)
    }

    fn of(pair: EcdsaKeyPair) -> Result<Self, String> {
        let jwk = p256_jwk(pair.public_key().as_ref()).ok_or("not a P-256 key")?;
        let thumbprint = jwk_thumbprint(&jwk).ok_or("not a P-256 key")?;
        Ok(Self {
            pair,
            jwk,
            thumbprint,
            random: SystemRandom::new(),
            nonces: Mutex::new(HashMap::new()),
        })
    }

    /// The RFC 7638 thumbprint of the public key: the `cnf.jkt` of the tokens bound to it.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// A fresh proof for `method url` (its query left out), with `access_token`'s hash when one
    /// is presented, and the nonce `url`'s server asked for last.
    pub fn proof(
        &self,
        method: &str,
        url: &Url,
        access_token: Option<&str>,
        now: i64,
    ) -> Result<String, String> {
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).map_err(|_| "no random source for a DPoP proof")?;
        let jti = URL_SAFE_NO_PAD.encode(jti);
        let origin = url.origin().ascii_serialization();
        let nonce = self
            .nonces
            .lock()
            .ok()
            .and_then(|n| n.get(&origin).cloned());
        let input = signing_input(
            &self.jwk,
            &NewProof {
                method,
                url: url.as_str(),
                access_token,
                nonce: nonce.as_deref(),
                jti: &jti,
                now,
            },
        );
        let signature = self
            .pair
            .sign(&self.random, input.as_bytes())
            .map_err(|_| "the DPoP proof could not be signed")?;
        Ok(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }

    /// Keeps the nonce `url`'s server gave (`DPoP-Nonce`) for the next proofs to it.
    pub fn remember_nonce(&self, url: &Url, nonce: String) {
        if let Ok(mut nonces) = self.nonces.lock() {
            if nonces.len() >= MAX_NONCES {
                nonces.clear();
            }
            nonces.insert(url.origin().ascii_serialization(), nonce);
        }
    }

    /// Keeps the nonce of an answer from `url`'s server, if it sent one (a server may rotate it
    /// on any answer).
    pub fn note_answer(&self, url: &Url, headers: &reqwest::header::HeaderMap) {
        let nonce = headers
            .get("dpop-nonce")
            .and_then(|v| v.to_str().ok())
            .and_then(keycloak_bff_core::dpop::usable_nonce);
        if let Some(nonce) = nonce {
            self.remember_nonce(url, nonce);
        }
    }
}

/// A token to call an API with, and whether Keycloak bound it to the app's DPoP key. A clone
/// shares it (a reference count): a cached token is handed to every call that uses it.
#[derive(Clone)]
pub struct CallToken(std::sync::Arc<Token>);

struct Token {
    /// The access token.
    value: SecretString,
    /// Bound (`token_type` DPoP): sent as `Authorization: DPoP` with a proof.
    bound: bool,
    /// `Authorization: Bearer …` of a token that is not bound, made at its first use.
    bearer: std::sync::OnceLock<HeaderValue>,
}

impl CallToken {
    /// `value`, bound to the app's DPoP key or not.
    pub fn new(value: SecretString, bound: bool) -> Self {
        Self(std::sync::Arc::new(Token {
            value,
            bound,
            bearer: std::sync::OnceLock::new(),
        }))
    }

    /// Whether Keycloak bound it to the app's DPoP key (sent as `Authorization: DPoP` with a
    /// proof).
    pub fn is_bound(&self) -> bool {
        self.0.bound
    }

    fn secret(&self) -> &str {
        self.0.value.expose_secret()
    }
}

impl std::fmt::Debug for CallToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallToken")
            .field("bound", &self.is_bound())
            .finish_non_exhaustive()
    }
}

/// The headers that carry `token` on a call of `method url`: `Authorization` (`Bearer`, or
/// `DPoP` for a bound token, marked sensitive so that no debug output shows it) and, for a bound
/// token, a fresh `DPoP` proof of `key` for this request.
pub fn token_headers(
    key: Option<&DpopKey>,
    token: &CallToken,
    method: &Method,
    url: &Url,
    now: i64,
) -> Result<(HeaderValue, Option<HeaderValue>), String> {
    let value = token.secret();
    let proof = match (token.is_bound(), key) {
        (false, _) => return Ok((bearer(token)?, None)),
        (true, Some(key)) => key.proof(method.as_str(), url, Some(value), now)?,
        (true, None) => return Err("a DPoP-bound token without the app's DPoP key".into()),
    };
    let mut authorization = HeaderValue::from_str(&format!("DPoP {value}"))
        .map_err(|_| "the token cannot be sent in a header".to_owned())?;
    authorization.set_sensitive(true);
    let proof = HeaderValue::from_str(&proof)
        .map_err(|_| "the DPoP proof cannot be sent in a header".to_owned())?;
    Ok((authorization, Some(proof)))
}

/// `Authorization: Bearer <token>` for a token that is not bound (marked sensitive, so that no
/// debug output shows it), made once per token: a clone shares its bytes.
pub fn bearer(token: &CallToken) -> Result<HeaderValue, String> {
    if let Some(made) = token.0.bearer.get() {
        return Ok(made.clone());
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.secret()))
        .map_err(|_| "the token cannot be sent in a header".to_owned())?;
    value.set_sensitive(true);
    Ok(token.0.bearer.get_or_init(|| value).clone())
}

/// `request` (`method url`) with `token`: the headers of [`token_headers`].
pub fn with_token(
    request: RequestBuilder,
    key: Option<&DpopKey>,
    token: &CallToken,
    method: &Method,
    url: &Url,
    now: i64,
) -> Result<RequestBuilder, String> {
    let (authorization, proof) = token_headers(key, token, method, url, now)?;
    let request = request.header(reqwest::header::AUTHORIZATION, authorization);
    Ok(match proof {
        Some(proof) => request.header("DPoP", proof),
        None => request,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keycloak_bff_core::dpop::{check_claims, check_header, decode, ProofFor};

    #[test]
    fn a_bearer_header_is_made_once_per_token_shared_by_its_clones_and_marked_sensitive() {
        let token = CallToken::new(SecretString::from("tok"), false);
        let first = bearer(&token).expect("header");
        let again = bearer(&token.clone()).expect("header");
        assert_eq!(first, "Bearer tok");
        assert!(first.is_sensitive());
        assert_eq!(
            first.as_bytes().as_ptr(),
            again.as_bytes().as_ptr(),
            "the same bytes, not a copy made again"
        );
        let other = bearer(&CallToken::new(SecretString::from("tok"), false)).expect("header");
        assert_ne!(first.as_bytes().as_ptr(), other.as_bytes().as_ptr());
    }

    #[test]
    fn a_proof_is_signed_by_the_key_its_header_names_and_says_the_request() {
        let key = DpopKey::generate().expect("key");
        let url = Url::parse("https://kc.example/realms/r/token?q=1").expect("url");
        let proof = key.proof("POST", &url, Some("tok"), 1_000).expect("proof");
        let (header, claims) = decode(&proof).expect("decodes");
        let jwk = check_header(&header).expect("header");
        assert_eq!(jwk_thumbprint(jwk).as_deref(), Some(key.thumbprint()));
        let expected = ProofFor {
            method: "POST",
            url: "https://kc.example/realms/r/token",
            access_token: "tok",
            now: 1_000,
        };
        assert!(check_claims(&claims, &expected).is_ok());
        // The signature verifies with the public key of the header.
        let (input, signature) = proof.rsplit_once('.').expect("three parts");
        let point = [
            &[4u8][..],
            &URL_SAFE_NO_PAD
                .decode(jwk["x"].as_str().unwrap_or_default())
                .unwrap_or_default(),
            &URL_SAFE_NO_PAD
                .decode(jwk["y"].as_str().unwrap_or_default())
                .unwrap_or_default(),
        ]
        .concat();
        let public = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
            point,
        );
        let signature = URL_SAFE_NO_PAD.decode(signature).expect("base64");
        assert!(public.verify(input.as_bytes(), &signature).is_ok());
        // Two proofs never share a jti.
        let again = key.proof("POST", &url, Some("tok"), 1_000).expect("proof");
        let (_, again) = decode(&again).expect("decodes");
        assert_ne!(claims["jti"], again["jti"]);
    }

    #[test]
    fn the_nonce_a_server_asked_for_goes_into_the_next_proofs_to_it_only() {
        let key = DpopKey::generate().expect("key");
        let kc = Url::parse("https://kc.example/token").expect("url");
        let api = Url::parse("https://api.example/orders").expect("url");
        key.remember_nonce(&kc, "n-1".into());
        let nonce = |url: &Url| {
            let proof = key.proof("GET", url, None, 1).expect("proof");
            decode(&proof).expect("decodes").1.get("nonce").cloned()
        };
        assert_eq!(nonce(&kc), Some(Value::from("n-1")));
        assert_eq!(nonce(&api), None);
    }

    #[test]
    fn keys_are_read_from_pkcs8_and_sec1_pem_and_anything_else_is_refused_with_a_reason() {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .expect("pkcs8");
        let pem = |label: &str, der: &[u8]| {
            SecretString::from(format!(
                "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
                STANDARD.encode(der)
            ))
        };
        let key = DpopKey::from_pem(&pem("PRIVATE KEY", pkcs8.as_ref())).expect("PKCS#8");
        let same = DpopKey::from_pem(&pem("PRIVATE KEY", pkcs8.as_ref())).expect("PKCS#8");
        assert_eq!(
            key.thumbprint(),
            same.thumbprint(),
            "one key, one thumbprint"
        );
        // The same key as SEC1 (`openssl ecparam -genkey` writes that).
        use aws_lc_rs::encoding::AsDer;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .expect("pair");
        let sec1 = pair.private_key().as_der().expect("SEC1");
        let from_sec1 = DpopKey::from_pem(&pem("EC PRIVATE KEY", sec1.as_ref())).expect("SEC1");
        assert_eq!(from_sec1.thumbprint(), key.thumbprint());
        for (bad, why) in [
            (SecretString::from("secret".to_owned()), "BEGIN"),
            (pem("ENCRYPTED PRIVATE KEY", pkcs8.as_ref()), "unencrypted"),
            (pem("PRIVATE KEY", b"not a key"), "P-256"),
        ] {
            let said = DpopKey::from_pem(&bad).map(|_| ()).expect_err("refused");
            assert!(said.contains(why), "{said}");
            assert!(
                !said.contains(&STANDARD.encode(pkcs8.as_ref())),
                "no key in the message"
            );
        }
    }
}
