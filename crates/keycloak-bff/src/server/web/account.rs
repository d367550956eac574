//! The request's side of calling APIs as the user: [`AsUser::current`] makes an
//! [`AsUser`](crate::server::keycloak_api::account::AsUser) for the signed-in user of the current
//! server function or page (tokens refreshed first when due), and the three calls of "My sessions"
//! set the HTTP status of their errors on the response.
//! Keycloak's session ids never reach the browser: with front-channel logout on, a `sid` is a
//! logout credential. Each row carries an opaque handle instead (a keyed hash,
//! [`LoginCookies::handle`](crate::server::session::login_cookies::LoginCookies::handle)), which
//! the server resolves among the caller's own sessions.
//! Catalogue: a signed-out caller gets 401 (A02), never a call to Keycloak.

use crate::error::AppError;
use crate::server::base::clock::unix_now;
use crate::server::keycloak_api::account::AsUser;
use crate::server::web::guard::{fail, request_session, use_keycloak_auth};
use keycloak_bff_core::account::{AccountSession, SignInMethod};

impl AsUser {
    /// The user of the current request (a server function or a page), the tokens refreshed
    /// first when they expire within the margin. Signed out: [`AppError::NotSignedIn`].
    pub async fn current() -> Result<Self, AppError> {
        let auth = use_keycloak_auth()?;
        let session = request_session()?;
        let signed_in = auth
            .fresh_auth(&session, unix_now())
            .await
            .map_err(fail)?
            .ok_or_else(|| fail(AppError::NotSignedIn))?;
        let bound = signed_in.dpop_jkt.is_some();
        let (token, sid) = (signed_in.access_token.clone(), signed_in.sid.clone());
        AsUser::new(auth.oidc(), token, bound, sid).map_err(fail)
    }
}

/// The signed-in user's sign-in methods (password, authenticator app, passkeys, security keys),
/// each with the user's credentials of it by label ([`AsUser::sign_in_methods`]).
pub async fn my_sign_in_methods() -> Result<Vec<SignInMethod>, AppError> {
    AsUser::current()
        .await?
        .sign_in_methods()
        .await
        .map_err(fail)
}

/// What the handles of "My sessions" are made for (the HMAC's purpose).
const SESSION_HANDLE: &str = "account-session";

/// The signed-in user's Keycloak sessions, the current one first ([`AsUser::sessions`]), each
/// `id` replaced by an opaque handle for [`end_my_session`].
pub async fn my_sessions() -> Result<Vec<AccountSession>, AppError> {
    let auth = use_keycloak_auth()?;
    let mut sessions = AsUser::current().await?.sessions().await.map_err(fail)?;
    for s in &mut sessions {
        s.id = auth.login_cookies().handle(SESSION_HANDLE, &s.id);
    }
    Ok(sessions)
}

/// Ends one of the user's other Keycloak sessions, named by the handle [`my_sessions`] gave it
/// ([`AsUser::end_session`]). A handle that names none of the user's sessions (ended meanwhile,
/// someone else's, made up) is a 400.
pub async fn end_my_session(handle: &str) -> Result<(), AppError> {
    let auth = use_keycloak_auth()?;
    let user = AsUser::current().await?;
    let sessions = user.sessions().await.map_err(fail)?;
    let Some(session) = sessions
        .iter()
        .find(|s| auth.login_cookies().handle(SESSION_HANDLE, &s.id) == handle)
    else {
        return Err(fail(AppError::BadRequest(
            "that session has ended already or is not one of yours".into(),
        )));
    };
    user.end_session(&session.id).await.map_err(fail)
}

/// Ends every Keycloak session of the user but the current one
/// ([`AsUser::end_other_sessions`]).
pub async fn end_my_other_sessions() -> Result<(), AppError> {
    AsUser::current()
        .await?
        .end_other_sessions()
        .await
        .map_err(fail)
}
