//! DPoP (RFC 9449), both ways, without the cryptography (the server signs and verifies).
//!
//! Checking: a DPoP-bound access token (`cnf.jkt`) is only accepted with a proof made for this
//! request (method, URL, the token's hash, a fresh `iat`) by the key the token is bound to; the
//! signature itself is verified with the proof's own `jwk` by the server
//! (`server/web/extract.rs`), and a `jti` already seen is refused there.
//!
//! Making: the app's own proofs (to Keycloak's token endpoint, to upstreams and Keycloak's APIs
//! with the session's bound token): what a proof says ([`signing_input`]), the public JWK of a
//! P-256 key ([`p256_jwk`]), the nonce a server asks for ([`nonce_asked`]), and when a session's
//! token cannot be used with the app's key ([`binding_is_stale`]). Pure: time is a parameter.
//!
//! Catalogue: P09 (a stolen bound token alone, a replayed proof, a proof for another request or
//! made by another key), P10 (the app's own tokens bound to its key).

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Larger proofs are refused before any parsing.
pub const MAX_PROOF_BYTES: usize = 8 * 1024;
/// How far a proof's `iat` may be from now, seconds (either way).
pub const PROOF_WINDOW_SECS: i64 = 60;
/// The longest `jti` accepted.
const MAX_JTI: usize = 256;

/// Why a DPoP proof was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    /// Not a JWS of three base64url parts of JSON, or too large.
    #[error("the DPoP proof is malformed")]
    Malformed,
    /// `typ` is not `dpop+jwt`.
    #[error("the DPoP proof's typ is not dpop+jwt")]
    WrongType,
    /// An algorithm outside the asymmetric ones allowed.
    #[error("the DPoP proof's algorithm is not allowed")]
    Algorithm,
    /// No public `jwk` in the header, or one with private parts.
    #[error("the DPoP proof's key is missing or not a public key")]
    Key,
    /// `htm` is not the request's method.
    #[error("the DPoP proof is for another method")]
    Method,
    /// `htu` is not the request's URL.
    #[error("the DPoP proof is for another URL")]
    Url,
    /// `iat` missing or outside the window.
    #[error("the DPoP proof is too old or from the future")]
    Time,
    /// `ath` is not the hash of the access token presented with it.
    #[error("the DPoP proof is for another access token")]
    TokenHash,
    /// No `jti`, or an odd one.
    #[error("the DPoP proof has no usable jti")]
    Jti,
    /// The token is bound to another key than the proof's.
    #[error("the access token is bound to another key")]
    Binding,
}

fn part(text: &str) -> Result<Value, DpopError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| DpopError::Malformed)?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| DpopError::Malformed)?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(DpopError::Malformed)
    }
}

/// The proof's header and claims, decoded (not verified).
pub fn decode(proof: &str) -> Result<(Value, Value), DpopError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(DpopError::Malformed);
    }
    let mut parts = proof.split('.');
    let (Some(header), Some(claims), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DpopError::Malformed);
    };
    Ok((part(header)?, part(claims)?))
}

/// The header's checks (RFC 9449 §4.3): `typ` `dpop+jwt`, an asymmetric algorithm, and a public
/// key. Returns the `jwk`.
pub fn check_header(header: &Value) -> Result<&Value, DpopError> {
    if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(DpopError::WrongType);
    }
    const ALLOWED: &[&str] = &["ES256", "ES384", "RS256", "PS256", "EdDSA"];
    match header.get("alg").and_then(Value::as_str) {
        Some(alg) if ALLOWED.contains(&alg) => {}
        _ => return Err(DpopError::Algorithm),
    }
    let jwk = header
        .get("jwk")
        .filter(|j| j.is_object())
        .ok_or(DpopError::Key)?;
    // A private key in the header (`d`, or RSA's primes) is refused.
    if ["d", "p", "q", "dp", "dq", "qi"]
        .iter()
        .any(|k| jwk.get(k).is_some())
    {
        return Err(DpopError::Key);
    }
    jwk_thumbprint(jwk).ok_or(DpopError::Key)?;
    Ok(jwk)
}

/// What a proof must say of the request it comes with.
#[derive(Debug, Clone, Copy)]
pub struct ProofFor<'a> {
    /// The request's method.
    pub method: &'a str,
    /// The request's URL without query or fragment, as the app's public URL gives it.
    pub url: &'a str,
    /// The access token presented with it.
    pub access_token: &'a str,
    /// Now, Unix seconds.
    pub now: i64,
}

/// The claims' checks (RFC 9449 §4.3): `htm`, `htu`, `iat` within [`PROOF_WINDOW_SECS`], `ath`,
/// and a `jti`, which is returned so that the caller refuses it a second time.
pub fn check_claims(claims: &Value, e: &ProofFor<'_>) -> Result<String, DpopError> {
    if claims.get("htm").and_then(Value::as_str) != Some(e.method) {
        return Err(DpopError::Method);
    }
    let htu = claims
        .get("htu")
        .and_then(Value::as_str)
        .ok_or(DpopError::Url)?;
    let htu = htu.split(['?', '#']).next().unwrap_or_default();
    if htu != e.url {
        return Err(DpopError::Url);
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or(DpopError::Time)?;
    if (e.now - iat).abs() > PROOF_WINDOW_SECS {
        return Err(DpopError::Time);
    }
    if claims.get("ath").and_then(Value::as_str) != Some(access_token_hash(e.access_token).as_str())
    {
        return Err(DpopError::TokenHash);
    }
    match claims.get("jti").and_then(Value::as_str) {
        Some(jti) if !jti.is_empty() && jti.len() <= MAX_JTI => Ok(jti.to_owned()),
        _ => Err(DpopError::Jti),
    }
}

/// `ath`: the base64url SHA-256 of the access token.
pub fn access_token_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// The RFC 7638 thumbprint of a public JWK (EC, RSA or OKP): the base64url SHA-256 of its
/// required members in lexicographic order. `None` for another key type or missing members.
pub fn jwk_thumbprint(jwk: &Value) -> Option<String> {
    let member = |k: &str| jwk.get(k).and_then(Value::as_str);
    let canonical = match member("kty")? {
        "EC" => format!(
            r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
            Value::from(member("crv")?),
            Value::from(member("x")?),
            Value::from(member("y")?)
        ),
        "RSA" => format!(
            r#"{{"e":{},"kty":"RSA","n":{}}}"#,
            Value::from(member("e")?),
            Value::from(member("n")?)
        ),
        "OKP" => format!(
            r#"{{"crv":{},"kty":"OKP","x":{}}}"#,
            Value::from(member("crv")?),
            Value::from(member("x")?)
        ),
        _ => return None,
    };
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
}

/// The key a token is bound to: its `cnf.jkt`, if any.
pub fn token_binding(claims: &Value) -> Option<&str> {
    claims.pointer("/cnf/jkt").and_then(Value::as_str)
}

/// What one of the app's own proofs says.
#[derive(Debug, Clone, Copy)]
pub struct NewProof<'a> {
    /// The request's method.
    pub method: &'a str,
    /// The request's URL; its query and fragment are left out of `htu`.
    pub url: &'a str,
    /// The access token sent with it (`ath`), if any: none to the token endpoint.
    pub access_token: Option<&'a str>,
    /// The server's nonce (`DPoP-Nonce`), when it asked for one.
    pub nonce: Option<&'a str>,
    /// A fresh random identifier.
    pub jti: &'a str,
    /// Now, Unix seconds.
    pub now: i64,
}

/// The JWS signing input (`header.claims`, base64url) of an ES256 proof by the key whose public
/// JWK is `jwk`; the caller appends `.` and the signature.
pub fn signing_input(jwk: &Value, proof: &NewProof<'_>) -> String {
    let header = serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
    let mut claims = serde_json::json!({
        "htm": proof.method,
        "htu": proof.url.split(['?', '#']).next().unwrap_or_default(),
        "jti": proof.jti,
        "iat": proof.now,
    });
    if let Some(token) = proof.access_token {
        claims["ath"] = Value::from(access_token_hash(token));
    }
    if let Some(nonce) = proof.nonce {
        claims["nonce"] = Value::from(nonce);
    }
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// The public JWK of a P-256 key from its uncompressed point (`0x04`, x, y: 65 bytes).
pub fn p256_jwk(point: &[u8]) -> Option<Value> {
    if point.len() != 65 || point.first() != Some(&4) {
        return None;
    }
    Some(serde_json::json!({
        "kty": "EC",
        "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    }))
}

/// The nonce a server asks the next proof to carry: its `DPoP-Nonce` header, when the answer is
/// the token endpoint's `use_dpop_nonce` error (RFC 9449 §8) or a resource server's
/// `WWW-Authenticate: DPoP error="use_dpop_nonce"` (§9).
pub fn nonce_asked(
    oauth_error: Option<&str>,
    www_authenticate: Option<&str>,
    nonce: Option<&str>,
) -> Option<String> {
    let asked = oauth_error == Some("use_dpop_nonce")
        || www_authenticate.is_some_and(|w| {
            w.trim_start().to_ascii_lowercase().starts_with("dpop") && w.contains("use_dpop_nonce")
        });
    if asked {
        usable_nonce(nonce?)
    } else {
        None
    }
}

/// A `DPoP-Nonce` worth keeping: short printable text (RFC 9449's `NQCHAR`s), else `None`.
pub fn usable_nonce(nonce: &str) -> Option<String> {
    let nonce = nonce.trim();
    let printable =
        !nonce.is_empty() && nonce.len() <= 512 && nonce.bytes().all(|b| b.is_ascii_graphic());
    printable.then(|| nonce.to_owned())
}

/// A session's access token cannot be sent as it is: it is bound to another key than the app's
/// (`session` its `cnf.jkt`, `app` the thumbprint of the app's key), or bound while the app has
/// no key, or a bearer token while the app binds its tokens. It is refreshed first, which binds
/// the new one to the app's key (a key replaced, DPoP turned on or off).
pub fn binding_is_stale(session: Option<&str>, app: Option<&str>) -> bool {
    session != app
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_thumbprint_is_rfc_7638s_own_example() {
        // RFC 7638 §3.1.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            jwk_thumbprint(&jwk).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
        assert_eq!(jwk_thumbprint(&json!({"kty": "oct", "k": "abc"})), None);
        assert_eq!(
            jwk_thumbprint(&json!({"kty": "EC", "crv": "P-256", "x": "a"})),
            None
        );
    }

    fn header() -> Value {
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": {"kty": "EC", "crv": "P-256", "x": "eA", "y": "eQ"}})
    }

    #[test]
    fn a_proof_header_needs_its_type_an_asymmetric_algorithm_and_a_public_key() {
        assert!(check_header(&header()).is_ok());
        let mut h = header();
        h["typ"] = json!("JWT");
        assert_eq!(check_header(&h), Err(DpopError::WrongType));
        for alg in ["none", "HS256", "RS512x"] {
            let mut h = header();
            h["alg"] = json!(alg);
            assert_eq!(check_header(&h), Err(DpopError::Algorithm), "{alg}");
        }
        let mut h = header();
        h["jwk"]["d"] = json!("private");
        assert_eq!(check_header(&h), Err(DpopError::Key));
        let mut h = header();
        h.as_object_mut().map(|o| o.remove("jwk"));
        assert_eq!(check_header(&h), Err(DpopError::Key));
    }

    const URL: &str = "https://app.example/api/v1/me";

    fn claims(token: &str) -> Value {
        json!({"htm": "GET", "htu": URL, "iat": 1_000, "jti": "j1", "ath": access_token_hash(token)})
    }

    fn for_request(token: &str) -> ProofFor<'_> {
        ProofFor {
            method: "GET",
            url: URL,
            access_token: token,
            now: 1_010,
        }
    }

    #[test]
    fn a_proof_is_for_one_method_url_token_and_moment() {
        assert_eq!(
            check_claims(&claims("t"), &for_request("t")),
            Ok("j1".into())
        );
        // The query is not part of htu.
        let mut c = claims("t");
        c["htu"] = json!(format!("{URL}?x=1"));
        assert!(check_claims(&c, &for_request("t")).is_ok());
        for (key, value, why) in [
            ("htm", json!("POST"), DpopError::Method),
            (
                "htu",
                json!("https://app.example/api/v1/notes"),
                DpopError::Url,
            ),
            (
                "htu",
                json!("https://evil.example/api/v1/me"),
                DpopError::Url,
            ),
            ("iat", json!(900), DpopError::Time),
            ("iat", json!(1_100), DpopError::Time),
            (
                "ath",
                json!(access_token_hash("another")),
                DpopError::TokenHash,
            ),
            ("jti", json!(""), DpopError::Jti),
        ] {
            let mut c = claims("t");
            c[key] = value;
            assert_eq!(check_claims(&c, &for_request("t")), Err(why), "{key}");
        }
        let mut c = claims("t");
        c.as_object_mut().map(|o| o.remove("ath"));
        assert_eq!(
            check_claims(&c, &for_request("t")),
            Err(DpopError::TokenHash)
        );
    }

    #[test]
    fn malformed_or_huge_proofs_are_refused_before_parsing() {
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.??.x",
            &"a".repeat(MAX_PROOF_BYTES + 1),
        ] {
            assert_eq!(decode(bad).map(|_| ()), Err(DpopError::Malformed));
        }
        let h = URL_SAFE_NO_PAD.encode(header().to_string());
        let c = URL_SAFE_NO_PAD.encode(claims("t").to_string());
        assert!(decode(&format!("{h}.{c}.sig")).is_ok());
    }

    #[test]
    fn the_apps_proof_says_method_url_without_query_token_hash_and_nonce() {
        let jwk = p256_jwk(&[&[4u8][..], &[1u8; 32], &[2u8; 32]].concat()).expect("jwk");
        assert!(jwk_thumbprint(&jwk).is_some());
        let input = signing_input(
            &jwk,
            &NewProof {
                method: "POST",
                url: "https://kc.example/token?x=1#f",
                access_token: Some("t"),
                nonce: Some("n1"),
                jti: "j",
                now: 1_000,
            },
        );
        let (header, claims) = decode(&format!("{input}.sig")).expect("decodes");
        assert_eq!(check_header(&header), Ok(&jwk));
        let checked = check_claims(
            &claims,
            &ProofFor {
                method: "POST",
                url: "https://kc.example/token",
                access_token: "t",
                now: 1_000,
            },
        );
        assert_eq!(checked, Ok("j".into()));
        assert_eq!(claims["htu"], "https://kc.example/token");
        assert_eq!(claims["nonce"], "n1");
        let bare = signing_input(
            &jwk,
            &NewProof {
                method: "POST",
                url: "https://kc.example/token",
                access_token: None,
                nonce: None,
                jti: "j",
                now: 1_000,
            },
        );
        let (_, claims) = decode(&format!("{bare}.sig")).expect("decodes");
        assert!(claims.get("ath").is_none() && claims.get("nonce").is_none());
        assert_eq!(p256_jwk(&[4u8; 64]), None);
        assert_eq!(p256_jwk(&[3u8; 65]), None);
    }

    #[test]
    fn a_nonce_is_taken_only_when_the_server_asks_for_one() {
        let asked = nonce_asked(Some("use_dpop_nonce"), None, Some("abc"));
        assert_eq!(asked.as_deref(), Some("abc"));
        let www = Some(r#"DPoP error="use_dpop_nonce", error_description="fresh nonce""#);
        assert_eq!(nonce_asked(None, www, Some("xyz")).as_deref(), Some("xyz"));
        assert_eq!(nonce_asked(Some("invalid_grant"), None, Some("abc")), None);
        assert_eq!(
            nonce_asked(None, Some("Bearer error=\"use_dpop_nonce\""), Some("a")),
            None
        );
        assert_eq!(nonce_asked(Some("use_dpop_nonce"), None, None), None);
        assert_eq!(nonce_asked(Some("use_dpop_nonce"), None, Some("a b")), None);
        assert_eq!(usable_nonce(" n-2 ").as_deref(), Some("n-2"));
        assert_eq!(usable_nonce(&"n".repeat(513)), None);
    }

    #[test]
    fn a_token_bound_to_another_key_or_to_none_is_refreshed_before_use() {
        assert!(!binding_is_stale(None, None));
        assert!(!binding_is_stale(Some("k"), Some("k")));
        assert!(binding_is_stale(None, Some("k")), "DPoP turned on");
        assert!(binding_is_stale(Some("old"), Some("k")), "the key replaced");
        assert!(binding_is_stale(Some("k"), None), "DPoP turned off");
    }

    #[test]
    fn a_token_names_its_key_in_cnf() {
        assert_eq!(token_binding(&json!({"cnf": {"jkt": "abc"}})), Some("abc"));
        assert_eq!(token_binding(&json!({"sub": "x"})), None);
    }
}
