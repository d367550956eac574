//! Keycloak's own APIs, called from the server: the Account REST API as the signed-in user
//! ([`account`]) and the Admin REST API as a service account ([`directory`]). Imports the wings
//! below it (base, session, oidc), never the HTTP face.

pub mod account;
pub mod directory;
pub mod upstream_tokens;
