#[cfg(feature = "ssr")]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    use axum::Router;
    use keycloak_bff::server::static_files; // keycloak-bff
    use keycloak_bff::server::{AuthSettings, KeycloakAuth}; // keycloak-bff
    use leptos::logging::log;
    use leptos::prelude::*;
    use leptos_axum::{generate_route_list, LeptosRoutes};
    use minimal::app::*;
    use tracing_subscriber::EnvFilter; // keycloak-bff: its logs

    // keycloak-bff: what it logs (a refused sign-in, Keycloak down) on stderr; RUST_LOG=debug for more.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let conf = get_configuration(None)?;
    let addr = conf.leptos_options.site_addr;
    let leptos_options = conf.leptos_options;
    // Generate the list of routes in your Leptos App
    let routes = generate_route_list(App);
    // keycloak-bff: the settings ([auth], [keycloak], [session] of Leptos.toml) and the state.
    let auth = KeycloakAuth::new(AuthSettings::load()?, &leptos_options).await?;

    let app = Router::new()
        .merge(auth.routes()) // keycloak-bff: /auth/login, /callback, /logout, /refresh...
        .merge(static_files(&leptos_options)) // keycloak-bff: /pkg/ compressed and cached
        .leptos_routes(&leptos_options, routes, {
            let leptos_options = leptos_options.clone();
            move || shell(leptos_options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler(shell))
        .with_state(leptos_options);

    // run our app with hyper
    // `axum::Server` is a re-export of `hyper::Server`
    log!("listening on http://{}", &addr);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    // keycloak-bff: its layers (sessions, checks, headers) around every route, TCP_NODELAY, and
    // a graceful shutdown that ends the session event streams.
    auth.serve(listener, app).await?;
    Ok(())
}

#[cfg(not(feature = "ssr"))]
pub fn main() {
    // no client-side main function
    // unless we want this to work with e.g., Trunk for pure client-side testing
    // see lib.rs for hydration function instead
}
