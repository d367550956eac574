//! Pending sign-ins in the browser, sealed: each `GET <prefix>/login` sets one cookie, named after
//! its `state`, holding the state, nonce, PKCE verifier and return path encrypted and
//! authenticated (AES-GCM, the cookie's name bound in) with a server key. Starting a sign-in so
//! writes nothing on the server, whatever the number of cookie-less clients (catalogue A08), and
//! any replica with the same `session.secret` finishes it. The cookie is `HttpOnly`, `Lax`,
//! scoped to the auth routes, lives as long as a pending login, and is removed when the callback
//! uses it.

use crate::server::base::cookies::request_cookies;
use crate::server::base::settings::AuthSettings;
use axum::http::{HeaderMap, HeaderValue};
use cookie::{Cookie, CookieJar, Key, SameSite};
use keycloak_bff_core::cookie::login_cookie_prefix;
use keycloak_bff_core::pending::{cookie_suffix, to_evict, PendingLogin};
use secrecy::ExposeSecret;

pub struct LoginCookies {
    key: Key,
    prefix: String,
    path: String,
    secure: bool,
    ttl_secs: i64,
    max: usize,
}

impl LoginCookies {
    /// The key comes from `session.secret`; without one, from the system's random source (pending
    /// sign-ins then end with the process, and each replica would need its own).
    pub fn new(settings: &AuthSettings) -> Result<Self, String> {
        let key = match &settings.session.secret {
            Some(secret) => Key::derive_from(secret.expose_secret().as_bytes()),
            None => Key::try_generate().ok_or("no random source for the login cookie key")?,
        };
        let https = settings.public_url_is_https();
        Ok(Self {
            key,
            prefix: login_cookie_prefix(https, &settings.session.cookie_name),
            path: settings.ui.route_prefix.clone(),
            secure: https,
            ttl_secs: settings.session.pending_login_ttl_secs,
            max: settings.session.max_pending_logins,
        })
    }

    /// An opaque handle for `value` that only a process with this key can make (HMAC-SHA256 with
    /// the key's signing half, under `purpose`, 16 bytes in base64url): what the browser is given
    /// instead of a value it must not see, resolved on the server by making the handles again.
    /// The same on every replica that shares `session.secret`.
    pub fn handle(&self, purpose: &str, value: &str) -> String {
        use base64::Engine;
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, self.key.signing());
        let mut context = aws_lc_rs::hmac::Context::with_key(&key);
        context.update(purpose.as_bytes());
        context.update(&[0]);
        context.update(value.as_bytes());
        let tag = context.sign();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&tag.as_ref()[..16])
    }

    /// The request's login cookies, as sent (still sealed).
    fn sent<'h>(&self, headers: &'h HeaderMap) -> Vec<Cookie<'h>> {
        request_cookies(headers)
            .filter(|c| c.name().starts_with(&self.prefix))
            .collect()
    }

    fn open(&self, sealed: &Cookie<'_>) -> Option<PendingLogin> {
        let owned = Cookie::new(sealed.name().to_owned(), sealed.value().to_owned());
        let mut jar = CookieJar::new();
        jar.add_original(owned);
        let opened = jar.private(&self.key).get(sealed.name())?;
        serde_json::from_str(opened.value()).ok()
    }

    fn header(cookie: &Cookie<'_>) -> Option<HeaderValue> {
        HeaderValue::from_str(&cookie.to_string()).ok()
    }

    fn removal(&self, name: &str) -> Option<HeaderValue> {
        let mut cookie = Cookie::build((name.to_owned(), ""))
            .path(self.path.clone())
            .secure(self.secure)
            .http_only(true)
            .same_site(SameSite::Lax)
            .build();
        cookie.make_removal();
        Self::header(&cookie)
    }

    /// The `Set-Cookie` values that add `login`, and remove expired, unreadable and (beyond the
    /// most a browser keeps) the oldest login cookies. `None` when the login cannot be sealed.
    pub fn start(
        &self,
        headers: &HeaderMap,
        login: &PendingLogin,
        now: i64,
    ) -> Option<Vec<HeaderValue>> {
        let suffix = cookie_suffix(&login.state)?;
        let name = format!("{}{suffix}", self.prefix);
        let sent = self.sent(headers);
        let existing: Vec<(&str, Option<(i64, u64)>)> = sent
            .iter()
            .map(|c| (c.name(), self.open(c).map(|l| (l.created_at, l.order))))
            .collect();
        let mut values: Vec<HeaderValue> = to_evict(&existing, now, self.ttl_secs, self.max)
            .into_iter()
            .filter_map(|old| self.removal(old))
            .collect();
        // Every started sign-in of the browser travels in each request's Cookie header: keep
        // its return path short (catalogue A08; a proxy refuses header lines over 8 KB).
        let bounded = PendingLogin {
            return_to: login.return_to.for_pending_login(),
            ..login.clone()
        };
        let plain = serde_json::to_string(&bounded).ok()?;
        let mut jar = CookieJar::new();
        jar.private_mut(&self.key).add(
            Cookie::build((name.clone(), plain))
                .path(self.path.clone())
                .secure(self.secure)
                .http_only(true)
                .same_site(SameSite::Lax)
                .max_age(cookie::time::Duration::seconds(self.ttl_secs)),
        );
        values.push(Self::header(jar.get(&name)?)?);
        Some(values)
    }

    /// The unexpired login that `state` names, if this browser started it, and the `Set-Cookie`
    /// that removes its cookie (sent whatever the callback's outcome: a login is used once).
    pub fn take(
        &self,
        headers: &HeaderMap,
        state: &str,
        now: i64,
    ) -> (Option<PendingLogin>, Option<HeaderValue>) {
        let Some(suffix) = cookie_suffix(state) else {
            return (None, None);
        };
        let name = format!("{}{suffix}", self.prefix);
        let sent = self.sent(headers);
        let Some(sealed) = sent.iter().find(|c| c.name() == name) else {
            return (None, None);
        };
        let login = self
            .open(sealed)
            .filter(|l| l.state == state && l.is_fresh(now, self.ttl_secs));
        (login, self.removal(&name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::base::settings::{NoAppSettings, Settings};
    use axum::http::header;
    use keycloak_bff_core::ReturnTo;
    use std::collections::BTreeMap;

    fn cookies() -> LoginCookies {
        let env = BTreeMap::from([("APP_KEYCLOAK_CLIENT_SECRET".to_owned(), "s".to_owned())]);
        let text = "[auth]\npublic_url = \"http://127.0.0.1:3000\"\n[keycloak]\nissuer_url = \"http://127.0.0.1:8080/realms/demo\"\nclient_id = \"demo-app\"\n";
        let settings = Settings::<NoAppSettings>::from_parts(text, &env)
            .unwrap_or_else(|e| panic!("settings: {e}"));
        LoginCookies::new(&settings.auth).unwrap_or_else(|e| panic!("{e}"))
    }

    fn login(state: &str, at: i64) -> PendingLogin {
        PendingLogin {
            state: state.into(),
            nonce: "nonce-value".into(),
            pkce_verifier: "verifier-value".into(),
            return_to: ReturnTo::new(Some(&format!("/{}", "x".repeat(2000)))),
            created_at: at,
            order: 0,
            prompt: Default::default(),
            action: None,
            acr: None,
        }
    }

    /// The request a browser sends back with the `Set-Cookie` values it was given.
    fn request_with(values: &[HeaderValue]) -> HeaderMap {
        let pairs: Vec<String> = values
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| Cookie::parse(v.to_owned()).ok())
            .filter(|c| !c.value().is_empty())
            .map(|c| format!("{}={}", c.name(), c.value()))
            .collect();
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&pairs.join("; ")) {
            headers.insert(header::COOKIE, v);
        }
        headers
    }

    const STATE: &str = "AbCdEfGhIjKlMnOpQrStUv";

    /// The `Set-Cookie` values of a login started at 100 with [`STATE`].
    fn sealed(c: &LoginCookies) -> Vec<HeaderValue> {
        c.start(&HeaderMap::new(), &login(STATE, 100), 100)
            .expect("sealed")
    }

    #[test]
    fn handles_are_opaque_stable_per_key_and_purpose_and_differ_between_keys() {
        let settings = |secret: &str| {
            let env = BTreeMap::from([
                ("APP_KEYCLOAK_CLIENT_SECRET".to_owned(), "x".to_owned()),
                ("APP_SESSION_SECRET".to_owned(), secret.to_owned()),
            ]);
            let file = "[keycloak]\nissuer_url = \"http://localhost:8080/realms/demo\"\nclient_id = \"a\"\n";
            Settings::<NoAppSettings>::from_parts(file, &env)
                .unwrap_or_else(|e| panic!("{e}"))
                .auth
        };
        let one = LoginCookies::new(&settings(&"a".repeat(48))).unwrap_or_else(|e| panic!("{e}"));
        let replica =
            LoginCookies::new(&settings(&"a".repeat(48))).unwrap_or_else(|e| panic!("{e}"));
        let other = LoginCookies::new(&settings(&"b".repeat(48))).unwrap_or_else(|e| panic!("{e}"));
        let sid = "5f0c1a2b-0000-4000-8000-000000000001";
        let h = one.handle("account-session", sid);
        assert_eq!(h.len(), 22);
        assert!(!h.contains(sid) && !h.contains("5f0c"));
        assert_eq!(
            h,
            replica.handle("account-session", sid),
            "same on every replica"
        );
        assert_ne!(h, other.handle("account-session", sid), "another key");
        assert_ne!(h, one.handle("something-else", sid), "another purpose");
        assert_ne!(
            h,
            one.handle("account-session", "5f0c1a2b-0000-4000-8000-000000000002")
        );
    }

    #[test]
    fn a_pending_login_comes_back_from_its_cookie_once_and_holds_no_secret_in_clear() {
        let c = cookies();
        let set = sealed(&c);
        let text = set
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<String>();
        assert!(text.contains("HttpOnly") && text.contains("Path=/auth"));
        assert!(!text.contains("verifier-value") && !text.contains("nonce-value"));
        assert!(
            text.len() < 4096,
            "a browser keeps it: {} bytes",
            text.len()
        );
        let (found, removal) = c.take(&request_with(&set), STATE, 101);
        assert_eq!(
            found.map(|l| l.pkce_verifier).as_deref(),
            Some("verifier-value")
        );
        let removal = removal.expect("removed");
        assert!(removal.to_str().unwrap_or_default().contains("Max-Age=0"));
    }

    #[test]
    fn the_most_started_sign_ins_a_browser_keeps_fit_in_a_proxys_header_line() {
        let c = cookies();
        let mut headers = HeaderMap::new();
        let mut kept: Vec<HeaderValue> = Vec::new();
        for i in 0..c.max {
            let state = format!("{STATE}{i:02}");
            let values = c.start(&headers, &login(&state, 100 + i as i64), 100 + i as i64);
            kept.extend(values.expect("sealed"));
            headers = request_with(&kept);
        }
        let sent = headers
            .get(header::COOKIE)
            .map_or(0, |v| v.as_bytes().len());
        let with_session = sent + "; kc_session=".len() + 64;
        assert_eq!(
            c.sent(&headers).len(),
            c.max,
            "every started sign-in is kept"
        );
        assert!(
            with_session < 8 * 1024,
            "{} started sign-ins with long return paths: a Cookie line of {with_session} bytes",
            c.max
        );
    }

    #[test]
    fn a_cookie_sealed_with_another_key_or_altered_or_expired_gives_nothing() {
        let c = cookies();
        let set = sealed(&c);
        assert!(cookies().take(&request_with(&set), STATE, 101).0.is_none());
        assert!(c.take(&request_with(&set), STATE, 100 + 601).0.is_none());
        let forged = format!("kc_session_login_{STATE}={}", "A".repeat(200));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&forged).expect("header"),
        );
        assert!(c.take(&headers, STATE, 101).0.is_none());
    }

    #[test]
    fn a_cookie_renamed_to_another_state_opens_nothing() {
        let c = cookies();
        let set = sealed(&c);
        let other = "ZyXwVuTsRqPoNmLkJiHgFe";
        let renamed: Vec<HeaderValue> = set
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| HeaderValue::from_str(&v.replace(STATE, other)).ok())
            .collect();
        assert!(c.take(&request_with(&renamed), other, 101).0.is_none());
    }
}
