//! The realm's users for a page or server function of the app, behind the caller's rule: the
//! only public way to search the directory. The rule is checked with step-up
//! ([`require_recent`]) before the service account makes any call, so an app cannot forget it;
//! a user's detail (where they are signed in) needs a level of authentication besides
//! ([`require_acr`]). Catalogue H01 (every server function checks its rule), the step-up cases,
//! and AA04.

use crate::error::AppError;
use crate::server::base::clock::unix_now;
use crate::server::web::guard::{fail, require_acr, require_recent, use_keycloak_auth};
use keycloak_bff_core::directory::{DirectoryPage, DirectoryUserDetail};
use keycloak_bff_core::Rule;

/// One page of the realm's users (see the directory's `search`), for a caller who satisfies
/// `rule` with a recent sign-in. Refused: 401 (`NotSignedIn`, `StepUpRequired`) or 403, and no
/// call to Keycloak. No directory service account configured: a plain 502 notice.
pub async fn search_directory(
    rule: &Rule,
    search: &str,
    page: u32,
    per_page: Option<u32>,
) -> Result<DirectoryPage, AppError> {
    require_recent(rule).await?;
    let auth = use_keycloak_auth()?;
    let directory = auth.configured_directory().map_err(fail)?;
    directory
        .search(auth.oidc(), search, page, per_page, unix_now())
        .await
        .map_err(fail)
}

/// One user's detail (roles, groups, whether the account has an authenticator app, pending
/// required actions, and the user's Keycloak sessions), for a caller who satisfies `rule` at the
/// level `acr` ([`require_acr`]): where someone is signed in is worth a stronger sign-in.
/// Refused: 401 (`NotSignedIn`, `LevelRequired`) or 403, and no call to Keycloak. An id that
/// is not a user id: 400; no such user: 404.
pub async fn directory_user_detail(
    rule: &Rule,
    acr: &str,
    id: &str,
) -> Result<DirectoryUserDetail, AppError> {
    require_acr(rule, acr).await?;
    let auth = use_keycloak_auth()?;
    let directory = auth.configured_directory().map_err(fail)?;
    directory
        .user_detail(auth.oidc(), id, unix_now())
        .await
        .map_err(fail)
}
