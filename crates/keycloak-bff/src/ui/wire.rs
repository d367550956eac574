//! Reads what the server hands the browser (the page's user and settings in the hydration data,
//! the session's status from the auth routes and the event stream) with the browser's own
//! `JSON.parse`, instead of `serde_json` compiled to WebAssembly.
//!
//! Why: `serde_json` and the `Deserialize` code of these types were about 25 KB of gzip of every
//! page's first download (the demo's main wasm: 226,682 → 204,332 B of gzip with these readers
//! instead, `cargo leptos build --release --split --frontend-only`), and the library needs
//! nothing else of it in the browser (issue 25). The server still writes them with `serde`, so the wire format
//! is unchanged: these readers follow the types' serde form (field names, defaults for absent
//! fields, an enum as its variant's name or `{"Variant": value}`), and the tests below decode what
//! `serde_json` wrote for every field of every type, so a field added to one of them and not here
//! fails them.
//!
//! A value that does not fit is `None` (or the field's default), never a panic: the browser then
//! shows the signed-out state or the default settings, as a failed decode did before.
//!
//! Catalogue: G04 (what the browser reads carries no token: the user, the settings and the
//! `SessionStatus` of the event stream); nothing read here decides access, which the server checks
//! on every request again.

use crate::config::UiConfig;
use crate::error::AppError;
use keycloak_bff_core::level::AcrLevels;
use keycloak_bff_core::refresh::KeepAlive;
use keycloak_bff_core::status::SessionStatus;
use keycloak_bff_core::KeycloakUser;

/// A parsed JSON value, as the readers need it: the browser's (`JsValue`), or `serde_json`'s in
/// the tests.
pub(crate) trait Json: Sized {
    /// The member `name` of an object; `None` when absent or `null`.
    fn get(&self, name: &str) -> Option<Self>;
    fn string(&self) -> Option<String>;
    fn int(&self) -> Option<i64>;
    fn boolean(&self) -> Option<bool>;
    fn items(&self) -> Option<Vec<Self>>;
}

fn text<J: Json>(v: &J, name: &str) -> Option<String> {
    v.get(name)?.string()
}

fn int<J: Json>(v: &J, name: &str) -> Option<i64> {
    v.get(name)?.int()
}

fn flag<J: Json>(v: &J, name: &str) -> bool {
    v.get(name).and_then(|b| b.boolean()).unwrap_or(false)
}

fn texts<J: Json>(v: &J, name: &str) -> Vec<String> {
    v.get(name)
        .and_then(|list| list.items())
        .map(|items| items.iter().filter_map(Json::string).collect())
        .unwrap_or_default()
}

/// A [`KeycloakUser`]; `None` without its required fields.
pub(crate) fn user<J: Json>(v: &J) -> Option<KeycloakUser> {
    Some(KeycloakUser {
        subject: text(v, "subject")?,
        username: text(v, "username")?,
        display_name: text(v, "display_name")?,
        email: text(v, "email"),
        realm_roles: texts(v, "realm_roles"),
        client_roles: texts(v, "client_roles"),
        groups: texts(v, "groups"),
        session_expires_at: int(v, "session_expires_at")?,
        auth_time: int(v, "auth_time"),
        impersonator: text(v, "impersonator"),
        acr: text(v, "acr"),
        amr: texts(v, "amr"),
    })
}

/// An [`AppError`] variant that carries a text.
type MakeError = fn(String) -> AppError;

/// An [`AppError`] (`"Forbidden"`, `{"LevelRequired": "otp"}`); one this browser does not know
/// is [`AppError::Internal`].
pub(crate) fn error<J: Json>(v: &J) -> AppError {
    if let Some(name) = v.string() {
        return match name.as_str() {
            "NotSignedIn" => AppError::NotSignedIn,
            "Forbidden" => AppError::Forbidden,
            "StepUpRequired" => AppError::StepUpRequired,
            "NotWhileImpersonating" => AppError::NotWhileImpersonating,
            "IdpUnavailable" => AppError::IdpUnavailable,
            "StoreUnavailable" => AppError::StoreUnavailable,
            "NotFound" => AppError::NotFound,
            _ => AppError::Internal,
        };
    }
    let with_text: [(&str, MakeError); 5] = [
        ("InvalidToken", AppError::InvalidToken),
        ("LevelRequired", AppError::LevelRequired),
        ("Upstream", AppError::Upstream),
        ("BadRequest", AppError::BadRequest),
        ("ServerFn", AppError::ServerFn),
    ];
    with_text
        .into_iter()
        .find_map(|(name, make)| text(v, name).map(make))
        .unwrap_or(AppError::Internal)
}

/// The page's user state (`UserState` of `ui/context.rs`: `{"Ok": user or null}` or
/// `{"Err": error}`).
pub(crate) fn user_state<J: Json>(v: &J) -> Result<Option<KeycloakUser>, AppError> {
    if let Some(failure) = v.get("Err") {
        return Err(error(&failure));
    }
    Ok(v.get("Ok").and_then(|u| user(&u)))
}

/// The [`UiConfig`]; a missing field takes its default.
pub(crate) fn ui_config<J: Json>(v: &J) -> UiConfig {
    let defaults = UiConfig::default();
    UiConfig {
        route_prefix: text(v, "route_prefix").unwrap_or(defaults.route_prefix),
        channel: text(v, "channel").unwrap_or(defaults.channel),
        expiry_warning_secs: int(v, "expiry_warning_secs").unwrap_or(defaults.expiry_warning_secs),
        step_up_max_age_secs: int(v, "step_up_max_age_secs")
            .unwrap_or(defaults.step_up_max_age_secs),
        clock_leeway_secs: int(v, "clock_leeway_secs").unwrap_or(defaults.clock_leeway_secs),
        step_up_allows_impersonation: flag(v, "step_up_allows_impersonation"),
        keep_alive: match text(v, "keep_alive").as_deref() {
            Some("always") => KeepAlive::Always,
            _ => KeepAlive::Activity,
        },
        acr_levels: AcrLevels::new(texts(v, "acr_levels")).unwrap_or_default(),
    }
}

/// A [`SessionStatus`]; `None` without `signed_in`.
pub(crate) fn status<J: Json>(v: &J) -> Option<SessionStatus> {
    Some(SessionStatus {
        signed_in: v.get("signed_in")?.boolean()?,
        access_expires_at: int(v, "access_expires_at"),
        session_expires_at: int(v, "session_expires_at"),
        user: v.get("user").and_then(|u| user(&u)),
        check_in_secs: int(v, "check_in_secs"),
        at_maximum: flag(v, "at_maximum"),
        error: text(v, "error"),
    })
}

#[cfg(feature = "hydrate")]
mod browser {
    use super::Json;
    use wasm_bindgen::{JsCast, JsValue};

    impl Json for JsValue {
        fn get(&self, name: &str) -> Option<Self> {
            if !self.is_object() {
                return None;
            }
            js_sys::Reflect::get(self, &JsValue::from_str(name))
                .ok()
                .filter(|v| !v.is_undefined() && !v.is_null())
        }

        fn string(&self) -> Option<String> {
            self.as_string()
        }

        fn int(&self) -> Option<i64> {
            self.as_f64()
                .filter(|n| n.fract() == 0.0 && n.abs() <= 9_007_199_254_740_991.0)
                .map(|n| n as i64)
        }

        fn boolean(&self) -> Option<bool> {
            self.as_bool()
        }

        fn items(&self) -> Option<Vec<Self>> {
            self.dyn_ref::<js_sys::Array>().map(|a| a.iter().collect())
        }
    }

    /// The browser's `JSON.parse` of `text`; `None` when it is not JSON.
    pub(crate) fn parse(text: &str) -> Option<JsValue> {
        js_sys::JSON::parse(text).ok()
    }
}

#[cfg(feature = "hydrate")]
pub(crate) use browser::parse;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    impl Json for Value {
        fn get(&self, name: &str) -> Option<Self> {
            self.as_object()?
                .get(name)
                .filter(|v| !v.is_null())
                .cloned()
        }
        fn string(&self) -> Option<String> {
            self.as_str().map(str::to_owned)
        }
        fn int(&self) -> Option<i64> {
            self.as_i64()
        }
        fn boolean(&self) -> Option<bool> {
            self.as_bool()
        }
        fn items(&self) -> Option<Vec<Self>> {
            self.as_array().cloned()
        }
    }

    fn written<T: serde::Serialize>(value: &T) -> Value {
        serde_json::to_value(value).unwrap_or(Value::Null)
    }

    /// Every field set (a struct literal: a new field does not compile until it is listed here).
    fn everything() -> KeycloakUser {
        KeycloakUser {
            subject: "0a1b".into(),
            username: "alice".into(),
            display_name: "Alice Admin".into(),
            email: Some("alice@example.com".into()),
            realm_roles: vec!["admin".into(), "user".into()],
            client_roles: vec!["notes-editor".into()],
            groups: vec!["/staff".into()],
            session_expires_at: 1_800_000_000,
            auth_time: Some(1_799_990_000),
            impersonator: Some("root".into()),
            acr: Some("otp".into()),
            amr: vec!["pwd".into(), "otp".into()],
        }
    }

    #[test]
    fn a_user_reads_back_as_serde_wrote_it_with_every_field_and_with_only_the_required_ones() {
        let full = everything();
        assert_eq!(user(&written(&full)), Some(full));
        let bare = KeycloakUser {
            subject: "s".into(),
            username: "u".into(),
            display_name: "U".into(),
            session_expires_at: 1,
            ..KeycloakUser::default()
        };
        assert_eq!(user(&written(&bare)), Some(bare));
        assert_eq!(user(&serde_json::json!({ "username": "u" })), None);
    }

    /// Every variant of [`AppError`]: a new one does not compile until it is matched here, and
    /// then listed in the test below.
    fn listed(error: &AppError) {
        match error {
            AppError::NotSignedIn
            | AppError::InvalidToken(_)
            | AppError::Forbidden
            | AppError::StepUpRequired
            | AppError::LevelRequired(_)
            | AppError::NotWhileImpersonating
            | AppError::IdpUnavailable
            | AppError::StoreUnavailable
            | AppError::Upstream(_)
            | AppError::BadRequest(_)
            | AppError::NotFound
            | AppError::Internal
            | AppError::ServerFn(_) => {}
        }
    }

    #[test]
    fn the_pages_user_state_reads_back_signed_in_signed_out_and_every_error() {
        let states: Vec<Result<Option<KeycloakUser>, AppError>> = vec![
            Ok(Some(everything())),
            Ok(None),
            Err(AppError::NotSignedIn),
            Err(AppError::InvalidToken("expired".into())),
            Err(AppError::Forbidden),
            Err(AppError::StepUpRequired),
            Err(AppError::LevelRequired("otp".into())),
            Err(AppError::NotWhileImpersonating),
            Err(AppError::IdpUnavailable),
            Err(AppError::StoreUnavailable),
            Err(AppError::Upstream("orders".into())),
            Err(AppError::BadRequest("query".into())),
            Err(AppError::NotFound),
            Err(AppError::Internal),
            Err(AppError::ServerFn("offline".into())),
        ];
        for state in states {
            if let Err(error) = &state {
                listed(error);
            }
            assert_eq!(user_state(&written(&state)), state);
        }
        assert_eq!(
            error(&serde_json::json!("SomethingNew")),
            AppError::Internal
        );
    }

    #[test]
    fn the_settings_read_back_as_serde_wrote_them_and_default_when_absent() {
        let config = UiConfig {
            route_prefix: "/sso".into(),
            channel: "tabs".into(),
            expiry_warning_secs: 60,
            step_up_max_age_secs: 10,
            clock_leeway_secs: 5,
            step_up_allows_impersonation: true,
            keep_alive: KeepAlive::Always,
            acr_levels: AcrLevels::new(vec!["password".into(), "otp".into()]).unwrap_or_default(),
        };
        assert_eq!(ui_config(&written(&config)), config);
        assert_eq!(
            ui_config(&written(&UiConfig::default())),
            UiConfig::default()
        );
        assert_eq!(ui_config(&serde_json::json!({})), UiConfig::default());
    }

    #[test]
    fn a_session_status_reads_back_as_serde_wrote_it() {
        let full = SessionStatus {
            signed_in: true,
            access_expires_at: Some(1_800_000_100),
            session_expires_at: Some(1_800_000_200),
            user: Some(everything()),
            check_in_secs: Some(30),
            at_maximum: true,
            error: Some("idp_unavailable".into()),
        };
        assert_eq!(status(&written(&full)), Some(full));
        let signed_out = SessionStatus {
            signed_in: false,
            access_expires_at: None,
            session_expires_at: None,
            user: None,
            check_in_secs: None,
            at_maximum: false,
            error: None,
        };
        assert_eq!(status(&written(&signed_out)), Some(signed_out));
        assert_eq!(status(&serde_json::json!({ "user": null })), None);
        assert_eq!(status(&serde_json::json!([1, 2])), None);
    }
}
