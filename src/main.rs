#[cfg(feature = "ssr")]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    use kc_leptos::server::startup::Application;
    use kc_leptos::server::Settings;
    use keycloak_bff::server::shutdown_signal;
    use std::process::ExitCode;

    kc_leptos::server::telemetry::init();
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kc-leptos: {e}");
            return ExitCode::from(2);
        }
    };
    // cargo-leptos passes the build settings in LEPTOS_* variables; without them, read Cargo.toml.
    let source = std::env::var_os("LEPTOS_OUTPUT_NAME").map_or(Some("Cargo.toml"), |_| None);
    let conf = match leptos::config::get_configuration(source) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kc-leptos: leptos configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let app = match Application::build(settings, conf.leptos_options).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("kc-leptos: {e}");
            return ExitCode::from(1);
        }
    };
    match app.local_addr() {
        Ok(addr) => tracing::info!("listening on http://{addr}"),
        Err(e) => tracing::warn!(error = %e, "cannot read the listening address"),
    }
    match app.run_until(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kc-leptos: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(not(feature = "ssr"))]
fn main() {}
