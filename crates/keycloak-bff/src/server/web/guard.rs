//! Authorization for server functions and server-rendered pages: the session → user lookup (for a
//! page, once, before it renders: [`PageUser`]), and the rule check that answers 401/403 on the
//! HTTP response.

use crate::config::UiConfig;
use crate::error::AppError;
use crate::server::base::clock::unix_now;
use crate::server::web::state::KeycloakAuth;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use keycloak_bff_core::{Access, KeycloakUser, Rule};
use leptos::prelude::{use_context, with_context};
use leptos_axum::ResponseOptions;
use tower_sessions::Session;

/// The library's state and the parts of the current request, which the library's layers went
/// through (they hold its session). Without those layers: an error, logged.
fn request_parts() -> Result<(KeycloakAuth, Parts), AppError> {
    let parts = use_context::<Parts>().ok_or(AppError::Internal)?;
    let auth = parts.extensions.get::<KeycloakAuth>().cloned();
    match auth {
        Some(auth) if parts.extensions.get::<Session>().is_some() => Ok((auth, parts)),
        _ => {
            tracing::error!(
                "no KeycloakAuth layers on this request: serve the app with KeycloakAuth::serve \
                 (or into_make_service)"
            );
            Err(AppError::Internal)
        }
    }
}

/// The library's state and the browser's session of the current request.
fn request_state() -> Result<(KeycloakAuth, Session), AppError> {
    let (auth, parts) = request_parts()?;
    let session = parts.extensions.get::<Session>().cloned();
    Ok((auth, session.ok_or(AppError::Internal)?))
}

/// The browser's session of the current request.
pub fn request_session() -> Result<Session, AppError> {
    request_state().map(|(_, session)| session)
}

/// The library's state of the current request, for server functions that need more than the
/// user (settings, counters).
pub fn use_keycloak_auth() -> Result<KeycloakAuth, AppError> {
    request_state().map(|(auth, _)| auth)
}

/// The auth routes' settings of the current request (defaults outside a request, such as while
/// leptos_axum lists the app's routes at start-up: nothing to complain about then).
pub fn ui_config() -> UiConfig {
    use_context::<Parts>()
        .and_then(|parts| parts.extensions.get::<KeycloakAuth>().cloned())
        .map(|auth| auth.ui_config().clone())
        .unwrap_or_default()
}

/// Sets the HTTP status of the current response (page or server function) for `error`.
pub fn set_response_status(error: &AppError) {
    if let Some(response) = use_context::<ResponseOptions>() {
        response.set_status(error.http_status());
    }
}

/// Whether the current request is a call of a server function (not a page being rendered).
fn is_server_fn_call() -> bool {
    use_context::<Parts>().is_some_and(|parts| {
        let path = parts.uri.path();
        leptos::server_fn::axum::server_fn_paths().any(|(p, _)| p == path)
    })
}

/// Sets the status for `error` only when the current request is a call of a server function.
/// While a page renders, server functions run in the page's response: there the page decides its
/// status (a public page stays 200 when Keycloak is down).
pub fn set_status_for(error: &AppError) {
    if is_server_fn_call() {
        set_response_status(error);
    }
}

/// Returns `error` after setting the status of a server function's response for it: for the
/// errors of a server function's own work (`.map_err(fail)`).
pub fn fail(error: AppError) -> AppError {
    set_status_for(&error);
    error
}

/// The signed-in user of the current request, if any, with tokens refreshed when due. On error
/// (Keycloak unavailable with an expired token: 503) the HTTP status is set.
/// While a page renders, that is the user the library resolved for its request before it.
pub async fn request_user() -> Result<Option<KeycloakUser>, AppError> {
    let (auth, parts) = request_parts()?;
    parts_user(&auth, &parts).await.inspect_err(set_status_for)
}

/// The user of a request: the one the library's layers resolved for it ([`PageUser`]), else its
/// session's ([`session_user`]). Server functions and `ApiUser` ask this.
pub(crate) async fn parts_user(
    auth: &KeycloakAuth,
    parts: &Parts,
) -> Result<Option<KeycloakUser>, AppError> {
    if let Some(PageUser(user)) = parts.extensions.get::<PageUser>() {
        return user.clone();
    }
    let session = parts.extensions.get::<Session>().cloned();
    session_user(auth, &session.ok_or(AppError::Internal)?).await
}

/// The signed-in user of `session`, its tokens refreshed first when due (`Ok(None)`: signed out).
async fn session_user(
    auth: &KeycloakAuth,
    session: &Session,
) -> Result<Option<KeycloakUser>, AppError> {
    let signed_in = auth.fresh_auth(session, unix_now()).await?;
    Ok(signed_in.map(|a| a.user.clone()))
}

/// The signed-in user of a request that may render a page, resolved (tokens refreshed when
/// due) by the library's layers before the app runs ([`resolve_page_user`]): a page reads it
/// while it renders, without waiting ([`page_user`]), and hands it to the browser with the HTML.
#[derive(Clone, Debug)]
pub(crate) struct PageUser(pub(crate) Result<Option<KeycloakUser>, AppError>);

/// Whether `path` is `prefix` or below it (`/auth` holds `/auth/login`, not `/authors`).
pub(crate) fn under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Whether a request with `method` at `path` may be a page of the app: a `GET` or `HEAD` not under
/// any of `served_elsewhere` (the library's own routes, its probes, the remote API routes).
/// Anything else the app serves on `GET` (its own JSON routes, say) counts as a page: its user is
/// resolved once, and [`request_user`] and `ApiUser` take it from there.
pub(crate) fn may_render_page<'a>(
    method: &axum::http::Method,
    path: &str,
    mut served_elsewhere: impl Iterator<Item = &'a str>,
) -> bool {
    (method == axum::http::Method::GET || method == axum::http::Method::HEAD)
        && !served_elsewhere.any(|prefix| under(path, prefix))
}

/// Whether `path` is one of the remote API routes': their answers are the upstream's, never a
/// page of the app (an upstream's HTML must not lend its script nonce to the policy).
pub(crate) fn is_remote_api(auth: &KeycloakAuth, path: &str) -> bool {
    auth.settings()
        .apis
        .iter()
        .any(|api| under(path, api.path()))
}

/// Resolves the user of a request that may render a page (see [`may_render_page`]) and keeps it
/// in the request for the page ([`PageUser`]). Called by the library's layers, inside the
/// session layer, for requests that are not for the site's files.
pub(crate) async fn resolve_page_user(auth: &KeycloakAuth, parts: &mut Parts) {
    let path = parts.uri.path();
    let library = [auth.ui_config().route_prefix.as_str(), "/health"].into_iter();
    if !may_render_page(&parts.method, path, library) || is_remote_api(auth, path) {
        return;
    }
    let Some(session) = parts.extensions.get::<Session>().cloned() else {
        return;
    };
    let user = session_user(auth, &session).await;
    parts.extensions.insert(PageUser(user));
}

/// The user of the page being rendered ([`PageUser`]). Outside a request, nobody: no request
/// at all, or the made-up one (no extensions at all) that leptos_axum renders the app for when
/// it lists the app's routes at start-up. A page rendered for a request the layers did not
/// resolve (a `POST` the app answers with a page, or no library layers): nobody, which shows the
/// signed-out page and changes nothing in the session.
pub(crate) fn page_user() -> Result<Option<KeycloakUser>, AppError> {
    let resolved = with_context::<Parts, _>(|parts| {
        let made_up = parts.extensions.is_empty();
        (parts.extensions.get::<PageUser>().cloned(), made_up)
    });
    match resolved {
        // Outside a request; a real one has been through axum's router at least, which marks
        // it (`OriginalUri`, `MatchedPath`).
        None | Some((None, true)) => Ok(None),
        Some((Some(PageUser(user)), _)) => user,
        Some((None, false)) => {
            // `request_parts` logs the missing layers.
            if request_parts().is_ok() {
                tracing::debug!(
                    "a page rendered for a request that is not a page's: shown signed out"
                );
            }
            Ok(None)
        }
    }
}

/// The user of the current request if `rule` allows them; otherwise 401 or 403, with the HTTP
/// status set. Every server function that does something protected starts with this: the server
/// never trusts that the UI hid a button.
pub async fn require(rule: &Rule) -> Result<KeycloakUser, AppError> {
    let user = request_user().await?;
    match rule.check(user.as_ref()) {
        Access::Allowed => user.ok_or(AppError::Internal),
        Access::NotSignedIn => Err(fail(AppError::NotSignedIn)),
        Access::Forbidden => {
            if let Some(u) = &user {
                tracing::info!(subject = %u.subject, impersonator = ?u.impersonator, "refused: the rule is not met");
            }
            Err(fail(AppError::Forbidden))
        }
    }
}

/// Like [`require`], and the user signed in with the password within the last
/// `auth.step_up_max_age_secs` (their `auth_time`): for dangerous actions. Otherwise
/// [`AppError::StepUpRequired`] (401): the page sends the browser through Keycloak again
/// (`prompt=login`) and back to the action. A session an administrator opened as the user
/// (Keycloak's impersonation) is refused with [`AppError::NotWhileImpersonating`] (403), unless
/// `auth.step_up_allows_impersonation`.
pub async fn require_recent(rule: &Rule) -> Result<KeycloakUser, AppError> {
    use keycloak_bff_core::step_up::{step_up, StepUp};
    let user = require(rule).await?;
    let auth = use_keycloak_auth()?;
    let ui = auth.ui_config();
    match step_up(
        &user,
        unix_now(),
        ui.step_up_max_age_secs,
        auth.oidc().leeway_secs(),
        ui.step_up_allows_impersonation,
    ) {
        StepUp::Allowed => {
            if let Some(by) = &user.impersonator {
                tracing::info!(subject = %user.subject, impersonator = %by, "a step-up action by an impersonator (allowed by the settings)");
            }
            Ok(user)
        }
        StepUp::NeedsRecentSignIn => {
            tracing::info!(subject = %user.subject, impersonator = ?user.impersonator, "a step-up action needs a recent sign-in");
            Err(fail(AppError::StepUpRequired))
        }
        StepUp::NotWhileImpersonating => {
            tracing::info!(subject = %user.subject, impersonator = ?user.impersonator, "a step-up action refused to an impersonator");
            Err(fail(AppError::NotWhileImpersonating))
        }
    }
}

/// Like [`require`], and the user's sign-in reached the level `acr` (the `acr` of the session's
/// tokens, ranked by `keycloak.acr_levels`: `otp` meets `otp` and `password`). Otherwise
/// [`AppError::LevelRequired`] (401): the page sends the browser through Keycloak for that level
/// ([`crate::ui::gates::AtLevel`], [`crate::UiConfig::level_href`]). A session an administrator
/// opened as the user is refused with [`AppError::NotWhileImpersonating`], as for step-up,
/// unless `auth.step_up_allows_impersonation`: its level is the administrator's sign-in.
pub async fn require_acr(rule: &Rule, acr: &str) -> Result<KeycloakUser, AppError> {
    use keycloak_bff_core::level::{check_level, LevelCheck};
    let user = require(rule).await?;
    let auth = use_keycloak_auth()?;
    let ui = auth.ui_config();
    match check_level(&user, &ui.acr_levels, acr, ui.step_up_allows_impersonation) {
        LevelCheck::Allowed => Ok(user),
        LevelCheck::NeedsLevel => {
            tracing::info!(subject = %user.subject, have = ?user.acr, want = %acr, "a stronger sign-in is needed");
            Err(fail(AppError::LevelRequired(acr.to_owned())))
        }
        LevelCheck::NotWhileImpersonating => {
            tracing::info!(subject = %user.subject, impersonator = ?user.impersonator, "a level-gated action refused to an impersonator");
            Err(fail(AppError::NotWhileImpersonating))
        }
    }
}

/// Answers the page being rendered with `302 Found` to `href`, whatever the request's `Accept`
/// header says (unlike `leptos_axum::redirect`, which only redirects requests that accept HTML).
pub fn redirect_page(href: &str) {
    if let (Some(response), Ok(value)) = (
        use_context::<ResponseOptions>(),
        HeaderValue::from_str(href),
    ) {
        response.insert_header(axum::http::header::LOCATION, value);
        response.set_status(StatusCode::FOUND);
    }
}

#[cfg(test)]
mod tests {
    use super::may_render_page;
    use axum::http::Method;

    #[test]
    fn a_page_is_a_get_or_head_outside_the_librarys_routes_probes_remote_apis_and_files() {
        let elsewhere = ["/pkg/", "/auth", "/health", "/remote/orders"];
        let page =
            |method: &Method, path: &str| may_render_page(method, path, elsewhere.iter().copied());
        for path in [
            "/",
            "/profile",
            "/authors",
            "/remote/ordersx",
            "/api/v1/me",
            "/healthy",
        ] {
            assert!(page(&Method::GET, path), "{path}");
        }
        assert!(page(&Method::HEAD, "/profile"));
        for path in [
            "/pkg/app.wasm",
            "/auth",
            "/auth/refresh",
            "/auth/events",
            "/health/live",
            "/remote/orders",
            "/remote/orders/42",
        ] {
            assert!(!page(&Method::GET, path), "{path}");
        }
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
            assert!(!page(&method, "/profile"), "{method}");
        }
    }
}
