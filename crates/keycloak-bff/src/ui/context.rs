//! The signed-in user and the auth settings in context, and the one place components wait for
//! the user.

use crate::config::UiConfig;
use crate::error::AppError;
use keycloak_bff_core::KeycloakUser;
use leptos::prelude::*;

/// The signed-in user, or `None`. Never carries a token.
#[server(prefix = "/api", endpoint = "current_user")]
pub async fn current_user() -> Result<Option<KeycloakUser>, AppError> {
    crate::server::web::guard::request_user().await
}

/// The user resource that [`provide_user`] puts in context.
#[derive(Clone, Copy)]
pub struct UserResource(pub Resource<Result<Option<KeycloakUser>, AppError>>);

/// Puts the user and the auth routes' settings in context; call it once, in the root component.
/// On the server it also hands the page's script nonce to the Content-Security-Policy, so pages
/// hydrate and injected scripts do not run.
/// SSR waits for the user (a blocking resource), so the HTML already shows the final signed-in or
/// signed-out state and nothing flickers on hydration. The settings are read from the server's
/// configuration and shared with the browser through the hydration data.
pub fn provide_user() -> UserResource {
    #[cfg(feature = "ssr")]
    crate::server::web::guard::publish_script_nonce();
    let config = SharedValue::new(|| {
        #[cfg(feature = "ssr")]
        {
            crate::server::web::guard::ui_config()
        }
        #[cfg(not(feature = "ssr"))]
        {
            UiConfig::default()
        }
    })
    .into_inner();
    let refresh = config.route("/refresh");
    provide_context(config);
    let resource = UserResource(Resource::new_blocking(
        || (),
        move |_| user_now(refresh.clone()),
    ));
    provide_context(resource);
    resource
}

/// The user as the server knows it now: on the server, the request's (what [`current_user`]
/// answers). In the browser, where the resource is fetched only when an app refetches it (the
/// page's own user comes with its HTML, and the session watcher sets every later one), it is
/// the answer of the session route the watcher calls (`POST <prefix>/refresh`, at
/// `refresh_url`), fetched the watcher's way: the browser's first download then carries no
/// server-function client for the user.
async fn user_now(refresh_url: String) -> Result<Option<KeycloakUser>, AppError> {
    #[cfg(feature = "ssr")]
    {
        let _ = refresh_url;
        crate::server::web::guard::request_user().await
    }
    #[cfg(all(not(feature = "ssr"), feature = "hydrate"))]
    {
        crate::ui::session_route::user_now(refresh_url).await
    }
    #[cfg(all(not(feature = "ssr"), not(feature = "hydrate")))]
    {
        let _ = refresh_url;
        current_user().await
    }
}

/// The user resource. Panics outside a component tree under [`provide_user`] (a programming
/// error, never input-dependent).
pub fn use_user() -> Resource<Result<Option<KeycloakUser>, AppError>> {
    expect_context::<UserResource>().0
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

/// Renders `view` with the user once it is known (inside a `Transition`, so the last content stays
/// while the user is fetched again). The one place components wait for the user.
#[component]
pub fn WithUser<V, F>(
    /// Shown before the user is first known (nothing by default).
    #[prop(optional, into)]
    fallback: ViewFnOnce,
    render: F,
) -> impl IntoView
where
    F: Fn(Result<Option<KeycloakUser>, AppError>) -> V + Clone + Send + Sync + 'static,
    V: IntoView + 'static,
{
    let user = use_user();
    view! {
        <Transition fallback=fallback>
            {move || {
                let render = render.clone();
                Suspend::new(async move { render(user.await) })
            }}
        </Transition>
    }
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
