//! Calling the app's remote API routes from the browser ([`call_remote`]): the request goes to
//! the app's own origin with the session cookie and the anti-forgery header the routes ask of
//! state-changing calls (`X-CSRF: 1`); the server adds the token. Nothing here holds a token.
//!
//! Catalogue: P01 (the header that a page of another origin cannot send without a preflight).

use serde::de::DeserializeOwned;

/// The answer of a remote API route: its HTTP status and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteAnswer {
    /// The status: the upstream's, or the library's own refusal (401, 403, 405, 400, 502, 504).
    pub status: u16,
    /// The body as text.
    pub body: String,
}

impl RemoteAnswer {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body read as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_str(&self.body).map_err(|e| format!("unexpected answer: {e}"))
    }

    /// What to tell the user of a refusal: the `error_description` of a JSON error answer (the
    /// library's and RFC 6750's shape), or a plain sentence by status.
    pub fn message(&self) -> String {
        let described = serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| {
                v.get("error_description")
                    .and_then(|d| d.as_str())
                    .map(str::to_owned)
            });
        described.unwrap_or_else(|| match self.status {
            401 => "you need to sign in".to_owned(),
            403 => "you may not do this".to_owned(),
            502..=504 => "the service is unavailable; try again in a moment".to_owned(),
            s => format!("the service answered {s}"),
        })
    }
}

/// Calls the app's remote API route `path` (`/remote/orders`) with `method`, and `json` as a JSON
/// body when given, from the browser: same origin, the session cookie, `X-CSRF: 1`. `Err` when
/// the app cannot be reached (no network). On the server (while rendering) it does nothing and
/// answers `Err`: call it from the browser (an event handler, a `LocalResource`).
pub async fn call_remote(
    method: &str,
    path: &str,
    json: Option<String>,
) -> Result<RemoteAnswer, String> {
    #[cfg(feature = "hydrate")]
    {
        browser::fetch(method, path, json).await
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (method, path, json);
        Err("remote API routes are called from the browser".to_owned())
    }
}

#[cfg(feature = "hydrate")]
mod browser {
    use super::RemoteAnswer;
    use keycloak_bff_core::remote::{CSRF_HEADER, CSRF_HEADER_VALUE};
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;
    use web_sys::{Headers, Request, RequestCredentials, RequestInit, Response};

    fn no(e: JsValue) -> String {
        e.as_string()
            .unwrap_or_else(|| "the app could not be reached".to_owned())
    }

    pub async fn fetch(
        method: &str,
        path: &str,
        json: Option<String>,
    ) -> Result<RemoteAnswer, String> {
        let window = web_sys::window().ok_or("no window")?;
        let headers = Headers::new().map_err(no)?;
        headers.set(CSRF_HEADER, CSRF_HEADER_VALUE).map_err(no)?;
        headers.set("accept", "application/json").map_err(no)?;
        let init = RequestInit::new();
        init.set_method(method);
        init.set_credentials(RequestCredentials::SameOrigin);
        if let Some(body) = json {
            headers
                .set("content-type", "application/json")
                .map_err(no)?;
            init.set_body(&JsValue::from_str(&body));
        }
        init.set_headers(&headers);
        let request = Request::new_with_str_and_init(path, &init).map_err(no)?;
        let response: Response = JsFuture::from(window.fetch_with_request(&request))
            .await
            .map_err(|_| "the app could not be reached".to_owned())?
            .dyn_into()
            .map_err(no)?;
        let body = JsFuture::from(response.text().map_err(no)?)
            .await
            .map_err(no)?
            .as_string()
            .unwrap_or_default();
        Ok(RemoteAnswer {
            status: response.status(),
            body,
        })
    }
}
