//! "My sessions": the signed-in user's Keycloak sessions, read from Keycloak's Account REST API
//! with the user's own access token, from the server (`keycloak_bff::server::AsUser`), and
//! ending one other session or all the others.

use crate::format::format_utc;
use keycloak_bff::core::account::AccountSession;
use keycloak_bff::{AppError, ErrorNotice, Protected, Rule};
use leptos::prelude::*;
use leptos_meta::Title;

#[server(prefix = "/api", endpoint = "my_sessions")]
pub async fn my_sessions() -> Result<Vec<AccountSession>, AppError> {
    keycloak_bff::server::require(&Rule::SignedIn).await?;
    keycloak_bff::server::my_sessions().await
}

#[server(prefix = "/api", endpoint = "end_my_session")]
pub async fn end_my_session(id: String) -> Result<(), AppError> {
    keycloak_bff::server::require(&Rule::SignedIn).await?;
    keycloak_bff::server::end_my_session(&id).await
}

#[server(prefix = "/api", endpoint = "end_my_other_sessions")]
pub async fn end_my_other_sessions() -> Result<(), AppError> {
    keycloak_bff::server::require(&Rule::SignedIn).await?;
    keycloak_bff::server::end_my_other_sessions().await
}

#[component]
pub fn SessionsPage() -> impl IntoView {
    view! {
        <Title text="My sessions"/>
        <Protected rule=Rule::SignedIn>
            <SessionList/>
        </Protected>
    }
}

#[component]
fn SessionList() -> impl IntoView {
    let end_one = ServerAction::<EndMySession>::new();
    let end_others = ServerAction::<EndMyOtherSessions>::new();
    let sessions = Resource::new(
        move || (end_one.version().get(), end_others.version().get()),
        |_| my_sessions(),
    );
    let failure = move || match (end_one.value().get(), end_others.value().get()) {
        (Some(Err(e)), _) | (_, Some(Err(e))) => Some(e.to_string()),
        _ => None,
    };
    view! {
        <section class="card" data-testid="my-sessions">
            <h1>"My sessions"</h1>
            <p class="muted">
                "Every browser signed in to your Keycloak account, read from Keycloak as you. Ending \
                 a session signs that browser out of every application of the realm."
            </p>
            <p class="error" role="alert">{failure}</p>
            <Transition fallback=|| view! { <p class="muted">"Loading sessions…"</p> }>
                {move || Suspend::new(async move {
                    match sessions.await {
                        Err(error) => view! { <ErrorNotice error/> }.into_any(),
                        Ok(list) => {
                            let others = list.iter().filter(|s| !s.current).count();
                            view! {
                                <ul class="sessions">
                                    {list.into_iter().map(|s| view! { <SessionItem session=s end_one/> }).collect_view()}
                                </ul>
                                {(others > 0).then(|| view! {
                                    <ActionForm action=end_others attr:class="inline">
                                        <button type="submit" class="button danger">
                                            "Sign out all other sessions (" {others} ")"
                                        </button>
                                    </ActionForm>
                                })}
                            }.into_any()
                        }
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn SessionItem(session: AccountSession, end_one: ServerAction<EndMySession>) -> impl IntoView {
    let AccountSession {
        id,
        browser,
        ip_address,
        started,
        last_access,
        clients,
        current,
        ..
    } = session;
    let apps = if clients.is_empty() {
        "—".to_owned()
    } else {
        clients.join(", ")
    };
    view! {
        <li class="session-item" data-testid="account-session" data-current=current.to_string()>
            <div>
                <strong>{browser}</strong>
                {current.then(|| view! { <span class="chip">"This browser"</span> })}
                <dl class="facts">
                    <dt>"Address"</dt><dd>{ip_address}</dd>
                    <dt>"Started"</dt><dd>{format_utc(started)}</dd>
                    <dt>"Last active"</dt><dd>{format_utc(last_access)}</dd>
                    <dt>"Applications"</dt><dd data-testid="session-clients">{apps}</dd>
                </dl>
            </div>
            {(!current).then(|| view! {
                <ActionForm action=end_one attr:class="inline">
                    <input type="hidden" name="id" value=id/>
                    <button type="submit" class="button subtle">"Sign out this session"</button>
                </ActionForm>
            })}
        </li>
    }
}
