//! The OpenID Connect relying party: discovery (cached, retried while Keycloak is down), the
//! authorization request (PKCE S256, state, nonce), the code exchange and token validation.

use crate::server::base::clock::unix_now;
use crate::server::base::http_client::read_limited;
use crate::server::base::metrics::Counter;
use crate::server::base::settings::KeycloakSettings;
use crate::server::oidc::dpop_key::DpopKey;
use crate::server::oidc::keys::{KeyCache, Source};
use crate::server::session::store::AuthSession;
use keycloak_bff_core::claims::user_from_claims;
use keycloak_bff_core::dpop::usable_nonce;
use keycloak_bff_core::jwt::{self, Expected, Kind, TokenError};
use keycloak_bff_core::refresh::session_end;
use keycloak_bff_core::KeycloakUser;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreGrantType, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, ClientId, CsrfToken, IssuerUrl, LogoutProviderMetadata, Nonce,
    PkceCodeChallenge, ProviderMetadata, RedirectUrl, Scope,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use url::Url;

const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;
/// Larger discovery documents are refused (Keycloak's is about 6 KB).
const MAX_DISCOVERY_BYTES: usize = 64 * 1024;
/// After a failed discovery, requests that need the provider answer "unavailable" at once for
/// this long instead of each trying again (catalogue C05): a slow Keycloak is not hammered and no
/// queue of requests builds up behind the discovery lock.
const DISCOVERY_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// The error of the discovery's HTTP client: its text only.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct DiscoveryHttpError(String);

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// Keycloak cannot be reached, timed out or answered 5xx: nothing is wrong with the user's
    /// session, try again later (503).
    #[error("identity provider unavailable: {0}")]
    Unavailable(String),
    /// Keycloak refused the request (`invalid_grant` and friends).
    #[error("identity provider refused the request: {error}")]
    Rejected { error: String },
    /// Keycloak answered something this app will not accept.
    #[error("invalid response from the identity provider: {0}")]
    BadResponse(String),
    #[error("invalid token: {0}")]
    InvalidToken(#[from] TokenError),
}

/// Discovery metadata beyond the core's that the app reads: RFC 9207's flag.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct IssParameterMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authorization_response_iss_parameter_supported: Option<bool>,
}

impl AdditionalProviderMetadata for IssParameterMetadata {}

/// The realm's discovery document: the core fields, RP-initiated logout's and RFC 9207's.
type Metadata = ProviderMetadata<
    LogoutProviderMetadata<IssParameterMetadata>,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// What discovery told us about the realm.
pub struct Provider {
    metadata: Metadata,
    pub token_endpoint: Url,
    pub jwks_uri: Url,
    /// Keycloak's logout endpoint as the app calls it (on `keycloak.internal_url` if set).
    pub end_session_endpoint: Option<Url>,
    /// The same, as a browser reaches it (the public issuer).
    pub end_session_public: Option<Url>,
    /// The provider sends `iss` with every authorization response (RFC 9207), so a response
    /// without it is not the provider's (catalogue A06).
    pub iss_parameter_supported: bool,
}

/// A started login: the URL to send the browser to and the secrets to keep server-side.
pub struct AuthorizationRequest {
    pub url: Url,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// Keycloak's token endpoint response. Never logged: `Debug` shows no token.
#[derive(Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    #[serde(default)]
    pub expires_in: Option<i64>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub refresh_expires_in: Option<i64>,
    #[serde(default)]
    pub id_token: Option<String>,
}

impl TokenResponse {
    /// Keycloak bound the access token to the DPoP key of the request (`token_type` DPoP).
    pub fn is_dpop_bound(&self) -> bool {
        self.token_type.eq_ignore_ascii_case("dpop")
    }
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_expires_in", &self.refresh_expires_in)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenErrorBody {
    error: String,
}

/// The OAuth `error` code of an error answer of Keycloak's token or end-session endpoint
/// (RFC 6749 §5.2), at most 64 characters; `None` when the body is not such an answer.
fn oauth_error(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<TokenErrorBody>(body)
        .ok()
        .map(|b| b.error.chars().take(64).collect())
}

/// Bearer tokens this process checked and accepted, with the user they name: a client that sends
/// the same token again (every call, until it expires) costs a look-up instead of a signature
/// check. Keyed by the whole token (a token that differs in any byte is checked afresh); an entry
/// serves until the token expires (with the leeway, as the check itself) and at most
/// [`BEARER_RECHECK`] after its check: then the signature is checked again, with the keys as the
/// app last fetched them (a key Keycloak withdrew is gone once the key set was fetched without it,
/// which a token signed by the new key causes). Refusals are never kept.
/// With each user, the key the token is bound to (DPoP's `cnf.jkt`), if any.
struct BearerCache(std::sync::Mutex<HashMap<String, (Bearer, i64, i64)>>);

/// An accepted bearer token's user, and the key it is bound to (`cnf.jkt`: a DPoP-bound token).
type Bearer = (KeycloakUser, Option<String>);

/// How long an accepted bearer token is trusted before its signature is checked again.
const BEARER_RECHECK: i64 = 60;

/// At most this many accepted tokens are remembered (a few KB each).
const BEARER_CACHED: usize = 4096;

impl BearerCache {
    fn get(&self, token: &str, now: i64, leeway: i64) -> Option<Bearer> {
        let cache = self.0.lock().ok()?;
        let (user, expires, checked_at) = cache.get(token)?;
        (now <= expires.saturating_add(leeway) && now < checked_at.saturating_add(BEARER_RECHECK))
            .then(|| user.clone())
    }

    fn keep(&self, token: &str, user: &Bearer, expires: i64, now: i64) {
        let Ok(mut cache) = self.0.lock() else {
            return;
        };
        if cache.len() >= BEARER_CACHED {
            cache.retain(|_, (_, _, checked_at)| now < checked_at.saturating_add(BEARER_RECHECK));
            if cache.len() >= BEARER_CACHED {
                cache.clear();
            }
        }
        cache.insert(token.to_owned(), (user.clone(), expires, now));
    }
}

pub struct Oidc {
    bearer_cache: BearerCache,
    /// Bearer tokens checked in full (signature and claims): those the cache did not answer.
    bearer_checks: std::sync::atomic::AtomicU64,
    settings: KeycloakSettings,
    issuer: String,
    http: reqwest::Client,
    provider: RwLock<Option<Arc<Provider>>>,
    discovering: tokio::sync::Mutex<()>,
    discovery_failed_at: RwLock<Option<std::time::Instant>>,
    /// When the token endpoint last failed (5xx, timeout, refused connection), until it answers.
    token_endpoint_failed_at: RwLock<Option<std::time::Instant>>,
    keys: KeyCache,
    /// The app's DPoP key (`keycloak.dpop`): its token requests carry proofs of it, and the
    /// tokens Keycloak issues it are bound to it.
    dpop: Option<Arc<DpopKey>>,
}

/// How long a failed token endpoint counts as down for what can wait (a silent sign-in).
const KNOWN_DOWN_FOR: std::time::Duration = std::time::Duration::from_secs(30);

impl Oidc {
    /// `key_set_fetches` counts the key-set fetches (a metric).
    pub fn new(
        settings: KeycloakSettings,
        key_set_fetches: Counter,
    ) -> Result<Self, reqwest::Error> {
        let http = crate::server::base::http_client::client(settings.http_timeout)?;
        let issuer = settings
            .issuer_url
            .as_str()
            .trim_end_matches('/')
            .to_owned();
        Ok(Self {
            bearer_cache: BearerCache(std::sync::Mutex::new(HashMap::new())),
            bearer_checks: std::sync::atomic::AtomicU64::new(0),
            keys: KeyCache::new(http.clone(), key_set_fetches),
            settings,
            issuer,
            http,
            provider: RwLock::new(None),
            discovering: tokio::sync::Mutex::new(()),
            discovery_failed_at: RwLock::new(None),
            token_endpoint_failed_at: RwLock::new(None),
            dpop: None,
        })
    }

    /// The same client, binding its tokens to `key` (`keycloak.dpop`).
    pub fn with_dpop(self, key: Option<Arc<DpopKey>>) -> Self {
        Self { dpop: key, ..self }
    }

    /// The app's DPoP key, when its tokens are bound to one.
    pub fn dpop(&self) -> Option<&DpopKey> {
        self.dpop.as_deref()
    }

    /// The same, shared (for what outlives a borrow of this client).
    pub(crate) fn dpop_shared(&self) -> Option<Arc<DpopKey>> {
        self.dpop.clone()
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The time limit of each call to Keycloak (`keycloak.http_timeout_secs`).
    pub fn http_timeout(&self) -> std::time::Duration {
        self.settings.http_timeout
    }

    pub fn client_id(&self) -> &str {
        &self.settings.client_id
    }

    /// The realm's signing keys, cached by `kid`.
    pub fn keys(&self) -> &KeyCache {
        &self.keys
    }

    /// Signature algorithms accepted (pinned by settings, never taken from a token).
    pub fn algorithms(&self) -> &[String] {
        &self.settings.algorithms
    }

    pub fn leeway_secs(&self) -> i64 {
        self.settings.leeway_secs
    }

    /// A service account's access token (client-credentials grant, RFC 6749 §4.4) for another
    /// confidential client of the realm, such as the user directory's.
    pub async fn client_credentials_token(
        &self,
        provider: &Provider,
        client_id: &str,
        secret: &SecretString,
    ) -> Result<TokenResponse, OidcError> {
        self.token_request_as(
            provider,
            &[("grant_type", "client_credentials")],
            (client_id, secret),
        )
        .await
    }

    /// The HTTP client that talks to Keycloak (no redirects, bounded time).
    /// The `[keycloak]` settings this client was made with.
    pub fn keycloak_settings(&self) -> &KeycloakSettings {
        &self.settings
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The realm's URL for `path` as the app itself calls it (`internal_url` applied):
    /// `realm_url("/account/sessions")` is `<issuer>/account/sessions`.
    pub fn realm_url(&self, path: &str) -> Result<Url, OidcError> {
        let url = Url::parse(&format!("{}{path}", self.issuer))
            .map_err(|e| OidcError::BadResponse(format!("realm URL: {e}")))?;
        Ok(self.settings.internal(&url))
    }

    /// The Admin REST API's URL for `path` in this realm (`/admin/realms/<realm><path>`), as the
    /// app itself calls it.
    ///
    /// Built from the issuer's own path, so a Keycloak served under a prefix
    /// (`https://sso.example/auth/realms/demo`, the layout before Keycloak 17 and behind many
    /// proxies) gets `https://sso.example/auth/admin/realms/demo/...`.
    pub fn admin_url(&self, path: &str) -> Result<Url, OidcError> {
        let (base, realm) = self
            .issuer
            .rsplit_once("/realms/")
            .filter(|(_, r)| !r.is_empty() && !r.contains('/'))
            .ok_or_else(|| OidcError::BadResponse("the issuer names no realm".into()))?;
        let url = Url::parse(&format!("{base}/admin/realms/{realm}{path}"))
            .map_err(|e| OidcError::BadResponse(format!("admin URL: {e}")))?;
        Ok(self.settings.internal(&url))
    }

    fn cached_provider(&self) -> Option<Arc<Provider>> {
        self.provider.read().ok().and_then(|p| p.clone())
    }

    /// `Unavailable` while a failed discovery is recent.
    fn refuse_if_failed_recently(&self) -> Result<(), OidcError> {
        let recent = self
            .discovery_failed_at
            .read()
            .ok()
            .and_then(|t| *t)
            .is_some_and(|t| t.elapsed() < DISCOVERY_RETRY_AFTER);
        if recent {
            Err(OidcError::Unavailable(
                "discovery failed moments ago".into(),
            ))
        } else {
            Ok(())
        }
    }

    /// Whether Keycloak is known to be down: its discovery failed moments ago, or its token
    /// endpoint failed within the last 30 s and has not answered since. For what should not even
    /// try (a silent sign-in); requests that need Keycloak try anyway.
    pub fn known_unavailable(&self) -> bool {
        let recent = |at: &RwLock<Option<std::time::Instant>>, window| {
            at.read()
                .ok()
                .and_then(|t| *t)
                .is_some_and(|t| t.elapsed() < window)
        };
        (self.cached_provider().is_none()
            && recent(&self.discovery_failed_at, DISCOVERY_RETRY_AFTER))
            || recent(&self.token_endpoint_failed_at, KNOWN_DOWN_FOR)
    }

    /// The realm's metadata, discovered once (single flight) and cached. A failure is remembered
    /// for a few seconds only, so the app works as soon as Keycloak is back, without a restart.
    pub async fn provider(&self) -> Result<Arc<Provider>, OidcError> {
        if let Some(p) = self.cached_provider() {
            return Ok(p);
        }
        self.refuse_if_failed_recently()?;
        let _single_flight = self.discovering.lock().await;
        if let Some(p) = self.cached_provider() {
            return Ok(p);
        }
        // Requests that waited behind a discovery that just failed do not try again.
        self.refuse_if_failed_recently()?;
        let discovered = self.discover().await;
        if let Ok(mut failed) = self.discovery_failed_at.write() {
            *failed = discovered.is_err().then(std::time::Instant::now);
        }
        discovered
    }

    /// The discovery document, fetched with the bounded client: no redirects, the HTTP timeout,
    /// at most `MAX_DISCOVERY_BYTES`.
    async fn fetch_metadata(&self) -> Result<Metadata, OidcError> {
        let issuer = IssuerUrl::new(self.issuer.clone())
            .map_err(|e| OidcError::BadResponse(format!("issuer URL: {e}")))?;
        let http = self.http.clone();
        let settings = self.settings.clone();
        let client = move |request: openidconnect::HttpRequest| {
            let http = http.clone();
            let settings = settings.clone();
            async move {
                let mut request = reqwest::Request::try_from(request)
                    .map_err(|e| DiscoveryHttpError(e.to_string()))?;
                *request.url_mut() = settings.internal(request.url());
                let response = http
                    .execute(request)
                    .await
                    .map_err(|e| DiscoveryHttpError(e.to_string()))?;
                let mut answer = openidconnect::http::Response::builder().status(response.status());
                for (name, value) in response.headers() {
                    answer = answer.header(name, value);
                }
                let body = read_limited(response, MAX_DISCOVERY_BYTES)
                    .await
                    .map_err(DiscoveryHttpError)?;
                answer
                    .body(body)
                    .map_err(|e| DiscoveryHttpError(e.to_string()))
            }
        };
        Metadata::discover_async(issuer, &client)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "OpenID discovery failed");
                OidcError::Unavailable(e.to_string())
            })
    }

    async fn discover(&self) -> Result<Arc<Provider>, OidcError> {
        let metadata = self.fetch_metadata().await?;
        let token_endpoint = metadata
            .token_endpoint()
            .map(|u| self.settings.internal(u.url()))
            .ok_or_else(|| OidcError::BadResponse("no token endpoint".into()))?;
        let jwks_uri = self.settings.internal(metadata.jwks_uri().url());
        // Discovery that points the secret or the keys at a plain-http host is not used; like an
        // unreachable Keycloak, it signs nobody out (catalogue C05).
        let end_session_public = metadata
            .additional_metadata()
            .end_session_endpoint
            .as_ref()
            .map(|u| u.url().clone());
        let end_session_endpoint = end_session_public
            .as_ref()
            .map(|u| self.settings.internal(u));
        let mut sent_secrets = vec![("token endpoint", &token_endpoint), ("key set", &jwks_uri)];
        if let Some(url) = &end_session_endpoint {
            sent_secrets.push(("end-session endpoint", url));
        }
        for (what, url) in sent_secrets {
            self.settings.check_transport(what, url).map_err(|e| {
                tracing::error!(error = %e, "discovery refused");
                OidcError::Unavailable(e)
            })?;
        }
        let provider = Arc::new(Provider {
            token_endpoint,
            jwks_uri,
            end_session_endpoint,
            end_session_public,
            iss_parameter_supported: metadata
                .additional_metadata()
                .additional_metadata
                .authorization_response_iss_parameter_supported
                .unwrap_or(false),
            metadata,
        });
        if let Ok(mut slot) = self.provider.write() {
            *slot = Some(provider.clone());
        }
        tracing::info!(issuer = %self.issuer, "discovered the identity provider");
        Ok(provider)
    }

    /// Builds the authorization code request with PKCE S256, a fresh `state` and `nonce`,
    /// `prompt` when the sign-in asks for one (a step-up, a silent sign-in), and `kc_action` for an
    /// account action.
    pub fn authorization_request(
        &self,
        provider: &Provider,
        redirect_uri: &str,
        prompt: keycloak_bff_core::step_up::Prompt,
        action: Option<keycloak_bff_core::account_action::AccountAction>,
        acr: Option<&str>,
    ) -> Result<AuthorizationRequest, OidcError> {
        let redirect = RedirectUrl::new(redirect_uri.to_owned())
            .map_err(|e| OidcError::BadResponse(format!("redirect URI: {e}")))?;
        let client = CoreClient::from_provider_metadata(
            provider.metadata.clone(),
            ClientId::new(self.settings.client_id.clone()),
            None,
        )
        .set_redirect_uri(redirect);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("profile".into()))
            .add_scope(Scope::new("email".into()))
            .set_pkce_challenge(challenge);
        if let Some(prompt) = prompt.as_param() {
            request = request.add_extra_param("prompt", prompt);
        }
        if let Some(action) = action {
            request = request.add_extra_param("kc_action", action.kc_action());
        }
        // A level of authentication as an essential claim: Keycloak runs the flow up to that
        // level (its one-time code, say), and fails the sign-in rather than answer with less.
        if let Some(acr) = acr {
            request = request.add_extra_param(
                "claims",
                keycloak_bff_core::level::essential_acr_claims(acr),
            );
        }
        let (url, state, nonce) = request.url();
        Ok(AuthorizationRequest {
            url,
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// This client's id and secret.
    fn own_credentials(&self) -> (&str, &SecretString) {
        (&self.settings.client_id, &self.settings.client_secret)
    }

    /// POSTs `form` to `url` with a client's credentials (HTTP Basic, each form-urlencoded first,
    /// RFC 6749 §2.3.1); the response, still unread. Unreachable: "unavailable".
    async fn client_post(
        &self,
        what: &str,
        url: &Url,
        form: &[(&str, &str)],
        (client_id, secret): (&str, &SecretString),
        proof: Option<String>,
    ) -> Result<reqwest::Response, OidcError> {
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let (user, password) = (enc(client_id), enc(secret.expose_secret()));
        let mut request = self
            .http
            .post(url.clone())
            .basic_auth(user, Some(password))
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(proof) = proof {
            request = request.header("DPoP", proof);
        }
        request
            .form(form)
            .send()
            .await
            .map_err(|e| OidcError::Unavailable(format!("{what}: {e}")))
    }

    async fn token_request(
        &self,
        provider: &Provider,
        form: &[(&str, &str)],
    ) -> Result<TokenResponse, OidcError> {
        self.token_request_as(provider, form, self.own_credentials())
            .await
    }

    async fn token_request_as(
        &self,
        provider: &Provider,
        form: &[(&str, &str)],
        credentials: (&str, &SecretString),
    ) -> Result<TokenResponse, OidcError> {
        let result = self.token_call(provider, form, credentials).await;
        if let Ok(mut failed) = self.token_endpoint_failed_at.write() {
            let down = matches!(result, Err(OidcError::Unavailable(_)));
            if down || failed.is_some() {
                *failed = down.then(std::time::Instant::now);
            }
        }
        result
    }

    /// One token request. With the app's DPoP key and its own credentials, it carries a proof
    /// (RFC 9449 §5), and is sent once more with the nonce Keycloak asks for (`use_dpop_nonce`);
    /// the token Keycloak answers must then be bound (`token_type` DPoP).
    async fn token_call(
        &self,
        provider: &Provider,
        form: &[(&str, &str)],
        credentials: (&str, &SecretString),
    ) -> Result<TokenResponse, OidcError> {
        let key = self
            .dpop
            .as_deref()
            .filter(|_| credentials.0 == self.settings.client_id);
        let endpoint = &provider.token_endpoint;
        let mut nonce_retried = false;
        loop {
            let proof = match key {
                Some(key) => Some(
                    key.proof("POST", endpoint, None, unix_now())
                        .map_err(OidcError::BadResponse)?,
                ),
                None => None,
            };
            let response = self
                .client_post("token endpoint", endpoint, form, credentials, proof)
                .await?;
            let status = response.status();
            let nonce = response
                .headers()
                .get("dpop-nonce")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = read_limited(response, MAX_TOKEN_RESPONSE_BYTES)
                .await
                .map_err(|e| {
                    if status.is_server_error() {
                        OidcError::Unavailable(e)
                    } else {
                        OidcError::BadResponse(e)
                    }
                })?;
            if status.is_server_error() {
                return Err(OidcError::Unavailable(format!(
                    "token endpoint answered {status}"
                )));
            }
            if !status.is_success() {
                let error = oauth_error(&body);
                let asked =
                    keycloak_bff_core::dpop::nonce_asked(error.as_deref(), None, nonce.as_deref());
                if let (Some(key), Some(asked), false) = (key, asked, nonce_retried) {
                    key.remember_nonce(endpoint, asked);
                    nonce_retried = true;
                    continue;
                }
                let error = error.unwrap_or_else(|| format!("status {status}"));
                return Err(OidcError::Rejected { error });
            }
            let tokens: TokenResponse = serde_json::from_slice(&body)
                .map_err(|e| OidcError::BadResponse(format!("token response: {e}")))?;
            if let (Some(key), Some(nonce)) = (key, nonce.as_deref().and_then(usable_nonce)) {
                key.remember_nonce(endpoint, nonce);
            }
            if key.is_some() && !tokens.is_dpop_bound() {
                return Err(OidcError::BadResponse(
                    "Keycloak did not bind the token to the app's DPoP key (token_type is not \
                     DPoP; DPoP needs Keycloak 26.4 or later)"
                        .into(),
                ));
            }
            return Ok(tokens);
        }
    }

    /// Ends the user's Keycloak session from the server (Keycloak's logout endpoint, called with
    /// the refresh token and this client's credentials), so no token goes to the browser. A
    /// refresh token Keycloak no longer knows means the session had already ended: that counts
    /// as done.
    pub async fn end_session(
        &self,
        provider: &Provider,
        refresh_token: &str,
    ) -> Result<(), OidcError> {
        let endpoint = provider
            .end_session_endpoint
            .clone()
            .ok_or_else(|| OidcError::Unavailable("no end-session endpoint".into()))?;
        let form = [
            ("client_id", self.settings.client_id.as_str()),
            ("refresh_token", refresh_token),
        ];
        let response = self
            .client_post(
                "end-session endpoint",
                &endpoint,
                &form,
                self.own_credentials(),
                None,
            )
            .await?;
        let status = response.status();
        let body = read_limited(response, MAX_TOKEN_RESPONSE_BYTES)
            .await
            .unwrap_or_default();
        if status.is_success() {
            return Ok(());
        }
        let error = oauth_error(&body).unwrap_or_default();
        if status == reqwest::StatusCode::BAD_REQUEST && error == "invalid_grant" {
            return Ok(());
        }
        Err(OidcError::Unavailable(format!(
            "end-session endpoint answered {status} {error}"
        )))
    }

    /// Where a browser ends its Keycloak session itself (Keycloak asks the user to confirm):
    /// the end-session endpoint from discovery, or Keycloak's usual one while discovery fails.
    pub fn browser_logout_url(&self, post_logout_redirect_uri: &str) -> Url {
        let mut url = self
            .cached_provider()
            .and_then(|p| p.end_session_public.clone())
            .unwrap_or_else(|| {
                let mut url = self.settings.issuer_url.clone();
                let path = format!(
                    "{}/protocol/openid-connect/logout",
                    url.path().trim_end_matches('/')
                );
                url.set_path(&path);
                url
            });
        url.query_pairs_mut()
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("post_logout_redirect_uri", post_logout_redirect_uri);
        url
    }

    /// Exchanges the authorization code (with the PKCE verifier) for tokens.
    pub async fn exchange_code(
        &self,
        provider: &Provider,
        code: &str,
        pkce_verifier: &str,
        redirect_uri: &str,
    ) -> Result<TokenResponse, OidcError> {
        self.token_request(
            provider,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", pkce_verifier),
            ],
        )
        .await
    }

    /// A token's verified claims. For tokens from the token endpoint, a `kid` missing from the key
    /// set even after a refetch means the key set is out of reach, not that the session is bad:
    /// "unavailable", which keeps the session and the tokens Keycloak just rotated (C02).
    async fn verified_claims(
        &self,
        provider: &Provider,
        token: &str,
        expected: &Expected<'_>,
        source: Source,
    ) -> Result<(jwt::Header, Value), OidcError> {
        let verified = self
            .keys
            .verify(&provider.jwks_uri, token, &self.settings.algorithms, source)
            .await;
        let (header, claims) = match (verified, source) {
            (Err(TokenError::UnknownKey), Source::TokenEndpoint) => {
                return Err(OidcError::Unavailable(
                    "Keycloak's token is signed by a key its key set does not (yet) list".into(),
                ))
            }
            (verified, _) => verified?,
        };
        jwt::check_claims(&claims, expected)?;
        Ok((header, claims))
    }

    /// Validates the tokens of a login: the ID token (signature, `iss`, `aud`, `azp`, `exp`, `iat`,
    /// `nonce`, `typ`) and the access token (signature, `iss`, `aud`, `azp`, `exp`, `typ` Bearer),
    /// and that both name the same user.
    pub async fn validate_login(
        &self,
        provider: &Provider,
        tokens: TokenResponse,
        nonce: &str,
        now: i64,
    ) -> Result<AuthSession, OidcError> {
        check_token_type(&tokens, self.dpop.is_some())?;
        let Some(id_token) = tokens.id_token.clone() else {
            return Err(OidcError::BadResponse(
                "no id_token in the token response".into(),
            ));
        };
        let expected = self.expected_id_token(Some(nonce), now);
        let id_claims = self
            .verified_id_token(provider, &id_token, &tokens.access_token, &expected)
            .await?;
        let access_claims = self
            .verified_access_token(provider, &tokens.access_token, &expected)
            .await?;
        self.check_binding(&access_claims)?;
        let set = TokenSet::matched(id_token, id_claims, access_claims)?;
        Ok(self.session_of(set, tokens, None, 0, now))
    }

    /// Validates an access token presented by another program as `Authorization: Bearer`:
    /// signature with the realm's keys (algorithms pinned by configuration), `iss`, `aud` contains
    /// this client, `exp`/`nbf`/`iat` with the leeway, Keycloak `typ` Bearer (ID, refresh and
    /// logout tokens are refused), obtained by this client or one of `keycloak.bearer_clients`
    /// (`azp`). A token accepted in the last minute and not expired is not checked again
    /// ([`BearerCache`]).
    #[cfg_attr(not(any(test, feature = "test-support")), allow(dead_code))] // tests and bench
    pub async fn validate_bearer(&self, token: &str, now: i64) -> Result<KeycloakUser, OidcError> {
        self.validate_bearer_bound(token, now)
            .await
            .map(|(user, _)| user)
    }

    /// [`Oidc::validate_bearer`], with the key the token is bound to (DPoP's `cnf.jkt`), if any:
    /// kept with the user, so a token sent again costs no parsing either.
    pub async fn validate_bearer_bound(
        &self,
        token: &str,
        now: i64,
    ) -> Result<(KeycloakUser, Option<String>), OidcError> {
        if token.len() > jwt::MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge.into());
        }
        if let Some(accepted) = self.bearer_cache.get(token, now, self.settings.leeway_secs) {
            return Ok(accepted);
        }
        self.bearer_checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let accepted = self.check_bearer_bound(token, now).await?;
        self.bearer_cache
            .keep(token, &accepted, accepted.0.session_expires_at, now);
        Ok(accepted)
    }

    /// How many bearer tokens [`Oidc::validate_bearer`] checked in full (the cache did not answer).
    #[cfg(any(test, feature = "test-support"))]
    pub fn bearer_checks(&self) -> u64 {
        self.bearer_checks
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// [`Oidc::validate_bearer`] without its cache: the signature and every claim, each time.
    #[cfg_attr(not(any(test, feature = "test-support")), allow(dead_code))] // tests and bench
    pub async fn check_bearer(&self, token: &str, now: i64) -> Result<KeycloakUser, OidcError> {
        self.check_bearer_bound(token, now)
            .await
            .map(|(user, _)| user)
    }

    /// [`Oidc::check_bearer`], with the token's binding (`cnf.jkt`).
    async fn check_bearer_bound(
        &self,
        token: &str,
        now: i64,
    ) -> Result<(KeycloakUser, Option<String>), OidcError> {
        if token.len() > jwt::MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge.into());
        }
        // Cheap structural checks first, so that garbage never costs a discovery or key fetch.
        jwt::parse_header(token, &self.settings.algorithms)?;
        let provider = self.provider().await?;
        let (_, claims) = self
            .verified_claims(
                &provider,
                token,
                &Expected {
                    issuer: &self.issuer,
                    client_id: &self.settings.client_id,
                    kind: Kind::Access,
                    nonce: None,
                    azp_must_be_client: false,
                    leeway: self.settings.leeway_secs,
                    now,
                },
                Source::Untrusted,
            )
            .await?;
        jwt::check_authorized_party(
            &claims,
            &self.settings.client_id,
            &self.settings.bearer_clients,
        )?;
        let expires = claims.get("exp").and_then(Value::as_i64).unwrap_or(now);
        let binding = keycloak_bff_core::dpop::token_binding(&claims).map(str::to_owned);
        let user = user_from_claims(&claims, &Value::Null, &self.settings.client_id, expires);
        Ok((user, binding))
    }

    /// Refreshes the tokens with the refresh token.
    pub async fn refresh(
        &self,
        provider: &Provider,
        refresh_token: &str,
    ) -> Result<TokenResponse, OidcError> {
        self.token_request(
            provider,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    /// Standard token exchange (RFC 8693; Keycloak 26.2+ with "Standard token exchange" on this
    /// client): the user's access token for one whose audience is the client `audience`.
    pub async fn exchange_token(
        &self,
        provider: &Provider,
        subject_token: &str,
        audience: &str,
    ) -> Result<TokenResponse, OidcError> {
        self.token_request(
            provider,
            &[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", subject_token),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ),
                (
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ),
                ("audience", audience),
            ],
        )
        .await
    }

    /// Validates refreshed tokens as at login (no nonce check: a refreshed ID token may carry the
    /// original one), and that they still belong to the same user and Keycloak session. A changed
    /// `iss`, `sub`, `aud` or `azp` is an error, which ends the session.
    pub async fn validate_refresh(
        &self,
        provider: &Provider,
        tokens: TokenResponse,
        previous: &AuthSession,
        now: i64,
    ) -> Result<AuthSession, OidcError> {
        check_token_type(&tokens, self.dpop.is_some())?;
        let expected = self.expected_id_token(None, now);
        // Keycloak sends a new ID token on refresh (scope openid); without one the previous stays.
        let (id_token, id_claims) = match &tokens.id_token {
            Some(t) => {
                let claims = self
                    .verified_id_token(provider, t, &tokens.access_token, &expected)
                    .await?;
                (t.clone(), claims)
            }
            None => (
                previous.id_token.clone(),
                jwt::unverified_claims(&previous.id_token).unwrap_or_default(),
            ),
        };
        let access_claims = self
            .verified_access_token(provider, &tokens.access_token, &expected)
            .await?;
        self.check_binding(&access_claims)?;
        let set = TokenSet::matched(id_token, id_claims, access_claims)?;
        if set.subject() != Some(previous.user.subject.as_str()) {
            return Err(OidcError::BadResponse("the subject changed".into()));
        }
        if previous.sid.is_some() && set.sid() != previous.sid {
            return Err(OidcError::BadResponse(
                "the Keycloak session changed".into(),
            ));
        }
        let generation = previous.generation.saturating_add(1);
        let refreshed =
            self.session_of(set, tokens, previous.refresh_token.clone(), generation, now);
        Ok(AuthSession {
            deletion_requested_at: previous.deletion_requested_at,
            ..refreshed
        })
    }

    /// The session's access token is bound to the app's DPoP key (`cnf.jkt` its thumbprint) when
    /// the app has one, and to no key otherwise.
    fn check_binding(&self, access_claims: &Value) -> Result<(), OidcError> {
        let bound = keycloak_bff_core::dpop::token_binding(access_claims);
        if bound == self.dpop().map(DpopKey::thumbprint) {
            return Ok(());
        }
        Err(OidcError::BadResponse(
            "the access token is not bound to the app's DPoP key".into(),
        ))
    }

    /// What an ID token from the token endpoint must be (`nonce` at login only).
    fn expected_id_token<'a>(&'a self, nonce: Option<&'a str>, now: i64) -> Expected<'a> {
        Expected {
            issuer: &self.issuer,
            client_id: &self.settings.client_id,
            kind: Kind::Id,
            nonce,
            azp_must_be_client: false,
            leeway: self.settings.leeway_secs,
            now,
        }
    }

    /// The claims of an ID token that came from the token endpoint, its `at_hash` matching the
    /// access token it came with.
    async fn verified_id_token(
        &self,
        provider: &Provider,
        id_token: &str,
        access_token: &str,
        expected: &Expected<'_>,
    ) -> Result<Value, OidcError> {
        let (header, claims) = self
            .verified_claims(provider, id_token, expected, Source::TokenEndpoint)
            .await?;
        jwt::check_at_hash(&claims, &header.alg, access_token)?;
        Ok(claims)
    }

    /// The claims of an access token that came from the token endpoint, obtained by this client.
    async fn verified_access_token(
        &self,
        provider: &Provider,
        access_token: &str,
        id_expected: &Expected<'_>,
    ) -> Result<Value, OidcError> {
        let expected = Expected {
            kind: Kind::Access,
            nonce: None,
            azp_must_be_client: true,
            ..*id_expected
        };
        let (_, claims) = self
            .verified_claims(provider, access_token, &expected, Source::TokenEndpoint)
            .await?;
        Ok(claims)
    }

    /// The session a verified token set makes: the refresh token Keycloak sent (or `kept`), the
    /// session's end from the refresh token's lifetime, the user from the claims.
    fn session_of(
        &self,
        set: TokenSet,
        tokens: TokenResponse,
        kept_refresh_token: Option<String>,
        generation: u64,
        now: i64,
    ) -> AuthSession {
        let access_expires_at = set
            .access_claims
            .get("exp")
            .and_then(Value::as_i64)
            .unwrap_or(now);
        let refresh_token = tokens.refresh_token.or(kept_refresh_token);
        // Keycloak says how long the refresh token (and so the app session) lives; without that,
        // the safest default is the access token's own lifetime.
        let session_expires_at = session_end(
            now,
            tokens.refresh_expires_in,
            refresh_token.is_some(),
            access_expires_at,
        );
        let user = user_from_claims(
            &set.access_claims,
            &set.id_claims,
            &self.settings.client_id,
            session_expires_at,
        );
        AuthSession {
            user,
            sid: set.sid(),
            access_token: tokens.access_token,
            access_expires_at,
            refresh_token,
            id_token: set.id_token,
            generation,
            refreshed_at: now,
            dpop_jkt: keycloak_bff_core::dpop::token_binding(&set.access_claims).map(str::to_owned),
            deletion_requested_at: None,
        }
    }
}

/// Keycloak answers `token_type` Bearer, or DPoP when the app binds its tokens (and only then).
fn check_token_type(tokens: &TokenResponse, dpop: bool) -> Result<(), OidcError> {
    let expected = if dpop { "DPoP" } else { "Bearer" };
    if tokens.token_type.eq_ignore_ascii_case(expected) {
        return Ok(());
    }
    Err(OidcError::BadResponse(format!(
        "token_type {:?} is not {expected}",
        tokens.token_type.chars().take(16).collect::<String>()
    )))
}

/// A verified ID token and access token that name the same user.
struct TokenSet {
    id_token: String,
    id_claims: Value,
    access_claims: Value,
}

impl TokenSet {
    fn matched(
        id_token: String,
        id_claims: Value,
        access_claims: Value,
    ) -> Result<Self, OidcError> {
        if id_claims.get("sub").and_then(Value::as_str)
            != access_claims.get("sub").and_then(Value::as_str)
        {
            return Err(OidcError::BadResponse(
                "ID and access tokens name different users".into(),
            ));
        }
        Ok(Self {
            id_token,
            id_claims,
            access_claims,
        })
    }

    fn subject(&self) -> Option<&str> {
        self.access_claims.get("sub").and_then(Value::as_str)
    }

    /// Keycloak's session id, from the ID token or else the access token.
    fn sid(&self) -> Option<String> {
        self.id_claims
            .get("sid")
            .or_else(|| self.access_claims.get("sid"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discovery(extra: serde_json::Value) -> Metadata {
        let mut doc = serde_json::json!({
            "issuer": "http://127.0.0.1:1", "authorization_endpoint": "http://127.0.0.1:1/authorize",
            "token_endpoint": "http://127.0.0.1:1/token", "jwks_uri": "http://127.0.0.1:1/jwks",
            "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"]
        });
        if let (Some(d), Some(e)) = (doc.as_object_mut(), extra.as_object()) {
            d.extend(e.clone());
        }
        serde_json::from_value(doc).unwrap_or_else(|e| panic!("{e}"))
    }

    fn oidc_for(issuer: &str) -> Oidc {
        let env = std::collections::BTreeMap::from([(
            "APP_KEYCLOAK_CLIENT_SECRET".to_owned(),
            "s".to_owned(),
        )]);
        let text = format!(
            "[auth]\npublic_url = \"http://localhost:3000\"\n[keycloak]\nissuer_url = \"{issuer}\"\nclient_id = \"app\"\n"
        );
        let settings = crate::server::base::settings::Settings::<
            crate::server::base::settings::NoAppSettings,
        >::from_parts(&text, &env)
        .unwrap_or_else(|e| panic!("{e}"));
        Oidc::new(settings.auth.keycloak, Counter::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_admin_api_lives_beside_the_realm_under_the_issuers_own_path() {
        let at = |issuer: &str| {
            oidc_for(issuer)
                .admin_url("/users")
                .map(|u| u.to_string())
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(
            at("https://sso.example/realms/demo"),
            "https://sso.example/admin/realms/demo/users"
        );
        assert_eq!(
            at("https://sso.example/auth/realms/demo"),
            "https://sso.example/auth/admin/realms/demo/users"
        );
    }

    #[test]
    fn discovery_says_whether_the_provider_sends_iss_with_its_responses() {
        let flag = |m: &Metadata| {
            m.additional_metadata()
                .additional_metadata
                .authorization_response_iss_parameter_supported
        };
        let m =
            discovery(serde_json::json!({"authorization_response_iss_parameter_supported": true}));
        assert_eq!(flag(&m), Some(true));
        assert_eq!(flag(&discovery(serde_json::json!({}))), None);
    }
}
