//! The one error type that crosses the wire between server functions and components, and its one
//! mapping to HTTP status, used by pages, server functions, the auth routes and a JSON API alike.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
/// The one error type that crosses the wire: every server function, route and extractor of the
/// library answers with it, and [`AppError::http_status`] maps it to HTTP in one place.
pub enum AppError {
    #[error("You need to sign in to do this.")]
    /// No one is signed in (401).
    NotSignedIn,
    /// A bearer token that is not acceptable (401 with `error="invalid_token"`).
    #[error("The access token was not accepted: {0}")]
    InvalidToken(String),
    #[error("You do not have permission to do this.")]
    /// Signed in, and the rule says no (403).
    Forbidden,
    /// Signed in, but this action needs a recent sign-in with the password (step-up): 401 with
    /// RFC 9470's `insufficient_user_authentication`.
    #[error("This action needs you to confirm it is you: sign in again.")]
    StepUpRequired,
    /// Signed in, but this needs a stronger sign-in (a higher level of authentication, the
    /// `acr` named here, such as `otp`): 401 with RFC 9470's `insufficient_user_authentication`
    /// and `acr_values`. The page sends the browser through Keycloak for that level.
    #[error("This needs a stronger sign-in: confirm it is you with your authenticator.")]
    LevelRequired(String),
    /// A step-up action in a session an administrator opened as the user (Keycloak's
    /// impersonation): 403, unless `auth.step_up_allows_impersonation`.
    #[error(
        "Not while an administrator acts as this user: this action needs the user themselves."
    )]
    NotWhileImpersonating,
    #[error("The identity provider is unavailable. Please try again in a moment.")]
    /// Keycloak cannot be reached or answers with an error (503).
    IdpUnavailable,
    /// The session store (Redis, say) does not answer: nobody is signed out, try again (503).
    #[error("Sessions are unavailable right now. Please try again in a moment.")]
    StoreUnavailable,
    /// A service the request needed (Keycloak's Account or Admin API, another API called as the
    /// user) failed or refused: 502, with what failed.
    #[error("A service this needs did not answer as expected: {0}")]
    Upstream(String),
    #[error("Bad request: {0}")]
    /// The request is malformed; the message says how (400).
    BadRequest(String),
    #[error("Not found.")]
    /// Nothing here (404).
    NotFound,
    #[error("Something went wrong on our side.")]
    /// A fault of the server; details are logged, never sent (500).
    Internal,
    /// Transport and encoding errors of the server-function machinery itself.
    #[error("Request failed: {0}")]
    ServerFn(String),
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        // On the server this is a request the server function could not read: the parser's
        // words stay in the log. In the browser it is the browser's own error (say, no network).
        #[cfg(feature = "ssr")]
        {
            tracing::info!(error = %value, "server function request refused");
            let error = AppError::ServerFn("the request could not be read".into());
            // Only a server function's own request is decoded: its answer gets this status.
            if let Some(response) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>() {
                response.set_status(error.http_status());
            }
            error
        }
        #[cfg(not(feature = "ssr"))]
        {
            AppError::ServerFn(value.to_string())
        }
    }
}

impl AppError {
    /// The HTTP status this error is answered with: the only place that decides it.
    pub fn status_code(&self) -> u16 {
        match self {
            AppError::NotSignedIn
            | AppError::InvalidToken(_)
            | AppError::StepUpRequired
            | AppError::LevelRequired(_) => 401,
            AppError::Forbidden | AppError::NotWhileImpersonating => 403,
            AppError::IdpUnavailable | AppError::StoreUnavailable => 503,
            AppError::BadRequest(_) | AppError::ServerFn(_) => 400,
            AppError::NotFound => 404,
            AppError::Internal => 500,
            AppError::Upstream(_) => 502,
        }
    }

    /// [`AppError::status_code`] as axum's type: the one conversion the server uses. Every code
    /// above is a valid status, so the fallback never answers.
    #[cfg(feature = "ssr")]
    pub fn http_status(&self) -> axum::http::StatusCode {
        axum::http::StatusCode::from_u16(self.status_code())
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The OAuth error code of a JSON answer (RFC 6749 §5.2, RFC 6750 §3.1).
    pub fn error_code(&self) -> &'static str {
        match self {
            AppError::NotSignedIn => "unauthorized",
            AppError::InvalidToken(_) => "invalid_token",
            AppError::Forbidden => "insufficient_scope",
            AppError::NotWhileImpersonating => "access_denied",
            AppError::StepUpRequired | AppError::LevelRequired(_) => {
                "insufficient_user_authentication"
            }
            AppError::IdpUnavailable | AppError::StoreUnavailable => "temporarily_unavailable",
            AppError::BadRequest(_) | AppError::ServerFn(_) => "invalid_request",
            AppError::NotFound => "not_found",
            AppError::Internal => "server_error",
            AppError::Upstream(_) => "bad_gateway",
        }
    }
}

/// A JSON API's answer (RFC 6750): the status from [`AppError::status_code`], a short JSON reason,
/// and a `WWW-Authenticate: Bearer` challenge on 401 and 403.
#[cfg(feature = "ssr")]
impl axum::response::IntoResponse for AppError {
    fn into_response(self) -> axum::response::Response {
        use axum::http::{header, HeaderValue};
        let status = self.http_status();
        let description = match &self {
            AppError::NotSignedIn => "a bearer token or a session is required".to_owned(),
            AppError::InvalidToken(reason) => reason.clone(),
            AppError::Forbidden => "a role this request needs is missing".to_owned(),
            AppError::NotWhileImpersonating => "not while impersonating".to_owned(),
            AppError::StepUpRequired => "a recent sign-in is required".to_owned(),
            AppError::LevelRequired(_) => "a stronger sign-in is required".to_owned(),
            AppError::IdpUnavailable => "identity provider unavailable".to_owned(),
            AppError::StoreUnavailable => "session store unavailable".to_owned(),
            AppError::BadRequest(reason)
            | AppError::ServerFn(reason)
            | AppError::Upstream(reason) => reason.clone(),
            AppError::NotFound | AppError::Internal => String::new(),
        };
        let challenge = match &self {
            AppError::NotSignedIn => Some("Bearer".to_owned()),
            AppError::InvalidToken(reason) => Some(format!(
                r#"Bearer error="invalid_token", error_description="{}""#,
                reason.replace(['"', '\\'], "")
            )),
            AppError::Forbidden => Some(r#"Bearer error="insufficient_scope""#.to_owned()),
            AppError::StepUpRequired => {
                Some(r#"Bearer error="insufficient_user_authentication""#.to_owned())
            }
            // RFC 9470 §3: the levels that would do. Only well-formed values reach here (the
            // settings check them), and quotes are dropped all the same.
            AppError::LevelRequired(acr) => Some(format!(
                r#"Bearer error="insufficient_user_authentication", error_description="a stronger sign-in is required", acr_values="{}""#,
                acr.replace(['"', '\\'], "")
            )),
            _ => None,
        };
        let body = if description.is_empty() {
            serde_json::json!({ "error": self.error_code() })
        } else {
            serde_json::json!({ "error": self.error_code(), "error_description": description })
        };
        let mut response = (
            status,
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(body),
        )
            .into_response();
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}
