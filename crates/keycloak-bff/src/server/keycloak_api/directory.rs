//! A read-only directory of the realm's users, from Keycloak's Admin REST API, called by a
//! service account (`keycloak.directory_client_id`, a confidential client whose service account
//! holds only `realm-management`'s `view-users` and `view-clients`: reading users, their groups and
//! role mappings, and finding this app's client). The service account's token is cached until
//! shortly before it expires, and one fetch serves every request waiting for it.
//!
//! Keycloak's errors become [`AppError::Upstream`] with a plain reason (a notice on the page),
//! an unreachable Keycloak [`AppError::IdpUnavailable`]; nothing is written.

use crate::error::AppError;
use crate::server::base::http_client::read_limited;
use crate::server::base::settings::ServiceAccountSettings;
use crate::server::oidc::client::{Oidc, OidcError};
use keycloak_bff_core::directory::{
    clean_search, directory_user, group_paths, role_names, user_detail, user_id_ok, DirectoryPage,
    DirectoryUser, DirectoryUserDetail, MAX_PAGE, MAX_PER_PAGE, PER_PAGE,
};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// A token is renewed this long before it expires.
const RENEW_BEFORE_SECS: i64 = 30;
/// How many users of a page are filled in at once (three Admin API calls each): a page of 50
/// makes at most 12 calls at a time instead of 150.
const USERS_AT_ONCE: usize = 4;
const MAX_BODY: usize = 4 * 1024 * 1024;

struct CachedToken {
    token: SecretString,
    expires_at: i64,
}

/// The directory's service account and its cached token.
pub struct Directory {
    account: ServiceAccountSettings,
    token: tokio::sync::Mutex<Option<CachedToken>>,
    /// This app's client's internal id (`GET /clients?clientId=`), found once.
    client_uuid: tokio::sync::OnceCell<String>,
    /// How many tokens were fetched (tests check the cache).
    fetched: std::sync::atomic::AtomicU64,
}

impl Directory {
    /// A directory reading the realm's users with this service account.
    pub fn new(account: ServiceAccountSettings) -> Self {
        Directory {
            account,
            token: tokio::sync::Mutex::new(None),
            client_uuid: tokio::sync::OnceCell::new(),
            fetched: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many service-account tokens were fetched so far.
    pub fn tokens_fetched(&self) -> u64 {
        self.fetched.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The service account's access token: the cached one while it has more than 30 s left.
    async fn token(&self, oidc: &Oidc, now: i64) -> Result<SecretString, AppError> {
        let mut cached = self.token.lock().await;
        if let Some(c) = cached
            .as_ref()
            .filter(|c| c.expires_at - RENEW_BEFORE_SECS > now)
        {
            return Ok(c.token.clone());
        }
        let provider = oidc
            .provider()
            .await
            .map_err(|_| AppError::IdpUnavailable)?;
        let answer = oidc
            .client_credentials_token(
                &provider,
                &self.account.client_id,
                &self.account.client_secret,
            )
            .await
            .map_err(|e| match e {
                OidcError::Unavailable(e) => {
                    tracing::warn!(error = %e, "the directory's token request failed");
                    AppError::IdpUnavailable
                }
                OidcError::Rejected { error } => {
                    tracing::error!(%error, client = %self.account.client_id, "Keycloak refused the directory's service account");
                    AppError::Upstream(
                        "Keycloak refused the directory's service account (check its client and \
                         secret)"
                            .into(),
                    )
                }
                _ => AppError::Upstream("the token answer was not understood".into()),
            })?;
        self.fetched
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = SecretString::from(answer.access_token);
        *cached = Some(CachedToken {
            token: token.clone(),
            expires_at: now + answer.expires_in.unwrap_or(60).clamp(1, 86_400),
        });
        Ok(token)
    }

    async fn get(
        &self,
        oidc: &Oidc,
        token: &SecretString,
        url: Url,
    ) -> Result<serde_json::Value, AppError> {
        let response = oidc
            .http()
            .get(url)
            .bearer_auth(token.expose_secret())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "an Admin API call failed");
                AppError::IdpUnavailable
            })?;
        let status = response.status();
        let body = read_limited(response, MAX_BODY)
            .await
            .map_err(AppError::Upstream)?;
        match status {
            s if s.is_success() => serde_json::from_slice(&body)
                .map_err(|_| AppError::Upstream("Keycloak's answer was not understood".into())),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                tracing::error!(%status, "the Admin API refused the directory's service account");
                Err(AppError::Upstream(
                    "Keycloak refused to list users: the directory's service account lacks \
                     realm-management's view-users or view-clients"
                        .into(),
                ))
            }
            StatusCode::NOT_FOUND => Err(AppError::NotFound),
            s if s.is_server_error() => Err(AppError::IdpUnavailable),
            s => Err(AppError::Upstream(format!("Keycloak answered {s}"))),
        }
    }

    fn admin(oidc: &Oidc, path: &str) -> Result<Url, AppError> {
        oidc.admin_url(path).map_err(|_| AppError::Internal)
    }

    async fn client_uuid(&self, oidc: &Oidc, token: &SecretString) -> Result<String, AppError> {
        self.client_uuid
            .get_or_try_init(|| async {
                let mut url = Self::admin(oidc, "/clients")?;
                url.query_pairs_mut()
                    .append_pair("clientId", oidc.client_id())
                    .append_pair("briefRepresentation", "true");
                let clients = self.get(oidc, token, url).await?;
                clients
                    .as_array()
                    .and_then(|a| a.first())
                    .and_then(|c| c.get("id"))
                    .and_then(|id| id.as_str())
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        AppError::Upstream(
                            "this app's client cannot be read: the service account lacks \
                             view-clients"
                                .into(),
                        )
                    })
            })
            .await
            .cloned()
    }

    /// Roles and groups of one user.
    async fn fill(
        &self,
        oidc: &Oidc,
        token: &SecretString,
        client: &str,
        mut user: DirectoryUser,
    ) -> Result<DirectoryUser, AppError> {
        let id = user.id.clone();
        let realm = Self::admin(oidc, &format!("/users/{id}/role-mappings/realm/composite"))?;
        let own = Self::admin(
            oidc,
            &format!("/users/{id}/role-mappings/clients/{client}/composite"),
        )?;
        let groups = Self::admin(oidc, &format!("/users/{id}/groups"))?;
        let (realm, own, groups) = tokio::try_join!(
            self.get(oidc, token, realm),
            self.get(oidc, token, own),
            self.get(oidc, token, groups)
        )?;
        user.realm_roles = role_names(&realm);
        user.client_roles = role_names(&own);
        user.groups = group_paths(&groups);
        Ok(user)
    }

    /// One page (`page`, 0-based, `per_page` users: 10 by default, at most 50) of the users
    /// matching `search` (Keycloak's search: username, e-mail, first or last name), each with
    /// effective realm roles, this client's effective roles and groups. Not public: apps search
    /// through `server::search_directory`, which checks the caller's rule and step-up first.
    pub(crate) async fn search(
        &self,
        oidc: &Oidc,
        search: &str,
        page: u32,
        per_page: Option<u32>,
        now: i64,
    ) -> Result<DirectoryPage, AppError> {
        let search = clean_search(search);
        let page = page.min(MAX_PAGE);
        let per_page = per_page.unwrap_or(PER_PAGE).clamp(1, MAX_PER_PAGE);
        let token = self.token(oidc, now).await?;
        let client = self.client_uuid(oidc, &token).await?;
        let mut list = Self::admin(oidc, "/users")?;
        list.query_pairs_mut()
            .append_pair("search", &search)
            .append_pair("first", &(page * per_page).to_string())
            .append_pair("max", &per_page.to_string())
            .append_pair("briefRepresentation", "true");
        let mut count = Self::admin(oidc, "/users/count")?;
        count.query_pairs_mut().append_pair("search", &search);
        let (users, total) =
            tokio::try_join!(self.get(oidc, &token, list), self.get(oidc, &token, count))?;
        let users: Vec<DirectoryUser> = users
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(directory_user)
            // Service accounts are clients, not people.
            .filter(|u| !u.username.starts_with("service-account-"))
            .collect();
        let users = fill_page(users, |u| self.fill(oidc, &token, &client, u)).await?;
        Ok(DirectoryPage {
            search,
            page,
            per_page,
            total: total.as_u64().unwrap_or(0),
            users,
        })
    }

    /// One user's detail (roles, groups, Keycloak's account flags and sessions) by id. An id
    /// of other characters than a UUID's is 400 and never reaches Keycloak; an unknown one is
    /// 404. Not public: apps read it through `server::directory_user_detail`, which checks the
    /// caller's rule and level first.
    pub(crate) async fn user_detail(
        &self,
        oidc: &Oidc,
        id: &str,
        now: i64,
    ) -> Result<DirectoryUserDetail, AppError> {
        if !user_id_ok(id) {
            return Err(AppError::BadRequest("not a user id".into()));
        }
        let token = self.token(oidc, now).await?;
        let client = self.client_uuid(oidc, &token).await?;
        let user = Self::admin(oidc, &format!("/users/{id}"))?;
        let sessions = Self::admin(oidc, &format!("/users/{id}/sessions"))?;
        let (user, sessions) = tokio::try_join!(
            self.get(oidc, &token, user),
            self.get(oidc, &token, sessions)
        )?;
        let mut detail = user_detail(&user, &sessions)
            .ok_or_else(|| AppError::Upstream("Keycloak's answer was not understood".into()))?;
        detail.user = self.fill(oidc, &token, &client, detail.user).await?;
        Ok(detail)
    }
}

/// `f` on every item, at most `limit` at a time, the answers in the items' order; the first
/// error ends it.
/// The listed `users`, each filled by `fill` ([`USERS_AT_ONCE`] at a time, in order). A user
/// whose roles or groups Keycloak no longer finds (404) was deleted between the list and the
/// look-up, by an admin meanwhile: left out, and the page still answers with the others. Any
/// other failure fails the page.
async fn fill_page<F, Fut>(
    users: Vec<DirectoryUser>,
    fill: F,
) -> Result<Vec<DirectoryUser>, AppError>
where
    F: Fn(DirectoryUser) -> Fut,
    Fut: std::future::Future<Output = Result<DirectoryUser, AppError>>,
{
    let filled = at_most_at_once(USERS_AT_ONCE, users, |u| {
        let filled = fill(u);
        async move {
            match filled.await {
                Ok(user) => Ok(Some(user)),
                Err(AppError::NotFound) => Ok(None),
                Err(e) => Err(e),
            }
        }
    })
    .await?;
    Ok(filled.into_iter().flatten().collect())
}

async fn at_most_at_once<T, U, F, Fut>(
    limit: usize,
    items: Vec<T>,
    f: F,
) -> Result<Vec<U>, AppError>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Result<U, AppError>>,
{
    use futures_util::stream::{self, StreamExt};
    let answers: Vec<Result<U, AppError>> = stream::iter(items.into_iter().map(f))
        .buffered(limit.max(1))
        .collect()
        .await;
    answers.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_page_of_users_is_filled_in_a_few_at_a_time_in_order() {
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let users: Vec<usize> = (0..50).collect();
        let filled = at_most_at_once(USERS_AT_ONCE, users, |i| {
            let (running, peak) = (&running, &peak);
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, AppError>(i * 2)
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(filled, (0..50).map(|i| i * 2).collect::<Vec<_>>());
        let peak = peak.load(Ordering::SeqCst);
        assert!(peak <= USERS_AT_ONCE, "{peak} at once");
        assert!(peak > 1, "still concurrent: {peak}");
    }

    fn user(name: &str) -> DirectoryUser {
        DirectoryUser {
            id: name.to_owned(),
            username: name.to_owned(),
            ..DirectoryUser::default()
        }
    }

    /// A page of `listed` users, each filled by `look_up` (`NotFound`: Keycloak answers 404, the
    /// user was deleted meanwhile), as `Directory::search` fills a page.
    async fn page(
        listed: &[&str],
        look_up: impl Fn(&str) -> Result<DirectoryUser, AppError>,
    ) -> Result<Vec<String>, AppError> {
        let users = listed.iter().map(|name| user(name)).collect();
        let filled = fill_page(users, |u| {
            let answer = look_up(&u.id);
            async { answer }
        })
        .await?;
        Ok(filled.into_iter().map(|u| u.username).collect())
    }

    #[tokio::test]
    async fn a_user_deleted_between_the_list_and_the_look_up_is_left_out_not_a_404_page() {
        let found = |id: &str| match id {
            "bob" => Err(AppError::NotFound),
            other => Ok(user(other)),
        };
        let page = page(&["alice", "bob", "carol"], found).await;
        assert_eq!(
            page.map_err(|e| e.to_string()),
            Ok(vec!["alice".to_owned(), "carol".to_owned()])
        );
    }

    #[tokio::test]
    async fn any_other_failure_of_a_look_up_still_fails_the_page() {
        let down = |id: &str| match id {
            "bob" => Err(AppError::IdpUnavailable),
            other => Ok(user(other)),
        };
        let page = page(&["alice", "bob", "carol"], down).await;
        assert!(matches!(page, Err(AppError::IdpUnavailable)), "{page:?}");
    }
}
