//! The HTTP face, the top wing: the library's state ([`state::KeycloakAuth`]), the auth routes,
//! back- and front-channel logout, the session event stream, the middleware (origin check,
//! security headers, silent single sign-on), the guard of server functions and pages, the
//! bearer-or-session extractor, the probes and metrics, the static files, the remote API routes
//! (a proxy to other APIs with the user's token), and the router that mounts it all. It may import every wing below; none of them imports it.

pub mod account;
pub mod actions;
pub mod assets;
pub mod deferred;
pub mod directory;
pub mod extract;
pub mod guard;
pub mod health;
pub mod latency;
pub mod logout;
pub mod middleware;
pub mod push;
pub mod remote;
pub mod remote_ws;
pub mod router;
pub mod routes;
pub mod silent_sso;
pub mod state;
