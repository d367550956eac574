//! The caller of a JSON API: `Authorization: Bearer <access token>` issued by the realm, a
//! DPoP-bound token as `Authorization: DPoP <access token>` with its proof (RFC 9449), or the
//! browser session. Works with any app state that can give a [`KeycloakAuth`] (`FromRef`).
//!
//! A DPoP-bound token (`cnf.jkt`) is accepted only with the `DPoP` scheme and a proof made for
//! this request (method, URL from the public URL, the token's hash, `iat` within a minute), signed
//! by the key the token is bound to, whose `jti` has not been seen: a stolen bound token alone,
//! or a replayed proof, is refused (catalogue P09). A process remembers the `jti`s it accepted,
//! and replicas share them through the session store (Redis), so a proof accepted by one replica
//! is refused by the others; the store out of reach is 503, never an acceptance.
//!
//! Refusals are [`AppError`]s, answered as RFC 6750 says: 401 with `WWW-Authenticate: Bearer
//! error="invalid_token"` for a bad token, 403 with `error="insufficient_scope"` for a missing
//! role (see [`ApiUser::require`]), a short JSON reason in both; never a 500 for bad input.

use crate::error::AppError;
use crate::server::base::clock::unix_now;
use crate::server::oidc::client::OidcError;
use crate::server::web::guard::parts_user;
use crate::server::web::state::KeycloakAuth;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use keycloak_bff_core::dpop;
use keycloak_bff_core::jwt::MAX_TOKEN_BYTES;
use keycloak_bff_core::{Access, KeycloakUser, Rule};

/// The one reason a refused token gets, whatever was wrong with it.
pub const INVALID_TOKEN: &str = "the access token is invalid or has expired";

/// The caller of an API request: a bearer token's subject, or the browser session's user
/// (`ApiUser { user, .. }: ApiUser` in a handler's arguments).
pub struct ApiUser {
    /// Who calls.
    pub user: KeycloakUser,
    auth: KeycloakAuth,
}

impl ApiUser {
    /// The caller, if `rule` allows them; otherwise 403 (`insufficient_scope`).
    pub fn require(&self, rule: &Rule) -> Result<&KeycloakUser, AppError> {
        match rule.check(Some(&self.user)) {
            Access::Allowed => Ok(&self.user),
            Access::NotSignedIn => Err(AppError::NotSignedIn),
            Access::Forbidden => Err(AppError::Forbidden),
        }
    }

    /// The caller, if `rule` allows them and their token's `acr` reached the level `acr`
    /// (ranked by `keycloak.acr_levels`). A weaker token is 401 with RFC 9470's challenge,
    /// `WWW-Authenticate: Bearer error="insufficient_user_authentication", acr_values="<acr>"`,
    /// which tells the client to get a token at that level; an impersonated session is 403
    /// unless `auth.step_up_allows_impersonation`.
    pub fn require_acr(&self, rule: &Rule, acr: &str) -> Result<&KeycloakUser, AppError> {
        use keycloak_bff_core::level::{check_level, LevelCheck};
        let user = self.require(rule)?;
        let ui = self.auth.ui_config();
        match check_level(user, &ui.acr_levels, acr, ui.step_up_allows_impersonation) {
            LevelCheck::Allowed => Ok(user),
            LevelCheck::NeedsLevel => Err(AppError::LevelRequired(acr.to_owned())),
            LevelCheck::NotWhileImpersonating => Err(AppError::NotWhileImpersonating),
        }
    }

    /// The realm's users, read by the directory's service account (as
    /// [`crate::server::search_directory`] does for pages), for a caller `rule` allows at the
    /// level `acr` ([`ApiUser::require_acr`]); checked before any call to Keycloak. No directory
    /// account configured: 502.
    pub async fn search_directory(
        &self,
        rule: &Rule,
        acr: &str,
        search: &str,
        page: u32,
        per_page: Option<u32>,
    ) -> Result<keycloak_bff_core::directory::DirectoryPage, AppError> {
        self.require_acr(rule, acr)?;
        self.auth
            .configured_directory()?
            .search(self.auth.oidc(), search, page, per_page, unix_now())
            .await
    }
}

/// The one reason a refused DPoP proof gets (the exact one goes to the log).
pub const INVALID_PROOF: &str = "the DPoP proof was not accepted";

/// `Authorization: Bearer <token>` or `DPoP <token>`: the token, and whether it came as DPoP.
fn credentials(value: &axum::http::HeaderValue) -> Result<(&str, bool), AppError> {
    if value.len() > MAX_TOKEN_BYTES + 16 {
        return Err(AppError::InvalidToken("token too large".into()));
    }
    let text = value
        .to_str()
        .map_err(|_| AppError::InvalidToken("malformed Authorization header".into()))?;
    match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok((token.trim(), false)),
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("dpop") => Ok((token.trim(), true)),
        _ => Err(AppError::InvalidToken(
            "expected a Bearer or DPoP token".into(),
        )),
    }
}

/// The DPoP proof of this request for `token`, bound to the key `jkt`: its claims, the key's
/// thumbprint, its signature by that key, and a `jti` this process has not seen before. Returns
/// the proof's one-time id (`jkt:jti`) and until when it must be remembered, for the replicas.
fn check_proof(
    auth: &KeycloakAuth,
    parts: &Parts,
    token: &str,
    jkt: &str,
    now: i64,
) -> Result<(String, i64), String> {
    let mut proofs = parts.headers.get_all("dpop").iter();
    let (Some(proof), None) = (proofs.next(), proofs.next()) else {
        return Err("exactly one DPoP header is needed".into());
    };
    let proof = proof.to_str().map_err(|_| "malformed DPoP header")?;
    let (header, claims) = dpop::decode(proof).map_err(|e| e.to_string())?;
    let jwk = dpop::check_header(&header).map_err(|e| e.to_string())?;
    let url = format!("{}{}", auth.settings().public_origin(), parts.uri.path());
    let proof_for = dpop::ProofFor {
        method: parts.method.as_str(),
        url: &url,
        access_token: token,
        now,
    };
    let jti = dpop::check_claims(&claims, &proof_for).map_err(|e| e.to_string())?;
    if dpop::jwk_thumbprint(jwk).as_deref() != Some(jkt) {
        return Err(dpop::DpopError::Binding.to_string());
    }
    let alg = header
        .get("alg")
        .and_then(serde_json::Value::as_str)
        .and_then(|a| a.parse::<jsonwebtoken::Algorithm>().ok())
        .ok_or("unknown algorithm")?;
    let key = serde_json::from_value::<jsonwebtoken::jwk::Jwk>(jwk.clone())
        .ok()
        .and_then(|jwk| jsonwebtoken::DecodingKey::from_jwk(&jwk).ok())
        .ok_or("unusable key")?;
    let mut validation = jsonwebtoken::Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims = std::collections::HashSet::new();
    jsonwebtoken::decode::<serde_json::Value>(proof, &key, &validation)
        .map_err(|_| "the DPoP proof's signature does not verify")?;
    let until = now + 2 * dpop::PROOF_WINDOW_SECS;
    let id = format!("{jkt}:{jti}");
    if !auth.dpop_proofs().first_use(id.clone(), until, now) {
        return Err("a DPoP proof was used again".into());
    }
    Ok((id, until))
}

/// [`check_proof`], and the proof's first use across the replicas (a shared store).
async fn check_proof_everywhere(
    auth: &KeycloakAuth,
    parts: &Parts,
    token: &str,
    jkt: &str,
    now: i64,
) -> Result<(), AppError> {
    let refused = |why: &str| {
        tracing::info!(reason = %why, "DPoP proof refused");
        auth.metrics().bearer_refused("dpop_proof");
        AppError::InvalidToken(INVALID_PROOF.into())
    };
    let (id, until) = check_proof(auth, parts, token, jkt, now).map_err(|why| refused(&why))?;
    match auth.store().first_use_of_dpop_proof(&id, until, now).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(refused("a DPoP proof was used again, on another replica")),
        Err(e) => {
            tracing::warn!(error = %e, "a DPoP proof could not be checked against the store");
            Err(AppError::StoreUnavailable)
        }
    }
}

impl<S> FromRequestParts<S> for ApiUser
where
    KeycloakAuth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let auth = KeycloakAuth::from_ref(state);
        let now = unix_now();
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            // A request that presents a token is judged by that token alone.
            let (token, as_dpop) = credentials(value)?;
            let (user, binding) = match auth.oidc().validate_bearer_bound(token, now).await {
                Ok(accepted) => accepted,
                Err(OidcError::Unavailable(_)) => return Err(AppError::IdpUnavailable),
                Err(e) => {
                    // The exact reason stays in the log: a caller probing tokens learns nothing.
                    tracing::info!(error = %e, "bearer token refused");
                    auth.metrics().bearer_refused(match &e {
                        OidcError::InvalidToken(t) => t.label(),
                        _ => "other",
                    });
                    return Err(AppError::InvalidToken(INVALID_TOKEN.into()));
                }
            };
            return match (binding.as_deref(), as_dpop) {
                (None, false) => Ok(ApiUser { user, auth }),
                (Some(_), false) => {
                    auth.metrics().bearer_refused("dpop_bound_as_bearer");
                    Err(AppError::InvalidToken(
                        "a DPoP-bound token needs the DPoP scheme and a proof".into(),
                    ))
                }
                (None, true) => Err(AppError::InvalidToken("the token is not DPoP-bound".into())),
                (Some(jkt), true) => check_proof_everywhere(&auth, parts, token, jkt, now)
                    .await
                    .map(|()| ApiUser { user, auth }),
            };
        }
        match parts_user(&auth, parts).await? {
            Some(user) => Ok(ApiUser { user, auth }),
            None => Err(AppError::NotSignedIn),
        }
    }
}
