//! The integration tests: the real app on free ports against the real Keycloak (started by
//! `keycloak/start.sh`), and a hostile OpenID provider for what Keycloak would never send. One
//! binary, so the helpers compile once; the tests that stop Keycloak live in
//! `tests/keycloak_outage.rs`, which runs after this binary, never beside it.
#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail by panicking

mod common;
mod hostile;

mod authorization;
mod hostile_provider;
mod login_flow;
mod security_catalogue;
mod token_lifecycle;
