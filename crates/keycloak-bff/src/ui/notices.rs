//! The session watcher's notices (the session ends soon, it reached its maximum, it ended, Keycloak
//! cannot be reached), made in the browser as plain DOM under `<SessionWatch/>`'s element.
//!
//! Why plain DOM: the server never has a notice to show (they follow what the browser hears), and
//! Leptos views of them were about 9 KB of gzip in every page's first download (issue 25). The
//! markup is what the views made: `<div class="banner [warn]" role="status" data-testid=…>` with
//! its text and what it offers. Texts are set as text, never as HTML; the sign-in link is the
//! library's own (`UiConfig::login_href`, whose return path is sanitised), made again at every
//! click so that it comes back to the page the user is on.
//!
//! A notice is made once and kept while it shows: the clock only changes its text, so keyboard
//! focus on its button survives the ticks.
//!
//! Catalogue: D05 (Keycloak out of reach: the notice, the session kept), F04 (a session ended by
//! Keycloak or another tab: the notice in every open tab, without a reload).

use crate::config::UiConfig;
use crate::ui::context::{current_path, SessionState};
use keycloak_bff_core::expiry::{session_notice, SessionNotice};
use leptos::prelude::*;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::Element;

/// The notices on the page: where they go, and the two that can show (the session's, Keycloak's
/// outage beside it).
pub(crate) struct Notices {
    root: Option<Element>,
    session: Option<Shown>,
    outage: Option<Shown>,
}

/// A notice on the page.
struct Shown {
    banner: Banner,
    element: Element,
    text: Element,
    /// Its button's or link's click handler, dropped with it.
    _click: Option<Closure<dyn Fn()>>,
}

/// The notices of the session watcher.
#[derive(Clone, Copy, PartialEq)]
enum Banner {
    /// Keycloak's session ends at this time unless the user stays.
    EndsSoon(i64),
    /// The session reaches its maximum length at this time: only a new sign-in goes on.
    AtMaximum(i64),
    Ended,
    IdpUnavailable,
}

impl Banner {
    fn test_id(self) -> &'static str {
        match self {
            Banner::EndsSoon(_) => "session-expiring",
            Banner::AtMaximum(_) => "session-at-maximum",
            Banner::Ended => "session-ended",
            Banner::IdpUnavailable => "idp-unavailable",
        }
    }

    fn text(self, now: i64) -> String {
        match self {
            Banner::EndsSoon(ends_at) => format!(
                "Your session ends {} unless you stay.",
                describe_remaining(ends_at - now)
            ),
            Banner::AtMaximum(ends_at) => format!(
                "Your session reaches its maximum length {}. Sign in again to keep working.",
                describe_remaining(ends_at - now)
            ),
            Banner::Ended => "Your session has ended.".to_owned(),
            Banner::IdpUnavailable => {
                "The identity provider cannot be reached right now. You stay signed in; retrying…"
                    .to_owned()
            }
        }
    }
}

/// "in 1 min 5 s", "in 40 s", "now".
fn describe_remaining(secs: i64) -> String {
    match secs {
        s if s <= 0 => "now".to_owned(),
        s if s < 60 => format!("in {s} s"),
        s => format!("in {} min {} s", s / 60, s % 60),
    }
}

/// The attribute of `<SessionWatch/>`'s element, under which the notices go.
const ROOT_ATTRIBUTE: &str = "data-session-notices";

/// Brings the page's notices in line with `state` (an effect: it runs again when the state or the
/// clock changes). `stay` is what "Stay signed in" does.
pub(crate) fn show(
    previous: Option<Notices>,
    state: SessionState,
    config: &UiConfig,
    stay: fn(),
) -> Notices {
    let now = state.now.get();
    let session = if state.ended.get() {
        Some(Banner::Ended)
    } else {
        state.ends_at.get().and_then(|ends_at| {
            match session_notice(
                now,
                ends_at,
                config.expiry_warning_secs,
                state.at_maximum.get(),
            ) {
                SessionNotice::Quiet => None,
                SessionNotice::EndsSoon { ends_at } => Some(Banner::EndsSoon(ends_at)),
                SessionNotice::EndsAtMaximum { ends_at } => Some(Banner::AtMaximum(ends_at)),
            }
        })
    };
    let outage = state
        .idp_unavailable
        .get()
        .then_some(Banner::IdpUnavailable);
    let mut notices = previous.unwrap_or(Notices {
        root: None,
        session: None,
        outage: None,
    });
    if notices.root.is_none() {
        notices.root = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.query_selector(&format!("[{ROOT_ATTRIBUTE}]")).ok())
            .flatten();
    }
    let Some(root) = notices.root.clone() else {
        return notices;
    };
    place(&root, &mut notices.outage, outage, None, now, config, stay);
    let after = notices.outage.as_ref().map(|n| n.element.clone());
    place(
        &root,
        &mut notices.session,
        session,
        after.as_ref(),
        now,
        config,
        stay,
    );
    notices
}

/// Shows `wanted` in `slot` (before `before`, else last): the same notice keeps its element and
/// gets its text again; another one replaces it.
fn place(
    root: &Element,
    slot: &mut Option<Shown>,
    wanted: Option<Banner>,
    before: Option<&Element>,
    now: i64,
    config: &UiConfig,
    stay: fn(),
) {
    if let (Some(shown), Some(banner)) = (slot.as_ref(), wanted) {
        if shown.banner == banner {
            shown.text.set_text_content(Some(&banner.text(now)));
            return;
        }
    }
    if let Some(shown) = slot.take() {
        shown.element.remove();
    }
    let Some(banner) = wanted else {
        return;
    };
    *slot = make(banner, now, config, stay);
    if let Some(shown) = slot.as_ref() {
        let _ = root.insert_before(&shown.element, before.map(|b| b.as_ref()));
    }
}

/// A notice's element: its text, then what it offers (staying signed in, or a new sign-in that
/// comes back to this page).
fn make(banner: Banner, now: i64, config: &UiConfig, stay: fn()) -> Option<Shown> {
    let document = web_sys::window()?.document()?;
    let element = document.create_element("div").ok()?;
    element.set_class_name(if banner == Banner::Ended {
        "banner"
    } else {
        "banner warn"
    });
    element.set_attribute("role", "status").ok()?;
    element
        .set_attribute("data-testid", banner.test_id())
        .ok()?;
    let text = document.create_element("span").ok()?;
    text.set_text_content(Some(&banner.text(now)));
    element.append_child(&text).ok()?;
    let click = match banner {
        Banner::EndsSoon(_) => {
            let button = document.create_element("button").ok()?;
            button.set_attribute("type", "button").ok()?;
            Some((button, "Stay signed in", Closure::<dyn Fn()>::new(stay)))
        }
        Banner::AtMaximum(_) | Banner::Ended => {
            let link = document.create_element("a").ok()?;
            link.set_attribute("rel", "external").ok()?;
            let config = config.clone();
            let href = move || config.login_href(&current_path());
            link.set_attribute("href", &href()).ok()?;
            // The page may have changed since the notice showed: the link comes back to this one.
            let target = link.clone();
            let on_click = Closure::<dyn Fn()>::new(move || {
                let _ = target.set_attribute("href", &href());
            });
            Some((link, "Sign in again", on_click))
        }
        Banner::IdpUnavailable => None,
    };
    let click = match click {
        Some((control, label, on_click)) => {
            control.set_class_name("button");
            control.set_text_content(Some(label));
            control
                .add_event_listener_with_callback("click", on_click.as_ref().unchecked_ref())
                .ok()?;
            element.append_child(&control).ok()?;
            Some(on_click)
        }
        None => None,
    };
    Some(Shown {
        banner,
        element,
        text,
        _click: click,
    })
}
