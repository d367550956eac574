//! Structural and claim checks of the JWTs Keycloak issues. The signature itself is verified by
//! `jsonwebtoken` with keys from the key cache (`server::keys`); everything here is pure, takes
//! `now` as a parameter, and is unit tested without keys.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde_json::Value;

/// Larger tokens are refused before any parsing (catalogue C04).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
const MAX_HEADER_BYTES: usize = 2 * 1024;
const MAX_KID_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
/// Why a token was refused.
pub enum TokenError {
    #[error("token is larger than {MAX_TOKEN_BYTES} bytes")]
    /// Longer than the cap.
    TooLarge,
    #[error("token is not a signed JWT")]
    /// Not three base64url parts of JSON.
    Malformed,
    #[error("token algorithm {0:?} is not allowed")]
    /// An algorithm outside the allowed list (`none`, HMAC, or one not configured).
    AlgorithmNotAllowed(String),
    #[error("token header has critical extensions")]
    /// A `crit` header this check does not understand.
    UnsupportedCritical,
    #[error("token is signed by an unknown key")]
    /// No key of the key set has the token's `kid`.
    UnknownKey,
    #[error("token names no key, and several could have signed it")]
    /// No `kid` and more than one key could have signed it.
    AmbiguousKey,
    #[error("token signature is invalid")]
    /// The signature does not verify.
    BadSignature,
    #[error("token claim {0} is missing or malformed")]
    /// A claim the token must carry is absent.
    MissingClaim(&'static str),
    #[error("token issuer is not the configured issuer")]
    /// `iss` is not the configured issuer.
    WrongIssuer,
    #[error("token audience does not include this client")]
    /// `aud` does not name this client.
    WrongAudience,
    #[error("token authorized party is not this client")]
    /// `azp` is not a client this app accepts.
    WrongAuthorizedParty,
    #[error("token has expired")]
    /// `exp` has passed (beyond the leeway).
    Expired,
    #[error("token is not valid yet")]
    /// `nbf` is still ahead (beyond the leeway).
    NotYetValid,
    #[error("token was issued in the future")]
    /// `iat` is in the future (beyond the leeway).
    IssuedInFuture,
    #[error("token type is {found:?}, expected {expected:?}")]
    /// Keycloak's `typ` claim names another kind of token.
    WrongType {
        /// The `typ` the check needs.
        expected: &'static str,
        /// The `typ` the token has.
        found: String,
    },
    #[error("token nonce does not match the login")]
    /// The ID token's `nonce` is not the login's.
    NonceMismatch,
    #[error("ID token at_hash does not match the access token")]
    /// The ID token's `at_hash` does not match the access token.
    AccessTokenHashMismatch,
}

impl TokenError {
    /// A short, fixed name of the reason, for metrics labels.
    pub fn label(&self) -> &'static str {
        match self {
            TokenError::TooLarge => "too_large",
            TokenError::Malformed | TokenError::UnsupportedCritical => "malformed",
            TokenError::AlgorithmNotAllowed(_) => "algorithm",
            TokenError::UnknownKey | TokenError::AmbiguousKey => "unknown_key",
            TokenError::BadSignature => "bad_signature",
            TokenError::MissingClaim(_) => "missing_claim",
            TokenError::WrongIssuer => "issuer",
            TokenError::WrongAudience => "audience",
            TokenError::WrongAuthorizedParty => "authorized_party",
            TokenError::Expired | TokenError::NotYetValid | TokenError::IssuedInFuture => "time",
            TokenError::WrongType { .. } => "type",
            TokenError::NonceMismatch | TokenError::AccessTokenHashMismatch => "binding",
        }
    }
}

/// The parts of a JOSE header the app uses. `jku`, `x5u`, `jwk` and `x5c` are never used: keys
/// come only from the configured issuer's key set (catalogue C03).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The signing algorithm.
    pub alg: String,
    /// The id of the signing key, if given.
    pub kid: Option<String>,
    /// The JOSE `typ` (`JWT`, or `logout+jwt` on Keycloak's logout tokens).
    pub typ: Option<String>,
}

/// Checks size and shape, decodes the header, and refuses algorithms outside `allowed_algs`
/// (pinned by configuration, never taken from the token) and any `crit` extension.
pub fn parse_header(token: &str, allowed_algs: &[String]) -> Result<Header, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if header.is_empty() || payload.is_empty() || signature.is_empty() {
        return Err(TokenError::Malformed);
    }
    if header.len() > MAX_HEADER_BYTES {
        return Err(TokenError::Malformed);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenError::Malformed)?;
    let json: Value = serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
    let obj = json.as_object().ok_or(TokenError::Malformed)?;
    if obj.contains_key("crit") {
        return Err(TokenError::UnsupportedCritical);
    }
    let alg = obj
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(TokenError::Malformed)?;
    if !allowed_algs.iter().any(|a| a == alg) {
        return Err(TokenError::AlgorithmNotAllowed(
            alg.chars().take(16).collect(),
        ));
    }
    let kid = match obj.get("kid") {
        None => None,
        Some(Value::String(k)) if !k.is_empty() && k.len() <= MAX_KID_LEN => Some(k.clone()),
        Some(_) => return Err(TokenError::Malformed),
    };
    let typ = match obj.get("typ") {
        None => None,
        Some(Value::String(t)) if t.len() <= 64 => Some(t.to_ascii_lowercase()),
        Some(_) => return Err(TokenError::Malformed),
    };
    Ok(Header {
        alg: alg.to_owned(),
        kid,
        typ,
    })
}

/// Which token a check is for; Keycloak states it in its `typ` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An ID token (`typ` "ID").
    Id,
    /// An access token (`typ` "Bearer").
    Access,
}

impl Kind {
    fn keycloak_typ(self) -> &'static str {
        match self {
            Kind::Id => "ID",
            Kind::Access => "Bearer",
        }
    }
}

/// What a token must say to be accepted.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    /// The realm's issuer URL.
    pub issuer: &'a str,
    /// This app's client id.
    pub client_id: &'a str,
    /// Which token this is.
    pub kind: Kind,
    /// The nonce of the login, for ID tokens at login.
    pub nonce: Option<&'a str>,
    /// Whether `azp` must be present and equal to this client (tokens obtained by this app).
    pub azp_must_be_client: bool,
    /// Allowed clock skew, seconds.
    pub leeway: i64,
    /// The time of the check, Unix seconds.
    pub now: i64,
}

fn int_claim(claims: &Value, key: &'static str) -> Result<Option<i64>, TokenError> {
    match claims.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or(TokenError::MissingClaim(key)),
    }
}

fn audiences(claims: &Value) -> Vec<&str> {
    match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Checks the claims of a token whose signature is already verified.
/// The checks every token of the realm shares: a JSON object from the configured issuer whose
/// audience includes this client. Returns the audiences.
fn check_issuer_and_audience<'c>(
    claims: &'c Value,
    issuer: &str,
    client_id: &str,
) -> Result<Vec<&'c str>, TokenError> {
    if !claims.is_object() {
        return Err(TokenError::Malformed);
    }
    match claims.get("iss").and_then(Value::as_str) {
        Some(iss) if iss == issuer => {}
        Some(_) => return Err(TokenError::WrongIssuer),
        None => return Err(TokenError::MissingClaim("iss")),
    }
    let aud = audiences(claims);
    if !aud.contains(&client_id) {
        return Err(TokenError::WrongAudience);
    }
    Ok(aud)
}

/// Checks the claims of an ID or access token whose signature was verified.
pub fn check_claims(claims: &Value, e: &Expected<'_>) -> Result<(), TokenError> {
    let aud = check_issuer_and_audience(claims, e.issuer, e.client_id)?;
    match claims.get("sub").and_then(Value::as_str) {
        Some(sub) if !sub.is_empty() => {}
        _ => return Err(TokenError::MissingClaim("sub")),
    }
    let azp = claims.get("azp").and_then(Value::as_str);
    match azp {
        Some(azp) if azp != e.client_id && (e.azp_must_be_client || e.kind == Kind::Id) => {
            return Err(TokenError::WrongAuthorizedParty)
        }
        None if e.azp_must_be_client || (e.kind == Kind::Id && aud.len() > 1) => {
            return Err(TokenError::WrongAuthorizedParty)
        }
        _ => {}
    }
    let exp = int_claim(claims, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
    if e.now > exp.saturating_add(e.leeway) {
        return Err(TokenError::Expired);
    }
    let iat = int_claim(claims, "iat")?.ok_or(TokenError::MissingClaim("iat"))?;
    if iat > e.now.saturating_add(e.leeway) {
        return Err(TokenError::IssuedInFuture);
    }
    if let Some(nbf) = int_claim(claims, "nbf")? {
        if nbf > e.now.saturating_add(e.leeway) {
            return Err(TokenError::NotYetValid);
        }
    }
    let expected_typ = e.kind.keycloak_typ();
    match claims.get("typ").and_then(Value::as_str) {
        Some(t) if t == expected_typ => {}
        // Keycloak types a DPoP-bound access token `DPoP`; it is one only with its binding, and
        // the JSON API then asks for a proof of that key (`crate::dpop`).
        Some("DPoP") if e.kind == Kind::Access && claims.pointer("/cnf/jkt").is_some() => {}
        other => {
            return Err(TokenError::WrongType {
                expected: expected_typ,
                found: other.unwrap_or("none").chars().take(32).collect(),
            })
        }
    }
    if let Some(expected_nonce) = e.nonce {
        match claims.get("nonce").and_then(Value::as_str) {
            Some(n) if n == expected_nonce => {}
            _ => return Err(TokenError::NonceMismatch),
        }
    }
    Ok(())
}

/// Checks who obtained a bearer token (catalogue H02): its `azp` must be this client or one of
/// `allowed` (service clients the operator trusts). With Keycloak's default full scope and an
/// audience mapper, a token any other client of the realm obtained for a user can carry this
/// client in `aud`: the audience alone does not say the token was meant for this API.
pub fn check_authorized_party(
    claims: &Value,
    client_id: &str,
    allowed: &[String],
) -> Result<(), TokenError> {
    match claims.get("azp").and_then(Value::as_str) {
        Some(azp) if azp == client_id || allowed.iter().any(|a| a == azp) => Ok(()),
        _ => Err(TokenError::WrongAuthorizedParty),
    }
}

/// Checks the ID token's `at_hash` against the access token it came with (OpenID Connect Core
/// §3.1.3.6, catalogue B14): when present, it must be the base64url of the left half of the
/// SHA-2 hash of the access token that matches the ID token's algorithm. Absent is allowed in the
/// code flow.
pub fn check_at_hash(id_claims: &Value, alg: &str, access_token: &str) -> Result<(), TokenError> {
    use sha2::Digest;
    let Some(claimed) = id_claims.get("at_hash") else {
        return Ok(());
    };
    let claimed = claimed
        .as_str()
        .ok_or(TokenError::AccessTokenHashMismatch)?;
    let digest: Vec<u8> = match &alg[alg.len().saturating_sub(3)..] {
        "256" => sha2::Sha256::digest(access_token.as_bytes()).to_vec(),
        "384" => sha2::Sha384::digest(access_token.as_bytes()).to_vec(),
        "512" => sha2::Sha512::digest(access_token.as_bytes()).to_vec(),
        _ => return Err(TokenError::AccessTokenHashMismatch),
    };
    let expected = URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2]);
    if expected == claimed {
        Ok(())
    } else {
        Err(TokenError::AccessTokenHashMismatch)
    }
}

/// The event a back-channel logout token must carry.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// A logout token issued longer ago than this (or this far in the future) is refused.
pub const LOGOUT_TOKEN_MAX_AGE: i64 = 300;

/// Whom a valid logout token signs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutTarget {
    /// Keycloak's session id, if the token names one.
    pub sid: Option<String>,
    /// The user, if the token names them.
    pub sub: Option<String>,
    /// The token's id, refused if seen again before `replay_until`.
    pub jti: String,
    /// Until when the `jti` is kept against a replay, Unix seconds.
    pub replay_until: i64,
}

/// The `logout_token` of a back-channel logout request body (form-encoded); `None` unless there is
/// exactly one.
pub fn logout_token_from_form(body: &[u8]) -> Option<String> {
    let mut tokens = form_urlencoded::parse(body)
        .filter(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned());
    match (tokens.next(), tokens.next()) {
        (Some(token), None) => Some(token),
        _ => None,
    }
}

/// Checks the JOSE `typ` of a logout token: `logout+jwt`, as Keycloak sends (OpenID Connect
/// Back-Channel Logout 1.0 §2.4), and nothing else, so that no other JWT of the realm can pass.
pub fn check_logout_header(header: &Header) -> Result<(), TokenError> {
    match header.typ.as_deref() {
        Some("logout+jwt") => Ok(()),
        other => Err(TokenError::WrongType {
            expected: "logout+jwt",
            found: other.unwrap_or("none").chars().take(32).collect(),
        }),
    }
}

/// Checks the claims of a back-channel logout token (OpenID Connect Back-Channel Logout 1.0 §2.6)
/// whose signature is already verified.
pub fn check_logout_claims(
    claims: &Value,
    issuer: &str,
    client_id: &str,
    leeway: i64,
    now: i64,
) -> Result<LogoutTarget, TokenError> {
    check_issuer_and_audience(claims, issuer, client_id)?;
    let iat = int_claim(claims, "iat")?.ok_or(TokenError::MissingClaim("iat"))?;
    if iat > now.saturating_add(leeway) {
        return Err(TokenError::IssuedInFuture);
    }
    if iat < now.saturating_sub(LOGOUT_TOKEN_MAX_AGE + leeway) {
        return Err(TokenError::Expired);
    }
    let exp = int_claim(claims, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
    if now > exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    let jti = match claims.get("jti").and_then(Value::as_str) {
        Some(j) if !j.is_empty() && j.len() <= 256 => j.to_owned(),
        _ => return Err(TokenError::MissingClaim("jti")),
    };
    let event_ok = claims
        .get("events")
        .and_then(Value::as_object)
        .and_then(|events| events.get(BACKCHANNEL_LOGOUT_EVENT))
        .is_some_and(Value::is_object);
    if !event_ok {
        return Err(TokenError::MissingClaim("events"));
    }
    if claims.get("nonce").is_some() {
        return Err(TokenError::NonceMismatch);
    }
    match claims.get("typ").and_then(Value::as_str) {
        None | Some("Logout") => {}
        Some(other) => {
            return Err(TokenError::WrongType {
                expected: "Logout",
                found: other.chars().take(32).collect(),
            })
        }
    }
    let text = |key| {
        claims
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .map(str::to_owned)
    };
    let (sid, sub) = (text("sid"), text("sub"));
    if sid.is_none() && sub.is_none() {
        return Err(TokenError::MissingClaim("sid or sub"));
    }
    Ok(LogoutTarget {
        sid,
        sub,
        jti,
        replay_until: iat + LOGOUT_TOKEN_MAX_AGE + 2 * leeway,
    })
}

/// The claims of a JWT without verifying anything. Only for tokens whose signature was verified
/// already or that are opaque to the app and read for information (never for a decision).
pub fn unverified_claims(token: &str) -> Option<Value> {
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;
    const ISS: &str = "http://localhost:8080/realms/demo";

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    fn token_with_header(header: Value) -> String {
        format!("{}.{}.c2ln", b64(&header), b64(&json!({"sub": "x"})))
    }

    fn rs256() -> Vec<String> {
        vec!["RS256".to_owned()]
    }

    fn id_claims() -> Value {
        json!({"iss": ISS, "sub": "u1", "aud": "demo-app", "azp": "demo-app", "exp": NOW + 300,
               "iat": NOW - 5, "typ": "ID", "nonce": "n-123"})
    }

    fn expect_id() -> Expected<'static> {
        Expected {
            issuer: ISS,
            client_id: "demo-app",
            kind: Kind::Id,
            nonce: Some("n-123"),
            azp_must_be_client: false,
            leeway: 30,
            now: NOW,
        }
    }

    fn with(mut v: Value, key: &str, value: Value) -> Value {
        v[key] = value;
        v
    }

    fn without(mut v: Value, key: &str) -> Value {
        if let Some(o) = v.as_object_mut() {
            o.remove(key);
        }
        v
    }

    #[test]
    fn a_keycloak_header_with_a_pinned_algorithm_parses() {
        let h = parse_header(
            &token_with_header(json!({"alg": "RS256", "typ": "JWT", "kid": "k1"})),
            &rs256(),
        );
        assert_eq!(
            h,
            Ok(Header {
                alg: "RS256".into(),
                kid: Some("k1".into()),
                typ: Some("jwt".into())
            })
        );
    }

    #[test]
    fn algorithms_outside_the_configured_list_are_refused_whatever_the_token_says() {
        for alg in ["none", "HS256", "HS512", "RS512", "ES256", "PS256"] {
            let t = token_with_header(json!({"alg": alg, "kid": "k1"}));
            assert!(
                matches!(
                    parse_header(&t, &rs256()),
                    Err(TokenError::AlgorithmNotAllowed(_))
                ),
                "{alg}"
            );
        }
    }

    #[test]
    fn critical_header_extensions_are_refused() {
        let t = token_with_header(json!({"alg": "RS256", "crit": ["exp"], "exp": 1}));
        assert_eq!(
            parse_header(&t, &rs256()),
            Err(TokenError::UnsupportedCritical)
        );
    }

    #[test]
    fn malformed_tokens_are_refused_cleanly() {
        let big = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(parse_header(&big, &rs256()), Err(TokenError::TooLarge));
        for bad in [
            "",
            "abc",
            "a.b",
            "a.b.c.d.e",
            "!!!.b.c",
            "e30.e30.",
            ".e30.c2ln",
            "bnVsbA.e30.c2ln",
        ] {
            assert_eq!(
                parse_header(bad, &rs256()),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
        let t = token_with_header(json!({"alg": "RS256", "kid": 7}));
        assert_eq!(parse_header(&t, &rs256()), Err(TokenError::Malformed));
    }

    #[test]
    fn a_valid_id_token_passes() {
        assert_eq!(check_claims(&id_claims(), &expect_id()), Ok(()));
    }

    #[test]
    fn id_token_claims_that_keycloak_would_never_send_are_refused() {
        let cases = [
            (
                with(id_claims(), "iss", json!("http://evil/realms/demo")),
                TokenError::WrongIssuer,
            ),
            (without(id_claims(), "iss"), TokenError::MissingClaim("iss")),
            (without(id_claims(), "sub"), TokenError::MissingClaim("sub")),
            (
                with(id_claims(), "sub", json!("")),
                TokenError::MissingClaim("sub"),
            ),
            (
                with(id_claims(), "aud", json!("other-app")),
                TokenError::WrongAudience,
            ),
            (without(id_claims(), "aud"), TokenError::WrongAudience),
            (
                with(id_claims(), "azp", json!("other-app")),
                TokenError::WrongAuthorizedParty,
            ),
            (
                without(
                    with(id_claims(), "aud", json!(["demo-app", "other"])),
                    "azp",
                ),
                TokenError::WrongAuthorizedParty,
            ),
            (
                with(id_claims(), "exp", json!(NOW - 31)),
                TokenError::Expired,
            ),
            (without(id_claims(), "exp"), TokenError::MissingClaim("exp")),
            (
                with(id_claims(), "exp", json!("soon")),
                TokenError::MissingClaim("exp"),
            ),
            (without(id_claims(), "iat"), TokenError::MissingClaim("iat")),
            (
                with(id_claims(), "iat", json!(NOW + 120)),
                TokenError::IssuedInFuture,
            ),
            (
                with(id_claims(), "nbf", json!(NOW + 120)),
                TokenError::NotYetValid,
            ),
            (
                with(id_claims(), "nonce", json!("other")),
                TokenError::NonceMismatch,
            ),
            (without(id_claims(), "nonce"), TokenError::NonceMismatch),
        ];
        for (claims, expected) in cases {
            assert_eq!(
                check_claims(&claims, &expect_id()),
                Err(expected.clone()),
                "{claims}"
            );
        }
    }

    #[test]
    fn a_token_of_another_keycloak_type_is_refused_where_an_id_token_is_expected() {
        for typ in ["Bearer", "Refresh", "Logout"] {
            let r = check_claims(&with(id_claims(), "typ", json!(typ)), &expect_id());
            assert!(
                matches!(r, Err(TokenError::WrongType { expected: "ID", .. })),
                "{typ}"
            );
        }
        assert!(matches!(
            check_claims(&without(id_claims(), "typ"), &expect_id()),
            Err(TokenError::WrongType { .. })
        ));
    }

    #[test]
    fn clock_skew_within_the_leeway_is_tolerated() {
        let c = with(
            with(id_claims(), "exp", json!(NOW - 29)),
            "iat",
            json!(NOW + 29),
        );
        assert_eq!(check_claims(&c, &expect_id()), Ok(()));
    }

    #[test]
    fn audience_may_be_a_string_or_an_array_with_azp() {
        let c = with(id_claims(), "aud", json!(["demo-app", "account"]));
        assert_eq!(check_claims(&c, &expect_id()), Ok(()));
    }

    #[test]
    fn an_access_token_obtained_by_this_app_must_name_it_as_authorized_party() {
        let access = json!({"iss": ISS, "sub": "u1", "aud": ["demo-app", "account"], "azp": "demo-app",
                            "exp": NOW + 300, "iat": NOW, "typ": "Bearer"});
        let e = Expected {
            kind: Kind::Access,
            nonce: None,
            azp_must_be_client: true,
            ..expect_id()
        };
        assert_eq!(check_claims(&access, &e), Ok(()));
        assert_eq!(
            check_claims(&with(access.clone(), "azp", json!("other-app")), &e),
            Err(TokenError::WrongAuthorizedParty)
        );
        assert_eq!(
            check_claims(&without(access.clone(), "azp"), &e),
            Err(TokenError::WrongAuthorizedParty)
        );
        assert!(matches!(
            check_claims(&with(access, "typ", json!("ID")), &e),
            Err(TokenError::WrongType {
                expected: "Bearer",
                ..
            })
        ));
    }

    #[test]
    fn a_dpop_typed_access_token_counts_only_with_its_binding() {
        let access = json!({"iss": ISS, "sub": "u1", "aud": "demo-app", "azp": "demo-app",
                            "exp": NOW + 300, "iat": NOW, "typ": "DPoP", "cnf": {"jkt": "k"}});
        let e = Expected {
            kind: Kind::Access,
            nonce: None,
            azp_must_be_client: false,
            ..expect_id()
        };
        assert_eq!(check_claims(&access, &e), Ok(()));
        assert!(matches!(
            check_claims(&without(access.clone(), "cnf"), &e),
            Err(TokenError::WrongType { .. })
        ));
        // Never where an ID token is expected.
        assert!(matches!(
            check_claims(&access, &expect_id()),
            Err(TokenError::WrongType { .. })
        ));
    }

    fn logout_claims() -> Value {
        json!({"iss": ISS, "aud": "demo-app", "sub": "u1", "sid": "s1", "iat": NOW - 2, "exp": NOW + 118,
               "jti": "j1", "typ": "Logout",
               "events": {"http://schemas.openid.net/event/backchannel-logout": {}}})
    }

    #[test]
    fn a_keycloak_logout_token_names_the_session_and_user_to_sign_out() {
        let t = check_logout_claims(&logout_claims(), ISS, "demo-app", 30, NOW);
        assert_eq!(
            t,
            Ok(LogoutTarget {
                sid: Some("s1".into()),
                sub: Some("u1".into()),
                jti: "j1".into(),
                replay_until: NOW - 2 + LOGOUT_TOKEN_MAX_AGE + 60
            })
        );
        let only_sub = without(logout_claims(), "sid");
        assert!(check_logout_claims(&only_sub, ISS, "demo-app", 30, NOW).is_ok());
    }

    #[test]
    fn logout_tokens_that_do_not_follow_the_spec_are_refused() {
        let cases = [
            (
                with(logout_claims(), "iss", json!("http://evil")),
                TokenError::WrongIssuer,
            ),
            (
                with(logout_claims(), "aud", json!("other-app")),
                TokenError::WrongAudience,
            ),
            (
                without(logout_claims(), "iat"),
                TokenError::MissingClaim("iat"),
            ),
            (
                with(logout_claims(), "iat", json!(NOW + 120)),
                TokenError::IssuedInFuture,
            ),
            (
                with(logout_claims(), "iat", json!(NOW - 1_000)),
                TokenError::Expired,
            ),
            (
                with(logout_claims(), "exp", json!(NOW - 100)),
                TokenError::Expired,
            ),
            (
                without(logout_claims(), "exp"),
                TokenError::MissingClaim("exp"),
            ),
            (
                without(logout_claims(), "jti"),
                TokenError::MissingClaim("jti"),
            ),
            (
                without(logout_claims(), "events"),
                TokenError::MissingClaim("events"),
            ),
            (
                with(logout_claims(), "events", json!({"other": {}})),
                TokenError::MissingClaim("events"),
            ),
            (
                with(
                    logout_claims(),
                    "events",
                    json!({BACKCHANNEL_LOGOUT_EVENT: "yes"}),
                ),
                TokenError::MissingClaim("events"),
            ),
            (
                with(logout_claims(), "nonce", json!("n")),
                TokenError::NonceMismatch,
            ),
            (
                without(without(logout_claims(), "sid"), "sub"),
                TokenError::MissingClaim("sid or sub"),
            ),
        ];
        for (claims, expected) in cases {
            assert_eq!(
                check_logout_claims(&claims, ISS, "demo-app", 30, NOW),
                Err(expected.clone()),
                "{claims}"
            );
        }
        assert!(matches!(
            check_logout_claims(
                &with(logout_claims(), "typ", json!("Bearer")),
                ISS,
                "demo-app",
                30,
                NOW
            ),
            Err(TokenError::WrongType { .. })
        ));
    }

    #[test]
    fn a_logout_token_header_must_say_logout_jwt() {
        let h = |typ: Option<&str>| Header {
            alg: "RS256".into(),
            kid: None,
            typ: typ.map(str::to_owned),
        };
        assert!(check_logout_header(&h(Some("logout+jwt"))).is_ok());
        for other in [None, Some("jwt"), Some("at+jwt")] {
            assert!(check_logout_header(&h(other)).is_err(), "{other:?}");
        }
    }

    #[test]
    fn a_bearer_token_must_come_from_this_client_or_an_allowed_one() {
        let allowed = vec!["notes-reader".to_owned()];
        for (azp, ok) in [
            (json!("demo-app"), true),
            (json!("notes-reader"), true),
            (json!("api-tester"), false),
            (json!(""), false),
            (json!(7), false),
        ] {
            let claims = json!({"azp": azp});
            assert_eq!(
                check_authorized_party(&claims, "demo-app", &allowed).is_ok(),
                ok,
                "{claims}"
            );
        }
        assert_eq!(
            check_authorized_party(&json!({}), "demo-app", &allowed),
            Err(TokenError::WrongAuthorizedParty)
        );
    }

    #[test]
    fn a_matching_at_hash_or_none_passes_and_a_wrong_one_is_refused() {
        // OpenID Connect Core, appendix A.3: access token and its at_hash.
        let access = "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y";
        let good = json!({"at_hash": "77QmUPtjPfzWtF2AnpK9RQ"});
        assert_eq!(check_at_hash(&good, "RS256", access), Ok(()));
        assert_eq!(check_at_hash(&json!({}), "RS256", access), Ok(()));
        for bad in [
            json!({"at_hash": "AAAAAAAAAAAAAAAAAAAAAA"}),
            json!({"at_hash": 5}),
            json!({"at_hash": ""}),
        ] {
            assert_eq!(
                check_at_hash(&bad, "RS256", access),
                Err(TokenError::AccessTokenHashMismatch),
                "{bad}"
            );
        }
        assert_eq!(
            check_at_hash(&good, "RS256", "another-access-token"),
            Err(TokenError::AccessTokenHashMismatch)
        );
    }

    #[test]
    fn claims_that_are_not_an_object_are_malformed() {
        assert_eq!(
            check_claims(&json!([1, 2]), &expect_id()),
            Err(TokenError::Malformed)
        );
    }
}
