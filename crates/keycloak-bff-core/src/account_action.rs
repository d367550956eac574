//! Keycloak's own account-security pages, started by the app (application-initiated actions): an
//! authorization request with `kc_action` sends the signed-in user straight into one of Keycloak's
//! required actions (change the password, set up an authenticator app, add a passkey, delete the
//! account), and the answer comes back on the callback with `kc_action_status`.
//!
//! Only the actions named here can be started (an allow-list: the route's name is never passed to
//! Keycloak as it is), and an outcome counts only on the callback of a sign-in that asked for that
//! action: a `kc_action_status` added to any other callback is ignored. Pure: no I/O.
//!
//! Catalogue: AA01 (an action outside the allow-list), AA02 (a forged `kc_action_status`).

use serde::{Deserialize, Serialize};

/// An account action the app can send the user into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccountAction {
    /// A new password (`UPDATE_PASSWORD`).
    UpdatePassword,
    /// An authenticator app, set up or replaced (`CONFIGURE_TOTP`).
    ConfigureTotp,
    /// A passkey: a discoverable WebAuthn credential that signs in without a password
    /// (`webauthn-register-passwordless`).
    AddPasskey,
    /// A security key as a second factor (`webauthn-register`).
    AddSecurityKey,
    /// The profile (name, email) as Keycloak's form has it (`UPDATE_PROFILE`).
    UpdateProfile,
    /// The account itself, deleted for good (`delete_account`; Keycloak asks for the password
    /// again, and the user needs the `account` client's `delete-account` role).
    DeleteAccount,
}

impl AccountAction {
    /// Every action, in the order a security page lists them.
    pub const ALL: [AccountAction; 6] = [
        AccountAction::UpdatePassword,
        AccountAction::ConfigureTotp,
        AccountAction::AddPasskey,
        AccountAction::AddSecurityKey,
        AccountAction::UpdateProfile,
        AccountAction::DeleteAccount,
    ];

    /// The action a route segment names (`update-password`…); `None` for anything else.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Its name in the app's URLs (`<prefix>/action/<name>`) and in the outcome's query.
    pub fn name(self) -> &'static str {
        match self {
            AccountAction::UpdatePassword => "update-password",
            AccountAction::ConfigureTotp => "configure-totp",
            AccountAction::AddPasskey => "add-passkey",
            AccountAction::AddSecurityKey => "add-security-key",
            AccountAction::UpdateProfile => "update-profile",
            AccountAction::DeleteAccount => "delete-account",
        }
    }

    /// The `kc_action` Keycloak knows it by.
    pub fn kc_action(self) -> &'static str {
        match self {
            AccountAction::UpdatePassword => "UPDATE_PASSWORD",
            AccountAction::ConfigureTotp => "CONFIGURE_TOTP",
            AccountAction::AddPasskey => "webauthn-register-passwordless",
            AccountAction::AddSecurityKey => "webauthn-register",
            AccountAction::UpdateProfile => "UPDATE_PROFILE",
            AccountAction::DeleteAccount => "delete_account",
        }
    }

    /// Done, it leaves no account behind: every session of the user ends.
    pub fn ends_the_account(self) -> bool {
        self == AccountAction::DeleteAccount
    }
}

/// How an action ended, as Keycloak said (`kc_action_status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionOutcome {
    /// Done.
    Success,
    /// The user cancelled on Keycloak's page.
    Cancelled,
    /// Keycloak could not do it (the action disabled in the realm, a role missing…), or said
    /// nothing a sign-in that asked for an action should carry.
    Error,
}

impl ActionOutcome {
    /// Keycloak's `kc_action_status`; missing or unknown is an error.
    pub fn from_status(status: Option<&str>) -> Self {
        match status {
            Some("success") => ActionOutcome::Success,
            Some("cancelled") => ActionOutcome::Cancelled,
            _ => ActionOutcome::Error,
        }
    }

    /// Its name in the outcome's query (`success`, `cancelled`, `error`).
    pub fn name(self) -> &'static str {
        match self {
            ActionOutcome::Success => "success",
            ActionOutcome::Cancelled => "cancelled",
            ActionOutcome::Error => "error",
        }
    }

    /// The outcome a page reads back from its query; `None` for anything else.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Success, Self::Cancelled, Self::Error]
            .into_iter()
            .find(|o| o.name() == name)
    }
}

/// How long after the user set off to delete their account the session keeps checking with
/// Keycloak that the account still exists, seconds (a sign-in's lifetime on Keycloak's pages).
pub const DELETION_WATCH_SECS: i64 = 600;
/// The least time between two such checks, seconds.
pub const DELETION_CHECK_EVERY_SECS: i64 = 2;
/// How soon an idle page asks again while the deletion is watched, seconds: an idle page's check
/// otherwise comes back only at the session's end, and would miss the deletion.
pub const DELETION_IDLE_CHECK_SECS: i64 = 5;

/// Whether a session whose user set off to delete their account at `requested_at` still watches
/// for the deletion at `now` (within [`DELETION_WATCH_SECS`]). While it does, even a page nobody
/// touches checks (by a refresh, [`deletion_check_due`]) every [`DELETION_IDLE_CHECK_SECS`].
pub fn deletion_watched(requested_at: Option<i64>, now: i64) -> bool {
    requested_at.is_some_and(|at| now - at <= DELETION_WATCH_SECS)
}

/// Keycloak does not come back to the app after deleting an account (it shows its own "deleted"
/// page, whose link leads to the app's home page), so a session whose user set off to delete
/// their account (`requested_at`) checks at its next uses, by a refresh, whether the account is
/// still there: within [`DELETION_WATCH_SECS`], at most every [`DELETION_CHECK_EVERY_SECS`].
pub fn deletion_check_due(requested_at: Option<i64>, refreshed_at: i64, now: i64) -> bool {
    deletion_watched(requested_at, now) && now - refreshed_at >= DELETION_CHECK_EVERY_SECS
}

/// What to tell the user of `action`'s `outcome`, in plain words.
pub fn message(action: AccountAction, outcome: ActionOutcome) -> &'static str {
    use AccountAction as A;
    use ActionOutcome as O;
    match (action, outcome) {
        (A::UpdatePassword, O::Success) => "Your password was changed.",
        (A::ConfigureTotp, O::Success) => "Your authenticator app is set up.",
        (A::AddPasskey, O::Success) => "Your passkey was added.",
        (A::AddSecurityKey, O::Success) => "Your security key was added.",
        (A::UpdateProfile, O::Success) => "Your profile was updated.",
        (A::DeleteAccount, O::Success) => {
            "Your account was deleted, and you are signed out everywhere."
        }
        (A::UpdatePassword, O::Cancelled) => "Cancelled: your password was not changed.",
        (A::ConfigureTotp, O::Cancelled) => "Cancelled: no authenticator app was set up.",
        (A::AddPasskey, O::Cancelled) => "Cancelled: no passkey was added.",
        (A::AddSecurityKey, O::Cancelled) => "Cancelled: no security key was added.",
        (A::UpdateProfile, O::Cancelled) => "Cancelled: your profile was not changed.",
        (A::DeleteAccount, O::Cancelled) => "Cancelled: your account was not deleted.",
        (A::DeleteAccount, O::Error) => {
            "Your account was not deleted: Keycloak did not confirm it."
        }
        (_, O::Error) => "Keycloak could not complete this. Nothing was changed.",
    }
}

/// The outcome of a callback: only for a sign-in that asked for an action (`asked`), from its
/// `kc_action_status`; a status on any other callback counts for nothing (`None`).
pub fn outcome_of(
    asked: Option<AccountAction>,
    status: Option<&str>,
) -> Option<(AccountAction, ActionOutcome)> {
    asked.map(|action| (action, ActionOutcome::from_status(status)))
}

/// The link of an action's route (`route`, e.g. `/auth/action/update-password`) that comes back
/// to `return_to` (a checked return path). Only what would end the parameter is encoded (`%`,
/// `&`, `#`, `+`): slashes stay as they are, so the link is itself a return path a sign-in
/// accepts, and a signed-out browser signs in and comes back to the action.
pub fn action_link(route: &str, return_to: &crate::ReturnTo) -> String {
    let mut encoded = String::with_capacity(return_to.as_str().len());
    for c in return_to.as_str().chars() {
        match c {
            '%' => encoded.push_str("%25"),
            '&' => encoded.push_str("%26"),
            '#' => encoded.push_str("%23"),
            '+' => encoded.push_str("%2B"),
            c => encoded.push(c),
        }
    }
    format!("{route}?return_to={encoded}")
}

/// The query parameter naming the action whose outcome a page shows.
pub const ACTION_PARAM: &str = "account_action";
/// The query parameter with the outcome.
pub const OUTCOME_PARAM: &str = "outcome";

/// `return_to` (a local path, already checked) with the outcome in its query, for the page to
/// show: `…?account_action=update-password&outcome=success`. Any earlier outcome is replaced.
pub fn with_outcome(return_to: &str, action: AccountAction, outcome: ActionOutcome) -> String {
    let (path, query) = return_to.split_once('?').unwrap_or((return_to, ""));
    let mut kept: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k != ACTION_PARAM && k != OUTCOME_PARAM)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    kept.push((ACTION_PARAM.to_owned(), action.name().to_owned()));
    kept.push((OUTCOME_PARAM.to_owned(), outcome.name().to_owned()));
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(kept)
        .finish();
    format!("{path}?{query}")
}

/// The outcome a page's query carries, if it names a known action and outcome.
pub fn outcome_in_query(query: &str) -> Option<(AccountAction, ActionOutcome)> {
    let mut action = None;
    let mut outcome = None;
    for (k, v) in form_urlencoded::parse(query.trim_start_matches('?').as_bytes()) {
        if k == ACTION_PARAM {
            action = AccountAction::from_name(&v);
        } else if k == OUTCOME_PARAM {
            outcome = ActionOutcome::from_name(&v);
        }
    }
    Some((action?, outcome?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_actions_start_and_each_has_its_keycloak_name() {
        for action in AccountAction::ALL {
            assert_eq!(AccountAction::from_name(action.name()), Some(action));
        }
        assert_eq!(
            AccountAction::from_name("update-password").map(AccountAction::kc_action),
            Some("UPDATE_PASSWORD")
        );
        for outside in [
            "UPDATE_PASSWORD",
            "idp_link:github",
            "delete_account",
            "update-password ",
            "../login",
            "",
        ] {
            assert_eq!(AccountAction::from_name(outside), None, "{outside:?}");
        }
        assert!(AccountAction::DeleteAccount.ends_the_account());
        assert!(!AccountAction::UpdatePassword.ends_the_account());
    }

    #[test]
    fn a_status_counts_only_on_the_callback_of_a_sign_in_that_asked_for_an_action() {
        assert_eq!(outcome_of(None, Some("success")), None, "a forged status");
        assert_eq!(
            outcome_of(Some(AccountAction::ConfigureTotp), Some("success")),
            Some((AccountAction::ConfigureTotp, ActionOutcome::Success))
        );
        assert_eq!(
            outcome_of(Some(AccountAction::UpdatePassword), Some("cancelled")),
            Some((AccountAction::UpdatePassword, ActionOutcome::Cancelled))
        );
        for odd in [None, Some("error"), Some("SUCCESS"), Some("maybe")] {
            assert_eq!(
                outcome_of(Some(AccountAction::UpdatePassword), odd),
                Some((AccountAction::UpdatePassword, ActionOutcome::Error)),
                "{odd:?}"
            );
        }
    }

    #[test]
    fn a_session_whose_user_set_off_to_delete_the_account_checks_it_at_its_next_uses_for_a_while() {
        assert!(!deletion_check_due(None, 0, 1_000), "nothing asked");
        assert!(deletion_check_due(Some(1_000), 1_000, 1_010));
        assert!(
            !deletion_check_due(Some(1_000), 1_009, 1_010),
            "checked a moment ago"
        );
        assert!(
            !deletion_check_due(Some(1_000), 1_000, 1_000 + DELETION_WATCH_SECS + 1),
            "long ago: the sign-in on Keycloak's pages has expired"
        );
    }

    #[test]
    fn a_deletion_is_watched_for_a_while_after_the_user_set_off_and_never_without_one() {
        assert!(!deletion_watched(None, 1_000), "nothing asked");
        assert!(deletion_watched(Some(1_000), 1_000));
        assert!(deletion_watched(Some(1_000), 1_000 + DELETION_WATCH_SECS));
        assert!(!deletion_watched(
            Some(1_000),
            1_000 + DELETION_WATCH_SECS + 1
        ));
        // An idle page asks again well before a session's end while it is watched.
        const { assert!(DELETION_IDLE_CHECK_SECS >= DELETION_CHECK_EVERY_SECS) };
    }

    #[test]
    fn an_action_link_is_itself_a_return_path_and_keeps_its_own_return_path_whole() {
        let back = crate::ReturnTo::new(Some("/notes?tag=a&b=1"));
        let link = action_link("/auth/action/update-password", &back);
        assert_eq!(
            link,
            "/auth/action/update-password?return_to=/notes?tag=a%26b=1"
        );
        assert_eq!(
            crate::ReturnTo::new(Some(&link)).as_str(),
            link,
            "a sign-in comes back to it"
        );
        let (_, query) = link.split_once('?').unwrap_or_default();
        let read: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(
            read,
            [("return_to".to_owned(), "/notes?tag=a&b=1".to_owned())]
        );
    }

    #[test]
    fn the_outcome_travels_in_the_return_paths_query_and_reads_back() {
        let url = with_outcome(
            "/security?tab=2&outcome=success",
            AccountAction::UpdatePassword,
            ActionOutcome::Cancelled,
        );
        assert_eq!(
            url,
            "/security?tab=2&account_action=update-password&outcome=cancelled"
        );
        let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
        assert_eq!(
            outcome_in_query(query),
            Some((AccountAction::UpdatePassword, ActionOutcome::Cancelled))
        );
        assert_eq!(
            with_outcome("/", AccountAction::DeleteAccount, ActionOutcome::Success),
            "/?account_action=delete-account&outcome=success"
        );
        assert_eq!(
            outcome_in_query("account_action=nope&outcome=success"),
            None
        );
        assert_eq!(outcome_in_query("outcome=success"), None);
        assert_eq!(outcome_in_query(""), None);
    }
}
