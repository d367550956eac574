//! The realm's users for a page or server function of the app, behind the caller's rule: the
//! only public way to search the directory. The rule is checked with step-up
//! ([`require_recent`]) before the service account makes any call, so an app cannot forget it.
//! Catalogue H01 (every server function checks its rule), and the step-up cases.

use crate::error::AppError;
use crate::server::base::clock::unix_now;
use crate::server::web::guard::{fail, require_recent, use_keycloak_auth};
use keycloak_bff_core::directory::DirectoryPage;
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
    let Some(directory) = auth.directory() else {
        return Err(fail(AppError::Upstream(
            "no directory service account is configured (keycloak.directory_client_id)".into(),
        )));
    };
    directory
        .search(auth.oidc(), search, page, per_page, unix_now())
        .await
        .map_err(fail)
}
