//! "Security": the account's password, authenticator app, passkeys and the account itself, each
//! changed on Keycloak's own page (the library's account actions, `<prefix>/action/<name>`) and
//! back here with the outcome. The app keeps none of it: Keycloak owns every credential. For
//! anyone signed in.

use keycloak_bff::{
    account_action_href, AccountAction, AccountActionLink, AccountActionNotice, Protected, Rule,
};
use leptos::prelude::*;
use leptos_meta::Title;

/// Where every action comes back to.
const HERE: &str = "/security";

#[component]
pub fn SecurityPage() -> impl IntoView {
    view! {
        <Title text="Security"/>
        <Protected rule=Rule::SignedIn>
            <SecurityActions/>
        </Protected>
    }
}

#[component]
fn SecurityActions() -> impl IntoView {
    let delete = account_action_href(AccountAction::DeleteAccount, HERE);
    // The form sends the browser to the action's URL (its query replaced by the form's fields).
    let delete_path = delete.split('?').next().unwrap_or_default().to_owned();
    view! {
        <section class="card" data-testid="security">
            <h1>"Security"</h1>
            <AccountActionNotice/>
            <p class="muted">
                "Your password, authenticator app and passkeys live in Keycloak, not in this app. \
                 Each button opens Keycloak's own page and brings you back here."
            </p>
            <ul class="security-actions">
                <li>
                    <AccountActionLink action=AccountAction::UpdatePassword return_to=HERE class="button">
                        "Change password"
                    </AccountActionLink>
                </li>
                <li>
                    <AccountActionLink action=AccountAction::ConfigureTotp return_to=HERE class="button">
                        "Set up an authenticator app"
                    </AccountActionLink>
                    <span class="muted">" A one-time code from your phone, asked for at each sign-in."</span>
                </li>
                <li>
                    <AccountActionLink action=AccountAction::AddPasskey return_to=HERE class="button">
                        "Add a passkey"
                    </AccountActionLink>
                    <span class="muted">" Sign in with your device instead of a password."</span>
                </li>
            </ul>
            <h2>"Delete my account"</h2>
            <form method="get" action=delete_path data-testid="delete-account" class="danger-zone">
                <input type="hidden" name="return_to" value=HERE/>
                <label>
                    <input type="checkbox" name="confirm" value="yes" required/>
                    " I understand that my account is deleted for good, and that I am signed out \
                     everywhere."
                </label>
                <div class="actions">
                    <button type="submit" class="button danger">"Delete my account"</button>
                </div>
            </form>
        </section>
    }
}
