//! The tokens remote API routes send upstream, obtained from Keycloak's token endpoint: a user's
//! access token exchanged for one made for another client (standard token exchange, RFC 8693,
//! Keycloak 26.2+), and the app's own token (client credentials); and [`RemoteApis`], what the
//! routes share (these tokens and the HTTP client to upstreams).
//!
//! An exchanged token is kept per session and audience until shortly before it expires
//! (`core::remote::exchanged_token_reuse_until`), and one exchange serves every call waiting for
//! the same one. It remembers a hash of the session's access token it was exchanged for: after a
//! refresh the hash differs and the next call exchanges again, replacing it. A sign-out drops the
//! session's tokens ([`UpstreamTokens::forget`]); those of sessions that ended otherwise
//! (back-channel logout, expiry, another replica) are never looked up again and are swept once
//! they expire. The tokens stay in this process's memory only, never in the session store or a
//! log.
//!
//! Catalogue: P04 (the session's own token never reaches an upstream that has an audience).

use crate::error::AppError;
use crate::server::oidc::client::{Oidc, OidcError, TokenResponse};
use crate::server::oidc::dpop_key::CallToken;
use keycloak_bff_core::remote::exchanged_token_reuse_until;
use secrecy::SecretString;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Entries kept before expired ones are swept.
const SWEEP_ABOVE: usize = 1_024;
/// Entries kept at most: past it, a new one replaces nothing and is used once.
const MAX_ENTRIES: usize = 100_000;

#[derive(Clone)]
struct Cached {
    token: CallToken,
    reuse_until: i64,
    /// The hash of the session token it was exchanged for (a client token: zeros).
    subject: [u8; 32],
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// The slots by session, then audience: found without making a key (a call's common path).
#[derive(Default)]
struct Slots {
    by_session: HashMap<String, HashMap<String, Slot>>,
    /// Slots held, over every session.
    count: usize,
}

/// The exchanged tokens and the app's own token, with what they cost.
#[derive(Default)]
pub struct UpstreamTokens {
    exchanged: Mutex<Slots>,
    client: tokio::sync::Mutex<Option<Cached>>,
    exchanges: AtomicU64,
}

/// A hash that tells a session's access tokens apart. Of a signed JWT, only its signature is
/// hashed: the signature stands for the whole token (two tokens with one signature would forge
/// one of them) and is a quarter of its length; any other token (or a signature shorter than 32
/// bytes, 43 characters: none of Keycloak's algorithms makes one) is hashed whole.
fn token_hash(access_token: &str) -> [u8; 32] {
    let mut parts = access_token.split('.');
    let signed = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(_), Some(signature), None) if signature.len() >= 43 => signature,
        _ => access_token,
    };
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, signed.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

/// Keycloak's answer to a token request, as the error the route answers with.
fn refused(what: &'static str, e: OidcError) -> AppError {
    match e {
        OidcError::Unavailable(e) => {
            tracing::warn!(error = %e, what, "Keycloak's token endpoint did not answer");
            AppError::IdpUnavailable
        }
        OidcError::Rejected { error } => {
            // Not allowed to exchange for this audience (the realm's client scopes), or the
            // subject token is no longer active.
            tracing::warn!(%error, what, "Keycloak refused the token request");
            AppError::Forbidden
        }
        other => {
            tracing::warn!(error = %other, what, "Keycloak's token answer was not understood");
            AppError::Upstream("the token answer was not understood".into())
        }
    }
}

/// The token of Keycloak's answer, bound when Keycloak says so (`token_type` DPoP: the request
/// carried a proof of the app's key).
fn call_token(answer: TokenResponse) -> CallToken {
    let bound = answer.is_dpop_bound();
    CallToken::new(SecretString::from(answer.access_token), bound)
}

impl UpstreamTokens {
    /// Tokens exchanged by this process since start-up.
    pub fn exchanges(&self) -> u64 {
        self.exchanges.load(Ordering::Relaxed)
    }

    /// Exchanged tokens held now.
    pub fn held(&self) -> usize {
        self.exchanged.lock().map(|m| m.count).unwrap_or(0)
    }

    /// The user's token `access_token` (of the session `session`) exchanged for one whose
    /// audience is `audience`: the one kept from an earlier call while it is fresh and was
    /// exchanged for this same session token, otherwise one new exchange (then `true`).
    pub async fn exchanged(
        &self,
        oidc: &Oidc,
        session: &str,
        access_token: &str,
        audience: &str,
        now: i64,
    ) -> Result<(CallToken, bool), AppError> {
        let subject = token_hash(access_token);
        let slot = self.slot(session, audience, now);
        let mut cached = slot.lock().await;
        if let Some(c) = cached
            .as_ref()
            .filter(|c| c.reuse_until > now && c.subject == subject)
        {
            return Ok((c.token.clone(), false));
        }
        let provider = oidc
            .provider()
            .await
            .map_err(|_| AppError::IdpUnavailable)?;
        let answer = oidc
            .exchange_token(&provider, access_token, audience)
            .await
            .map_err(|e| refused("token exchange", e))?;
        self.exchanges.fetch_add(1, Ordering::Relaxed);
        let reuse_until = exchanged_token_reuse_until(answer.expires_in, now);
        let token = call_token(answer);
        *cached = Some(Cached {
            token: token.clone(),
            reuse_until,
            subject,
        });
        Ok((token, true))
    }

    /// The slot of one session and audience, made when missing; expired slots are swept when
    /// there are many.
    fn slot(&self, session: &str, audience: &str, now: i64) -> Slot {
        let Ok(mut slots) = self.exchanged.lock() else {
            return Slot::default();
        };
        if let Some(slot) = slots
            .by_session
            .get(session)
            .and_then(|audiences| audiences.get(audience))
        {
            return slot.clone();
        }
        if slots.count >= SWEEP_ABOVE {
            // A slot in use (locked) is kept; an empty or expired one goes.
            slots.by_session.retain(|_, audiences| {
                audiences.retain(|_, slot| match slot.try_lock() {
                    Ok(c) => c.as_ref().is_some_and(|c| c.reuse_until > now),
                    Err(_) => true,
                });
                !audiences.is_empty()
            });
            slots.count = slots.by_session.values().map(HashMap::len).sum();
        }
        let slot = Slot::default();
        if slots.count < MAX_ENTRIES {
            slots
                .by_session
                .entry(session.to_owned())
                .or_default()
                .insert(audience.to_owned(), slot.clone());
            slots.count += 1;
        }
        slot
    }

    /// Drops what was exchanged for the session `session` (it ended).
    pub fn forget(&self, session: &str) {
        if let Ok(mut slots) = self.exchanged.lock() {
            if let Some(audiences) = slots.by_session.remove(session) {
                slots.count = slots.count.saturating_sub(audiences.len());
            }
        }
    }

    /// The key of a session here: Keycloak's session id, or without one a hash of its token.
    pub fn session_key(sid: Option<&str>, access_token: &str) -> String {
        match sid {
            Some(sid) => format!("sid:{sid}"),
            None => token_hash(access_token)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        }
    }

    /// The app's own access token (client credentials of its client), kept until shortly before
    /// it expires.
    pub async fn client(&self, oidc: &Oidc, now: i64) -> Result<CallToken, AppError> {
        let mut cached = self.client.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| c.reuse_until > now) {
            return Ok(c.token.clone());
        }
        let provider = oidc
            .provider()
            .await
            .map_err(|_| AppError::IdpUnavailable)?;
        let settings = oidc.keycloak_settings();
        let answer = oidc
            .client_credentials_token(&provider, &settings.client_id, &settings.client_secret)
            .await
            .map_err(|e| refused("client credentials", e))?;
        let reuse_until = exchanged_token_reuse_until(answer.expires_in, now);
        let token = call_token(answer);
        *cached = Some(Cached {
            token: token.clone(),
            reuse_until,
            subject: [0; 32],
        });
        Ok(token)
    }
}

/// The client remote API routes call their upstreams with (HTTP/1.1, pooled connections; https
/// with the webpki roots, as reqwest's).
pub(crate) type UpstreamClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    axum::body::Body,
>;

/// What the remote API routes share: the HTTP clients to upstreams and the tokens made for them.
pub struct RemoteApis {
    /// For WebSocket upgrades.
    pub(crate) http: reqwest::Client,
    /// For every other call: hyper's client, which follows no redirect and keeps no cookies.
    pub(crate) upstream: UpstreamClient,
    pub(crate) tokens: UpstreamTokens,
}

impl RemoteApis {
    /// Clients without a total time limit (a stream may last), that follow no redirect (the
    /// token would go with it) and keep no cookies.
    pub fn new(connect_timeout: std::time::Duration) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout)
            .build()
            .map_err(|e| e.to_string())?;
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        // https URLs go to the TLS connector around this one (it is never asked for them here).
        connector.enforce_http(false);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|e| format!("TLS to upstreams: {e}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let upstream =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .build(connector);
        Ok(RemoteApis {
            http,
            upstream,
            tokens: UpstreamTokens::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_and_audience_keep_one_slot_until_the_session_is_forgotten() {
        let tokens = UpstreamTokens::default();
        let first = tokens.slot("sid:a", "orders-api", 100);
        assert!(Arc::ptr_eq(
            &first,
            &tokens.slot("sid:a", "orders-api", 100)
        ));
        let other_audience = tokens.slot("sid:a", "billing-api", 100);
        let other_session = tokens.slot("sid:b", "orders-api", 100);
        assert!(!Arc::ptr_eq(&first, &other_audience));
        assert!(!Arc::ptr_eq(&first, &other_session));
        assert_eq!(tokens.held(), 3);
        tokens.forget("sid:a");
        assert_eq!(tokens.held(), 1, "both audiences of the session went");
        assert!(!Arc::ptr_eq(
            &first,
            &tokens.slot("sid:a", "orders-api", 100)
        ));
        assert!(Arc::ptr_eq(
            &other_session,
            &tokens.slot("sid:b", "orders-api", 100)
        ));
    }

    #[tokio::test]
    async fn many_slots_sweep_the_empty_and_expired_ones_and_keep_the_fresh() {
        let tokens = UpstreamTokens::default();
        let fresh = tokens.slot("sid:fresh", "orders-api", 100);
        *fresh.lock().await = Some(Cached {
            token: CallToken::new(SecretString::from("t".to_owned()), false),
            reuse_until: 200,
            subject: [0; 32],
        });
        for i in 1..SWEEP_ABOVE {
            tokens.slot(&format!("sid:{i}"), "orders-api", 100);
        }
        assert_eq!(tokens.held(), SWEEP_ABOVE, "no sweep below the limit");
        let new = tokens.slot("sid:new", "orders-api", 150);
        assert_eq!(tokens.held(), 2, "the fresh slot and the new one");
        assert!(Arc::ptr_eq(
            &fresh,
            &tokens.slot("sid:fresh", "orders-api", 150)
        ));
        assert!(Arc::ptr_eq(
            &new,
            &tokens.slot("sid:new", "orders-api", 150)
        ));
    }
}
