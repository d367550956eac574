//! The session route as the browser calls it (`POST <prefix>/refresh`): what the session watcher
//! hears from it, and the user it names when an app refetches the user resource
//! ([`crate::ui::context::provide_user`]). Its own module so that both use it: the watcher reads
//! the user in context, and the context fetches with the watcher's call.
//!
//! Catalogue: G (a session route's odd answer is an error, never a sign-out).

use crate::error::AppError;
use keycloak_bff_core::status::SessionStatus;
use keycloak_bff_core::KeycloakUser;

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

    /// What the user resource holds after this answer: the user of a 200, nobody for a 401,
    /// Keycloak's outage for a 503. Anything else, an unreadable answer included, is an error:
    /// never a sign-out of a session that may be good.
    pub(crate) fn user(self) -> Result<Option<KeycloakUser>, AppError> {
        match (self.code, self.status) {
            (200, Some(status)) if status.signed_in => status
                .user
                .map(Some)
                .ok_or_else(|| AppError::ServerFn("the session route named no user".into())),
            (401, _) => Ok(None),
            (503, _) => Err(AppError::IdpUnavailable),
            (code, _) => Err(AppError::ServerFn(format!(
                "the session route answered {code}"
            ))),
        }
    }
}

#[cfg(feature = "hydrate")]
pub(crate) use browser::{call_refresh, user_now};

#[cfg(feature = "hydrate")]
mod browser {
    use super::Heard;
    use crate::error::AppError;
    use keycloak_bff_core::KeycloakUser;
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;
    use web_sys::{RequestCredentials, RequestInit};

    /// The signed-in user as the session route at `url` answers now: what the user resource
    /// fetches in the browser when an app refetches it.
    pub(crate) async fn user_now(url: String) -> Result<Option<KeycloakUser>, AppError> {
        match send_wrapper::SendWrapper::new(call_refresh(&url)).await {
            Some(heard) => heard.user(),
            None => Err(AppError::ServerFn("the app cannot be reached".into())),
        }
    }

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
    use crate::error::AppError;
    use keycloak_bff_core::KeycloakUser;

    #[test]
    fn a_refetched_user_is_the_session_routes_user_and_an_odd_answer_never_signs_out() {
        let alice = KeycloakUser {
            username: "alice".into(),
            ..KeycloakUser::default()
        };
        let signed_in = serde_json::json!({"signed_in": true, "user": alice}).to_string();
        assert_eq!(Heard::new(200, signed_in).user(), Ok(Some(alice)));
        assert_eq!(Heard::new(401, String::new()).user(), Ok(None));
        assert_eq!(
            Heard::new(503, r#"{"signed_in":false}"#.into()).user(),
            Err(AppError::IdpUnavailable)
        );
        for (code, text) in [
            (200, "not json"),
            (200, r#"{"signed_in":true}"#),
            (200, r#"{"signed_in":false}"#),
            (500, ""),
            (403, r#"{"signed_in":false}"#),
        ] {
            assert!(
                matches!(
                    Heard::new(code, text.into()).user(),
                    Err(AppError::ServerFn(_))
                ),
                "{code} {text}"
            );
        }
    }

    #[test]
    fn another_tab_gets_the_servers_own_answer_back_as_it_was() {
        let heard = Heard::new(200, r#"{"signed_in":true}"#.into());
        let passed = Heard::from_message(&heard.message());
        assert_eq!(passed.map(|h| (h.code, h.text)), Some((200, heard.text)));
        assert!(Heard::from_message("no-code-here").is_none());
    }
}
