//! The auth routes under the configured prefix (`/auth` by default): `GET <prefix>/login`,
//! `GET <prefix>/callback`, `POST <prefix>/logout`, `POST <prefix>/refresh`,
//! `POST <prefix>/extend`, and the plain server-rendered pages for their errors (the logout
//! channels are in `logout.rs`, the event stream in `push.rs`). Bad input gets a 4xx page with a plain message; an
//! unreachable Keycloak gets 503; nothing here panics or signs out a good session. Every status
//! comes from [`AppError::status_code`].

use crate::error::AppError;
use crate::server::base::clock::{unix_nanos, unix_now};
use crate::server::keycloak_api::upstream_tokens::UpstreamTokens;
use crate::server::oidc::client::{OidcError, Provider};
use crate::server::session::store::{auth_session, keep_session_end, AuthSession, AUTH_KEY};
use crate::server::web::deferred::{end_keycloak_session, finish_sign_out_later};
use crate::server::web::state::KeycloakAuth;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use keycloak_bff_core::account_action::{
    deletion_watched, with_outcome, AccountAction, ActionOutcome, DELETION_IDLE_CHECK_SECS,
};
use keycloak_bff_core::callback::{self, CallbackParams};
use keycloak_bff_core::expiry;
use keycloak_bff_core::pending::PendingLogin;
use keycloak_bff_core::refresh::next_check_in_idle;
use keycloak_bff_core::status::SessionStatus;
use keycloak_bff_core::step_up::{self, Prompt};
use keycloak_bff_core::ReturnTo;
use serde::Deserialize;
use tower_sessions::Session;
use tracing::Instrument;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A small, complete page in the app's style, for answers outside the Leptos router. Its status
/// is `error`'s.
pub(crate) fn message_page(
    auth: &KeycloakAuth,
    error: &AppError,
    title: &str,
    message: &str,
    actions: &[(&str, &str)],
) -> Response {
    let links: String = actions
        .iter()
        .map(|(href, label)| {
            format!(
                r#"<a class="button" rel="external" href="{}">{}</a>"#,
                escape(href),
                escape(label)
            )
        })
        .collect();
    let status = error.http_status();
    let body = format!(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"/><meta name="viewport" content="width=device-width, initial-scale=1"/><title>{title} · {brand}</title><link rel="stylesheet" href="{css}"/></head><body><header class="topbar"><a class="brand" href="/">{brand}</a></header><main class="page"><section class="card notice" data-status="{code}"><h1>{title}</h1><p>{message}</p><div class="actions">{links}</div></section></main></body></html>"#,
        title = escape(title),
        message = escape(message),
        brand = escape(&auth.settings().brand),
        css = escape(auth.stylesheet()),
        code = status.as_u16(),
    );
    (status, [(header::CACHE_CONTROL, "no-store")], Html(body)).into_response()
}

fn idp_unavailable(auth: &KeycloakAuth, return_to: &ReturnTo) -> Response {
    let again = auth.ui_config().login_href(return_to.as_str());
    message_page(
        auth,
        &AppError::IdpUnavailable,
        "Identity provider unavailable",
        "Sign-in is handled by Keycloak, which cannot be reached right now. Nothing is lost: \
         try again in a moment.",
        &[(&again, "Try again"), ("/", "Home")],
    )
}

fn internal_error(auth: &KeycloakAuth) -> Response {
    message_page(
        auth,
        &AppError::Internal,
        "Something went wrong",
        "The server could not finish this request. Please try again.",
        &[("/", "Home")],
    )
}

/// Keycloak signed the user in, but the session store does not answer: 503, and the way to try
/// again (Keycloak's session signs the browser in without the password).
fn store_unavailable_at_sign_in(auth: &KeycloakAuth, return_to: &ReturnTo) -> Response {
    let again = auth.ui_config().login_href(return_to.as_str());
    message_page(
        auth,
        &AppError::StoreUnavailable,
        "Sessions are unavailable right now",
        "Keycloak signed you in, but this app cannot keep your session at the moment. Nothing is \
         lost: try again in a moment.",
        &[(&again, "Try again"), ("/", "Home")],
    )
}

fn sign_in_failed(auth: &KeycloakAuth, message: &str, return_to: &ReturnTo) -> Response {
    let again = auth.ui_config().login_href(return_to.as_str());
    message_page(
        auth,
        &AppError::BadRequest(message.to_owned()),
        "Sign-in failed",
        message,
        &[(&again, "Sign in again"), ("/", "Home")],
    )
}

#[derive(Deserialize)]
pub struct LoginQuery {
    return_to: Option<String>,
    /// `login` (a step-up: the password again) or `none` (a silent sign-in); anything else is a
    /// normal sign-in.
    prompt: Option<String>,
    /// A level of authentication to ask Keycloak for (`otp`): one of `keycloak.acr_levels`.
    acr: Option<String>,
}

/// Starts the authorization code flow: PKCE S256, `state` and `nonce` travel sealed in a cookie
/// of this sign-in's own ([`crate::server::session::login_cookies`]) and are used once. Nothing is written
/// on the server, and a signed-in session is not touched.
pub async fn login(
    State(auth): State<KeycloakAuth>,
    headers: HeaderMap,
    query: Result<Query<LoginQuery>, QueryRejection>,
) -> Response {
    let query = query.map(|q| q.0).ok();
    let return_to = ReturnTo::new(query.as_ref().and_then(|q| q.return_to.as_deref()));
    let prompt = Prompt::from_query(query.as_ref().and_then(|q| q.prompt.as_deref()));
    let acr = query
        .as_ref()
        .and_then(|q| q.acr.clone())
        .filter(|a| !a.is_empty());
    if let Some(acr) = &acr {
        // Only a level the app ranks: anything else would ask Keycloak for what no check here
        // could confirm (catalogue AA05). A silent sign-in shows no page, so it cannot reach one.
        let refusal = if !auth.ui_config().acr_levels.knows(acr) {
            Some("This sign-in link asks for a level of authentication this app does not use.")
        } else if prompt == Prompt::Silent {
            Some("A sign-in without Keycloak's page cannot ask for a level of authentication.")
        } else {
            None
        };
        if let Some(message) = refusal {
            return message_page(
                &auth,
                &AppError::BadRequest("unusable level of authentication".into()),
                "Unknown level of sign-in",
                message,
                &[(return_to.as_str(), "Back")],
            );
        }
    }
    start_sign_in(&auth, &headers, return_to, prompt, None, acr).await
}

/// Sends the browser to Keycloak's authorization endpoint (with `kc_action` for an account
/// action), the sign-in's secrets sealed in a cookie of its own.
pub(crate) async fn start_sign_in(
    auth: &KeycloakAuth,
    headers: &HeaderMap,
    return_to: ReturnTo,
    prompt: Prompt,
    action: Option<AccountAction>,
    acr: Option<String>,
) -> Response {
    let oidc = auth.oidc();
    let provider = match oidc.provider().await {
        Ok(p) => p,
        // A silent sign-in never shows an error: the visitor simply stays signed out.
        Err(e) if prompt == Prompt::Silent => {
            tracing::info!(error = %e, "no silent sign-in: Keycloak is unavailable");
            return Redirect::to(return_to.as_str()).into_response();
        }
        Err(_) => return idp_unavailable(auth, &return_to),
    };
    let request = match oidc.authorization_request(
        &provider,
        &auth.redirect_uri(),
        prompt,
        action,
        acr.as_deref(),
    ) {
        Ok(r) => r,
        Err(e) if prompt == Prompt::Silent => {
            tracing::error!(error = %e, "cannot build the authorization request; no silent sign-in");
            return Redirect::to(return_to.as_str()).into_response();
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot build the authorization request");
            return internal_error(auth);
        }
    };
    let now = unix_now();
    let pending = PendingLogin {
        state: request.state,
        nonce: request.nonce,
        pkce_verifier: request.pkce_verifier,
        return_to,
        created_at: now,
        order: unix_nanos(),
        prompt,
        action,
        acr,
    };
    let Some(cookies) = auth.login_cookies().start(headers, &pending, now) else {
        tracing::error!("cannot seal the pending login");
        return internal_error(auth);
    };
    auth.metrics().sign_in("started");
    let mut response = Redirect::to(request.url.as_str()).into_response();
    for cookie in cookies {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// Finishes the code flow: checks `state` (once), `iss`, exchanges the code with the PKCE verifier,
/// validates the tokens, rotates the session id and stores the tokens server-side.
pub async fn callback(
    State(auth): State<KeycloakAuth>,
    session: Session,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let home = ReturnTo::home();
    let query = match callback::parse(&raw.unwrap_or_default()) {
        Ok(q) => q,
        Err(e) => {
            auth.metrics().sign_in("failed_malformed");
            return sign_in_failed(&auth, &e.to_string(), &home);
        }
    };
    let now = unix_now();
    let (login, spent) = auth.login_cookies().take(&headers, &query.state, now);
    let mut response = match login {
        Some(login) => {
            let (silent, back) = (login.prompt == Prompt::Silent, login.return_to.clone());
            let (outcome, response) = finish_login(&auth, &session, &query, login, now).await;
            auth.metrics().sign_in(outcome.label());
            if silent && !matches!(outcome, SignIn::Completed | SignIn::SilentDeclined) {
                // A silent attempt never shows an error: the visitor gets the page they asked
                // for, signed out (the reason was logged where it happened).
                tracing::info!(
                    outcome = outcome.label(),
                    "a silent sign-in failed; the visitor stays signed out"
                );
                Redirect::to(back.as_str()).into_response()
            } else {
                response
            }
        }
        // Keycloak's answer to a silent attempt (only `prompt=none` gets these) whose sign-in
        // cookie did not come back (started on another name of the host, or a browser that
        // dropped it): nothing was signed in, so no error page either.
        None if query.error.as_deref().is_some_and(|e| {
            matches!(
                e,
                "login_required"
                    | "interaction_required"
                    | "consent_required"
                    | "account_selection_required"
            )
        }) =>
        {
            auth.metrics().sign_in("silent_declined");
            tracing::info!(
                "a silent sign-in came back without its sign-in cookie; the visitor stays \
                 signed out"
            );
            Redirect::to(home.as_str()).into_response()
        }
        None => {
            auth.metrics().sign_in("failed_unknown_state");
            tracing::info!("callback with an unknown, expired or used state");
            sign_in_failed(
                &auth,
                "This sign-in attempt is unknown, has expired or was already used. Please start \
                 again.",
                &home,
            )
        }
    };
    if let Some(spent) = spent {
        response.headers_mut().append(header::SET_COOKIE, spent);
    }
    response
}

/// How a callback that named a started sign-in ended: the `sign_ins_total` label, decided where
/// it happens (never read back from the HTTP status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SignIn {
    Completed,
    /// A silent attempt (`prompt=none`) that Keycloak declined: back, signed out, no error.
    SilentDeclined,
    Unavailable,
    /// The session store did not answer when the session was to be stored.
    StoreUnavailable,
    Error,
    Refused,
    /// An account action came back without new tokens (cancelled, refused): the session is as
    /// it was.
    ActionOnly,
    /// The user deleted their account: every session of theirs ended.
    AccountDeleted,
}

impl SignIn {
    fn label(self) -> &'static str {
        match self {
            SignIn::Completed => "completed",
            SignIn::SilentDeclined => "silent_declined",
            SignIn::Unavailable => "failed_unavailable",
            SignIn::StoreUnavailable => "failed_store_unavailable",
            SignIn::Error => "failed_error",
            SignIn::Refused => "failed_refused",
            SignIn::ActionOnly => "account_action_only",
            SignIn::AccountDeleted => "account_deleted",
        }
    }
}

/// The rest of the callback, once `state` named a login this browser started (catalogue A01,
/// A02, A04): Keycloak's error, `iss`, the code exchange, the tokens, the new session.
async fn finish_login(
    auth: &KeycloakAuth,
    session: &Session,
    query: &callback::CallbackParams,
    login: PendingLogin,
    now: i64,
) -> (SignIn, Response) {
    if let Some(action) = login.action {
        return finish_action(auth, session, query, login, action, now).await;
    }
    let refused = |message: &str| {
        (
            SignIn::Refused,
            sign_in_failed(auth, message, &login.return_to),
        )
    };
    if let Some(error) = query.error.as_deref() {
        if login.prompt == Prompt::Silent {
            // Keycloak does not know this browser (`login_required`) or wants a page shown: the
            // visitor is back where they were going, signed out, and is not asked again.
            let back = Redirect::to(login.return_to.as_str()).into_response();
            return (SignIn::SilentDeclined, back);
        }
        return keycloak_error_page(auth, error, &login.return_to);
    }
    let provider = match auth.oidc().provider().await {
        Ok(p) => p,
        Err(_) => return (SignIn::Unavailable, idp_unavailable(auth, &login.return_to)),
    };
    if !iss_fits(auth, &provider, query.iss.as_deref()) {
        return refused("The sign-in response came from an unexpected issuer.");
    }
    let Some(code) = query.code.as_deref() else {
        return refused("The sign-in response had no authorization code.");
    };
    let signed_in = match redeem(auth, &provider, code, &login, now).await {
        Ok(signed_in) => signed_in,
        Err(failed) => return failed,
    };
    if login.prompt == Prompt::Login
        && !step_up::step_up_satisfied(&signed_in.user, login.created_at, auth.oidc().leeway_secs())
    {
        tracing::warn!("a step-up sign-in came back without a new sign-in");
        return refused("Keycloak did not ask for your password again. Please try again.");
    }
    // The level is read from what came back, never from what was asked (catalogue AA04).
    if let Some(want) = login.acr.as_deref() {
        if !auth
            .ui_config()
            .acr_levels
            .meets(signed_in.user.acr.as_deref(), want)
        {
            tracing::warn!(have = ?signed_in.user.acr, want = %want, "a sign-in came back below the level it asked for");
            return refused(
                "Keycloak did not confirm the stronger sign-in this needs. Please try again.",
            );
        }
    }
    match start_session(session, &signed_in).await {
        Ok(()) => (
            SignIn::Completed,
            Redirect::to(login.return_to.as_str()).into_response(),
        ),
        Err(NotStarted::StoreUnavailable) => (
            SignIn::StoreUnavailable,
            store_unavailable_at_sign_in(auth, &login.return_to),
        ),
        Err(NotStarted::Internal) => (SignIn::Error, internal_error(auth)),
    }
}

/// The page for Keycloak's `error=` (catalogue A05).
fn keycloak_error_page(
    auth: &KeycloakAuth,
    error: &str,
    return_to: &ReturnTo,
) -> (SignIn, Response) {
    let known = matches!(
        error,
        "access_denied"
            | "login_required"
            | "consent_required"
            | "interaction_required"
            | "temporarily_unavailable"
            | "invalid_request"
            | "server_error"
    );
    tracing::info!(
        error = if known { error } else { "other" },
        "Keycloak returned an error"
    );
    match error {
        "temporarily_unavailable" | "server_error" => {
            (SignIn::Unavailable, idp_unavailable(auth, return_to))
        }
        "access_denied" => (
            SignIn::Refused,
            sign_in_failed(auth, "Sign-in was cancelled or refused.", return_to),
        ),
        _ => (
            SignIn::Refused,
            sign_in_failed(auth, "Keycloak could not sign you in.", return_to),
        ),
    }
}

/// RFC 9207 (catalogue A06): the response's `iss` is the configured issuer, and is there
/// whenever the provider says it sends it.
fn iss_fits(auth: &KeycloakAuth, provider: &Provider, iss: Option<&str>) -> bool {
    let fits = match iss {
        Some(iss) => iss == auth.oidc().issuer(),
        None => !provider.iss_parameter_supported,
    };
    if !fits {
        tracing::warn!(
            present = iss.is_some(),
            "callback iss does not match the configured issuer"
        );
    }
    fits
}

/// Exchanges the code with the login's PKCE verifier and validates the tokens.
async fn redeem(
    auth: &KeycloakAuth,
    provider: &Provider,
    code: &str,
    login: &PendingLogin,
    now: i64,
) -> Result<AuthSession, (SignIn, Response)> {
    let oidc = auth.oidc();
    let result = async {
        let tokens = oidc
            .exchange_code(provider, code, &login.pkce_verifier, &auth.redirect_uri())
            .await?;
        oidc.validate_login(provider, tokens, &login.nonce, now)
            .await
    }
    .await;
    result.map_err(|e| match e {
        OidcError::Unavailable(e) => {
            tracing::warn!(error = %e, "token exchange failed: identity provider unavailable");
            (SignIn::Unavailable, idp_unavailable(auth, &login.return_to))
        }
        OidcError::Rejected { error } => {
            // A code used already, by another client, or with another browser's PKCE verifier.
            tracing::warn!(%error, "the token endpoint refused the code");
            let message = "Keycloak did not accept this sign-in. Please start again.";
            (
                SignIn::Refused,
                sign_in_failed(auth, message, &login.return_to),
            )
        }
        e => {
            tracing::warn!(error = %e, "login rejected");
            let message = "Keycloak's answer could not be accepted.";
            (
                SignIn::Refused,
                sign_in_failed(auth, message, &login.return_to),
            )
        }
    })
}

/// Why a signed-in session could not be stored.
#[derive(Debug, PartialEq, Eq)]
enum NotStarted {
    /// The store did not answer (catalogue G: 503, never 500).
    StoreUnavailable,
    Internal,
}

impl From<tower_sessions::session::Error> for NotStarted {
    fn from(e: tower_sessions::session::Error) -> Self {
        match e {
            tower_sessions::session::Error::Store(e) => {
                tracing::warn!(error = %e, "the session store does not answer at sign-in");
                NotStarted::StoreUnavailable
            }
            other => {
                tracing::error!(error = %other, "cannot store the signed-in session");
                NotStarted::Internal
            }
        }
    }
}

/// Stores the signed-in session under a new id (session fixation: whatever id the browser came
/// with, the signed-in session gets a new one), to end when Keycloak's session does. It is saved
/// here, not after the response: a store that does not answer gets its own page (503), not the
/// session layer's empty 500.
async fn start_session(session: &Session, signed_in: &AuthSession) -> Result<(), NotStarted> {
    // Nothing of the session before sign-in carries over: whatever a browser (or an attacker who
    // planted the id) had in it is gone, and the signed-in session starts empty under a new id.
    session.clear().await;
    session.cycle_id().await?;
    session.insert(AUTH_KEY, signed_in).await?;
    keep_session_end(session, signed_in);
    session.save().await?;
    tracing::info!(subject = %signed_in.user.subject, impersonator = ?signed_in.user.impersonator, "signed in");
    Ok(())
}

/// The callback of a sign-in that asked for `action` (catalogue AA02: only such a callback's
/// `kc_action_status` counts).
async fn finish_action(
    auth: &KeycloakAuth,
    session: &Session,
    query: &CallbackParams,
    login: PendingLogin,
    action: AccountAction,
    now: i64,
) -> (SignIn, Response) {
    let outcome = ActionOutcome::from_status(query.kc_action_status.as_deref());
    let back = |outcome| {
        Redirect::to(&with_outcome(login.return_to.as_str(), action, outcome)).into_response()
    };
    if action.ends_the_account() && outcome == ActionOutcome::Success {
        return account_deleted(auth, session, now).await;
    }
    let (Some(code), None) = (query.code.as_deref(), query.error.as_deref()) else {
        // No new sign-in (Keycloak refused, or the user left its page): the session is as it was.
        let outcome = match outcome {
            ActionOutcome::Success => ActionOutcome::Error,
            other => other,
        };
        tracing::info!(
            action = action.name(),
            outcome = outcome.name(),
            // Whether Keycloak said `error=`, not its text: the query is the browser's to write.
            keycloak_error = query.error.is_some(),
            "an account action came back without a sign-in"
        );
        return (SignIn::ActionOnly, back(outcome));
    };
    let provider = match auth.oidc().provider().await {
        Ok(p) => p,
        Err(_) => return (SignIn::Unavailable, back(ActionOutcome::Error)),
    };
    if !iss_fits(auth, &provider, query.iss.as_deref()) {
        return (SignIn::Refused, back(ActionOutcome::Error));
    }
    let signed_in = match redeem(auth, &provider, code, &login, now).await {
        Ok(signed_in) => signed_in,
        Err(failed) => return failed,
    };
    match start_session(session, &signed_in).await {
        Ok(()) => {
            tracing::info!(
                action = action.name(),
                outcome = outcome.name(),
                "an account action came back"
            );
            (SignIn::Completed, back(outcome))
        }
        Err(NotStarted::StoreUnavailable) => (
            SignIn::StoreUnavailable,
            store_unavailable_at_sign_in(auth, &login.return_to),
        ),
        Err(NotStarted::Internal) => (SignIn::Error, back(ActionOutcome::Error)),
    }
}

/// Keycloak says the account was deleted: believed only once a refresh of the session fails
/// (the user, and with them their Keycloak sessions, are gone). The action marked the session
/// (`deletion_requested_at`), so that refused refresh itself ends every session of the user in the
/// app (`server/oidc/refresh.rs`, catalogue AA03), as it does when the user comes back by
/// Keycloak's own "deleted" page; the browser goes home with the outcome. A refresh that works
/// means the account is still there: nothing ends, and the outcome is an error.
async fn account_deleted(auth: &KeycloakAuth, session: &Session, now: i64) -> (SignIn, Response) {
    let home = |outcome| {
        Redirect::to(&with_outcome("/", AccountAction::DeleteAccount, outcome)).into_response()
    };
    match auth_session(session, now).await {
        Ok(Some(_)) => {}
        Ok(None) => return (SignIn::ActionOnly, home(ActionOutcome::Error)),
        Err(e) => return (SignIn::StoreUnavailable, e.into_response()),
    }
    match auth.extend_session(session, now).await {
        Ok(Some(_)) => {
            tracing::warn!("an account deletion was announced, but the account still exists");
            (SignIn::ActionOnly, home(ActionOutcome::Error))
        }
        Ok(None) => (SignIn::AccountDeleted, home(ActionOutcome::Success)),
        Err(e) => {
            tracing::warn!(error = %e, "could not confirm an account deletion with Keycloak");
            (SignIn::Unavailable, home(ActionOutcome::Error))
        }
    }
}

/// Signs out: ends the local session first, then Keycloak's, from the server (the refresh token
/// and this client's credentials, [`crate::server::oidc::client::Oidc::end_session`]), and sends the
/// browser home. No token ever reaches the browser. When Keycloak cannot be reached, the page
/// says that its session may remain and offers to end it from the browser. POST only, behind
/// the origin check.
///
/// The sign-out runs in a task of its own, to its end, even when the browser goes away as soon
/// as it asked (a tab closed right after "Sign out", on a shared computer): the server drops a
/// request's work when its connection closes, and a sign-out dropped between the app's session
/// and Keycloak's would leave Keycloak's session on, so that the next person to sign in from
/// that browser would be let in as the previous user without a password (catalogue F01).
pub async fn logout(State(auth): State<KeycloakAuth>, session: Session) -> Response {
    tokio::spawn(sign_out(auth, session).instrument(tracing::Span::current()))
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "a sign-out task failed");
            AppError::Internal.into_response()
        })
}

/// [`logout`]'s work.
async fn sign_out(auth: KeycloakAuth, session: Session) -> Response {
    let signed_in = match session.get::<AuthSession>(AUTH_KEY).await {
        Ok(signed_in) => signed_in,
        Err(tower_sessions::session::Error::Store(e)) => {
            tracing::warn!(error = %e, "the session store does not answer at sign-out");
            return sign_out_without_store(&auth, &session);
        }
        // An unreadable record is simply signed out.
        Err(_) => None,
    };
    if let Err(e) = session.flush().await {
        tracing::warn!(error = %e, "cannot delete the session at sign-out");
        return sign_out_without_store(&auth, &session);
    }
    let Some(signed_in) = signed_in else {
        return Redirect::to("/").into_response();
    };
    tracing::info!(subject = %signed_in.user.subject, "signed out of the app");
    auth.metrics().session_ended("signed_out");
    if let Some(remote) = auth.remote_apis() {
        // Tokens exchanged for this session are dropped with it.
        remote.tokens.forget(&UpstreamTokens::session_key(
            signed_in.sid.as_deref(),
            &signed_in.access_token,
        ));
    }
    match end_keycloak_session(&auth, &signed_in).await {
        Ok(()) => Redirect::to("/").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "signed out of the app, but Keycloak's session may remain");
            keycloak_session_may_remain(&auth)
        }
    }
}

/// The answer to a sign-out that ended the app's session but could not reach Keycloak
/// (catalogue F01): 503, and a way to end Keycloak's session from this browser.
fn keycloak_session_may_remain(auth: &KeycloakAuth) -> Response {
    let end_there = auth
        .oidc()
        .browser_logout_url(&auth.settings().absolute("/"));
    message_page(
        auth,
        &AppError::IdpUnavailable,
        "Signed out of this app only",
        "You are signed out of this app, but Keycloak could not be reached to end your Keycloak \
         session. Until it ends, signing in again may not ask for your password. On a shared \
         computer, end it now (Keycloak asks you to confirm) or close the browser.",
        &[
            (end_there.as_str(), "End the Keycloak session"),
            ("/", "Home"),
        ],
    )
}

/// The answer to a sign-out while the session store does not answer: the session cannot be read
/// (so neither can the refresh token that ends Keycloak's session) nor deleted now. The browser
/// drops its session cookie (what the user asked for: this browser is signed out of the app), the
/// server ends the session (and then Keycloak's) as soon as the store answers again
/// ([`finish_sign_out_later`]), and the page says so, with the way to end Keycloak's session from
/// the browser meanwhile. 503, not 500.
fn sign_out_without_store(auth: &KeycloakAuth, session: &Session) -> Response {
    if let Some(id) = session.id() {
        finish_sign_out_later(auth, id);
    }
    let end_there = auth
        .oidc()
        .browser_logout_url(&auth.settings().absolute("/"));
    let mut page = message_page(
        auth,
        &AppError::StoreUnavailable,
        "Signed out of this browser",
        "Sessions are unavailable right now: this browser no longer holds your session, and the \
         app ends it on the server, and your Keycloak session, as soon as sessions are available \
         again. Until Keycloak's session ends, signing in again may not ask for your password. \
         On a shared computer, end it now (Keycloak asks you to confirm) or close the browser.",
        &[
            (end_there.as_str(), "End the Keycloak session"),
            ("/", "Home"),
        ],
    );
    let settings = auth.settings();
    let removal = keycloak_bff_core::cookie::policy(
        settings.public_url_is_https(),
        &settings.session.cookie_name,
    )
    .removal();
    if let Ok(value) = header::HeaderValue::from_str(&removal) {
        page.headers_mut().append(header::SET_COOKIE, value);
    }
    page
}

#[derive(Deserialize)]
pub struct RefreshQuery {
    /// `1`: the page saw no activity since the last refresh (`session.keep_alive = "activity"`).
    idle: Option<String>,
}

/// The open page's check (`POST <prefix>/refresh`), answering a [`SessionStatus`]. It refreshes
/// the session's tokens when they expire within the margin, or, however fresh they are, when
/// Keycloak's idle end is near enough that the page came to keep the session alive
/// (`keep_alive_due`, as every request of the session does). With `?idle=1` (nobody did anything in the browser since the last
/// refresh) it refreshes nothing: it says how the session stands and asks the page to come back
/// at its end, so that Keycloak's idle limit ends an unattended session after the warning. The
/// exception: while the user's deletion of their account is watched (`deletion_watched`: they set
/// off to delete it on Keycloak's pages, which never come back to the app), an idle check checks
/// like any other request and asks the page to come back within seconds, so that a tab left open
/// learns of the deletion (the deletion itself happens on Keycloak's page, after this tab's last
/// input). Same-origin only; never returns a token. 200 signed in, 200 with `"signed_in": false` signed
/// out (or the session just ended: an answer, not an error, so the page's console stays clean),
/// 503 Keycloak or the store unavailable.
pub async fn refresh(
    State(auth): State<KeycloakAuth>,
    session: Session,
    query: Result<Query<RefreshQuery>, QueryRejection>,
) -> Response {
    let now = unix_now();
    let warning = auth.ui_config().expiry_warning_secs;
    let idle = query
        .ok()
        .and_then(|q| q.0.idle)
        .is_some_and(|v| v == "1" || v == "true");
    if idle {
        let result = auth_session(&session, now).await;
        let watched =
            matches!(&result, Ok(Some(s)) if deletion_watched(s.deletion_requested_at, now));
        if !watched {
            return status_response(result, now, Answer::Idle, warning);
        }
        let result = auth.fresh_auth(&session, now).await;
        let result = result.map(|signed_in| signed_in.map(std::sync::Arc::unwrap_or_clone));
        return status_response(result, now, Answer::DeletionWatched, warning);
    }
    // Refreshed when due, and kept alive when Keycloak's idle end nears (Refresher::fresh_auth).
    let result = auth.fresh_auth(&session, now).await;
    let result = result.map(|signed_in| signed_in.map(std::sync::Arc::unwrap_or_clone));
    status_response(result, now, Answer::Checked, warning)
}

/// "Stay signed in": refreshes now, however fresh the tokens, so that Keycloak's idle limit
/// moves, and answers a [`SessionStatus`] like the silent refresh. When the session still ends
/// within the warning afterwards, Keycloak's maximum lifetime is reached (`at_maximum`).
pub async fn extend(State(auth): State<KeycloakAuth>, session: Session) -> Response {
    let now = unix_now();
    let result = auth.extend_session(&session, now).await;
    let warning = auth.ui_config().expiry_warning_secs;
    status_response(result, now, Answer::Extended, warning)
}

/// What a status answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Refreshed when due.
    Checked,
    /// Refreshed whatever the tokens: it tells whether Keycloak's maximum is reached.
    Extended,
    /// Nothing refreshed: the page asks again at the session's end.
    Idle,
    /// Refreshed when due (the deletion check among them): the idle page asks again soon.
    DeletionWatched,
}

fn status_response(
    result: Result<Option<AuthSession>, AppError>,
    now: i64,
    answer: Answer,
    warning_secs: i64,
) -> Response {
    let (error, status) = match result {
        Ok(Some(signed_in)) => {
            let end = signed_in.user.session_expires_at;
            let mut status = SessionStatus::signed_in(
                signed_in.user,
                signed_in.access_expires_at,
                now,
                warning_secs,
            );
            match answer {
                Answer::Extended => {
                    status.at_maximum = expiry::reached_maximum(now, end, warning_secs);
                }
                Answer::Idle => status.check_in_secs = Some(next_check_in_idle(now, end)),
                Answer::DeletionWatched => {
                    status.check_in_secs =
                        Some(next_check_in_idle(now, end).min(DELETION_IDLE_CHECK_SECS));
                }
                Answer::Checked => {}
            }
            (None, status)
        }
        // "Stay signed in" needs a session: 401.
        Ok(None) if answer == Answer::Extended => {
            (Some(AppError::NotSignedIn), SessionStatus::signed_out())
        }
        // Signed out is an answer of the page's check, not an error (no 401 in its console).
        Ok(None) => (None, SessionStatus::signed_out()),
        Err(AppError::IdpUnavailable) => {
            (Some(AppError::IdpUnavailable), SessionStatus::unavailable())
        }
        Err(e) => (Some(e), SessionStatus::failed()),
    };
    let code = error.as_ref().map_or(StatusCode::OK, AppError::http_status);
    (
        code,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(status),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::session::store::AuthStore;
    use std::sync::Arc;

    #[tokio::test]
    async fn signing_in_keeps_nothing_of_the_session_before_it() {
        let store = Arc::new(AuthStore::memory().expect("memory"));
        let session = Session::new(None, store.clone(), None);
        session
            .insert("planted", "by whoever held the id before")
            .await
            .expect("insert");
        session.save().await.expect("save");
        let before = session.id().expect("an id");
        let signed_in = AuthSession {
            user: keycloak_bff_core::KeycloakUser {
                session_expires_at: unix_now() + 3600,
                ..Default::default()
            },
            access_token: "a".into(),
            access_expires_at: 100,
            refresh_token: None,
            id_token: "i".into(),
            sid: None,
            generation: 0,
            refreshed_at: 0,
            dpop_jkt: None,
            deletion_requested_at: None,
        };
        start_session(&session, &signed_in).await.expect("started");
        session.save().await.expect("save");
        assert_ne!(session.id(), Some(before), "a new id");
        assert_eq!(
            session.get::<String>("planted").await.expect("read"),
            None,
            "the planted value is gone"
        );
        let stored = tower_sessions::SessionStore::load(store.as_ref(), &session.id().expect("id"))
            .await
            .expect("load")
            .expect("stored");
        assert!(
            !stored.data.contains_key("planted"),
            "{:?}",
            stored.data.keys()
        );
        assert!(stored.data.contains_key(AUTH_KEY));
    }
}
