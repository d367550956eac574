//! The signed-in user and the auth settings in context, and the one place components read the
//! user.

use crate::config::UiConfig;
use crate::error::AppError;
use keycloak_bff_core::KeycloakUser;
use leptos::prelude::*;
use std::sync::Arc;

/// The signed-in user, or `None`. Never carries a token.
#[server(prefix = "/api", endpoint = "current_user")]
pub async fn current_user() -> Result<Option<KeycloakUser>, AppError> {
    crate::server::web::guard::request_user().await
}

/// The signed-in user, as the page shows it: `Ok(None)` signed out, `Err` when it could not be
/// told (Keycloak unreachable with an expired token: the session is kept).
pub type UserState = Result<Option<KeycloakUser>, AppError>;

/// The user in context: the session watcher writes it, components read it ([`use_user`]).
#[derive(Clone, Copy)]
pub(crate) struct UserCell(pub(crate) RwSignal<UserState>);

/// Puts the user and the auth routes' settings in context; call it once, in the root component.
///
/// The user is known before the page renders: the library's layers resolve it for every request
/// that may be a page (tokens refreshed when due), the server renders with it, and the browser
/// reads it from the page's hydration data. So the HTML already shows the final signed-in or
/// signed-out state, nothing waits for it and nothing flickers on hydration; no `Suspense` or
/// `Transition` is needed around what depends on it. Afterwards the session watcher
/// (`SessionWatch`) keeps it up to date. The settings come from the server's configuration the
/// same way.
pub fn provide_user() -> ReadSignal<UserState> {
    let (config, user) = handed_over();
    provide_context(config);
    let user = RwSignal::new(user);
    provide_context(UserCell(user));
    user.read_only()
}

/// The settings and the page's user. On the server, as the request resolved them, written into
/// the page's hydration data as JSON (serde); in the browser, read back from it with the
/// browser's `JSON.parse` (`ui/wire.rs`: no `serde_json` in the browser), or the defaults
/// (signed out) when it is not there.
fn handed_over() -> (UiConfig, UserState) {
    #[cfg(feature = "ssr")]
    {
        let config = crate::server::web::guard::ui_config();
        let user = crate::server::web::guard::page_user();
        for text in [serde_json::to_string(&config), serde_json::to_string(&user)] {
            let text = text.unwrap_or_default();
            let _ = SharedValue::new_str(move || text);
        }
        (config, user)
    }
    #[cfg(not(feature = "ssr"))]
    {
        let config = SharedValue::new_str(String::new).into_inner();
        let user = SharedValue::new_str(String::new).into_inner();
        #[cfg(feature = "hydrate")]
        {
            use crate::ui::wire;
            (
                wire::parse(&config).map_or_else(UiConfig::default, |v| wire::ui_config(&v)),
                wire::parse(&user).map_or(Ok(None), |v| wire::user_state(&v)),
            )
        }
        #[cfg(not(feature = "hydrate"))]
        {
            let _ = (config, user);
            (UiConfig::default(), Ok(None))
        }
    }
}

/// The signed-in user, reactive: read it with `.get()` or `.with(..)` in a view or an effect.
/// Panics outside a component tree under [`provide_user`] (a programming error, never
/// input-dependent).
pub fn use_user() -> ReadSignal<UserState> {
    expect_context::<UserCell>().0.read_only()
}

/// The auth routes' settings provided by [`provide_user`] (defaults outside it).
pub fn use_ui_config() -> UiConfig {
    use_context::<UiConfig>().unwrap_or_default()
}

/// The sign-in link that comes back to `return_to`.
pub fn login_href(return_to: &str) -> String {
    use_ui_config().login_href(return_to)
}

/// Where a sign-out form posts (`<form method="post" action=logout_action()>`): the library's
/// `logout` route under the configured prefix, so that no app hard-codes `/auth/logout`.
pub fn logout_action() -> String {
    use_ui_config().route("/logout")
}

/// The step-up sign-in link (`prompt=login`) that comes back to `return_to`.
pub fn step_up_href(return_to: &str) -> String {
    use_ui_config().step_up_href(return_to)
}

/// The sign-in that asks Keycloak for the level `acr` (see [`crate::UiConfig::level_href`]) and
/// comes back to `return_to`.
pub fn level_href(acr: &str, return_to: &str) -> String {
    use_ui_config().level_href(acr, return_to)
}

/// The current Unix time in seconds, by the server's clock while rendering there and the
/// browser's after hydration.
pub fn now_secs() -> i64 {
    #[cfg(not(feature = "ssr"))]
    {
        (js_sys_now() / 1000.0) as i64
    }
    #[cfg(feature = "ssr")]
    {
        crate::server::base::clock::unix_now()
    }
}

#[cfg(all(not(feature = "ssr"), feature = "hydrate"))]
fn js_sys_now() -> f64 {
    js_sys::Date::now()
}

#[cfg(all(not(feature = "ssr"), not(feature = "hydrate")))]
fn js_sys_now() -> f64 {
    0.0
}

/// The path and query of the current page, for coming back after sign-in: on the server the
/// request's (no router context needed, so a render the client abandoned cannot panic here), in
/// the browser the window's.
pub fn current_path() -> String {
    #[cfg(feature = "ssr")]
    {
        use_context::<leptos_router::location::RequestUrl>()
            .map(|url| path_and_query(url.as_ref()))
            .unwrap_or_else(|| "/".to_owned())
    }
    #[cfg(all(not(feature = "ssr"), feature = "hydrate"))]
    {
        web_sys::window()
            .and_then(|w| {
                let location = w.location();
                let path = location.pathname().ok()?;
                Some(format!("{path}{}", location.search().unwrap_or_default()))
            })
            .unwrap_or_else(|| "/".to_owned())
    }
    #[cfg(all(not(feature = "ssr"), not(feature = "hydrate")))]
    {
        "/".to_owned()
    }
}

/// `/path?query` of a URL (`http://host/path?query`), or the URL itself when it is a path.
#[cfg_attr(not(feature = "ssr"), allow(dead_code))]
fn path_and_query(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, after)| {
        after.find('/').map_or("/", |i| &after[i..])
    });
    if rest.starts_with('/') {
        rest.to_owned()
    } else {
        format!("/{rest}")
    }
}

/// Renders `render` with the user, again whenever the user shown changes (signed out, roles
/// changed). The one place the library's components read the user.
#[component]
pub fn WithUser<V, F>(render: F) -> impl IntoView
where
    F: Fn(UserState) -> V + Send + Sync + 'static,
    V: IntoView + 'static,
{
    let render: UserView = Arc::new(move |user| render(user).into_any());
    with_user(render)
}

/// How [`WithUser`] renders the user: one type for every caller.
type UserView = Arc<dyn Fn(UserState) -> AnyView + Send + Sync>;

/// The body of [`WithUser`], not generic: its code is in every page's first download once, not
/// once for each place that reads the user.
fn with_user(render: UserView) -> AnyView {
    let user = use_user();
    (move || render(user.get())).into_any()
}

/// What the page knows about its session beyond the user itself (provided by `SessionWatch`).
#[derive(Clone, Copy)]
pub struct SessionState {
    /// The session ended while this page was open.
    pub ended: RwSignal<bool>,
    /// The last check found Keycloak unreachable (the session is kept).
    pub idp_unavailable: RwSignal<bool>,
    /// When Keycloak's session ends (the refresh token's expiry: its idle or maximum lifetime),
    /// as last heard; browser only.
    pub ends_at: RwSignal<Option<i64>>,
    /// A "Stay signed in" found Keycloak's maximum lifetime reached: only a new sign-in helps.
    pub at_maximum: RwSignal<bool>,
    /// The clock of the expiry warning (Unix seconds), ticking only while it matters.
    pub now: RwSignal<i64>,
}

/// The session's expiry and state, as `<SessionWatch/>` keeps them (none outside it).
pub fn use_session_state() -> Option<SessionState> {
    use_context::<SessionState>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_path_is_the_requests_path_and_query() {
        assert_eq!(path_and_query("http://leptos.dev/notes?x=1"), "/notes?x=1");
        assert_eq!(path_and_query("http://leptos.dev"), "/");
        assert_eq!(path_and_query("/profile"), "/profile");
    }
}
