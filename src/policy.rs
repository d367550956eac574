//! The pages' authorization rules, named once and used by the navigation, the pages and their
//! server functions alike. The notes board's rules are in `notes::rules`.

use keycloak_bff::Rule;

/// The admin page: the realm role `admin`.
pub fn admin_page() -> Rule {
    Rule::realm_role("admin")
}

/// The editor's page: this app's client role `editor`.
pub fn editor_page() -> Rule {
    Rule::client_role("editor")
}
