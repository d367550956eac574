//! The session route as the browser calls it (`POST <prefix>/refresh`): what the session watcher
//! hears from it and passes to the other tabs.
//!
//! Catalogue: G (a session route's odd answer changes nothing: only a 401 signs the page out, in
//! the watcher).

use keycloak_bff_core::status::SessionStatus;

/// What the session route answered: the HTTP status (200 signed in, 401 signed out, 503 Keycloak
/// unreachable) and the server's answer, parsed, and as the server wrote it. The watcher passes
/// `"<code> <text>"` to the other tabs: the server's own JSON, never serialized again in the
/// browser (a serializer of the status and the user would cost every page's first download).
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub(crate) struct Heard {
    pub(crate) code: u16,
    pub(crate) status: Option<SessionStatus>,
    pub(crate) text: String,
}

#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
impl Heard {
    pub(crate) fn new(code: u16, text: String) -> Self {
        // The browser's JSON.parse (`ui/wire.rs`), not serde_json compiled to WebAssembly.
        #[cfg(feature = "hydrate")]
        let status = crate::ui::wire::parse(&text).and_then(|v| crate::ui::wire::status(&v));
        #[cfg(not(feature = "hydrate"))]
        let status = serde_json::from_str(&text).ok();
        Heard { code, status, text }
    }

    /// The message for the other tabs.
    pub(crate) fn message(&self) -> String {
        format!("{} {}", self.code, self.text)
    }

    /// A message of another tab (see [`Heard::message`]).
    pub(crate) fn from_message(message: &str) -> Option<Self> {
        let (code, text) = message.split_once(' ')?;
        Some(Heard::new(code.parse().ok()?, text.to_owned()))
    }
}

#[cfg(feature = "hydrate")]
pub(crate) use browser::call_refresh;

#[cfg(feature = "hydrate")]
mod browser {
    use super::Heard;
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;
    use web_sys::{RequestCredentials, RequestInit};

    /// What the session route at `url` answered, or `None` when the app cannot be reached. The
    /// server answers "signed out" with a 200 (a clean console); here it is a 401.
    pub(crate) async fn call_refresh(url: &str) -> Option<Heard> {
        let window = web_sys::window()?;
        let init = RequestInit::new();
        init.set_method("POST");
        init.set_credentials(RequestCredentials::SameOrigin);
        let request = web_sys::Request::new_with_str_and_init(url, &init).ok()?;
        let response: web_sys::Response = JsFuture::from(window.fetch_with_request(&request))
            .await
            .ok()?
            .dyn_into()
            .ok()?;
        let text = JsFuture::from(response.text().ok()?)
            .await
            .ok()?
            .as_string()?;
        let mut heard = Heard::new(response.status(), text);
        if heard.code == 200 && heard.status.as_ref().is_some_and(|s| !s.signed_in) {
            heard.code = 401;
        }
        Some(heard)
    }
}

#[cfg(test)]
mod tests {
    use super::Heard;

    #[test]
    fn another_tab_gets_the_servers_own_answer_back_as_it_was() {
        let heard = Heard::new(200, r#"{"signed_in":true}"#.into());
        let passed = Heard::from_message(&heard.message());
        assert_eq!(passed.map(|h| (h.code, h.text)), Some((200, heard.text)));
        assert!(Heard::from_message("no-code-here").is_none());
    }
}
