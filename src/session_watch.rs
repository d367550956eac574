//! Keeps an open page in step with its server-side session, without reloads.
//!
//! In the browser, a timer calls `POST /auth/refresh` every few seconds while the tab is visible and
//! signed in, and at once when a hidden tab becomes visible again. The server refreshes the tokens when they
//! are close to expiry, and answers the current user (never a token). When the user changed (roles
//! granted or revoked in Keycloak) or the session ended (signed out in another tab or application,
//! ended by an admin, back-channel logout), the user resource in context is fetched again, so the
//! navigation and every gated component follow. Tabs of the same browser tell each other through a
//! `BroadcastChannel`, so a sign-out in one tab reaches the others at once.

use crate::auth_ui::{current_path, login_href, use_user};
use leptos::prelude::*;

/// Seconds between two checks of the session while the tab is visible.
pub const POLL_SECS: u64 = 5;
/// The `BroadcastChannel` the app's tabs share.
pub const CHANNEL: &str = "kc-leptos-session";

/// What the page knows about its session beyond the user itself.
#[derive(Clone, Copy)]
pub struct SessionState {
    /// The session ended while this page was open.
    pub ended: RwSignal<bool>,
    /// The last check found Keycloak unreachable (the session is kept).
    pub idp_unavailable: RwSignal<bool>,
}

pub fn use_session_state() -> Option<SessionState> {
    use_context::<SessionState>()
}

/// Renders the session banners and, in the browser, starts the session checks.
#[component]
pub fn SessionWatch() -> impl IntoView {
    let user = use_user();
    let state = SessionState {
        ended: RwSignal::new(false),
        idp_unavailable: RwSignal::new(false),
    };
    provide_context(state);
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| browser::start(user, state));
    #[cfg(not(feature = "hydrate"))]
    let _ = user;
    view! {
        <Show when=move || state.ended.get()>
            <div class="banner" role="status" data-testid="session-ended">
                <span>"Your session has ended."</span>
                <a class="button" rel="external" href=move || login_href(&current_path())>
                    "Sign in again"
                </a>
            </div>
        </Show>
        <Show when=move || state.idp_unavailable.get()>
            <div class="banner warn" role="status" data-testid="idp-unavailable">
                "The identity provider cannot be reached right now. You stay signed in; retrying…"
            </div>
        </Show>
    }
}

/// Tells the other tabs that something about the session may have changed.
pub fn announce_change() {
    #[cfg(feature = "hydrate")]
    browser::announce();
}

#[cfg(feature = "hydrate")]
mod browser {
    use super::{SessionState, CHANNEL, POLL_SECS};
    use crate::error::AppError;
    use crate::user::KeycloakUser;
    use leptos::prelude::*;
    use serde::Deserialize;
    use std::cell::RefCell;
    use std::time::Duration;
    use wasm_bindgen::prelude::*;
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;
    use web_sys::{BroadcastChannel, RequestCredentials, RequestInit, VisibilityState};

    type UserResource = Resource<Result<Option<KeycloakUser>, AppError>>;

    thread_local! {
        static CHANNEL_HANDLE: RefCell<Option<BroadcastChannel>> = const { RefCell::new(None) };
    }

    #[derive(Deserialize)]
    struct Status {
        #[serde(default)]
        user: Option<KeycloakUser>,
    }

    fn visible() -> bool {
        web_sys::window()
            .and_then(|w| w.document())
            .is_some_and(|d| d.visibility_state() == VisibilityState::Visible)
    }

    pub fn announce() {
        CHANNEL_HANDLE.with(|c| {
            if let Some(channel) = c.borrow().as_ref() {
                let _ = channel.post_message(&JsValue::from_str("changed"));
            }
        });
    }

    /// `(status, body)` of `POST /auth/refresh`, or `None` when the app cannot be reached.
    async fn call_refresh() -> Option<(u16, String)> {
        let window = web_sys::window()?;
        let init = RequestInit::new();
        init.set_method("POST");
        init.set_credentials(RequestCredentials::SameOrigin);
        let request = web_sys::Request::new_with_str_and_init("/auth/refresh", &init).ok()?;
        let response: web_sys::Response = JsFuture::from(window.fetch_with_request(&request))
            .await
            .ok()?
            .dyn_into()
            .ok()?;
        let text = JsFuture::from(response.text().ok()?)
            .await
            .ok()?
            .as_string()?;
        Some((response.status(), text))
    }

    async fn check(user: UserResource, state: SessionState) {
        let Some((status, body)) = call_refresh().await else {
            return; // the app itself is unreachable: nothing to conclude
        };
        let shown = user.get_untracked().and_then(Result::ok).flatten();
        match status {
            200 => {
                state.idp_unavailable.set(false);
                let current = serde_json::from_str::<Status>(&body)
                    .ok()
                    .and_then(|s| s.user);
                if current.is_some() {
                    state.ended.set(false);
                }
                if current != shown {
                    user.refetch();
                    announce();
                }
            }
            401 => {
                state.idp_unavailable.set(false);
                if shown.is_some() {
                    state.ended.set(true);
                    user.refetch();
                    announce();
                }
            }
            503 => state.idp_unavailable.set(true),
            _ => {}
        }
    }

    pub fn start(user: UserResource, state: SessionState) {
        let poll = move || leptos::task::spawn_local(check(user, state));
        // The timer only runs checks while the page shows a signed-in user: anonymous pages cost
        // the server nothing. Visibility and the other tabs' messages trigger a check either way.
        set_interval(
            move || {
                let signed_in = matches!(user.get_untracked(), Some(Ok(Some(_))));
                if signed_in && visible() {
                    poll();
                }
            },
            Duration::from_secs(POLL_SECS),
        );
        if let Some(document) = web_sys::window().and_then(|w| w.document()) {
            let on_visible = Closure::<dyn Fn()>::new(move || {
                if visible() {
                    poll();
                }
            });
            let _ = document.add_event_listener_with_callback(
                "visibilitychange",
                on_visible.as_ref().unchecked_ref(),
            );
            on_visible.forget();
        }
        if let Ok(channel) = BroadcastChannel::new(CHANNEL) {
            let on_message = Closure::<dyn Fn(web_sys::MessageEvent)>::new(move |_| poll());
            channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
            on_message.forget();
            CHANNEL_HANDLE.with(|c| *c.borrow_mut() = Some(channel));
        }
        // A page that just loaded (after signing in or out) tells the other tabs to look.
        announce();
    }
}
