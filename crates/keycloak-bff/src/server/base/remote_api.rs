//! Remote API routes as settings: `[[apis]]` tables of the settings file, or [`RemoteApi`]'s
//! builder for apps that prefer code. Each is checked when it is made (a plain path, an http(s)
//! upstream, the token travelling in clear only to loopback), and the set of them against the
//! app's other routes when the settings are validated.
//!
//! Catalogue: P03 (only the declared prefix reaches the upstream), P05 (a user's token never
//! travels in clear to another host unless the operator says so).

use super::settings_error::SettingsError;
use keycloak_bff_core::remote::UpstreamToken;
use serde::Deserialize;
use std::time::Duration;
use url::Url;

/// How long the upstream may take to answer with its headers, by default (`timeout_secs`).
/// A streamed body (Server-Sent Events) may then last as long as it likes.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// One `[[apis]]` table of the settings file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiSection {
    path: String,
    upstream: String,
    #[serde(default)]
    token: UpstreamToken,
    #[serde(default)]
    audience: Option<String>,
    #[serde(default)]
    methods: Option<Vec<String>>,
    #[serde(default)]
    timeout_secs: Option<u64>,
    #[serde(default)]
    allow_insecure_http: bool,
    #[serde(default)]
    websocket: bool,
}

/// A remote API route: what the browser calls under the app's origin (`path`), where the call
/// goes (`upstream`), and with which token. Made by [`RemoteApi::new`] and its builder methods, or
/// read from an `[[apis]]` table of the settings file:
///
/// ```toml
/// [[apis]]
/// path = "/remote/orders"          # what the browser calls
/// upstream = "http://127.0.0.1:4001/orders"
/// token = "user"                   # "user", "client", "user_or_none", "none"
/// audience = "orders-api"          # optional: a token exchanged for this client
/// methods = ["GET", "POST"]        # default ["GET"]
/// timeout_secs = 30                # until the upstream's headers; a stream may last longer
/// websocket = false                # true: WebSocket upgrades go through too
/// ```
///
/// A call to `path` or below it goes to `upstream` with the rest of the path and the query
/// appended. Only a listed set of request headers is forwarded (never `Cookie` or
/// `Authorization`), the token is added, and the answer streams back with the upstream's
/// `Set-Cookie` dropped.
#[derive(Clone, Debug)]
pub struct RemoteApi {
    pub(crate) path: String,
    pub(crate) upstream: Url,
    pub(crate) token: UpstreamToken,
    pub(crate) audience: Option<String>,
    pub(crate) methods: Vec<axum::http::Method>,
    pub(crate) timeout: Duration,
    pub(crate) allow_insecure_http: bool,
    pub(crate) websocket: bool,
}

fn invalid(msg: impl Into<String>) -> SettingsError {
    SettingsError::Invalid(msg.into())
}

impl RemoteApi {
    /// A route from `path` (`/remote/orders`: absolute, no trailing slash, no `.`, `..`, `%` or
    /// `//`) to `upstream` (an http(s) URL without query or fragment). The defaults: the user's
    /// token, `GET` only, a 30 s limit on the upstream's answer.
    pub fn new(path: &str, upstream: &str) -> Result<Self, SettingsError> {
        let path = path.trim();
        let plain = path.starts_with('/')
            && path.len() > 1
            && !path.ends_with('/')
            && path.split('/').skip(1).all(|s| {
                !s.is_empty()
                    && s != "."
                    && s != ".."
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
            });
        if !plain {
            return Err(invalid(format!(
                "apis: path {path:?} must be an absolute path like /remote/orders (letters, \
                 digits, - . _ ~; no trailing slash)"
            )));
        }
        let mut upstream = Url::parse(upstream.trim())
            .map_err(|e| invalid(format!("apis: upstream of {path}: {e}")))?;
        if !matches!(upstream.scheme(), "http" | "https")
            || upstream.host().is_none()
            || upstream.query().is_some()
            || upstream.fragment().is_some()
            || !upstream.username().is_empty()
            || upstream.password().is_some()
        {
            return Err(invalid(format!(
                "apis: upstream of {path} must be an http(s) URL with a host and no query, \
                 fragment or credentials"
            )));
        }
        // `http://host:4001/orders/` and `…/orders` are the same base: the rest starts with `/`.
        let trimmed = upstream.path().trim_end_matches('/').to_owned();
        upstream.set_path(&trimmed);
        Ok(RemoteApi {
            path: path.to_owned(),
            upstream,
            token: UpstreamToken::User,
            audience: None,
            methods: vec![axum::http::Method::GET],
            timeout: DEFAULT_UPSTREAM_TIMEOUT,
            allow_insecure_http: false,
            websocket: false,
        })
    }

    /// Which token goes with each call (default [`UpstreamToken::User`]).
    pub fn token(mut self, token: UpstreamToken) -> Self {
        self.token = token;
        self
    }

    /// Exchange the user's token (standard token exchange, RFC 8693) for one whose audience is
    /// this client of the realm; the session's own token then never reaches the upstream.
    pub fn audience(mut self, client_id: &str) -> Self {
        self.audience = Some(client_id.trim().to_owned()).filter(|a| !a.is_empty());
        self
    }

    /// The methods the route accepts (default `GET` only); others get 405.
    pub fn methods(mut self, methods: &[axum::http::Method]) -> Self {
        self.methods = methods.to_vec();
        self
    }

    /// How long the upstream may take to send its headers (default 30 s); then 504.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.clamp(Duration::from_millis(100), Duration::from_secs(600));
        self
    }

    /// Lets the token travel over plain http to a host that is not loopback. Weakens security:
    /// anyone on the network path reads the token. Only for a test network.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Let WebSocket upgrades through (off by default): the browser's `Origin` must be the app's,
    /// the token goes on the upgrade request to the upstream, and the connection is closed when
    /// the session ends (sign-out, back-channel logout, its end in Keycloak).
    pub fn websocket(mut self, allow: bool) -> Self {
        self.websocket = allow;
        self
    }

    /// The path the browser calls.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Where the calls go.
    pub fn upstream(&self) -> &Url {
        &self.upstream
    }

    pub(crate) fn from_section(s: ApiSection) -> Result<Self, SettingsError> {
        let mut api = RemoteApi::new(&s.path, &s.upstream)?
            .token(s.token)
            .allow_insecure_http(s.allow_insecure_http)
            .websocket(s.websocket);
        if let Some(audience) = &s.audience {
            api = api.audience(audience);
        }
        if let Some(methods) = &s.methods {
            let parsed = methods
                .iter()
                .map(|m| {
                    let m = m.trim().to_ascii_uppercase();
                    match m.as_str() {
                        "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" => {
                            axum::http::Method::from_bytes(m.as_bytes()).map_err(|_| m.clone())
                        }
                        _ => Err(m.clone()),
                    }
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|m| {
                    invalid(format!(
                        "apis: {} lists the method {m:?}; allowed are GET, HEAD, POST, PUT, \
                         PATCH and DELETE",
                        s.path
                    ))
                })?;
            api = api.methods(&parsed);
        }
        if let Some(secs) = s.timeout_secs {
            api = api.timeout(Duration::from_secs(secs));
        }
        Ok(api)
    }

    /// The checks of this route against the others and the app's own URL space.
    pub(crate) fn check(
        &self,
        others: &[RemoteApi],
        reserved: &[String],
    ) -> Result<(), SettingsError> {
        let under = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/"));
        if let Some(r) = reserved
            .iter()
            .find(|r| under(&self.path, r.trim_end_matches('/')))
        {
            return Err(invalid(format!(
                "apis: path {} is under {r}, which the app or the library serves",
                self.path
            )));
        }
        if let Some(o) = others
            .iter()
            .find(|o| under(&self.path, &o.path) || under(&o.path, &self.path))
        {
            return Err(invalid(format!(
                "apis: paths {} and {} overlap",
                self.path, o.path
            )));
        }
        let loopback = match self.upstream.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        let carries_token = self.token != UpstreamToken::None;
        if self.upstream.scheme() == "http"
            && carries_token
            && !loopback
            && !self.allow_insecure_http
        {
            return Err(invalid(format!(
                "apis: upstream {} of {} is plain http on a host that is not loopback: the token \
                 would travel in clear. Use https, or set allow_insecure_http = true on the route \
                 for a test network",
                self.upstream, self.path
            )));
        }
        if self.audience.is_some()
            && !matches!(self.token, UpstreamToken::User | UpstreamToken::UserOrNone)
        {
            return Err(invalid(format!(
                "apis: {} has an audience, which exchanges the user's token: token must be \
                 \"user\" or \"user_or_none\"",
                self.path
            )));
        }
        if self.methods.is_empty() {
            return Err(invalid(format!("apis: {} lists no method", self.path)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: Result<RemoteApi, SettingsError>) -> String {
        r.map(|_| ())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn a_route_path_is_a_plain_absolute_path_and_the_upstream_an_http_url() {
        for bad in [
            "remote", "/", "/remote/", "/a//b", "/a/../b", "/a%2fb", "/a b",
        ] {
            assert!(
                err(RemoteApi::new(bad, "http://127.0.0.1:4001/x")).contains("path"),
                "{bad}"
            );
        }
        for bad in [
            "ftp://127.0.0.1/x",
            "http://127.0.0.1/x?a=1",
            "http://u:p@127.0.0.1/x",
            "/x",
        ] {
            assert!(
                err(RemoteApi::new("/remote/x", bad)).contains("upstream"),
                "{bad}"
            );
        }
        let api = RemoteApi::new("/remote/orders", "http://127.0.0.1:4001/orders/")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(api.upstream.as_str(), "http://127.0.0.1:4001/orders");
        assert_eq!(api.methods, [axum::http::Method::GET]);
        assert_eq!(api.token, UpstreamToken::User);
    }

    #[test]
    fn a_token_goes_in_clear_only_to_loopback_unless_the_route_allows_it() {
        let api =
            RemoteApi::new("/remote/x", "http://api.internal/x").unwrap_or_else(|e| panic!("{e}"));
        let e = api.check(&[], &[]).map(|_| ()).err().map(|e| e.to_string());
        assert!(e.unwrap_or_default().contains("in clear"));
        assert!(api
            .clone()
            .allow_insecure_http(true)
            .check(&[], &[])
            .is_ok());
        assert!(api
            .clone()
            .token(UpstreamToken::None)
            .check(&[], &[])
            .is_ok());
        let tls =
            RemoteApi::new("/remote/x", "https://api.internal/x").unwrap_or_else(|e| panic!("{e}"));
        assert!(tls.check(&[], &[]).is_ok());
    }

    #[test]
    fn routes_may_not_overlap_each_other_or_the_apps_own_paths() {
        let a = RemoteApi::new("/remote/orders", "http://127.0.0.1:1/a")
            .unwrap_or_else(|e| panic!("{e}"));
        let b = RemoteApi::new("/remote/orders/items", "http://127.0.0.1:1/b")
            .unwrap_or_else(|e| panic!("{e}"));
        let c = RemoteApi::new("/remote/ordersx", "http://127.0.0.1:1/c")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(b.check(std::slice::from_ref(&a), &[]).is_err());
        assert!(c.check(std::slice::from_ref(&a), &[]).is_ok());
        let reserved = ["/auth".to_owned(), "/api/".to_owned()];
        let auth =
            RemoteApi::new("/auth/x", "http://127.0.0.1:1/c").unwrap_or_else(|e| panic!("{e}"));
        let api = RemoteApi::new("/api", "http://127.0.0.1:1/c").unwrap_or_else(|e| panic!("{e}"));
        assert!(auth.check(&[], &reserved).is_err());
        assert!(api.check(&[], &reserved).is_err());
    }

    #[test]
    fn an_audience_needs_the_users_token_and_methods_are_a_known_few() {
        let section = |extra: &str| -> Result<RemoteApi, SettingsError> {
            let text =
                format!("path = \"/remote/o\"\nupstream = \"http://127.0.0.1:1/o\"\n{extra}");
            let s: ApiSection = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
            let api = RemoteApi::from_section(s)?;
            api.check(&[], &[])?;
            Ok(api)
        };
        assert!(err(section("token = \"client\"\naudience = \"orders-api\"")).contains("audience"));
        assert!(err(section("methods = [\"CONNECT\"]")).contains("CONNECT"));
        assert!(err(section("methods = []")).contains("no method"));
        assert!(err(section("tokens = \"user\"")).contains("unknown field"));
        let api =
            section("methods = [\"get\", \"POST\"]\naudience = \"orders-api\"\ntimeout_secs = 5")
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            api.methods,
            [axum::http::Method::GET, axum::http::Method::POST]
        );
        assert_eq!(api.audience.as_deref(), Some("orders-api"));
        assert_eq!(api.timeout, Duration::from_secs(5));
    }
}
