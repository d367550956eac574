//! `GET <prefix>/events`: the server push that keeps open pages in step with their session, a
//! stream of Server-Sent Events instead of polling.
//!
//! One page per browser holds the stream (the tabs elect it and share what it hears through
//! their `BroadcastChannel`, see [`crate::ui::watch`]). The stream opens with the session's
//! [`SessionStatus`], then sends it again whenever the store announces a change of the session
//! (a refresh, from any request on any replica) and a signed-out status when the session is
//! deleted (sign-out, back-channel logout, an admin ending it in Keycloak) or reaches its end,
//! and closes. Between events it costs an idle connection and a comment every
//! [`HEARTBEAT`], so that proxies keep it open. A signed-out browser gets one signed-out status
//! and the end of the response, no open stream (a 200: signed out is an answer, not an error the
//! browser's console should show). It never carries a token.
//!
//! Limits (catalogue C: a client holding connections open on purpose; E03: an outage is not a
//! busy loop): a session holds at most [`MAX_STREAMS_PER_SESSION`] streams and a user
//! `session.max_event_streams_per_user`, across every replica (leases in the store, taken in one
//! step, [`crate::server::session::store::streams`]), both 429; a process holds at most
//! `session.max_event_streams`, 503. A stream closes after about an hour
//! (`session.max_event_stream_age_secs`, [`keycloak_bff_core::streams::max_age_secs`]) and the
//! browser opens a new one. After a store
//! error it reads again only after a growing pause; when every stream of the process is woken at
//! once (a Redis reconnection) each waits a random moment before reading. Every wait is
//! jittered, so that browsers and streams hit by one event do not come back in step.

use crate::error::AppError;
use crate::server::base::clock::unix_now;
use crate::server::session::events::{OpenStream, Subscription, Wake};
use crate::server::session::store::streams::{
    StreamLease, StreamLimits, StreamRoom, LEASE_RENEW_EVERY,
};
use crate::server::session::store::{auth_session, AuthSession};
use crate::server::web::state::KeycloakAuth;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use keycloak_bff_core::status::SessionStatus;
use keycloak_bff_core::streams;
use std::convert::Infallible;
use std::time::Duration;
use tower_sessions::session::Id;
use tower_sessions::Session;

/// How often an idle stream sends a comment (proxies close connections idle for a minute).
pub const HEARTBEAT: Duration = Duration::from_secs(20);

/// Streams one session may hold at once: a browser holds one (its elected tab), a few more cover
/// reconnections that overlap; more is a client holding connections open on purpose.
pub const MAX_STREAMS_PER_SESSION: usize = 4;

/// A random number in `[0, 1)`, for jitter.
fn unit() -> f64 {
    let mut bytes = [0u8; 8];
    match aws_lc_rs::rand::fill(&mut bytes) {
        Ok(()) => (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

fn now_ms() -> i64 {
    i64::try_from(crate::server::base::clock::unix_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// A session's status now, from its stored record (`None`: the session is gone or over), for
/// a page that warns `warning_secs` before the end.
fn status(signed_in: Option<AuthSession>, now: i64, warning_secs: i64) -> SessionStatus {
    match signed_in {
        Some(s) if now < s.user.session_expires_at => {
            SessionStatus::signed_in(s.user, s.access_expires_at, now, warning_secs)
        }
        _ => SessionStatus::signed_out(),
    }
}

fn event(status: &SessionStatus) -> Event {
    Event::default()
        .event("status")
        .json_data(status)
        .unwrap_or_else(|_| Event::default().event("status").data("{}"))
}

/// What one stream knows between events.
struct Stream {
    auth: KeycloakAuth,
    id: Id,
    subscription: Subscription,
    closing: tokio::sync::watch::Receiver<bool>,
    session_end: i64,
    /// The next event to send at once (the first status).
    pending: Option<SessionStatus>,
    /// What the last event said (user and access-token expiry): one save often follows another
    /// (the refresh, then the request's own), and the page needs to hear of a change once.
    last: Option<(Option<keycloak_bff_core::KeycloakUser>, Option<i64>)>,
    done: bool,
    /// When the stream closes whatever happens (its maximum age).
    closes_at: tokio::time::Instant,
    /// Store errors in a row.
    store_errors: u32,
    /// Its lease across replicas, renewed while it lives and given back when it ends.
    lease: StreamLease,
    next_renewal: tokio::time::Instant,
    /// Counted in the metrics, and in the process's limit, for as long as the stream lives.
    _open: (Open, OpenStream),
}

impl Stream {
    /// The next event, or `None` when the stream ends.
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        if let Some(first) = self.pending.take() {
            self.last = Some((first.user.clone(), first.access_expires_at));
            let reconnect = Duration::from_millis(streams::reconnect_ms(unit()));
            let first = event(&first).retry(reconnect);
            return Some((Ok(first), self));
        }
        loop {
            if self.done {
                return None;
            }
            if let Some(event) = self.wait().await {
                return Some((Ok(event), self));
            }
        }
    }

    /// Waits for a change and reads the session: the event to send, if anything changed.
    async fn wait(&mut self) -> Option<Event> {
        let until_end = u64::try_from(self.session_end.saturating_sub(unix_now())).unwrap_or(0);
        // After store errors, the next read waits (never a busy loop against a store that is
        // down, which the session's end passing would otherwise start).
        let pause = Duration::from_millis(streams::store_retry_ms(self.store_errors, unit()));
        let step = tokio::select! {
            wake = self.subscription.changed(), if self.store_errors == 0 => Step::Read(wake),
            _ = tokio::time::sleep(pause), if self.store_errors > 0 => Step::Read(Wake::One),
            _ = tokio::time::sleep(Duration::from_secs(until_end)), if self.store_errors == 0 => {
                Step::Read(Wake::One)
            }
            _ = tokio::time::sleep_until(self.next_renewal) => Step::Renew,
            // The maximum age: the browser opens a new stream (after the `retry` it was told).
            _ = tokio::time::sleep_until(self.closes_at) => Step::Close,
            // Shutting down: the browser reconnects (to this process restarted, or another).
            _ = self.closing.wait_for(|closing| *closing) => Step::Close,
        };
        let woken = match step {
            Step::Read(woken) => woken,
            Step::Renew => {
                self.next_renewal = tokio::time::Instant::now() + LEASE_RENEW_EVERY;
                self.lease.renew(now_ms()).await;
                return None;
            }
            Step::Close => {
                self.done = true;
                return None;
            }
        };
        if woken == Wake::All {
            // Every stream of the process woke at once (a Redis reconnection): spread the reads.
            let streams = self.auth.store().events().open_streams();
            let spread = streams::wake_spread_ms(streams, unit());
            tokio::time::sleep(Duration::from_millis(spread)).await;
        }
        let now = unix_now();
        let signed_in = match self.auth.store().load_auth(&self.id).await {
            Ok(signed_in) => {
                self.store_errors = 0;
                signed_in
            }
            // The store does not answer: say nothing; the page's own timer asks again.
            Err(_) => {
                self.store_errors = self.store_errors.saturating_add(1);
                return Some(Event::default().comment("store unavailable"));
            }
        };
        let status = status(signed_in, now, self.auth.ui_config().expiry_warning_secs);
        if let Some(end) = status.session_expires_at {
            self.session_end = end;
        }
        self.done = !status.signed_in;
        let said = Some((status.user.clone(), status.access_expires_at));
        if said == self.last {
            return None;
        }
        self.last = said;
        Some(event(&status))
    }
}

/// What a waiting stream does next.
enum Step {
    Read(Wake),
    Renew,
    Close,
}

/// Counts an open stream for as long as it lives.
struct Open(KeycloakAuth);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.metrics().event_streams.dec();
    }
}

/// The event stream of the browser's session; see the module's documentation.
pub async fn events(State(auth): State<KeycloakAuth>, session: Session) -> Response {
    let now = unix_now();
    let signed_in = match auth_session(&session, now).await {
        Ok(signed_in) => signed_in,
        Err(e) => return refused(&e, SessionStatus::failed()),
    };
    let (Some(signed_in), Some(id)) = (signed_in, session.id()) else {
        return signed_out_once();
    };
    let events = auth.store().events();
    let limits = &auth.settings().session;
    // Each limit is checked and taken in one step: streams opened at once cannot all pass.
    let Some(open) = events.open_within(limits.max_event_streams) else {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many event streams on this server; try again later\n",
        );
    };
    let within = StreamLimits {
        per_session: MAX_STREAMS_PER_SESSION,
        per_user: limits.max_event_streams_per_user,
    };
    let lease = match auth
        .store()
        .take_stream(&id, &signed_in.user.subject, within, now_ms())
        .await
    {
        Ok(Ok(lease)) => lease,
        Ok(Err(StreamRoom::SessionFull)) => {
            return plain(
                StatusCode::TOO_MANY_REQUESTS,
                "too many event streams for this session\n",
            )
        }
        Ok(Err(_)) => {
            return plain(
                StatusCode::TOO_MANY_REQUESTS,
                "too many event streams for this user\n",
            )
        }
        Err(_) => return refused(&AppError::StoreUnavailable, SessionStatus::failed()),
    };
    let key = auth.store().event_key(&id);
    let subscription = events.subscribe(&key);
    let first = status(Some(signed_in), now, auth.ui_config().expiry_warning_secs);
    auth.metrics().event_streams.inc();
    let max_age = Duration::from_secs(streams::max_age_secs(
        auth.settings().session.max_event_stream_age_secs,
        unit(),
    ));
    let state = Stream {
        _open: (Open(auth.clone()), open),
        lease,
        next_renewal: tokio::time::Instant::now() + LEASE_RENEW_EVERY,
        closes_at: tokio::time::Instant::now() + max_age,
        store_errors: 0,
        session_end: first.session_expires_at.unwrap_or(now),
        closing: auth.closing(),
        auth,
        id,
        subscription,
        pending: Some(first),
        last: None,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, Stream::next);
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(HEARTBEAT))
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // nginx: pass events on at once instead of buffering them.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

fn plain(status: StatusCode, message: &'static str) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], message).into_response()
}

/// The answer to a browser without a session: one signed-out status, and the response ends (the
/// page closes its `EventSource` on it). Not a 401: Chromium logs every refused request as an
/// error in the console, and signed out is an answer.
fn signed_out_once() -> Response {
    let data = serde_json::to_string(&SessionStatus::signed_out()).unwrap_or_default();
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        format!("event: status\ndata: {data}\n\n"),
    )
        .into_response()
}

fn refused(error: &AppError, status: SessionStatus) -> Response {
    (
        error.http_status(),
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(status),
    )
        .into_response()
}
