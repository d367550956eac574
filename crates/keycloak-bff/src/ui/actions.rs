//! Account actions in the browser: a link into one of Keycloak's account pages (change the
//! password, set up an authenticator app, add a passkey, delete the account) that comes back to
//! the page, and the notice of how it ended. The server route is `<prefix>/action/<name>`
//! (`server/web/actions.rs`); the outcome comes back in the page's query, so the notice renders
//! on the server and in the browser alike.
//!
//! Catalogue: AA01 (only the library's named actions can be linked: [`AccountAction`] is an
//! allow-list).

use crate::ui::context::{current_path, use_ui_config};
use keycloak_bff_core::account_action::{message, outcome_in_query, AccountAction, ActionOutcome};
use leptos::prelude::*;

/// The link into Keycloak's page for `action` that comes back to `return_to`.
pub fn account_action_href(action: AccountAction, return_to: &str) -> String {
    use_ui_config().action_href(action, return_to)
}

/// The outcome of an account action that the current page's query carries, if any.
pub fn account_action_outcome() -> Option<(AccountAction, ActionOutcome)> {
    let path = current_path();
    outcome_in_query(path.split_once('?')?.1)
}

/// A link into Keycloak's page for `action` (a full page load: `rel="external"`), back to
/// `return_to` (the current page when not given) with the outcome.
#[component]
pub fn AccountActionLink(
    action: AccountAction,
    #[prop(optional, into)] return_to: Option<String>,
    #[prop(optional, into)] class: Option<String>,
    children: Children,
) -> impl IntoView {
    let back =
        return_to.unwrap_or_else(|| current_path().split('?').next().unwrap_or("/").to_owned());
    view! {
        <a class=class href=account_action_href(action, &back) rel="external"
            data-account-action=action.name()>
            {children()}
        </a>
    }
}

/// The notice of the account action whose outcome the page's query carries (`role="status"`,
/// `data-outcome` for styling and tests), or nothing.
#[component]
pub fn AccountActionNotice() -> impl IntoView {
    account_action_outcome().map(|(action, outcome)| {
        view! {
            <p class="notice account-action" role="status" data-testid="account-action-outcome"
                data-action=action.name() data-outcome=outcome.name()>
                {message(action, outcome)}
            </p>
        }
    })
}
