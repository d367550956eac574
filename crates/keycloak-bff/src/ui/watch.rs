//! Keeps an open page in step with its server-side session, without reloads and without polling.
//!
//! The tabs of a browser elect one of them (a Web Lock named after the app's `BroadcastChannel`;
//! when it closes, another takes over). That tab alone:
//! - holds the session's event stream (`GET <prefix>/events`, [`crate::server::web::push`]): the server
//!   pushes a [`SessionStatus`] (never a token) whenever the session changes on any replica
//!   (refreshed, signed out, ended by back-channel logout or by an admin);
//! - calls `POST <prefix>/refresh` once, just before the access token expires or Keycloak's idle
//!   end nears (the status says when), so that Keycloak's session stays alive and role changes
//!   are learnt; an idle tab sends nothing else. With `session.keep_alive = "activity"` (the
//!   default) it keeps the session alive only when someone did something in one of the tabs
//!   since the last refresh (a key, a click, a touch, a wheel; page loads and server functions
//!   keep it alive on the server themselves); otherwise it asks with `?idle=1`, which refreshes
//!   nothing, so Keycloak's idle limit ends an unattended session (after the warning). The first
//!   activity after that wakes it up;
//! - passes everything it hears to the other tabs through the channel.
//!
//! Every tab then updates the user in context (the navigation and every gated component follow),
//! and shows a notice when the session ended or Keycloak cannot be reached. A page that loads
//! (after signing in or out) says so on the channel, and the elected tab asks the server once.
//!
//! Before Keycloak's session ends (`UiConfig::expiry_warning_secs` ahead), every tab shows a
//! banner. Its "Stay signed in" (`POST <prefix>/extend`) refreshes at once, which moves Keycloak's
//! idle limit; when that leaves the session ending within the warning, the maximum lifetime is
//! reached and the banner offers a new sign-in that comes back to the page. What one tab does,
//! the others hear on the channel.
//!
//! [`SessionStatus`]: keycloak_bff_core::status::SessionStatus

use crate::ui::context::{use_ui_config, SessionState, UserCell};
use leptos::prelude::*;

/// Renders the element of the session notices and, in the browser, starts the session checks.
/// Place it once, inside the router.
///
/// The notices (the session ends soon, reached its maximum, ended; Keycloak cannot be reached) go
/// under `<div data-session-notices>`, each a `<div class="banner" role="status">` (`banner warn`
/// for the warnings) with its `data-testid`: `session-expiring`, `session-at-maximum`,
/// `session-ended`, `idp-unavailable`. The server never has one to show: they follow what the
/// browser hears, and are made there without Leptos views, which keeps them out of every page's
/// first download.
#[component]
pub fn SessionWatch() -> impl IntoView {
    let user = expect_context::<UserCell>().0;
    let config = use_ui_config();
    let state = SessionState {
        ended: RwSignal::new(false),
        idp_unavailable: RwSignal::new(false),
        ends_at: RwSignal::new(None),
        at_maximum: RwSignal::new(false),
        now: RwSignal::new(0),
    };
    provide_context(state);
    #[cfg(feature = "hydrate")]
    {
        let notices = config.clone();
        Effect::new(move |_| browser::start(user, state, config.clone()));
        Effect::new(move |shown| crate::ui::notices::show(shown, state, &notices, browser::extend));
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (user, config);
    view! { <div data-session-notices=""></div> }
}

#[cfg(feature = "hydrate")]
mod browser {
    use crate::config::UiConfig;
    use crate::ui::context::{now_secs, SessionState, UserState};
    use crate::ui::session_route::{call_refresh, Heard};
    use keycloak_bff_core::expiry::{session_notice, warning_due_in, SessionNotice};
    use keycloak_bff_core::refresh::timer_refreshes;
    use keycloak_bff_core::streams::browser_retry_ms;
    use keycloak_bff_core::user::shown_user_changes;
    use keycloak_bff_core::KeycloakUser;
    use leptos::prelude::*;
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    use std::time::Duration;
    use wasm_bindgen::prelude::*;
    use wasm_bindgen::JsCast;
    use web_sys::{BroadcastChannel, EventSource};

    /// The message of a page that just loaded.
    const HELLO: &str = "hello";

    /// The message of a tab in which the user did something (at most every
    /// [`ANNOUNCE_EVERY_MS`]).
    const ACTIVE: &str = "active";

    /// How often a tab tells the others that the user is active, at most.
    const ANNOUNCE_EVERY_MS: f64 = 5_000.0;

    /// The input that counts as activity.
    const ACTIVITY_EVENTS: [&str; 4] = ["pointerdown", "keydown", "wheel", "touchstart"];

    fn now_ms() -> f64 {
        js_sys::Date::now()
    }

    /// How long the elected tab waits before asking again after a failure.
    const RETRY: Duration = Duration::from_secs(5);

    struct Watcher {
        /// The user in context, as the page shows it.
        user: RwSignal<UserState>,
        /// The page is signing out (its sign-out form was submitted): no more checks, or one
        /// racing the sign-out would come back 401.
        leaving: Cell<bool>,
        state: SessionState,
        config: UiConfig,
        channel: Option<BroadcastChannel>,
        leader: Cell<bool>,
        stream: RefCell<Option<EventSource>>,
        timer: RefCell<Option<TimeoutHandle>>,
        /// The expiry warning's clock.
        tick: RefCell<Option<TimeoutHandle>>,
        /// When the user last did something in any tab (milliseconds, this browser's clock).
        last_activity: Cell<f64>,
        /// When a refresh was last heard of (the access token's expiry moved).
        last_refresh: Cell<f64>,
        /// The access token's expiry last heard.
        access_expires_at: Cell<Option<i64>>,
        /// The last check was idle: the first activity asks again at once.
        dormant: Cell<bool>,
        /// When this tab last told the others of activity.
        announced: Cell<f64>,
        /// Stream openings refused or failed in a row (429 at a cap, 503, a network error).
        stream_failures: Cell<u32>,
        /// No stream is opened before this time (milliseconds): the back-off after failures.
        stream_not_before: Cell<f64>,
        /// Opens the stream when the back-off is over.
        stream_timer: RefCell<Option<TimeoutHandle>>,
    }

    thread_local! {
        /// This page's watcher, for the expiry banner's button.
        static WATCHER: RefCell<Option<Rc<Watcher>>> = const { RefCell::new(None) };
    }

    /// "Stay signed in": refreshes now; the answer updates this tab and the others.
    pub fn extend() {
        let Some(watcher) = WATCHER.with(|w| w.borrow().clone()) else {
            return;
        };
        leptos::task::spawn_local(async move {
            if let Some(heard) = call_refresh(&watcher.config.route("/extend")).await {
                watcher.heard(heard);
            }
        });
    }

    impl Watcher {
        /// Sets the warning's clock to now and wakes up again when the warning is due, then every
        /// second while it shows.
        fn tick(self: &Rc<Self>) {
            if let Some(handle) = self.tick.borrow_mut().take() {
                handle.clear();
            }
            let now = now_secs();
            self.state.now.set(now);
            let warn = self.config.expiry_warning_secs;
            let Some(ends_at) = self.state.ends_at.get_untracked() else {
                return;
            };
            if warn <= 0 || now > ends_at {
                return;
            }
            let next = match session_notice(now, ends_at, warn, false) {
                SessionNotice::Quiet => warning_due_in(now, ends_at, warn).max(1),
                _ => 1,
            };
            let this = Rc::clone(self);
            if let Ok(handle) =
                set_timeout_with_handle(move || this.tick(), Duration::from_secs(next as u64))
            {
                *self.tick.borrow_mut() = Some(handle);
            }
        }

        /// Keeps the session's end as heard; the maximum stays reached until the end moves.
        fn set_end(self: &Rc<Self>, ends_at: Option<i64>, at_maximum: bool) {
            if self.state.ends_at.get_untracked() != ends_at {
                self.state.ends_at.set(ends_at);
                self.state.at_maximum.set(at_maximum);
            } else if at_maximum {
                self.state.at_maximum.set(true);
            }
            self.tick();
        }

        fn signed_in(&self) -> bool {
            self.user.with_untracked(|u| matches!(u, Ok(Some(_))))
        }

        /// Shows `user` (every `<SignedIn/>` and gate follows).
        fn show(&self, user: Option<KeycloakUser>) {
            self.user.set(Ok(user));
        }

        /// Updates this page from what was heard (here or by the elected tab).
        fn apply(self: &Rc<Self>, heard: &Heard) {
            let shown = self.user.get_untracked().ok().flatten();
            match heard.code {
                200 => {
                    self.state.idp_unavailable.set(false);
                    self.heard_expiry(heard.status.as_ref().and_then(|s| s.access_expires_at));
                    let current = heard.status.as_ref().and_then(|s| s.user.clone());
                    if current.is_some() {
                        self.state.ended.set(false);
                    }
                    if let Some(status) = &heard.status {
                        self.set_end(status.session_expires_at, status.at_maximum);
                    }
                    // When only the session's end moved (a refresh), the banner follows it
                    // (`set_end` above) and the gated parts of the page keep what they hold.
                    if shown_user_changes(shown.as_ref(), current.as_ref()) {
                        self.show(current);
                    }
                }
                401 => {
                    self.state.idp_unavailable.set(false);
                    self.set_end(None, false);
                    if shown.is_some() {
                        self.state.ended.set(true);
                        self.show(None);
                    }
                }
                503 => self.state.idp_unavailable.set(true),
                _ => {}
            }
        }

        /// Notes a refresh when the access token's expiry moved (the first one heard is not one).
        fn heard_expiry(&self, expires_at: Option<i64>) {
            let Some(expires_at) = expires_at else {
                return;
            };
            match self.access_expires_at.get() {
                Some(known) if expires_at > known => self.last_refresh.set(now_ms()),
                Some(known) if expires_at <= known => return,
                _ => {}
            }
            self.access_expires_at.set(Some(expires_at));
        }

        /// The user did something in this tab: noted, told to the other tabs now and then, and
        /// an idle elected tab asks again.
        fn active(self: &Rc<Self>) {
            let now = now_ms();
            self.last_activity.set(now);
            if now - self.announced.get() >= ANNOUNCE_EVERY_MS {
                self.announced.set(now);
                if let Some(channel) = &self.channel {
                    let _ = channel.post_message(&JsValue::from_str(ACTIVE));
                }
            }
            self.wake();
        }

        /// After an idle check, the first activity (here or in another tab) makes the elected tab
        /// ask again soon, which keeps the session alive.
        fn wake(self: &Rc<Self>) {
            if self.leader.get() && self.dormant.get() && self.signed_in() {
                self.dormant.set(false);
                self.check_after(Duration::from_millis(500));
            }
        }

        /// Applies and passes on to the other tabs.
        fn heard(self: &Rc<Self>, heard: Heard) {
            self.apply(&heard);
            if let Some(channel) = &self.channel {
                let _ = channel.post_message(&JsValue::from_str(&heard.message()));
            }
            if !self.leader.get() {
                return;
            }
            match (
                heard.code,
                heard.status.as_ref().and_then(|s| s.check_in_secs),
            ) {
                (200, Some(secs)) => {
                    self.open_stream();
                    self.check_after(Duration::from_secs(secs.clamp(1, 86_400) as u64));
                }
                (401, _) => {
                    self.close_stream();
                    self.cancel_timer();
                }
                (503, _) | (500, _) => self.check_after(RETRY),
                _ => {}
            }
        }

        fn cancel_timer(&self) {
            if let Some(timer) = self.timer.borrow_mut().take() {
                timer.clear();
            }
        }

        fn check_after(self: &Rc<Self>, delay: Duration) {
            self.cancel_timer();
            let this = Rc::clone(self);
            if let Ok(handle) = set_timeout_with_handle(move || this.check(), delay) {
                *self.timer.borrow_mut() = Some(handle);
            }
        }

        /// Asks the server (`POST <prefix>/refresh`, which refreshes the tokens when due and
        /// keeps the session alive), or, when nobody did anything since the last refresh and
        /// `session.keep_alive` is `activity`, only how the session stands (`?idle=1`).
        fn check(self: &Rc<Self>) {
            if self.leaving.get() {
                return;
            }
            let refresh = timer_refreshes(
                self.config.keep_alive,
                self.last_activity.get(),
                self.last_refresh.get(),
            );
            self.dormant.set(!refresh);
            let url = if refresh {
                self.config.route("/refresh")
            } else {
                self.config.route("/refresh?idle=1")
            };
            let this = Rc::clone(self);
            leptos::task::spawn_local(async move {
                match call_refresh(&url).await {
                    Some(heard) => this.heard(heard),
                    // The app itself cannot be reached: nothing to conclude; ask again later.
                    None if this.leader.get() => this.check_after(RETRY),
                    None => {}
                }
            });
        }

        fn close_stream(&self) {
            if let Some(stream) = self.stream.borrow_mut().take() {
                stream.close();
            }
            if let Some(timer) = self.stream_timer.borrow_mut().take() {
                timer.clear();
            }
        }

        /// Opens the session's event stream unless it is open, or later when it failed lately
        /// (exponential back-off with jitter: a tab refused at a cap does not ask every second).
        fn open_stream(self: &Rc<Self>) {
            if self.stream.borrow().is_some() || self.stream_timer.borrow().is_some() {
                return;
            }
            let wait = self.stream_not_before.get() - now_ms();
            if wait > 0.0 {
                let this = Rc::clone(self);
                let reopen = move || {
                    this.stream_timer.borrow_mut().take();
                    if this.leader.get() && this.signed_in() {
                        this.open_stream();
                    }
                };
                if let Ok(handle) =
                    set_timeout_with_handle(reopen, Duration::from_millis(wait as u64))
                {
                    *self.stream_timer.borrow_mut() = Some(handle);
                }
                return;
            }
            let Ok(stream) = EventSource::new(&self.config.route("/events")) else {
                return;
            };
            let this = Rc::clone(self);
            let on_status = Closure::<dyn Fn(web_sys::MessageEvent)>::new(
                move |event: web_sys::MessageEvent| {
                    let heard = event.data().as_string().map(|text| Heard::new(200, text));
                    match heard {
                        Some(heard) if heard.status.as_ref().is_some_and(|s| s.signed_in) => {
                            this.stream_failures.set(0);
                            this.heard(heard);
                        }
                        // The session this stream watched is over. The browser's cookie may name a
                        // newer one (signed in again in another tab): ask before saying it ended.
                        _ => {
                            this.close_stream();
                            this.check();
                        }
                    }
                },
            );
            let _ = stream
                .add_event_listener_with_callback("status", on_status.as_ref().unchecked_ref());
            on_status.forget();
            let this = Rc::clone(self);
            let on_error = Closure::<dyn Fn()>::new(move || {
                // A broken connection is retried by the browser itself (CONNECTING). A refusal
                // (401 signed out, 503) closes the stream: ask what it means, a little later.
                let closed = this
                    .stream
                    .borrow()
                    .as_ref()
                    .is_some_and(|s| s.ready_state() == EventSource::CLOSED);
                if closed {
                    this.close_stream();
                    let failures = this.stream_failures.get().saturating_add(1);
                    this.stream_failures.set(failures);
                    let wait = browser_retry_ms(failures, js_sys::Math::random());
                    this.stream_not_before.set(now_ms() + wait as f64);
                    this.check_after(RETRY.min(Duration::from_secs(1)));
                }
            });
            stream.set_onerror(Some(on_error.as_ref().unchecked_ref()));
            on_error.forget();
            *self.stream.borrow_mut() = Some(stream);
        }

        /// This tab was elected: it watches the session for all the browser's tabs.
        fn lead(self: &Rc<Self>) {
            self.leader.set(true);
            if self.signed_in() {
                self.open_stream();
            }
        }

        /// A message from another tab.
        fn on_message(self: &Rc<Self>, data: JsValue) {
            let Some(text) = data.as_string() else {
                return;
            };
            if text == HELLO {
                // A page load reached the server, which kept the session alive if that was due.
                if self.leader.get() {
                    self.check();
                }
                return;
            }
            if text == ACTIVE {
                self.last_activity.set(now_ms());
                self.wake();
                return;
            }
            if let Some(heard) = Heard::from_message(&text) {
                self.apply(&heard);
            }
        }
    }

    /// Notes the user's input in this tab ([`ACTIVITY_EVENTS`], passive listeners on the window).
    fn listen_for_activity(watcher: &Rc<Watcher>) {
        let Some(window) = web_sys::window() else {
            return;
        };
        let this = Rc::clone(watcher);
        let on_input = Closure::<dyn Fn()>::new(move || this.active());
        let options = web_sys::AddEventListenerOptions::new();
        options.set_passive(true);
        options.set_capture(true);
        for name in ACTIVITY_EVENTS {
            let _ = window.add_event_listener_with_callback_and_add_event_listener_options(
                name,
                on_input.as_ref().unchecked_ref(),
                &options,
            );
        }
        on_input.forget();
        // The sign-out form, however submitted (a click, Enter): the page is leaving.
        let this = Rc::clone(watcher);
        let logout = this.config.route("/logout");
        let on_submit = Closure::<dyn Fn(web_sys::Event)>::new(move |event: web_sys::Event| {
            let form = event
                .target()
                .and_then(|t| t.dyn_into::<web_sys::HtmlFormElement>().ok());
            let path = form
                .and_then(|f| web_sys::Url::new(&f.action()).ok())
                .map(|u| u.pathname());
            if path.as_deref() == Some(logout.as_str()) {
                this.leaving.set(true);
                this.cancel_timer();
            }
        });
        let _ = window.add_event_listener_with_callback_and_add_event_listener_options(
            "submit",
            on_submit.as_ref().unchecked_ref(),
            &options,
        );
        on_submit.forget();
    }

    /// Calls `elected` when this tab holds the Web Lock `name` (held until the tab closes). Without
    /// Web Locks, every tab is elected.
    fn elect(name: &str, elected: impl FnOnce() + 'static) {
        let locks = web_sys::window()
            .map(|w| JsValue::from(w.navigator()))
            .and_then(|n| js_sys::Reflect::get(&n, &JsValue::from_str("locks")).ok())
            .filter(|l| l.is_object());
        let request = locks.as_ref().and_then(|l| {
            js_sys::Reflect::get(l, &JsValue::from_str("request"))
                .ok()?
                .dyn_into::<js_sys::Function>()
                .ok()
        });
        let (Some(locks), Some(request)) = (locks, request) else {
            elected();
            return;
        };
        let mut elected = Some(elected);
        let holder = Closure::<dyn FnMut(JsValue) -> js_sys::Promise>::new(move |_lock| {
            if let Some(elected) = elected.take() {
                elected();
            }
            // Never settles: the lock is held as long as the tab lives.
            js_sys::Promise::new(&mut |_, _| {})
        });
        if request
            .call2(&locks, &JsValue::from_str(name), holder.as_ref())
            .is_err()
        {
            return;
        }
        holder.forget();
    }

    pub fn start(user: RwSignal<UserState>, state: SessionState, config: UiConfig) {
        let channel = BroadcastChannel::new(&config.channel).ok();
        let lock = format!("{}:watch", config.channel);
        let watcher = Rc::new(Watcher {
            user,
            leaving: Cell::new(false),
            state,
            config,
            channel,
            leader: Cell::new(false),
            stream: RefCell::new(None),
            timer: RefCell::new(None),
            tick: RefCell::new(None),
            // Loading the page reached the server, which kept the session alive if that was
            // due: only what the user does from now on counts.
            last_activity: Cell::new(0.0),
            last_refresh: Cell::new(0.0),
            access_expires_at: Cell::new(None),
            dormant: Cell::new(false),
            announced: Cell::new(0.0),
            stream_failures: Cell::new(0),
            stream_not_before: Cell::new(0.0),
            stream_timer: RefCell::new(None),
        });
        WATCHER.with(|w| *w.borrow_mut() = Some(Rc::clone(&watcher)));
        let ends_at = watcher.user.with_untracked(|u| {
            u.as_ref()
                .ok()
                .and_then(Option::as_ref)
                .map(|u| u.session_expires_at)
        });
        watcher.set_end(ends_at, false);
        if let Some(channel) = &watcher.channel {
            let this = Rc::clone(&watcher);
            let on_message = Closure::<dyn Fn(web_sys::MessageEvent)>::new(
                move |event: web_sys::MessageEvent| this.on_message(event.data()),
            );
            channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
            on_message.forget();
            // A page that just loaded (after signing in or out) tells the other tabs.
            let _ = channel.post_message(&JsValue::from_str(HELLO));
        }
        listen_for_activity(&watcher);
        let this = Rc::clone(&watcher);
        elect(&lock, move || this.lead());
        // The page is hydrated and watches its session (the benchmark's time to interactive, and
        // tests, wait for this).
        if let Some(root) = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.document_element())
        {
            let _ = root.set_attribute("data-session-watch", "ready");
        }
    }
}
