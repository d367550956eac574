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

/// The user directory: the realm role `admin`, with a recent sign-in (step-up).
pub fn user_directory() -> Rule {
    Rule::realm_role("admin")
}

/// The Orders page: the realm role `user` (people who use the app). What each may do with
/// orders is `orders-api`'s own decision, by its client roles `read` and `create`.
pub fn orders_page() -> Rule {
    Rule::realm_role("user")
}

/// The staff room: members of `/staff` and of every group below it.
pub fn staff_room() -> Rule {
    Rule::group(STAFF_GROUP, true)
}

/// The level of authentication of the dangerous parts (the user directory for programs): the
/// password and a code of the authenticator app (the realm's `acr` value `otp`, level 2).
pub const STRONG_SIGN_IN: &str = "otp";

/// The staff group's path.
pub const STAFF_GROUP: &str = "/staff";
