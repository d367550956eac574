//! `/admin/users`: the realm's users with their realm roles, this app's roles and groups, read
//! from Keycloak's Admin REST API by a read-only service account
//! (`keycloak_bff::server::search_directory`). For admins, with a recent sign-in (step-up).

use crate::policy;
use keycloak_bff::core::directory::DirectoryPage;
use keycloak_bff::{AppError, ErrorNotice, Protected};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

#[server(prefix = "/api", endpoint = "user_directory")]
pub async fn user_directory(
    search: String,
    page: u32,
    per_page: Option<u32>,
) -> Result<DirectoryPage, AppError> {
    // The library checks the rule, with step-up, before any call to Keycloak.
    keycloak_bff::server::search_directory(&policy::user_directory(), &search, page, per_page).await
}

#[component]
pub fn DirectoryPageView() -> impl IntoView {
    view! {
        <Title text="Users"/>
        <Protected rule=policy::user_directory() step_up=true>
            <Directory/>
        </Protected>
    }
}

fn chips(items: &[String]) -> impl IntoView {
    if items.is_empty() {
        view! { <span class="muted">"none"</span> }.into_any()
    } else {
        view! {
            <ul class="chips">
                {items.iter().map(|i| view! { <li class="chip">{i.clone()}</li> }).collect_view()}
            </ul>
        }
        .into_any()
    }
}

#[component]
fn Directory() -> impl IntoView {
    let query = use_query_map();
    let search = move || query.with(|q| q.get("q").unwrap_or_default());
    let page = move || {
        query.with(|q| {
            q.get("page")
                .and_then(|p| p.parse::<u32>().ok())
                .unwrap_or(0)
        })
    };
    let per_page = move || query.with(|q| q.get("per").and_then(|p| p.parse::<u32>().ok()));
    let users = Resource::new(
        move || (search(), page(), per_page()),
        |(s, p, n)| user_directory(s, p, n),
    );
    let href = move |search: &str, page: u32, per: u32| {
        format!(
            "/admin/users?q={}&page={page}&per={per}",
            keycloak_bff::core::return_to::encode_component(search)
        )
    };
    view! {
        <section class="card" data-testid="user-directory">
            <h1>"Users"</h1>
            <p class="muted">
                "The realm's users, read-only, from Keycloak's Admin API by a service account that \
                 may only view users. Roles include those granted through composites and groups."
            </p>
            <form method="get" action="/admin/users" class="search" role="search">
                <label for="user-search">"Search users"</label>
                <input id="user-search" name="q" type="search" value=search maxlength="100"/>
                <button type="submit" class="button">"Search"</button>
            </form>
            <Transition fallback=|| view! { <p class="muted">"Loading users…"</p> }>
                {move || Suspend::new(async move {
                    match users.await {
                        Err(error) => view! { <ErrorNotice error/> }.into_any(),
                        Ok(p) => {
                            let (prev, next) = (p.has_previous(), p.has_next());
                            let summary = format!(
                                "{} user{} · page {}",
                                p.total,
                                if p.total == 1 { "" } else { "s" },
                                p.page + 1
                            );
                            let prev_href = href(&p.search, p.page.saturating_sub(1), p.per_page);
                            let next_href = href(&p.search, p.page + 1, p.per_page);
                            view! {
                                <p class="muted" data-testid="directory-summary">{summary}</p>
                                <table class="directory">
                                    <thead><tr>
                                        <th scope="col">"User"</th><th scope="col">"Realm roles"</th>
                                        <th scope="col">"App roles"</th><th scope="col">"Groups"</th>
                                    </tr></thead>
                                    <tbody>
                                        {p.users.into_iter().map(|u| view! {
                                            <tr data-testid="directory-user" data-username=u.username.clone()>
                                                <td>
                                                    <strong>{u.name.clone()}</strong><br/>
                                                    <span class="muted">{u.username.clone()}</span>
                                                    {(!u.enabled).then(|| view! { <span class="chip">"disabled"</span> })}
                                                </td>
                                                <td>{chips(&u.realm_roles)}</td>
                                                <td>{chips(&u.client_roles)}</td>
                                                <td>{chips(&u.groups)}</td>
                                            </tr>
                                        }).collect_view()}
                                    </tbody>
                                </table>
                                <nav class="pager" aria-label="Pages">
                                    {prev.then(|| view! { <a class="button subtle" href=prev_href>"← Previous"</a> })}
                                    {next.then(|| view! { <a class="button subtle" href=next_href>"Next →"</a> })}
                                </nav>
                            }.into_any()
                        }
                    }
                })}
            </Transition>
        </section>
    }
}
