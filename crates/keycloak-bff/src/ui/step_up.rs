//! Step-up in the browser: a dangerous action refused with [`AppError::StepUpRequired`] sends the
//! browser through Keycloak's password page again (`prompt=login`) and back to the page, which
//! then completes the action.
//!
//! The action to complete is remembered in this tab's `sessionStorage`, written only by the
//! tab's own click before it leaves: a link that merely names an action (`/notes?delete=5`)
//! never performs it, so step-up adds no cross-site request forgery. The server checks the
//! sign-in's age again when the action runs.

use crate::error::AppError;
use crate::ui::context::{current_path, use_ui_config};

#[cfg(feature = "hydrate")]
const STORAGE_PREFIX: &str = "keycloak-bff-step-up:";

/// Remembers `payload` for the action `key`, then sends the browser through a sign-in with the
/// password that comes back to the current page. Nothing on the server.
pub fn step_up_for(key: &str, payload: &str) {
    let href = use_ui_config().step_up_href(&current_path());
    #[cfg(feature = "hydrate")]
    {
        if let Some(window) = web_sys::window() {
            if let Ok(Some(storage)) = window.session_storage() {
                let _ = storage.set_item(&format!("{STORAGE_PREFIX}{key}"), payload);
            }
            let _ = window.location().assign(&href);
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (key, payload, href);
}

/// The payload of the action `key` that this tab remembered before a step-up, once (it is
/// forgotten as it is read). `None` on the server.
pub fn take_stepped_up(key: &str) -> Option<String> {
    #[cfg(feature = "hydrate")]
    {
        let storage = web_sys::window()?.session_storage().ok()??;
        let name = format!("{STORAGE_PREFIX}{key}");
        let value = storage.get_item(&name).ok()??;
        let _ = storage.remove_item(&name);
        Some(value)
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = key;
        None
    }
}

/// Whether `result` is a refusal for want of a recent sign-in.
pub fn needs_step_up<T>(result: &Option<Result<T, AppError>>) -> bool {
    matches!(result, Some(Err(AppError::StepUpRequired)))
}
