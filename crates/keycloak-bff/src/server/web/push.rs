//! `GET <prefix>/events`: the server push that keeps open pages in step with their session, a
//! stream of Server-Sent Events instead of polling.
//!
//! One page per browser holds the stream (the tabs elect it and share what it hears through
//! their `BroadcastChannel`, see [`crate::ui::watch`]). The stream opens with the session's
//! [`SessionStatus`], then sends it again whenever the store announces a change of the session
//! (a refresh, from any request on any replica) and a signed-out status when the session is
//! deleted (sign-out, back-channel logout, an admin ending it in Keycloak) or reaches its end,
//! and closes. Between events it costs an idle connection and a comment every
//! [`HEARTBEAT`], so that proxies keep it open. A signed-out browser gets 401 and no stream. It
//! never carries a token.

use crate::error::AppError;
use crate::server::base::clock::unix_now;
use crate::server::session::events::Subscription;
use crate::server::session::store::{auth_session, AuthSession};
use crate::server::web::state::KeycloakAuth;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use keycloak_bff_core::status::SessionStatus;
use std::convert::Infallible;
use std::time::Duration;
use tower_sessions::session::Id;
use tower_sessions::Session;

/// How often an idle stream sends a comment (proxies close connections idle for a minute).
pub const HEARTBEAT: Duration = Duration::from_secs(20);

/// Streams one session may hold at once: a browser holds one (its elected tab), a few more cover
/// reconnections that overlap; more is a client holding connections open on purpose.
pub const MAX_STREAMS_PER_SESSION: usize = 4;

/// How long a browser waits before reconnecting a stream that broke (the `retry` field).
const RECONNECT: Duration = Duration::from_secs(2);

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
    /// Counted in the metrics for as long as the stream lives.
    _open: Open,
}

impl Stream {
    /// The next event, or `None` when the stream ends.
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        if let Some(first) = self.pending.take() {
            self.last = Some((first.user.clone(), first.access_expires_at));
            let first = event(&first).retry(RECONNECT);
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
        tokio::select! {
            _ = self.subscription.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(until_end)) => {}
            // Shutting down: the browser reconnects (to this process restarted, or another).
            _ = self.closing.wait_for(|closing| *closing) => {
                self.done = true;
                return None;
            }
        }
        let now = unix_now();
        let signed_in = match self.auth.store().load_auth(&self.id).await {
            Ok(signed_in) => signed_in,
            // The store does not answer: say nothing; the page's own timer asks again.
            Err(_) => return Some(Event::default().comment("store unavailable")),
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
        return refused(&AppError::NotSignedIn, SessionStatus::signed_out());
    };
    let events = auth.store().events();
    let key = auth.store().event_key(&id);
    // Counted and taken in one step: streams opened at once cannot all pass the check.
    let Some(subscription) = events.subscribe_within(&key, MAX_STREAMS_PER_SESSION) else {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::CACHE_CONTROL, "no-store")],
            "too many event streams for this session\n",
        )
            .into_response();
    };
    let first = status(Some(signed_in), now, auth.ui_config().expiry_warning_secs);
    auth.metrics().event_streams.inc();
    let state = Stream {
        _open: Open(auth.clone()),
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

fn refused(error: &AppError, status: SessionStatus) -> Response {
    (
        error.http_status(),
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(status),
    )
        .into_response()
}
