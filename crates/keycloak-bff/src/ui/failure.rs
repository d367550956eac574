//! What the user sees when the page's WebAssembly stops: a notice with a link that reloads the
//! page, instead of a page that silently no longer answers.
//!
//! An app split into chunks (`cargo leptos build --split`, `#[lazy_route]`) fetches a page's code
//! when the page is first visited. When that fetch fails (the connection dropped, or a deploy
//! replaced the files the open page knows), Leptos's loader panics, and a panic stops the whole
//! WebAssembly module: links and buttons stop working. [`report_failures`] installs a panic hook
//! that logs the panic to the console (what `console_error_panic_hook` does) and puts a notice at
//! the top of the page: "This page could not be loaded… Reload". The link is a plain one
//! (`rel="external"`), which the browser follows itself: it works with the module stopped.
//!
//! Catalogue: a failed chunk load shows an error the user can act on (issue 25).

/// The `data-testid` and class of the notice: tests and stylesheets find it by this name.
pub const FAILURE_NOTICE_ID: &str = "kc-failure";

/// What wasm-split's loader panics with when a chunk could not be fetched.
#[cfg(feature = "hydrate")]
const CHUNK_LOAD_PANIC: &str = "load callback should succeed";

/// Installs the panic hook that shows the failure notice. Call it first in the app's `hydrate()`,
/// in place of `console_error_panic_hook::set_once()`. Outside the browser it does nothing.
pub fn report_failures() {
    #[cfg(feature = "hydrate")]
    std::panic::set_hook(Box::new(|info| {
        let message = info.to_string();
        web_sys::console::error_1(&message.as_str().into());
        show_notice(message.contains(CHUNK_LOAD_PANIC));
    }));
}

/// Puts the notice at the top of `<body>` (once). Builds it with the DOM alone: the reactive
/// system may be what just stopped.
#[cfg(feature = "hydrate")]
fn show_notice(chunk_load_failed: bool) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let Some(document) = window.document() else {
        return;
    };
    let (Some(body), Ok(None)) = (
        document.body(),
        document.query_selector(&format!("[data-testid={FAILURE_NOTICE_ID}]")),
    ) else {
        return;
    };
    let text = if chunk_load_failed {
        "This page could not be loaded: the connection may have dropped, or the app was updated. "
    } else {
        "Something went wrong on this page, and it stopped responding. "
    };
    let href = window.location().href().unwrap_or_else(|_| "/".to_owned());
    let build = || -> Result<web_sys::Element, wasm_bindgen::JsValue> {
        let notice = document.create_element("div")?;
        notice.set_attribute("role", "alert")?;
        notice.set_attribute("class", FAILURE_NOTICE_ID)?;
        notice.set_attribute("data-testid", FAILURE_NOTICE_ID)?;
        notice.set_text_content(Some(text));
        let reload = document.create_element("a")?;
        reload.set_attribute("href", &href)?;
        // The router leaves it to the browser: a full load, with fresh code.
        reload.set_attribute("rel", "external")?;
        reload.set_text_content(Some("Reload"));
        notice.append_child(&reload)?;
        Ok(notice)
    };
    if let Ok(notice) = build() {
        let _ = body.prepend_with_node_1(&notice);
    }
}
