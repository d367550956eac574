//! What the browser side needs to know about the server's auth routes. The server reads it from
//! its settings (`[auth]`); the page shares it with the browser during hydration, so both sides
//! always agree and nothing is written twice.

use keycloak_bff_core::account_action::AccountAction;
use keycloak_bff_core::level::AcrLevels;
use keycloak_bff_core::refresh::KeepAlive;
use keycloak_bff_core::step_up::Prompt;
use keycloak_bff_core::ReturnTo;
use serde::{Deserialize, Serialize};

/// The auth routes' prefix and the browser's session channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UiConfig {
    /// Where the auth routes live: `<prefix>/login`, `/callback`, `/logout`, `/refresh`,
    /// `/extend`, `/events`, `/backchannel-logout` and, when enabled, `/frontchannel-logout`.
    /// Default `/auth`.
    pub route_prefix: String,
    /// The `BroadcastChannel` the app's tabs use to tell each other about sign-in and sign-out.
    pub channel: String,
    /// A banner warns this many seconds before Keycloak's session ends (its idle or maximum
    /// lifetime); 0: no warning. Default 120.
    #[serde(default = "default_expiry_warning")]
    pub expiry_warning_secs: i64,
    /// A step-up action needs a sign-in with the password at most this many seconds ago
    /// (`auth_time`). Default 300.
    #[serde(default = "default_step_up_max_age")]
    pub step_up_max_age_secs: i64,
    /// How far the browser's clock may differ when it checks a recent sign-in before asking the
    /// server: the server's own leeway (`keycloak.leeway_secs`), so both sides agree. The server
    /// decides for the data either way. Default 30.
    #[serde(default = "default_clock_leeway")]
    pub clock_leeway_secs: i64,
    /// Whether a session an administrator opened as the user (Keycloak's impersonation) may do
    /// step-up actions (`auth.step_up_allows_impersonation`). Default `false`: it weakens
    /// step-up, since the fresh sign-in is the administrator's.
    #[serde(default)]
    pub step_up_allows_impersonation: bool,
    /// Whether an open page keeps Keycloak's session alive only after activity (the default) or
    /// always (`session.keep_alive`).
    #[serde(default)]
    pub keep_alive: KeepAlive,
    /// The realm's `acr` values the app uses, weakest first (`keycloak.acr_levels`, for example
    /// `["password", "otp"]` for Keycloak's ACR → LoA map `{"password": 1, "otp": 2}`); empty:
    /// Keycloak's level numbers. [`crate::server::require_acr`] and the sign-in route's `acr`
    /// compare by it.
    #[serde(default)]
    pub acr_levels: AcrLevels,
}

fn default_clock_leeway() -> i64 {
    30
}

fn default_step_up_max_age() -> i64 {
    300
}

fn default_expiry_warning() -> i64 {
    120
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            route_prefix: "/auth".to_owned(),
            channel: "keycloak-bff-session".to_owned(),
            expiry_warning_secs: default_expiry_warning(),
            step_up_max_age_secs: default_step_up_max_age(),
            clock_leeway_secs: default_clock_leeway(),
            step_up_allows_impersonation: false,
            keep_alive: KeepAlive::Activity,
            acr_levels: AcrLevels::default(),
        }
    }
}

impl UiConfig {
    /// `<prefix><path>`, e.g. `route("/login")`.
    pub fn route(&self, path: &str) -> String {
        format!("{}{path}", self.route_prefix)
    }

    /// The sign-in link that comes back to `return_to` (sanitised: a foreign URL becomes `/`).
    pub fn login_href(&self, return_to: &str) -> String {
        ReturnTo::new(Some(return_to)).login_href(&self.route("/login"))
    }

    /// The link into Keycloak's page for `action` (`<prefix>/action/<name>`) that comes back to
    /// `return_to` with the outcome.
    pub fn action_href(&self, action: AccountAction, return_to: &str) -> String {
        keycloak_bff_core::account_action::action_link(
            &self.route(&format!("/action/{}", action.name())),
            &ReturnTo::new(Some(return_to)),
        )
    }

    /// The sign-in that asks Keycloak for the level `acr` (its authenticator, say) and comes back
    /// to `return_to`: `<prefix>/login?return_to=…&acr=…`.
    pub fn level_href(&self, acr: &str, return_to: &str) -> String {
        format!(
            "{}&acr={}",
            ReturnTo::new(Some(return_to)).login_href(&self.route("/login")),
            keycloak_bff_core::return_to::encode_component(acr)
        )
    }

    /// The step-up sign-in (`prompt=login`: Keycloak asks for the password whatever its session)
    /// that comes back to `return_to`.
    pub fn step_up_href(&self, return_to: &str) -> String {
        ReturnTo::new(Some(return_to)).login_href_with(&self.route("/login"), Prompt::Login)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_follow_the_configured_prefix() {
        let c = UiConfig {
            route_prefix: "/sso".into(),
            ..UiConfig::default()
        };
        assert_eq!(c.route("/refresh"), "/sso/refresh");
        assert_eq!(
            c.step_up_href("/admin/users"),
            "/sso/login?return_to=%2Fadmin%2Fusers&prompt=login"
        );
        assert_eq!(c.login_href("/notes"), "/sso/login?return_to=%2Fnotes");
        assert_eq!(
            c.level_href("otp", "/admin/users"),
            "/sso/login?return_to=%2Fadmin%2Fusers&acr=otp"
        );
        assert_eq!(
            c.login_href("https://evil.example"),
            "/sso/login?return_to=%2F"
        );
    }
}
