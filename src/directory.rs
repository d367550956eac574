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
use keycloak_bff::{use_ui_config, use_user, AppError, ErrorNotice, LevelPrompt, Protected};
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
    let detail = detail_slot();
    // One `Transition` for the detail and the list (each costs the page's chunk a few KB): a
    // click on Details keeps the list on screen while the detail loads.
    view! {
        <Transition fallback=|| view! { <p class="muted">"Loading users…"</p> }>
            {detail}
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
                                    {prev.then(|| pager_link(prev_href, "← Previous"))}
                                    {next.then(|| pager_link(next_href, "Next →"))}
                                </nav>
                            }.into_any()
                        }
                    }
                })}
            </section>
        </Transition>
    }
}

/// A link of the pager (one view for both).
fn pager_link(href: String, text: &'static str) -> impl IntoView {
    view! { <a class="button subtle" href=href>{text}</a> }
}

/// What the detail slot shows, decided once per `?detail=`: nothing, the prompt for a stronger
/// sign-in, or the detail.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
enum Shown {
    Nothing,
    NeedsLevel,
    Detail(Box<DirectoryUserDetail>),
}

/// The detail of the user the query names (`?detail=<id>`), for a session at the level `otp`;
/// otherwise the prompt for it (`LevelPrompt`). One resource decides both (it reads the user,
/// then asks the server function, which checks again): what `AtLevel` does, with the detail's
/// own wait only, under the directory's `Transition`.
fn detail_slot() -> impl IntoView {
    let query = use_query_map();
    let detail = move || query.with(|q| q.get("detail").filter(|d| !d.is_empty()));
    let user = use_user();
    let config = use_ui_config();
    let shown = Resource::new(detail, move |id| {
        let config = config.clone();
        async move {
            let Some(id) = id else {
                return Ok(Shown::Nothing);
            };
            let Ok(Some(u)) = user.get_untracked() else {
                return Ok(Shown::Nothing);
            };
            match check_level(
                &u,
                &config.acr_levels,
                policy::STRONG_SIGN_IN,
                config.step_up_allows_impersonation,
            ) {
                LevelCheck::Allowed => user_detail(id).await.map(|d| Shown::Detail(Box::new(d))),
                LevelCheck::NeedsLevel => Ok(Shown::NeedsLevel),
                LevelCheck::NotWhileImpersonating => Err(AppError::NotWhileImpersonating),
            }
        }
    });
    move || {
        Suspend::new(async move {
            match shown.await {
                Err(error) => view! { <ErrorNotice error/> }.into_any(),
                Ok(Shown::Nothing) => ().into_any(),
                Ok(Shown::NeedsLevel) => {
                    view! { <LevelPrompt acr=policy::STRONG_SIGN_IN purpose="A user's details"/> }
                        .into_any()
                }
                Ok(Shown::Detail(d)) => detail_card(*d).into_any(),
            }
        })
    }
}

/// One user's detail card: facts as (key, label, value) rows, then the sessions as rows of text.
fn detail_card(d: DirectoryUserDetail) -> impl IntoView {
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let email = match &d.user.email {
        Some(e) => format!(
            "{e} ({})",
            if d.email_verified {
                "verified"
            } else {
                "not verified"
            }
        ),
        None => "none".to_owned(),
    };
    let pending = if d.required_actions.is_empty() {
        "none".to_owned()
    } else {
        d.required_actions.join(", ")
    };
    let facts = [
        ("username", "Username", d.user.username.clone()),
        ("email", "E-mail", email),
        (
            "created",
            "Account made",
            d.created_at
                .map(format_utc)
                .unwrap_or_else(|| "unknown".into()),
        ),
        (
            "authenticator",
            "Authenticator app",
            yes_no(d.has_authenticator),
        ),
        ("pending", "Pending actions", pending),
    ];
    let rows: Vec<[String; 4]> = if d.sessions.is_empty() {
        vec![[
            "No Keycloak session".into(),
            String::new(),
            String::new(),
            String::new(),
        ]]
    } else {
        d.sessions
            .iter()
            .map(|s| {
                [
                    s.ip.clone(),
                    format_utc(s.started),
                    format_utc(s.last_access),
                    s.clients.join(", "),
                ]
            })
            .collect()
    };
    view! {
        <section class="card" data-testid="user-detail" data-username=d.user.username.clone()>
            <h2>{d.user.name.clone()}</h2>
            <dl class="facts">
                {facts
                    .into_iter()
                    .map(|(key, label, value)| view! { <dt>{label}</dt><dd data-fact=key>{value}</dd> })
                    .collect_view()}
            </dl>
            <table class="directory" data-testid="detail-sessions">
                <caption>"Signed in at"</caption>
                <thead><tr>
                    <th scope="col">"Address"</th><th scope="col">"Started"</th>
                    <th scope="col">"Last active"</th><th scope="col">"Applications"</th>
                </tr></thead>
                <tbody>
                    {rows
                        .into_iter()
                        .map(|row| view! { <tr>{row.into_iter().map(|c| view! { <td>{c}</td> }).collect_view()}</tr> })
                        .collect_view()}
                </tbody>
            </table>
        </section>
    }
}
