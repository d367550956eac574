//! The HTML shell, the router, and the chrome around every page.

use crate::account::SessionsPage;
use crate::directory::DirectoryPageView;
use crate::notes::rules::read_notes;
use crate::notes::NotesPage;
use crate::orders::OrdersPage;
use crate::pages::{AdminPage, EditorPage, HomePage, NotFound, ProfilePage, StaffPage};
use crate::policy::{orders_page, STAFF_GROUP};
use crate::security::SecurityPage;
use keycloak_bff::{
    current_path, login_href, provide_user, Authorized, HasClientRole, HasRealmRole, InGroup,
    SessionWatch, SignedIn, WithUser,
};
use leptos::prelude::*;
use leptos_meta::{provide_meta_context, HashedStylesheet, MetaTags, Title};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{lazy_route, path, Lazy, LazyRoute, SsrMode};

pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" type="image/svg+xml" href="/favicon.svg"/>
                <AutoReload options=options.clone()/>
                <HashedStylesheet id="leptos" options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    provide_user();
    view! {
        <Title formatter=|text: String| if text.is_empty() { "kc-leptos".to_owned() } else { format!("{text} · kc-leptos") }/>
        <Router>
            <TopBar/>
            <SessionWatch/>
            <main class="page">
                <Routes fallback=|| view! { <NotFound/> }>
                    <Route path=path!("/") view=HomePage ssr=SsrMode::Async/>
                    // Every page but the home page is its own WebAssembly chunk (cargo leptos build
                    // --split), fetched when the page is first visited: a first visit downloads the
                    // shell, the router, the user and the home page only.
                    <Route path=path!("/profile") view={Lazy::<ProfileRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/editor") view={Lazy::<EditorRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/admin") view={Lazy::<AdminRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/notes") view={Lazy::<NotesRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/sessions") view={Lazy::<SessionsRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/security") view={Lazy::<SecurityRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/orders") view={Lazy::<OrdersRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/staff") view={Lazy::<StaffRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/admin/users") view={Lazy::<DirectoryRoute>::new()} ssr=SsrMode::Async/>
                </Routes>
            </main>
            <footer class="footer">
                "Users, passwords, roles and groups live in Keycloak. This app keeps no user table."
            </footer>
        </Router>
    }
}

/// A page loaded as its own chunk: `$route` names the route, `$page` the component it shows. The
/// page's server functions run when it renders (inside its `Protected` gate), so nothing is asked
/// of the server for a visitor the page would refuse; the chunk is small, so loading it first
/// costs one round trip on the first visit of the page only.
macro_rules! lazy_page {
    ($route:ident, $page:ident) => {
        struct $route;

        #[lazy_route]
        impl LazyRoute for $route {
            fn data() -> Self {
                $route
            }

            fn view(_this: Self) -> AnyView {
                view! { <$page/> }.into_any()
            }
        }
    };
}

lazy_page!(ProfileRoute, ProfilePage);
lazy_page!(EditorRoute, EditorPage);
lazy_page!(AdminRoute, AdminPage);
lazy_page!(NotesRoute, NotesPage);
lazy_page!(SessionsRoute, SessionsPage);
lazy_page!(SecurityRoute, SecurityPage);
lazy_page!(OrdersRoute, OrdersPage);
lazy_page!(StaffRoute, StaffPage);
lazy_page!(DirectoryRoute, DirectoryPageView);

/// The navigation shows only what the signed-in user may open.
#[component]
fn TopBar() -> impl IntoView {
    view! {
        <header class="topbar">
            <a class="brand" href="/">"kc-leptos"</a>
            <nav class="nav" aria-label="Main">
                <NavLink href="/">"Home"</NavLink>
                <SignedIn>
                    <NavLink href="/profile">"Profile"</NavLink>
                    <NavLink href="/sessions">"My sessions"</NavLink>
                    <NavLink href="/security">"Security"</NavLink>
                </SignedIn>
                <Authorized rule=orders_page()>
                    <NavLink href="/orders">"Orders"</NavLink>
                </Authorized>
                <Authorized rule=read_notes()>
                    <NavLink href="/notes">"Notes"</NavLink>
                </Authorized>
                <HasClientRole role="editor">
                    <NavLink href="/editor">"Editor"</NavLink>
                </HasClientRole>
                <InGroup path=STAFF_GROUP include_subgroups=true>
                    <NavLink href="/staff">"Staff"</NavLink>
                </InGroup>
                <HasRealmRole role="admin">
                    <NavLink href="/admin">"Admin"</NavLink>
                    <NavLink href="/admin/users">"Users"</NavLink>
                </HasRealmRole>
            </nav>
            <UserMenu/>
        </header>
    }
}

/// A link of the navigation, marked `aria-current="page"` on its own page. A plain link (the
/// router still navigates it in the page) with one closure, instead of `<A>`'s resolved path and
/// memos: rendering a page with every link of an admin costs measurably less (docs/performance.md).
/// The router's location in the browser, where it follows client-side navigation. On the server
/// a page is rendered once for its request, whose path `current_path` reads without the router:
/// a render the client abandoned (a closed connection) must not panic a worker over a context
/// that was disposed meanwhile.
fn browser_location() -> Option<leptos_router::location::Location> {
    #[cfg(feature = "ssr")]
    {
        None
    }
    #[cfg(not(feature = "ssr"))]
    {
        Some(leptos_router::hooks::use_location())
    }
}

#[component]
fn NavLink(href: &'static str, children: Children) -> impl IntoView {
    let location = browser_location();
    let requested = current_path();
    let here = move || match &location {
        // `try_get`: never a panic on a disposed signal.
        Some(location) => location.pathname.try_get(),
        None => requested.split('?').next().map(str::to_owned),
    };
    view! {
        <a href=href aria-current=move || here().is_some_and(|p| p == href).then_some("page")>
            {children()}
        </a>
    }
}

#[component]
fn UserMenu() -> impl IntoView {
    let location = browser_location();
    let logout = keycloak_bff::logout_action();
    view! {
        <div class="session">
            <WithUser render=move |user| match user {
                Ok(Some(u)) => view! {
                    // An admin impersonating this user from Keycloak's admin console: say so.
                    {u.impersonator.clone().map(|by| view! {
                        <span class="impersonation" data-testid="impersonation">{by} " acting as"</span>
                    })}
                    <span class="who" data-testid="signed-in-as">{u.display_name}</span>
                    <form method="post" action=logout.clone() class="inline">
                        <button type="submit" class="button subtle">"Sign out"</button>
                    </form>
                }.into_any(),
                // Keycloak or the session store cannot say: not signed out, so no sign-in link.
                Err(_) => view! {
                    <span class="who muted" data-testid="session-unknown">"Session unavailable"</span>
                }.into_any(),
                Ok(None) => {
                    // Re-read the location so the link follows client-side navigation.
                    if let Some(location) = &location {
                        let _ = location.pathname.try_get();
                    }
                    view! {
                        <a class="button" rel="external" href=login_href(&current_path())>"Sign in"</a>
                    }.into_any()
                }
            }/>
        </div>
    }
}
