//! Who may do what on the notes board, named once and used by the components that hide UI, the
//! server functions, the page and the JSON API alike.

use crate::notes::model::Note;
use keycloak_bff::{KeycloakUser, Rule};

/// Who reads the notes board: the app's `viewer` or `editor` client roles, or the realm's `admin`.
pub fn read_notes() -> Rule {
    Rule::AnyOf(vec![
        Rule::client_role("viewer"),
        Rule::client_role("editor"),
        Rule::realm_role("admin"),
    ])
}

/// Who writes notes: the app's `editor` client role.
pub fn create_notes() -> Rule {
    Rule::client_role("editor")
}

/// Who edits or deletes any note: the realm role `admin`.
pub fn moderate_notes() -> Rule {
    Rule::realm_role("admin")
}

/// Editors edit their own notes; admins edit any.
pub fn can_edit(user: &KeycloakUser, note: &Note) -> bool {
    moderate_notes().allows(Some(user))
        || (create_notes().allows(Some(user)) && note.author_sub == user.subject)
}

/// Only admins delete notes.
pub fn can_delete(user: &KeycloakUser, _note: &Note) -> bool {
    moderate_notes().allows(Some(user))
}

/// Changing someone else's note, by deleting it or by writing over its body (the same damage), is
/// dangerous: it needs a recent sign-in with the password (step-up, `auth.step_up_max_age_secs`).
/// One's own notes do not.
pub fn change_needs_step_up(user: &KeycloakUser, note: &Note) -> bool {
    note.author_sub != user.subject
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changing_someone_elses_note_needs_a_step_up_and_ones_own_does_not() {
        let admin = user("alice", &["admin"], &[]);
        assert!(change_needs_step_up(&admin, &note_by("erin")));
        assert!(!change_needs_step_up(&admin, &note_by("alice")));
    }
    use keycloak_bff::Access;

    fn user(sub: &str, realm: &[&str], client: &[&str]) -> KeycloakUser {
        KeycloakUser {
            subject: sub.into(),
            username: sub.into(),
            display_name: sub.into(),
            email: None,
            realm_roles: realm.iter().map(|s| s.to_string()).collect(),
            client_roles: client.iter().map(|s| s.to_string()).collect(),
            groups: vec![],
            session_expires_at: 0,
            ..KeycloakUser::default()
        }
    }

    fn note_by(sub: &str) -> Note {
        Note {
            id: 1,
            body: "b".into(),
            author_sub: sub.into(),
            author_name: sub.into(),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn viewers_read_but_neither_write_nor_moderate() {
        let v = user("v", &["user"], &["viewer"]);
        assert!(read_notes().allows(Some(&v)));
        assert_eq!(create_notes().check(Some(&v)), Access::Forbidden);
        assert!(!can_edit(&v, &note_by("v")));
        assert!(!can_delete(&v, &note_by("v")));
    }

    #[test]
    fn editors_write_and_edit_only_their_own_notes() {
        let e = user("e", &[], &["editor", "viewer"]);
        assert!(create_notes().allows(Some(&e)));
        assert!(can_edit(&e, &note_by("e")));
        assert!(!can_edit(&e, &note_by("someone-else")));
        assert!(!can_delete(&e, &note_by("e")));
    }

    #[test]
    fn admins_edit_and_delete_any_note() {
        let a = user("a", &["admin"], &[]);
        assert!(read_notes().allows(Some(&a)));
        assert!(can_edit(&a, &note_by("x")) && can_delete(&a, &note_by("x")));
    }

    #[test]
    fn roles_of_the_same_name_elsewhere_grant_nothing() {
        // `admin` as a client role and `editor` as a realm role are not the roles the rules name.
        let impostor = user("i", &["editor", "viewer"], &["admin"]);
        assert_eq!(read_notes().check(Some(&impostor)), Access::Forbidden);
        assert_eq!(create_notes().check(Some(&impostor)), Access::Forbidden);
        assert!(!can_edit(&impostor, &note_by("i")));
        assert!(!can_delete(&impostor, &note_by("i")));
    }

    #[test]
    fn nobody_signed_in_gets_not_signed_in() {
        assert_eq!(read_notes().check(None), Access::NotSignedIn);
        assert_eq!(moderate_notes().check(None), Access::NotSignedIn);
    }
}
