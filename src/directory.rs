//! `/admin/users`: the realm's users with their realm roles, this app's roles and groups, read
//! from Keycloak's Admin REST API by a read-only service account
//! (`keycloak_bff::server::search_directory`). For admins, with a recent sign-in (step-up). A
//! user's detail (where they are signed in, their authenticator, pending actions) needs the level
//! `otp` besides: the page prompts for the authenticator's code first (`AtLevel`), and the server
//! function checks it again (`keycloak_bff::server::directory_user_detail`). So does the JSON for
//! programs, `GET /api/v1/users`.

use crate::format::format_utc;
use crate::policy;
use keycloak_bff::core::directory::{DirectoryPage, DirectoryUserDetail};
use keycloak_bff::core::level::{check_level, LevelCheck};
use keycloak_bff::{use_ui_config, use_user, AppError, AtLevel, ErrorNotice, Protected};
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

/// One user's detail: admins at the level `otp` (the password and the authenticator's code).
#[server(prefix = "/api", endpoint = "user_detail")]
pub async fn user_detail(id: String) -> Result<DirectoryUserDetail, AppError> {
    keycloak_bff::server::directory_user_detail(
        &policy::user_directory(),
        policy::STRONG_SIGN_IN,
        &id,
    )
    .await
}

#[component]
pub fn DirectoryPageView() -> impl IntoView {
    view! {
        <Title text="Users"/>
        <Protected rule=policy::user_directory() step_up=true>
            <DetailSlot/>
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
    let detail_href = move |search: &str, page: u32, per: u32, id: &str| {
        format!(
            "{}&detail={}",
            href(search, page, per),
            keycloak_bff::core::return_to::encode_component(id)
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
                                                    <br/>
                                                    <a href=detail_href(&p.search, p.page, p.per_page, &u.id)>
                                                        "Details"
                                                    </a>
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

/// The detail of the user the query names (`?detail=<id>`), at the level `otp`: otherwise the
/// prompt for it (`AtLevel`). The detail is loaded here, beside the directory, and only for a
/// session at that level (the server function checks again): a resource made inside `AtLevel`'s
/// own wait for the user would hydrate out of step with the server's page.
#[component]
fn DetailSlot() -> impl IntoView {
    let query = use_query_map();
    let detail = move || query.with(|q| q.get("detail").filter(|d| !d.is_empty()));
    let user = use_user();
    let config = use_ui_config();
    let loaded = Resource::new(detail, move |id| {
        let config = config.clone();
        async move {
            let Some(id) = id else { return Ok(None) };
            let at_level = matches!(
                user.await,
                Ok(Some(u)) if check_level(&u, &config.acr_levels, policy::STRONG_SIGN_IN,
                    config.step_up_allows_impersonation) == LevelCheck::Allowed
            );
            if !at_level {
                return Ok(None);
            }
            user_detail(id).await.map(Some)
        }
    });
    move || {
        detail().map(|_| {
            view! {
                <AtLevel acr=policy::STRONG_SIGN_IN purpose="A user's details">
                    <UserDetail loaded/>
                </AtLevel>
            }
        })
    }
}

/// The detail card of one user, as [`DetailSlot`] loaded it.
#[component]
fn UserDetail(loaded: Resource<Result<Option<DirectoryUserDetail>, AppError>>) -> impl IntoView {
    view! {
        <Transition fallback=|| view! { <p class="muted">"Loading the user…"</p> }>
            {move || Suspend::new(async move {
                match loaded.await {
                    Err(error) => view! { <ErrorNotice error/> }.into_any(),
                    Ok(None) => ().into_any(),
                    Ok(Some(d)) => {
                        let created = d.created_at.map(format_utc).unwrap_or_else(|| "unknown".into());
                        let pending = if d.required_actions.is_empty() {
                            "none".to_owned()
                        } else {
                            d.required_actions.join(", ")
                        };
                        view! {
                            <section class="card" data-testid="user-detail" data-username=d.user.username.clone()>
                                <h2>{d.user.name.clone()}</h2>
                                <dl class="facts">
                                    <dt>"Username"</dt><dd>{d.user.username.clone()}</dd>
                                    <dt>"E-mail"</dt>
                                    <dd>
                                        {d.user.email.clone().unwrap_or_else(|| "none".into())}
                                        {if d.email_verified { " (verified)" } else { " (not verified)" }}
                                    </dd>
                                    <dt>"Account made"</dt><dd>{created}</dd>
                                    <dt>"Authenticator app"</dt>
                                    <dd data-testid="detail-authenticator">{if d.has_authenticator { "yes" } else { "no" }}</dd>
                                    <dt>"Pending actions"</dt><dd>{pending}</dd>
                                </dl>
                                <h3>"Signed in at"</h3>
                                {if d.sessions.is_empty() {
                                    view! { <p class="muted" data-testid="detail-sessions">"No Keycloak session."</p> }.into_any()
                                } else {
                                    view! {
                                        <table class="directory" data-testid="detail-sessions">
                                            <thead><tr>
                                                <th scope="col">"Address"</th><th scope="col">"Started"</th>
                                                <th scope="col">"Last active"</th><th scope="col">"Applications"</th>
                                            </tr></thead>
                                            <tbody>
                                                {d.sessions.iter().map(|s| view! {
                                                    <tr>
                                                        <td>{s.ip.clone()}</td>
                                                        <td>{format_utc(s.started)}</td>
                                                        <td>{format_utc(s.last_access)}</td>
                                                        <td>{chips(&s.clients)}</td>
                                                    </tr>
                                                }).collect_view()}
                                            </tbody>
                                        </table>
                                    }.into_any()
                                }}
                            </section>
                        }.into_any()
                    }
                }
            })}
        </Transition>
    }
}
