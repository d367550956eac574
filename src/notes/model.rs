//! The note, and what the board shows of it.

use keycloak_bff::AppError;
use serde::{Deserialize, Serialize};

/// The longest note body accepted, in characters.
pub const MAX_BODY_CHARS: usize = 2000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub id: i64,
    pub body: String,
    /// The author's Keycloak subject; there is no local user record.
    pub author_sub: String,
    /// The author's display name when they wrote the note.
    pub author_name: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A note with what the current user may do with it (decided on the server).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoteView {
    pub note: Note,
    pub can_edit: bool,
    pub can_delete: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Board {
    pub notes: Vec<NoteView>,
    pub can_create: bool,
}

/// Trims a note body and checks its length.
pub fn clean_body(body: &str) -> Result<String, AppError> {
    let body = body.trim();
    if body.is_empty() {
        return Err(AppError::BadRequest("a note cannot be empty".into()));
    }
    if body.chars().count() > MAX_BODY_CHARS {
        return Err(AppError::BadRequest(format!(
            "a note has at most {MAX_BODY_CHARS} characters"
        )));
    }
    Ok(body.to_owned())
}
