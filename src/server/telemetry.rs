//! Logging. At the default level nothing logs a token, a code, a secret or a cookie: handlers log
//! subjects and outcomes only, and the types that hold tokens have redacting `Debug` impls.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tower_sessions=warn,sqlx=warn,hyper=warn"));
    let _ = tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}
