//! The components that show or hide UI by Keycloak roles and groups, and the pages shown instead.
//! They only decide what is shown: every server function checks the same [`Rule`] again.

use crate::error::AppError;
use crate::ui::context::{
    current_path, level_href, login_href, now_secs, step_up_href, use_session_state, use_ui_config,
    WithUser,
};
use keycloak_bff_core::level::{check_level, LevelCheck};
use keycloak_bff_core::step_up::{step_up as check_step_up, StepUp};
use keycloak_bff_core::KeycloakUser;
use keycloak_bff_core::{Access, Rule};
use leptos::prelude::*;

/// Shows `children` when `rule` allows the signed-in user, otherwise `fallback` (nothing by
/// default).
#[component]
pub fn Authorized(
    rule: Rule,
    #[prop(optional, into)] fallback: ViewFn,
    children: ChildrenFn,
) -> impl IntoView {
    view! {
        <WithUser render=move |user| match user {
            Ok(u) if rule.allows(u.as_ref()) => children().into_any(),
            _ => fallback.run(),
        }/>
    }
}

/// Shows `children` when the signed-in user's sign-in reached the level `acr` (ranked by
/// `keycloak.acr_levels`: `otp` meets `otp` and `password`); to a user signed in more weakly, a
/// prompt that sends the browser through Keycloak for that level (its one-time code, say) and
/// back to this page; to an administrator acting as the user, the refusal the server gives
/// (unless `auth.step_up_allows_impersonation`); to nobody signed in, nothing. Only what is shown: the server function
/// behind it checks again with [`crate::server::require_acr`]. Content that is loaded anyway can
/// decide the level in its own resource and show [`LevelPrompt`] (the demo's
/// `src/directory.rs`).
#[component]
pub fn AtLevel(
    /// The `acr` value the content needs (`otp`).
    #[prop(into)]
    acr: String,
    /// What the prompt says the stronger sign-in is for.
    #[prop(optional, into)]
    purpose: Option<String>,
    children: ChildrenFn,
) -> impl IntoView {
    view! {
        <WithUser render=move |user| {
            let config = use_ui_config();
            let check = |u: &KeycloakUser| {
                check_level(u, &config.acr_levels, &acr, config.step_up_allows_impersonation)
            };
            match user {
                Ok(Some(u)) if check(&u) == LevelCheck::Allowed => children().into_any(),
                Ok(Some(u)) if check(&u) == LevelCheck::NotWhileImpersonating => {
                    let error = AppError::NotWhileImpersonating;
                    view! { <ErrorNotice error/> }.into_any()
                }
                Ok(Some(_)) => match purpose.clone() {
                    Some(purpose) => view! { <LevelPrompt acr=acr.clone() purpose/> }.into_any(),
                    None => view! { <LevelPrompt acr=acr.clone()/> }.into_any(),
                },
                _ => ().into_any(),
            }
        }/>
    }
}

/// The prompt for a stronger sign-in: what `purpose` needs the level `acr`, and the link through
/// Keycloak for it (its one-time code, say) that comes back to this page. [`AtLevel`] shows it;
/// a page that decides the level itself (in a resource that also loads the content, say) shows
/// it directly.
#[component]
pub fn LevelPrompt(
    /// The `acr` value asked for (`otp`).
    #[prop(into)]
    acr: String,
    /// What needs it ("A user's details"); "This part" when not given.
    #[prop(optional, into)]
    purpose: Option<String>,
) -> impl IntoView {
    let href = level_href(&acr, &current_path());
    let purpose = purpose.unwrap_or_else(|| "This part".to_owned());
    view! {
        <section class="card notice" data-testid="level-prompt" data-acr=acr>
            <h2>"Verify it is you"</h2>
            <p>
                {purpose}
                " needs a stronger sign-in: a code from your authenticator app, on Keycloak's page."
            </p>
            <a class="button" rel="external" href=href>"Verify with your authenticator"</a>
        </section>
    }
}

/// Shows `children` to anyone signed in.
#[component]
pub fn SignedIn(#[prop(optional, into)] fallback: ViewFn, children: ChildrenFn) -> impl IntoView {
    view! { <Authorized rule=Rule::SignedIn fallback children/> }
}

/// Shows `children` to users with the realm role `role`.
#[component]
pub fn HasRealmRole(
    role: &'static str,
    #[prop(optional, into)] fallback: ViewFn,
    children: ChildrenFn,
) -> impl IntoView {
    view! { <Authorized rule=Rule::realm_role(role) fallback children/> }
}

/// Shows `children` to users with the role `role` of this app's client.
#[component]
pub fn HasClientRole(
    role: &'static str,
    #[prop(optional, into)] fallback: ViewFn,
    children: ChildrenFn,
) -> impl IntoView {
    view! { <Authorized rule=Rule::client_role(role) fallback children/> }
}

/// Shows `children` to members of the group at `path` (and, with `include_subgroups`, of any group
/// below it).
#[component]
pub fn InGroup(
    path: &'static str,
    #[prop(optional)] include_subgroups: bool,
    #[prop(optional, into)] fallback: ViewFn,
    children: ChildrenFn,
) -> impl IntoView {
    view! { <Authorized rule=Rule::group(path, include_subgroups) fallback children/> }
}

/// Sets the HTTP status of a server-rendered page (nothing in the browser).
pub fn set_page_status(error: &AppError) {
    #[cfg(feature = "ssr")]
    crate::server::web::guard::set_response_status(error);
    #[cfg(not(feature = "ssr"))]
    let _ = error;
}

/// During SSR, answers the page with a redirect to `href` (a sign-in that comes back). In the
/// browser nothing navigates on its own: the page shows a panel with the link.
fn redirect_to(href: &str) {
    #[cfg(feature = "ssr")]
    crate::server::web::guard::redirect_page(href);
    #[cfg(not(feature = "ssr"))]
    let _ = href;
}

/// A page that only users allowed by `rule` may open. Signed out: on the server a redirect to
/// sign-in that comes back here; in the browser (the session ended while the page was open) a
/// sign-in panel. Signed in without the rule: the 403 page, with status 403 when rendered on the
/// server. With `step_up`, a sign-in with the password within the last
/// `auth.step_up_max_age_secs` is needed too: otherwise the server answers with a redirect to a
/// sign-in that asks for the password again (`prompt=login`) and comes back here. Its server
/// functions check the same with [`crate::server::require_recent`].
#[component]
pub fn Protected(
    rule: Rule,
    #[prop(optional)] step_up: bool,
    children: ChildrenFn,
) -> impl IntoView {
    let config = use_ui_config();
    let (max_age, leeway, impersonation) = (
        config.step_up_max_age_secs,
        config.clock_leeway_secs,
        config.step_up_allows_impersonation,
    );
    // The browser's clock may differ a little: the server's own leeway. The server decides for
    // the data either way.
    let step_up_check = move |u: Option<&KeycloakUser>| {
        u.map_or(StepUp::NeedsRecentSignIn, |u| {
            check_step_up(u, now_secs(), max_age, leeway, impersonation)
        })
    };
    view! {
        <WithUser
            render=move |user| match user {
                Err(error) => view! { <ErrorNotice error/> }.into_any(),
                Ok(u) => match rule.check(u.as_ref()) {
                    Access::Allowed if step_up => match step_up_check(u.as_ref()) {
                        StepUp::Allowed => children().into_any(),
                        StepUp::NeedsRecentSignIn => {
                            let here = current_path();
                            redirect_to(&step_up_href(&here));
                            view! { <StepUpNeeded return_to=here/> }.into_any()
                        }
                        StepUp::NotWhileImpersonating => {
                            let error = AppError::NotWhileImpersonating;
                            view! { <ErrorNotice error/> }.into_any()
                        }
                    },
                    Access::Allowed => children().into_any(),
                    Access::NotSignedIn => {
                        let here = current_path();
                        redirect_to(&login_href(&here));
                        view! { <SignInNeeded return_to=here/> }.into_any()
                    }
                    Access::Forbidden => view! { <Forbidden/> }.into_any(),
                },
            }
        />
    }
}

/// What the panels below show: one view for all of them, so that every gate's fallbacks cost the
/// browser's download one view type (issue 25).
struct Panel {
    class: &'static str,
    test_id: Option<&'static str>,
    status: Option<u16>,
    title: &'static str,
    text: String,
    /// A second, quieter line.
    note: Option<&'static str>,
    action: Option<PanelLink>,
}

/// A panel's button.
struct PanelLink {
    href: String,
    label: &'static str,
    class: &'static str,
    /// The browser follows it itself (a sign-in through Keycloak), not the router.
    external: bool,
}

impl Panel {
    fn view(self) -> impl IntoView {
        let note = self.note.map(|note| view! { <p class="muted">{note}</p> });
        let action = self.action.map(|link| {
            let rel = link.external.then_some("external");
            view! { <a class=link.class rel=rel href=link.href>{link.label}</a> }
        });
        view! {
            <section class=self.class data-testid=self.test_id data-status=self.status>
                <h1>{self.title}</h1>
                <p>{self.text}</p>
                {note}
                <div class="actions">{action}</div>
            </section>
        }
    }
}

/// Shown in place of a page that needs a signed-in user.
#[component]
pub fn SignInNeeded(return_to: String) -> impl IntoView {
    let ended = use_session_state().is_some_and(|s| s.ended.get_untracked());
    let title = if ended {
        "Your session has ended"
    } else {
        "Please sign in"
    };
    Panel {
        class: "card notice",
        test_id: Some("sign-in-needed"),
        status: None,
        title,
        text: "This page is for signed-in users. Sign in with Keycloak to come back to it."
            .to_owned(),
        note: None,
        action: Some(PanelLink {
            href: login_href(&return_to),
            label: "Sign in",
            class: "button primary",
            external: true,
        }),
    }
    .view()
}

/// Shown in place of a page or an action that needs a recent sign-in with the password.
#[component]
pub fn StepUpNeeded(return_to: String) -> impl IntoView {
    Panel {
        class: "card notice",
        test_id: Some("step-up-needed"),
        status: None,
        title: "Confirm it is you",
        text: "This needs a recent sign-in with your password. Keycloak asks for it once more, then brings you back here.".to_owned(),
        note: None,
        action: Some(PanelLink {
            href: step_up_href(&return_to),
            label: "Confirm with Keycloak",
            class: "button primary",
            external: true,
        }),
    }
    .view()
}

/// The 403 page.
#[component]
pub fn Forbidden() -> impl IntoView {
    set_page_status(&AppError::Forbidden);
    Panel {
        class: "card notice",
        test_id: None,
        status: Some(403),
        title: "403 · Not allowed",
        text: "Your Keycloak account does not have the role or group this page needs.".to_owned(),
        note: Some("If you think you should have access, ask an administrator of the realm."),
        action: Some(PanelLink {
            href: "/".to_owned(),
            label: "Back to the home page",
            class: "button",
            external: false,
        }),
    }
    .view()
}

/// An error from a server function, shown in place, with the matching HTTP status on SSR.
#[component]
pub fn ErrorNotice(error: AppError) -> impl IntoView {
    set_page_status(&error);
    let here = current_path();
    let action = match error {
        AppError::NotSignedIn => Some((login_href(&here), "Sign in")),
        AppError::StepUpRequired => Some((step_up_href(&here), "Confirm with Keycloak")),
        AppError::LevelRequired(ref acr) => {
            Some((level_href(acr, &here), "Verify with your authenticator"))
        }
        _ => None,
    };
    Panel {
        class: "card notice error",
        test_id: None,
        status: Some(error.status_code()),
        title: "Something is in the way",
        text: error.to_string(),
        note: None,
        action: action.map(|(href, label)| PanelLink {
            href,
            label,
            class: "button",
            external: true,
        }),
    }
    .view()
}
