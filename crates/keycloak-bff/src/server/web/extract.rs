//! The caller of a JSON API: `Authorization: Bearer <access token>` issued by the realm, or the
//! browser session. Works with any app state that can give a [`KeycloakAuth`] (`FromRef`).
//!
//! Refusals are [`AppError`]s, answered as RFC 6750 says: 401 with `WWW-Authenticate: Bearer
//! error="invalid_token"` for a bad token, 403 with `error="insufficient_scope"` for a missing
//! role (see [`ApiUser::require`]), a short JSON reason in both; never a 500 for bad input.

use crate::error::AppError;
use crate::server::base::clock::unix_now;
use crate::server::oidc::client::OidcError;
use crate::server::web::state::KeycloakAuth;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use keycloak_bff_core::jwt::MAX_TOKEN_BYTES;
use keycloak_bff_core::{Access, KeycloakUser, Rule};

/// The one reason a refused token gets, whatever was wrong with it.
pub const INVALID_TOKEN: &str = "the access token is invalid or has expired";

/// The caller of an API request: a bearer token's subject, or the browser session's user.
pub struct ApiUser(pub KeycloakUser);

impl ApiUser {
    /// The caller, if `rule` allows them; otherwise 403 (`insufficient_scope`).
    pub fn require(&self, rule: &Rule) -> Result<&KeycloakUser, AppError> {
        match rule.check(Some(&self.0)) {
            Access::Allowed => Ok(&self.0),
            Access::NotSignedIn => Err(AppError::NotSignedIn),
            Access::Forbidden => Err(AppError::Forbidden),
        }
    }
}

fn bearer_token(value: &axum::http::HeaderValue) -> Result<&str, AppError> {
    if value.len() > MAX_TOKEN_BYTES + 16 {
        return Err(AppError::InvalidToken("token too large".into()));
    }
    let text = value
        .to_str()
        .map_err(|_| AppError::InvalidToken("malformed Authorization header".into()))?;
    match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(token.trim()),
        _ => Err(AppError::InvalidToken("expected a Bearer token".into())),
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
            let token = bearer_token(value)?;
            return match auth.oidc().validate_bearer(token, now).await {
                Ok(user) => Ok(ApiUser(user)),
                Err(OidcError::Unavailable(_)) => Err(AppError::IdpUnavailable),
                Err(e) => {
                    // The exact reason stays in the log: a caller probing tokens learns nothing.
                    tracing::info!(error = %e, "bearer token refused");
                    auth.metrics().bearer_refused(match &e {
                        OidcError::InvalidToken(t) => t.label(),
                        _ => "other",
                    });
                    Err(AppError::InvalidToken(INVALID_TOKEN.into()))
                }
            };
        }
        let session = parts
            .extensions
            .get::<tower_sessions::Session>()
            .cloned()
            .ok_or(AppError::Internal)?;
        match auth.fresh_auth(&session, now).await {
            Ok(Some(signed_in)) => Ok(ApiUser(signed_in.user)),
            Ok(None) => Err(AppError::NotSignedIn),
            Err(e) => Err(e),
        }
    }
}
