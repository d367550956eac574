//! The OpenID Connect wing: talking to Keycloak as a relying party. Discovery, the authorization
//! request, the code exchange and token validation ([`client`]), the app's DPoP key ([`dpop_key`]), the signing keys ([`keys`]), and
//! the single-flight refresh across replicas ([`refresh`]). Imports [`crate::server::base`] and
//! [`crate::server::session`] only.

pub mod client;
pub mod dpop_key;
pub mod keys;
pub mod refresh;
