//! DPoP (RFC 9449) on the app's JSON API: the checks of a proof that do not need its signature.
//! A DPoP-bound access token (`cnf.jkt`) is only accepted with a proof made for this request
//! (method, URL, the token's hash, a fresh `iat`) by the key the token is bound to; the signature
//! itself is verified with the proof's own `jwk` by the server (`server/web/extract.rs`), and a
//! `jti` already seen is refused there. Pure: time is a parameter.
//!
//! Catalogue: P09 (a stolen bound token alone, a replayed proof, a proof for another request or
//! made by another key).

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
    fn a_token_names_its_key_in_cnf() {
        assert_eq!(token_binding(&json!({"cnf": {"jkt": "abc"}})), Some("abc"));
        assert_eq!(token_binding(&json!({"sub": "x"})), None);
    }
}
