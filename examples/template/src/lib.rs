//! The template's library: the app, and the browser's entry point.
pub mod app;

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    use crate::app::*;
    console_error_panic_hook::set_once();
    #[cfg(not(feature = "floor"))]
    leptos::mount::hydrate_body(App);
    // A page loaded as a chunk hydrates once its code has arrived.
    #[cfg(feature = "floor")]
    leptos::mount::hydrate_lazy(App);
}
