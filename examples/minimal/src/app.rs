// keycloak-bff: the user in context, gated components, the session watcher.
use keycloak_bff::{
    login_href, logout_action, provide_user, HasRealmRole, Protected, Rule, SessionWatch, SignedIn,
};
use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{Route, Router, Routes},
    SsrMode, // keycloak-bff
    StaticSegment,
};

pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <AutoReload options=options.clone() />
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
    // Provides context that manages stylesheets, titles, meta tags, etc.
    provide_meta_context();
    provide_user(); // keycloak-bff

    view! {
        // injects a stylesheet into the document <head>
        // id=leptos means cargo-leptos will hot-reload this stylesheet
        <Stylesheet id="leptos" href="/pkg/minimal.css"/>

        // sets the document title
        <Title text="Welcome to Leptos"/>

        // content for this welcome page
        <Router>
            <SessionWatch/> // keycloak-bff: silent refresh, sign-out in other tabs
            <nav> // keycloak-bff: sign in and out
                <a href="/">"Home"</a>
                <SignedIn fallback=|| view! { <a rel="external" href=login_href("/account")>"Sign in"</a> }>
                    <a href="/account">"Account"</a>
                    <form method="post" action=logout_action()><button>"Sign out"</button></form>
                </SignedIn>
            </nav>
            <main>
                <Routes fallback=|| "Page not found.".into_view()>
                    <Route path=StaticSegment("") view=HomePage/>
                    // keycloak-bff: a page for signed-in users (Async: a signed-out request gets a 302)
                    <Route path=StaticSegment("account") view=AccountPage ssr=SsrMode::Async/>
                </Routes>
            </main>
        </Router>
    }
}

/// Renders the home page of your application.
#[component]
fn HomePage() -> impl IntoView {
    // Creates a reactive value to update the button
    let count = RwSignal::new(0);
    let on_click = move |_| *count.write() += 1;

    view! {
        <h1>"Welcome to Leptos!"</h1>
        <button on:click=on_click>"Click Me: " {count}</button>
        // keycloak-bff: only holders of the realm role admin see this
        <HasRealmRole role="admin">
            <p data-testid="admin-only">"Only holders of the realm role admin see this."</p>
        </HasRealmRole>
    }
}

// keycloak-bff: the page for signed-in users.
#[component]
fn AccountPage() -> impl IntoView {
    view! {
        <Protected rule=Rule::SignedIn>
            <h1 data-testid="account">"Your account"</h1>
        </Protected>
    }
}
