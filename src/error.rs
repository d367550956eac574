//! The one error type that crosses the wire between server functions and components, mapped to an
//! HTTP status in one place.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    #[error("You need to sign in to do this.")]
    NotSignedIn,
    #[error("You do not have permission to do this.")]
    Forbidden,
    #[error("The identity provider is unavailable. Please try again in a moment.")]
    IdpUnavailable,
    #[error("Bad request: {0}")]
    BadRequest(String),
    #[error("Not found.")]
    NotFound,
    #[error("Something went wrong on our side.")]
    Internal,
    /// Transport and encoding errors of the server-function machinery itself.
    #[error("Request failed: {0}")]
    ServerFn(String),
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        AppError::ServerFn(value.to_string())
    }
}

impl AppError {
    /// The HTTP status this error is answered with.
    pub fn status_code(&self) -> u16 {
        match self {
            AppError::NotSignedIn => 401,
            AppError::Forbidden => 403,
            AppError::IdpUnavailable => 503,
            AppError::BadRequest(_) | AppError::ServerFn(_) => 400,
            AppError::NotFound => 404,
            AppError::Internal => 500,
        }
    }
}
