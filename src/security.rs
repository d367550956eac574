//! "Security": the account's password, authenticator app, passkeys and the account itself, each
//! changed on Keycloak's own page (the library's account actions, `<prefix>/action/<name>`) and
//! back here with the outcome. The page lists the sign-in methods the account has (Keycloak's
//! Account API, read as the user: kinds and labels only). The app keeps none of it: Keycloak owns
//! every credential. For anyone signed in.

use keycloak_bff::core::account::SignInMethod;
use keycloak_bff::{
    account_action_href, AccountAction, AccountActionLink, AccountActionNotice, AppError,
    ErrorNotice, Protected, Rule,
};
use leptos::prelude::*;
use leptos_meta::Title;

/// Where every action comes back to.
const HERE: &str = "/security";

#[server(prefix = "/api", endpoint = "my_sign_in_methods")]
pub async fn my_sign_in_methods() -> Result<Vec<SignInMethod>, AppError> {
    keycloak_bff::server::require(&Rule::SignedIn).await?;
    keycloak_bff::server::my_sign_in_methods().await
}

#[component]
pub fn SecurityPage() -> impl IntoView {
    view! {
        <Title text="Security"/>
        <Protected rule=Rule::SignedIn>
            <SecurityActions/>
        </Protected>
    }
}

/// What the account can sign in with, as Keycloak lists it.
#[component]
fn SignInMethods() -> impl IntoView {
    let methods = Resource::new(|| (), |_| my_sign_in_methods());
    view! {
        <h2>"How you sign in"</h2>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match methods.await {
                    Err(error) => view! { <ErrorNotice error/> }.into_any(),
                    Ok(list) => view! {
                        <dl class="facts" data-testid="sign-in-methods">
                            {list.into_iter().map(|m| {
                                let state = if m.labels.is_empty() {
                                    "not set up".to_owned()
                                } else {
                                    m.labels.join(", ")
                                };
                                view! {
                                    <dt>{m.name}</dt>
                                    <dd data-kind=m.kind>{state}</dd>
                                }
                            }).collect_view()}
                        </dl>
                    }.into_any(),
                }
            })}
        </Transition>
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
            <SignInMethods/>
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
                    <span class="muted">" A one-time code from your phone, asked for when something needs a stronger sign-in."</span>
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
