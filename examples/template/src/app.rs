//! The start-axum template with the pages of `examples/minimal` and no `keycloak-bff`: the
//! baseline that `scripts/bench.sh` compares `examples/minimal` with, so that the difference of
//! their WebAssembly bundles is what the library costs a browser (docs/performance.md).
//! `diff -r examples/template/src examples/minimal/src` shows what adopting the library changes.
//! With the feature `floor`, it is also the floor of a split app's main chunk (see Cargo.toml).
use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{Route, Router, Routes},
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

    view! {
        // injects a stylesheet into the document <head>
        // id=leptos means cargo-leptos will hot-reload this stylesheet
        <Stylesheet id="leptos" href="/pkg/template.css"/>

        // sets the document title
        <Title text="Welcome to Leptos"/>

        // content for this welcome page
        <Router>
            <nav>
                <a href="/">"Home"</a>
                <a href="/account">"Account"</a>
                {who()}
            </nav>
            <main>
                <Routes fallback=|| "Page not found.".into_view()>
                    <Route path=StaticSegment("") view=HomePage/>
                    <Route path=StaticSegment("account") view=account()/>
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
    }
}

/// The second page, open to everyone here.
#[component]
fn AccountPage() -> impl IntoView {
    view! {
        <h1 data-testid="account">"Your account"</h1>
    }
}

/// Without the feature `floor`: nothing.
#[cfg(not(feature = "floor"))]
fn who() {}

/// Without the feature `floor`: the second page as it is.
#[cfg(not(feature = "floor"))]
fn account() -> impl leptos_router::ChooseView {
    AccountPage
}

/// With the feature `floor` (see Cargo.toml): the server's answer, handed to the browser in the
/// page's hydration data and read from a signal, as keycloak-bff hands over the user: JSON
/// written by serde on the server, read with the browser's `JSON.parse`.
#[cfg(feature = "floor")]
fn who() -> impl IntoView {
    let who = RwSignal::new(floor::read(
        SharedValue::new_str(floor::who_now).into_inner(),
    ));
    // The name, and a role check as a gate would make.
    move || {
        who.get().map(|w| {
            let admin = w.roles.iter().any(|r| r == "admin").then_some(" (admin)");
            view! { <span>{w.name}{admin}</span> }
        })
    }
}

/// With the feature `floor`: the second page as a chunk of its own.
#[cfg(feature = "floor")]
fn account() -> impl leptos_router::ChooseView {
    leptos_router::Lazy::<AccountRoute>::new()
}

#[cfg(feature = "floor")]
struct AccountRoute;

#[cfg(feature = "floor")]
#[leptos_router::lazy_route]
impl leptos_router::LazyRoute for AccountRoute {
    fn data() -> Self {
        AccountRoute
    }

    fn view(_this: Self) -> AnyView {
        view! { <AccountPage/> }.into_any()
    }
}

/// What the feature `floor` reads.
#[cfg(feature = "floor")]
mod floor {
    /// Stands for the signed-in user: a small struct from the server.
    #[derive(Clone, Debug)]
    #[cfg_attr(feature = "ssr", derive(serde::Serialize))]
    pub struct Who {
        pub name: String,
        pub roles: Vec<String>,
    }

    /// On the server, the request's answer as JSON, which reaches the browser with the page (the
    /// browser never asks for it: keycloak-bff's session watcher sets every later user).
    pub fn who_now() -> String {
        #[cfg(feature = "ssr")]
        {
            serde_json::to_string(&alice()).unwrap_or_default()
        }
        #[cfg(not(feature = "ssr"))]
        {
            String::new()
        }
    }

    /// The request's answer on the server.
    #[cfg(feature = "ssr")]
    fn alice() -> Who {
        Who {
            name: "alice".into(),
            roles: vec!["admin".into()],
        }
    }

    /// The answer read back: with `JSON.parse` in the browser; on the server, the answer itself.
    pub fn read(text: String) -> Option<Who> {
        #[cfg(feature = "hydrate")]
        {
            use wasm_bindgen::{JsCast, JsValue};
            let value = js_sys::JSON::parse(&text).ok()?;
            let field = |name: &str| js_sys::Reflect::get(&value, &JsValue::from_str(name)).ok();
            let roles = field("roles")
                .and_then(|r| r.dyn_into::<js_sys::Array>().ok())
                .map(|a| a.iter().filter_map(|r| r.as_string()).collect())
                .unwrap_or_default();
            Some(Who {
                name: field("name")?.as_string()?,
                roles,
            })
        }
        #[cfg(not(feature = "hydrate"))]
        {
            let _ = text;
            #[cfg(feature = "ssr")]
            {
                Some(alice())
            }
            #[cfg(not(feature = "ssr"))]
            {
                None
            }
        }
    }
}
