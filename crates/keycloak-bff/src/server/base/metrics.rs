//! What the library counts, in the Prometheus text format (`GET /metrics`, or on
//! `auth.metrics_addr`), with `prometheus-client`. Every metric is named `keycloak_bff_*`.
//!
//! - `sign_ins_total{outcome}`: `started`, `completed`, and the failures by reason.
//! - `refreshes_total{outcome}`: `ok`, `invalid_grant`, `unavailable`, `rejected` (tokens that do not
//!   fit), `waited` (another request or replica had just refreshed).
//! - `token_refresh_calls_total`: calls to Keycloak's token endpoint with a refresh token.
//! - `backchannel_logouts_total{outcome}`: `accepted`, `refused`.
//! - `frontchannel_logouts_total{outcome}`: `accepted`, `refused`, `limited` (over the rate).
//! - `bearer_refused_total{reason}`: bearer tokens the JSON API refused.
//! - `key_set_fetches_total`, `sessions_ended_total{reason}`.
//! - `event_streams`: open session event streams (`<prefix>/events`), one per browser.
//! - `auth_request_seconds{route}`: latency of the auth routes.
//! - `remote_requests_total{route, status}`: calls through the remote API routes, by the status
//!   the browser got (the upstream's, or the library's own refusal).
//! - `remote_upstream_seconds{route}`: how long upstreams took to answer with their headers.
//! - `token_exchanges_total{audience, outcome}`: token exchanges (`ok`, `refused`).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Mutex;

pub use prometheus_client::metrics::counter::Counter;

/// One label, with a value from a fixed set.
pub type Label = [(&'static str, &'static str); 1];

type Counters = Family<Label, Counter>;
type Histograms = Family<Label, Histogram, fn() -> Histogram>;
/// Labels whose values the operator chose (a route's path, an audience).
type Named = Vec<(&'static str, String)>;

/// One remote API route's series, taken from the families the first time each is used (a
/// clone shares the family's value).
#[derive(Debug, Default)]
pub(crate) struct RouteMetrics {
    route: String,
    by_status: Mutex<std::collections::HashMap<u16, Counter>>,
    latency: std::sync::OnceLock<Histogram>,
}

impl RouteMetrics {
    pub(crate) fn new(route: &str) -> Self {
        Self {
            route: route.to_owned(),
            ..Self::default()
        }
    }
}

pub struct Metrics {
    registry: Mutex<Registry>,
    /// Calls to Keycloak's token endpoint with a refresh token.
    pub token_refreshes: Counter,
    /// Sessions the server ended itself, every end but a sign-out: Keycloak refused the refresh
    /// token, sent tokens that do not fit, or the access token expired without a refresh token.
    pub sessions_ended_by_server: Counter,
    /// Back-channel logout tokens accepted.
    pub backchannel_logouts: Counter,
    /// Key-set fetches (successful or not).
    pub key_set_fetches: Counter,
    /// Open session event streams (pages listening for changes of their session).
    pub event_streams: Gauge,
    sign_ins: Counters,
    refreshes: Counters,
    backchannel: Counters,
    frontchannel: Counters,
    bearer_refused: Counters,
    sessions_ended: Counters,
    latency: Histograms,
    remote_requests: Family<Named, Counter>,
    remote_latency: Family<Named, Histogram, fn() -> Histogram>,
    token_exchanges: Family<Named, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 8 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Self {
            registry: Mutex::new(Registry::with_prefix("keycloak_bff")),
            token_refreshes: Counter::default(),
            sessions_ended_by_server: Counter::default(),
            backchannel_logouts: Counter::default(),
            key_set_fetches: Counter::default(),
            event_streams: Gauge::default(),
            sign_ins: Counters::default(),
            refreshes: Counters::default(),
            backchannel: Counters::default(),
            frontchannel: Counters::default(),
            bearer_refused: Counters::default(),
            sessions_ended: Counters::default(),
            latency: Histograms::new_with_constructor(latency_histogram),
            remote_requests: Family::default(),
            remote_latency: Family::new_with_constructor(latency_histogram),
            token_exchanges: Family::default(),
        };
        if let Ok(registry) = m.registry.get_mut() {
            registry.register(
                "token_refresh_calls",
                "Calls to Keycloak's token endpoint with a refresh token",
                m.token_refreshes.clone(),
            );
            registry.register(
                "key_set_fetches",
                "Fetches of Keycloak's key set",
                m.key_set_fetches.clone(),
            );
            registry.register(
                "event_streams",
                "Open session event streams (pages listening for changes of their session)",
                m.event_streams.clone(),
            );
            registry.register(
                "sign_ins",
                "Sign-ins started, completed, and failed by reason",
                m.sign_ins.clone(),
            );
            registry.register(
                "refreshes",
                "Session refreshes by outcome",
                m.refreshes.clone(),
            );
            registry.register(
                "backchannel_logouts",
                "Back-channel logouts by outcome",
                m.backchannel.clone(),
            );
            registry.register(
                "frontchannel_logouts",
                "Front-channel logouts by outcome",
                m.frontchannel.clone(),
            );
            registry.register(
                "bearer_refused",
                "Bearer tokens refused by the API, by reason",
                m.bearer_refused.clone(),
            );
            registry.register(
                "sessions_ended",
                "Sessions ended by the server, by reason",
                m.sessions_ended.clone(),
            );
            registry.register(
                "auth_request_seconds",
                "Latency of the auth routes",
                m.latency.clone(),
            );
            register_remote(
                registry,
                (
                    m.remote_requests.clone(),
                    m.remote_latency.clone(),
                    m.token_exchanges.clone(),
                ),
            );
        }
        m
    }
}

type RemoteFamilies = (
    Family<Named, Counter>,
    Family<Named, Histogram, fn() -> Histogram>,
    Family<Named, Counter>,
);

/// The remote API routes' metrics.
fn register_remote(registry: &mut Registry, (requests, latency, exchanges): RemoteFamilies) {
    registry.register(
        "remote_requests",
        "Calls through the remote API routes, by route and the status answered",
        requests,
    );
    registry.register(
        "remote_upstream_seconds",
        "How long the upstreams of the remote API routes took to answer",
        latency,
    );
    registry.register(
        "token_exchanges",
        "Token exchanges for the remote API routes, by audience and outcome",
        exchanges,
    );
}

impl Metrics {
    pub(crate) fn count(counter: &Counter) {
        counter.inc();
    }

    pub fn read(counter: &Counter) -> u64 {
        counter.get()
    }

    pub(crate) fn sign_in(&self, outcome: &'static str) {
        self.sign_ins.get_or_create(&[("outcome", outcome)]).inc();
    }

    pub(crate) fn refresh(&self, outcome: &'static str) {
        self.refreshes.get_or_create(&[("outcome", outcome)]).inc();
    }

    pub(crate) fn backchannel(&self, outcome: &'static str) {
        if outcome == "accepted" {
            self.backchannel_logouts.inc();
        }
        self.backchannel
            .get_or_create(&[("outcome", outcome)])
            .inc();
    }

    pub(crate) fn frontchannel(&self, outcome: &'static str) {
        self.frontchannel
            .get_or_create(&[("outcome", outcome)])
            .inc();
    }

    pub(crate) fn bearer_refused(&self, reason: &'static str) {
        self.bearer_refused
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    pub(crate) fn session_ended(&self, reason: &'static str) {
        if reason != "signed_out" {
            self.sessions_ended_by_server.inc();
        }
        self.sessions_ended
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    pub(crate) fn observe(&self, route: &'static str, seconds: f64) {
        self.latency
            .get_or_create(&[("route", route)])
            .observe(seconds);
    }

    /// A call through the remote API route `route`, answered with `status`; `upstream_seconds`
    /// when the upstream was called.
    pub(crate) fn remote(&self, route: &str, status: u16, upstream_seconds: Option<f64>) {
        self.remote_requests
            .get_or_create(&vec![
                ("route", route.to_owned()),
                ("status", status.to_string()),
            ])
            .inc();
        if let Some(seconds) = upstream_seconds {
            self.remote_latency
                .get_or_create(&vec![("route", route.to_owned())])
                .observe(seconds);
        }
    }

    /// A call through remote API route `route` (its [`RouteMetrics`]), answered with `status`;
    /// `upstream_seconds` when the upstream was called. As [`Metrics::remote`], without building
    /// the labels again once the route has counted a status.
    pub(crate) fn remote_counted(
        &self,
        route: &RouteMetrics,
        status: u16,
        upstream_seconds: Option<f64>,
    ) {
        let counter = route.by_status.lock().ok().and_then(|mut by_status| {
            if by_status.len() > 64 && !by_status.contains_key(&status) {
                return None;
            }
            Some(
                by_status
                    .entry(status)
                    .or_insert_with(|| {
                        self.remote_requests
                            .get_or_create(&vec![
                                ("route", route.route.clone()),
                                ("status", status.to_string()),
                            ])
                            .clone()
                    })
                    .clone(),
            )
        });
        match counter {
            Some(counter) => {
                counter.inc();
                if let Some(seconds) = upstream_seconds {
                    route
                        .latency
                        .get_or_init(|| {
                            self.remote_latency
                                .get_or_create(&vec![("route", route.route.clone())])
                                .clone()
                        })
                        .observe(seconds);
                }
            }
            // Statuses past the first 64 (an odd upstream): counted the long way.
            None => self.remote(&route.route, status, upstream_seconds),
        }
    }

    /// A token exchange for `audience`.
    pub(crate) fn token_exchange(&self, audience: &str, outcome: &'static str) {
        self.token_exchanges
            .get_or_create(&vec![
                ("audience", audience.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
    }

    /// The answer of `GET /metrics`.
    pub fn response(&self) -> axum::response::Response {
        use axum::http::header;
        use axum::response::IntoResponse;
        (
            [
                (
                    header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
                (header::CACHE_CONTROL, "no-store"),
            ],
            self.render(),
        )
            .into_response()
    }

    /// The whole registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Ok(registry) = self.registry.lock() {
            if encode(&mut text, &registry).is_err() {
                text.clear();
            }
        }
        text
    }
}
