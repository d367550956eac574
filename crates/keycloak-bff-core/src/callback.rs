//! The authorization response (`/auth/callback?…`), parsed and capped before anything else looks at
//! it. Only `code`, `state`, `error`, `iss` and `kc_action_status` are read: tokens in the query
//! (an implicit-flow response) are ignored (catalogue A10).

use serde::Deserialize;

/// Longest query string accepted (catalogue C04-style cap before parsing).
pub const MAX_QUERY: usize = 8 * 1024;
const MAX_STATE: usize = 512;
const MAX_CODE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
/// The query of `<prefix>/callback`, Keycloak's authorization response.
pub struct CallbackParams {
    /// The `state` the login was started with.
    pub state: String,
    /// The authorization code, on success.
    pub code: Option<String>,
    /// Keycloak's error code (`login_required`, `access_denied`…), on failure.
    pub error: Option<String>,
    /// The issuer of the response (RFC 9207), when Keycloak sends it.
    pub iss: Option<String>,
    /// How an account action ended (`success`, `cancelled`, `error`), when one was asked for.
    pub kc_action_status: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
/// Why a callback query was refused (HTTP 400).
pub enum CallbackError {
    #[error("The sign-in response was too large.")]
    /// Longer than the cap.
    TooLarge,
    #[error("The sign-in response was malformed.")]
    /// Not a query string, or a parameter given twice.
    Malformed,
    #[error("The sign-in response had no state. Please start again.")]
    /// No `state`.
    MissingState,
}

#[derive(Deserialize)]
struct Raw {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    iss: Option<String>,
    kc_action_status: Option<String>,
}

/// Parses and caps the callback's raw query.
pub fn parse(raw: &str) -> Result<CallbackParams, CallbackError> {
    if raw.len() > MAX_QUERY {
        return Err(CallbackError::TooLarge);
    }
    let q: Raw = serde_urlencoded::from_str(raw).map_err(|_| CallbackError::Malformed)?;
    let state = q
        .state
        .filter(|s| !s.is_empty() && s.len() <= MAX_STATE)
        .ok_or(CallbackError::MissingState)?;
    Ok(CallbackParams {
        state,
        code: q.code.filter(|c| !c.is_empty() && c.len() <= MAX_CODE),
        error: q.error.map(|e| e.chars().take(64).collect()),
        iss: q.iss,
        kc_action_status: q.kc_action_status.map(|s| s.chars().take(16).collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keycloak_response_parses_and_unknown_parameters_are_ignored() {
        let p = parse(
            "state=s1&session_state=x&iss=http%3A%2F%2Fkc%2Frealms%2Fdemo&code=c1&access_token=eyJ",
        )
        .expect("parses");
        assert_eq!(p.state, "s1");
        assert_eq!(p.code.as_deref(), Some("c1"));
        assert_eq!(p.iss.as_deref(), Some("http://kc/realms/demo"));
        assert_eq!(p.error, None);
    }

    #[test]
    fn missing_duplicated_oversized_or_broken_parameters_are_refused() {
        assert_eq!(parse(""), Err(CallbackError::MissingState));
        assert_eq!(parse("code=1"), Err(CallbackError::MissingState));
        assert_eq!(parse("state="), Err(CallbackError::MissingState));
        assert_eq!(
            parse(&format!("state={}", "a".repeat(600))),
            Err(CallbackError::MissingState)
        );
        assert_eq!(parse("state=a&state=b"), Err(CallbackError::Malformed));
        assert_eq!(
            parse(&"a".repeat(MAX_QUERY + 1)),
            Err(CallbackError::TooLarge)
        );
        let p = parse(&format!("state=s&code={}", "c".repeat(5000))).expect("parses");
        assert_eq!(p.code, None, "an oversized code counts as none");
    }
}
