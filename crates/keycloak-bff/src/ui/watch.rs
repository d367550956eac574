//! Keeps an open page in step with its server-side session, without reloads.
//!
//! In the browser, a timer calls `POST <prefix>/refresh` every few seconds while the tab is
//! visible and signed in, and at once when a hidden tab becomes visible again. The server refreshes
//! the tokens when they are close to expiry, and answers a [`SessionStatus`] (never a token). When
//! the user changed (roles granted or revoked in Keycloak) or the session ended (signed out in
//! another tab or application, ended by an admin, back-channel logout), the user resource in
//! context is fetched again, so the navigation and every gated component follow. Tabs of the same
//! browser tell each other through a `BroadcastChannel`, so a sign-out in one tab reaches the
//! others at once.
//!
//! [`SessionStatus`]: keycloak_bff_core::status::SessionStatus

use crate::ui::context::{current_path, login_href, use_ui_config, use_user, SessionState};
use leptos::prelude::*;

/// Renders the session notices and, in the browser, starts the session checks. Place it once,
/// inside the router.
#[component]
pub fn SessionWatch() -> impl IntoView {
    let user = use_user();
    let config = use_ui_config();
    let state = SessionState {
        ended: RwSignal::new(false),
        idp_unavailable: RwSignal::new(false),
    };
    provide_context(state);
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| browser::start(user, state, config.clone()));
    #[cfg(not(feature = "hydrate"))]
    let _ = (user, config);
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

#[cfg(feature = "hydrate")]
mod browser {
    use crate::config::UiConfig;
    use crate::error::AppError;
    use crate::ui::context::SessionState;
    use keycloak_bff_core::status::SessionStatus;
    use keycloak_bff_core::KeycloakUser;
    use leptos::prelude::*;
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

    fn visible() -> bool {
        web_sys::window()
            .and_then(|w| w.document())
            .is_some_and(|d| d.visibility_state() == VisibilityState::Visible)
    }

    fn announce() {
        CHANNEL_HANDLE.with(|c| {
            if let Some(channel) = c.borrow().as_ref() {
                let _ = channel.post_message(&JsValue::from_str("changed"));
            }
        });
    }

    /// `(status, body)` of the silent-refresh route, or `None` when the app cannot be reached.
    async fn call_refresh(url: &str) -> Option<(u16, Option<SessionStatus>)> {
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
        Some((response.status(), serde_json::from_str(&text).ok()))
    }

    async fn check(user: UserResource, state: SessionState, url: String) {
        let Some((status, body)) = call_refresh(&url).await else {
            return; // the app itself is unreachable: nothing to conclude
        };
        let shown = user.get_untracked().and_then(Result::ok).flatten();
        match status {
            200 => {
                state.idp_unavailable.set(false);
                let current = body.and_then(|s| s.user);
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

    pub fn start(user: UserResource, state: SessionState, config: UiConfig) {
        let url = config.route("/refresh");
        let poll = move || leptos::task::spawn_local(check(user, state, url.clone()));
        // The timer only runs checks while the page shows a signed-in user: anonymous pages cost
        // the server nothing. Visibility and the other tabs' messages trigger a check either way.
        let tick = poll.clone();
        set_interval(
            move || {
                let signed_in = matches!(user.get_untracked(), Some(Ok(Some(_))));
                if signed_in && visible() {
                    tick();
                }
            },
            Duration::from_secs(u64::from(config.poll_secs.max(1))),
        );
        if let Some(document) = web_sys::window().and_then(|w| w.document()) {
            let on_visible_poll = poll.clone();
            let on_visible = Closure::<dyn Fn()>::new(move || {
                if visible() {
                    on_visible_poll();
                }
            });
            let _ = document.add_event_listener_with_callback(
                "visibilitychange",
                on_visible.as_ref().unchecked_ref(),
            );
            on_visible.forget();
        }
        if let Ok(channel) = BroadcastChannel::new(&config.channel) {
            let on_message = Closure::<dyn Fn(web_sys::MessageEvent)>::new(move |_| poll());
            channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
            on_message.forget();
            CHANNEL_HANDLE.with(|c| *c.borrow_mut() = Some(channel));
        }
        // A page that just loaded (after signing in or out) tells the other tabs to look.
        announce();
    }
}
