//! The pages, each with the server functions it uses.

use crate::format::format_utc;
use crate::notes::rules::read_notes;
use crate::policy;
use keycloak_bff::{
    login_href, AccountActionNotice, AppError, Authorized, ErrorNotice, HasClientRole,
    HasRealmRole, KeycloakUser, Protected, Rule, WithUser,
};
use leptos::prelude::*;
use leptos_meta::Title;
use serde::{Deserialize, Serialize};

/// When the session ends, as the session watcher follows it (a refresh moves it without
/// re-rendering the page), or as the page was rendered.
fn session_ends(rendered: i64) -> impl IntoView {
    let state = keycloak_bff::use_session_state();
    move || {
        let ends = state.and_then(|s| s.ends_at.get()).unwrap_or(rendered);
        format_utc(ends)
    }
}

fn chips(items: Vec<String>, empty: &'static str) -> impl IntoView {
    if items.is_empty() {
        view! { <span class="muted">{empty}</span> }.into_any()
    } else {
        view! {
            <ul class="chips">
                {items.into_iter().map(|i| view! { <li class="chip">{i}</li> }).collect_view()}
            </ul>
        }
        .into_any()
    }
}

#[component]
pub fn HomePage() -> impl IntoView {
    view! {
        <Title text="Home"/>
        <AccountActionNotice/>
        <section class="hero">
            <h1>"Sign in once, with Keycloak"</h1>
            <p class="lead">
                "A Leptos app whose pages follow your Keycloak roles and groups. Your tokens stay on \
                 the server; the browser only holds an opaque session cookie."
            </p>
            <WithUser render=|user| match user {
                Ok(Some(u)) => view! {
                    <p class="welcome" data-testid="welcome">"Welcome back, " {u.display_name} "."</p>
                }.into_any(),
                Ok(None) => view! {
                    <div class="actions">
                        <a class="button primary" rel="external" href=login_href("/profile")>"Sign in with Keycloak"</a>
                    </div>
                }.into_any(),
                // A public page stays a 200 whatever the state of the session.
                Err(error) => view! {
                    <p class="muted" data-testid="home-notice">{error.to_string()}</p>
                }.into_any(),
            }/>
        </section>
        // Plain links: the router navigates them in the page all the same; `<A>` adds an
        // active-route memo to each, which only the navigation needs.
        <section class="grid">
            <article class="card">
                <h2>"Profile"</h2>
                <p>"Your name, roles, groups and when your session ends. For anyone signed in."</p>
                <a href="/profile">"Open profile →"</a>
            </article>
            <Authorized rule=read_notes()>
                <article class="card">
                    <h2>"Notes"</h2>
                    <p>"The team's shared notes board. Editors write, admins moderate."</p>
                    <a href="/notes">"Open notes →"</a>
                </article>
            </Authorized>
            <HasClientRole role="editor">
                <article class="card">
                    <h2>"Editor"</h2>
                    <p>"For holders of the app's " <code>"editor"</code> " client role."</p>
                    <a href="/editor">"Open editor →"</a>
                </article>
            </HasClientRole>
            <HasRealmRole role="admin">
                <article class="card">
                    <h2>"Admin"</h2>
                    <p>"For holders of the realm role " <code>"admin"</code> "."</p>
                    <a href="/admin">"Open admin →"</a>
                </article>
            </HasRealmRole>
        </section>
    }
}

#[component]
pub fn ProfilePage() -> impl IntoView {
    view! {
        <Title text="Profile"/>
        <Protected rule=Rule::SignedIn>
            <WithUser render=|user| match user {
                Ok(Some(u)) => view! { <ProfileCard user=u/> }.into_any(),
                _ => ().into_any(),
            }/>
        </Protected>
    }
}

#[component]
fn ProfileCard(user: KeycloakUser) -> impl IntoView {
    view! {
        <section class="card profile" data-testid="profile">
            <h1>{user.display_name.clone()}</h1>
            <dl class="facts">
                <dt>"Username"</dt><dd data-testid="username">{user.username.clone()}</dd>
                <dt>"E-mail"</dt><dd>{user.email.clone().unwrap_or_else(|| "—".into())}</dd>
                <dt>"Keycloak id"</dt><dd><code>{user.subject.clone()}</code></dd>
                <dt>"Realm roles"</dt><dd data-testid="realm-roles">{chips(user.realm_roles.clone(), "none")}</dd>
                <dt>"App roles"</dt><dd data-testid="client-roles">{chips(user.client_roles.clone(), "none")}</dd>
                <dt>"Groups"</dt><dd data-testid="groups">{chips(user.groups.clone(), "none")}</dd>
                <dt>"Session ends"</dt><dd data-testid="session-expires">{session_ends(user.session_expires_at)}</dd>
                <dt>"Signed in with"</dt><dd data-testid="sign-in-strength">{sign_in_strength(&user)}</dd>
            </dl>
        </section>
    }
}

/// How the sign-in went, as Keycloak said (`acr`, and `amr` when the realm sends it).
fn sign_in_strength(user: &KeycloakUser) -> String {
    let level = match user.acr.as_deref() {
        // Level 1 is the password form, which also takes a passkey: the level does not say which.
        Some("password") | Some("1") => {
            "a password or a passkey, on Keycloak's page (level 1)".to_owned()
        }
        Some("otp") | Some("2") => "that and the authenticator app's code (level 2)".to_owned(),
        Some("0") => "Keycloak's session, without a new sign-in (level 0)".to_owned(),
        Some(other) => format!("level {other}"),
        None => "not said".to_owned(),
    };
    if user.amr.is_empty() {
        level
    } else {
        format!("{level}; methods: {}", user.amr.join(", "))
    }
}

/// What an administrator sees about this app's connection to Keycloak. No secrets.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ConnectionOverview {
    pub issuer: String,
    pub client_id: String,
    pub public_url: String,
    pub session_store: String,
    pub signature_algorithms: Vec<String>,
    pub key_set_fetches: u64,
    pub token_refreshes: u64,
    pub sessions_ended_by_server: u64,
    pub backchannel_logouts: u64,
}

#[server(prefix = "/api", endpoint = "admin_overview")]
pub async fn admin_overview() -> Result<ConnectionOverview, AppError> {
    use keycloak_bff::server::{require, use_keycloak_auth};
    require(&policy::admin_page()).await?;
    let auth = use_keycloak_auth()?;
    let (s, counted) = (auth.settings(), auth.counters());
    Ok(ConnectionOverview {
        issuer: s.issuer(),
        client_id: s.keycloak.client_id.clone(),
        public_url: s.public_origin(),
        session_store: format!("{:?}", s.session.store).to_lowercase(),
        signature_algorithms: s.keycloak.algorithms.clone(),
        key_set_fetches: counted.key_set_fetches,
        token_refreshes: counted.token_refreshes,
        sessions_ended_by_server: counted.sessions_ended_by_server,
        backchannel_logouts: counted.backchannel_logouts,
    })
}

#[component]
pub fn AdminPage() -> impl IntoView {
    view! {
        <Title text="Admin"/>
        <Protected rule=policy::admin_page()>
            <AdminPanel/>
        </Protected>
    }
}

#[component]
fn AdminPanel() -> impl IntoView {
    let overview = Resource::new(|| (), |_| admin_overview());
    view! {
        <section class="card" data-testid="admin-page">
            <h1>"Administration"</h1>
            <p class="muted">"Shown to holders of the realm role " <code>"admin"</code> ". The server checks the role again for this data."</p>
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match overview.await {
                        Ok(o) => view! {
                            <dl class="facts">
                                <dt>"Issuer"</dt><dd><code>{o.issuer}</code></dd>
                                <dt>"Client"</dt><dd><code>{o.client_id}</code></dd>
                                <dt>"Public URL"</dt><dd><code>{o.public_url}</code></dd>
                                <dt>"Session store"</dt><dd>{o.session_store}</dd>
                                <dt>"Accepted algorithms"</dt><dd>{o.signature_algorithms.join(", ")}</dd>
                                <dt>"Key-set fetches"</dt><dd>{o.key_set_fetches}</dd>
                                <dt>"Token refreshes"</dt><dd>{o.token_refreshes}</dd>
                                <dt>"Sessions ended by the server"</dt><dd>{o.sessions_ended_by_server}</dd>
                                <dt>"Back-channel logouts"</dt><dd>{o.backchannel_logouts}</dd>
                            </dl>
                        }.into_any(),
                        Err(error) => view! { <ErrorNotice error/> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

/// What an editor's page shows: how the editor role reached this user.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EditorDeskInfo {
    pub display_name: String,
    pub groups: Vec<String>,
    pub client_roles: Vec<String>,
}

#[server(prefix = "/api", endpoint = "editor_desk")]
pub async fn editor_desk() -> Result<EditorDeskInfo, AppError> {
    let user = keycloak_bff::server::require(&policy::editor_page()).await?;
    Ok(EditorDeskInfo {
        display_name: user.display_name,
        groups: user.groups,
        client_roles: user.client_roles,
    })
}

#[component]
pub fn EditorPage() -> impl IntoView {
    view! {
        <Title text="Editor"/>
        <Protected rule=policy::editor_page()>
            <EditorPanel/>
        </Protected>
    }
}

#[component]
fn EditorPanel() -> impl IntoView {
    let desk = Resource::new(|| (), |_| editor_desk());
    view! {
        <section class="card" data-testid="editor-page">
            <h1>"Editor's desk"</h1>
            <p class="muted">"Shown to holders of this app's client role " <code>"editor"</code> ", granted directly or through a group."</p>
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match desk.await {
                        Ok(d) => view! {
                            <dl class="facts">
                                <dt>"Editor"</dt><dd>{d.display_name}</dd>
                                <dt>"Your app roles"</dt><dd>{chips(d.client_roles, "none")}</dd>
                                <dt>"Your groups"</dt><dd>{chips(d.groups, "none")}</dd>
                            </dl>
                        }.into_any(),
                        Err(error) => view! { <ErrorNotice error/> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

/// What the staff room shows: how the member belongs to `/staff`.
#[server(prefix = "/api", endpoint = "staff_room")]
pub async fn staff_room() -> Result<Vec<String>, AppError> {
    let user = keycloak_bff::server::require(&policy::staff_room()).await?;
    Ok(user
        .groups_within(policy::STAFF_GROUP, true)
        .cloned()
        .collect())
}

#[component]
pub fn StaffPage() -> impl IntoView {
    view! {
        <Title text="Staff"/>
        <Protected rule=policy::staff_room()>
            <StaffRoom/>
        </Protected>
    }
}

#[component]
fn StaffRoom() -> impl IntoView {
    let groups = Resource::new(|| (), |_| staff_room());
    view! {
        <section class="card" data-testid="staff-page">
            <h1>"Staff room"</h1>
            <p class="muted">"Shown to members of the group " <code>"/staff"</code> " and of every group below it."</p>
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match groups.await {
                        Ok(g) => view! {
                            <dl class="facts">
                                <dt>"Your staff groups"</dt><dd data-testid="staff-groups">{chips(g, "none")}</dd>
                            </dl>
                        }.into_any(),
                        Err(error) => view! { <ErrorNotice error/> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
pub fn NotFound() -> impl IntoView {
    keycloak_bff::set_page_status(&AppError::NotFound);
    view! {
        <Title text="Not found"/>
        <section class="card notice" data-status="404">
            <h1>"404 · Page not found"</h1>
            <p>"There is no page at this address."</p>
            <div class="actions"><a class="button" href="/">"Back to the home page"</a></div>
        </section>
    }
}
