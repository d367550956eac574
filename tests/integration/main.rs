//! The integration tests: the real app on free ports against the real Keycloak (started by
//! `keycloak/start.sh`), and a hostile OpenID provider for what Keycloak would never send. One
//! binary, so the helpers compile once. The tests that listen on port 3000, where Keycloak posts
//! back-channel logouts, must run alone and have a binary of their own (cargo runs test binaries
//! one after another): `tests/backchannel_logout.rs`. Keycloak is never stopped: an outage is a
//! cut relay between one app and Keycloak (`common/relay.rs`).
#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail by panicking

mod common;
mod dpop;
mod hostile;

mod account_actions;
mod authorization;
mod failover;
mod features;
mod host;
mod hostile_provider;
mod keycloak_outage;
mod layers;
mod levels;
mod login_flow;
mod push;
mod remote_api;
mod replicas;
mod security_catalogue;
mod token_lifecycle;
