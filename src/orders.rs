//! "Orders": data that lives in another service. The browser calls `/remote/orders` on this app
//! (`keycloak_bff::call_remote`); the library forwards the call to `examples/orders-api` with a
//! token exchanged for the audience `orders-api` (Leptos.toml, `[[apis]]`). The page shows what
//! the service saw of that token, for the curious: its audience, the client that asked for it,
//! the user, and whether it is bound to a key. What a user may do is the service's decision (its
//! roles `read` and `create`); its refusals are shown as they come. The page itself is for
//! holders of the realm role `user` (`policy::orders_page`).

use crate::format::format_utc;
use crate::policy::orders_page;
use keycloak_bff::{call_remote, Protected};
use leptos::prelude::*;
use leptos_meta::Title;
use serde::Deserialize;

/// The remote API route of Leptos.toml.
const ORDERS: &str = "/remote/orders";

#[derive(Clone, Debug, Deserialize)]
struct Order {
    id: u64,
    item: String,
    created_at: i64,
}

/// `aud` is a string or a list.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn text(&self) -> String {
        match self {
            Audience::One(a) => a.clone(),
            Audience::Many(a) => a.join(", "),
        }
    }
}

/// What orders-api saw of the token it was given.
#[derive(Clone, Debug, Deserialize)]
struct Seen {
    aud: Option<Audience>,
    azp: Option<String>,
    sub: Option<String>,
    binding: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
struct Listing {
    orders: Vec<Order>,
    seen: Seen,
}

async fn load() -> Result<Listing, String> {
    let answer = call_remote("GET", ORDERS, None).await?;
    if answer.is_success() {
        answer.json()
    } else {
        Err(format!(
            "Your orders could not be read: {}.",
            answer.message()
        ))
    }
}

async fn place(item: String) -> Result<(), String> {
    let body = serde_json::json!({ "item": item }).to_string();
    let answer = call_remote("POST", ORDERS, Some(body)).await?;
    if answer.is_success() {
        Ok(())
    } else {
        Err(format!("The order was not placed: {}.", answer.message()))
    }
}

#[component]
pub fn OrdersPage() -> impl IntoView {
    view! {
        <Title text="Orders"/>
        <Protected rule=orders_page()>
            <OrdersBoard/>
        </Protected>
    }
}

#[component]
fn OrdersBoard() -> impl IntoView {
    let version = RwSignal::new(0u32);
    // Filled by the browser's own call, after hydration: the server renders "Loading", and so
    // does the browser until its call answers. (A resource read here would hold the page's
    // Protected gate on the server, where a browser-only call never answers.)
    let listing = RwSignal::new(None::<Result<Listing, String>>);
    Effect::new(move || {
        version.track();
        leptos::task::spawn_local(async move {
            listing.set(Some(load().await));
        });
    });
    let item = RwSignal::new(String::new());
    let failure = RwSignal::new(None::<String>);
    let placing = Action::new_local(move |text: &String| {
        let text = text.clone();
        async move {
            match place(text).await {
                Ok(()) => {
                    failure.set(None);
                    item.set(String::new());
                    version.update(|v| *v += 1);
                }
                Err(e) => failure.set(Some(e)),
            }
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let text = item.get_untracked();
        if !text.trim().is_empty() {
            placing.dispatch(text);
        }
    };
    view! {
        <section class="card" data-testid="orders">
            <h1>"Orders"</h1>
            <p class="muted">
                "Your orders live in another service, orders-api. This page calls "
                <code>"/remote/orders"</code>
                " on this app, which forwards the call with a token made for orders-api alone: \
                 neither your browser nor orders-api ever sees your session's own token."
            </p>
            <form class="composer" data-testid="order-form" on:submit=submit>
                <label for="order-item">"New order"</label>
                <input id="order-item" type="text" maxlength="200" required
                    prop:value=move || item.get()
                    on:input=move |ev| item.set(event_target_value(&ev))/>
                <div class="actions">
                    <button type="submit" class="button" disabled=move || placing.pending().get()>
                        "Place order"
                    </button>
                </div>
            </form>
            <p class="error" role="alert">{move || failure.get()}</p>
            {move || match listing.get() {
                None => view! { <p class="muted">"Loading orders…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e}</p> }.into_any(),
                Some(Ok(l)) if l.orders.is_empty() => {
                    view! { <p class="muted">"No orders yet."</p> }.into_any()
                }
                Some(Ok(l)) => view! {
                    <ul class="orders" aria-label="Your orders">
                        {l.orders.into_iter().map(|o| view! {
                            <li>
                                <strong>{o.item}</strong>
                                <span class="muted">" · #" {o.id} " · " {format_utc(o.created_at)}</span>
                            </li>
                        }).collect_view()}
                    </ul>
                }.into_any(),
            }}
        </section>
        <section class="card" data-testid="orders-seen">
            <h2>"What orders-api saw"</h2>
            {move || listing.get().and_then(Result::ok).map(|l| {
                let Seen { aud, azp, sub, binding } = l.seen;
                view! {
                    <dl class="facts">
                        <dt>"Audience (aud)"</dt><dd>{aud.map(|a| a.text())}</dd>
                        <dt>"Asked for by (azp)"</dt><dd>{azp}</dd>
                        <dt>"User (sub)"</dt><dd><code>{sub}</code></dd>
                        <dt>"Binding"</dt><dd>{binding}</dd>
                    </dl>
                }
            })}
        </section>
    }
}
