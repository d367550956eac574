//! The notes board's server functions. Each checks its rule on the server first.

use crate::notes::model::{Board, Note};
#[cfg(feature = "ssr")]
use crate::notes::{db, model::clean_body, model::NoteView, rules};
use keycloak_bff::AppError;
use leptos::prelude::*;

#[cfg(feature = "ssr")]
fn pool() -> Result<sqlx::SqlitePool, AppError> {
    use_context::<crate::server::state::AppState>()
        .map(|s| s.db.clone())
        .ok_or(AppError::Internal)
}

#[server(prefix = "/api", endpoint = "list_notes")]
pub async fn list_notes() -> Result<Board, AppError> {
    use keycloak_bff::server::{fail, require};
    let user = require(&rules::read_notes()).await?;
    let notes = db::list_notes(&pool()?)
        .await
        .map_err(db::db_error)
        .map_err(fail)?;
    Ok(Board {
        can_create: rules::create_notes().allows(Some(&user)),
        notes: notes
            .into_iter()
            .map(|note| NoteView {
                can_edit: rules::can_edit(&user, &note),
                can_delete: rules::can_delete(&user, &note),
                note,
            })
            .collect(),
    })
}

#[server(prefix = "/api", endpoint = "create_note")]
pub async fn create_note(body: String) -> Result<Note, AppError> {
    use keycloak_bff::server::{fail, require, unix_now};
    let user = require(&rules::create_notes()).await?;
    let body = clean_body(&body).map_err(fail)?;
    db::create_note(
        &pool()?,
        &body,
        &user.subject,
        &user.display_name,
        unix_now(),
    )
    .await
    .map_err(db::db_error)
    .map_err(fail)
}

/// Writing over another author's note (an admin's power) needs a recent sign-in, like deleting
/// it: the same damage.
#[server(prefix = "/api", endpoint = "update_note")]
pub async fn update_note(id: i64, body: String) -> Result<Note, AppError> {
    use keycloak_bff::server::{fail, require, require_recent, unix_now};
    let user = require(&rules::read_notes()).await?;
    let pool = pool()?;
    let note = db::get_note(&pool, id)
        .await
        .map_err(db::db_error)
        .map_err(fail)?;
    // Someone who may not edit a note learns nothing from the answer: a missing note and another
    // author's answer alike (403). Only a moderator, who may edit any note, hears "not found".
    match note {
        Some(note) if rules::can_edit(&user, &note) => {
            if rules::change_needs_step_up(&user, &note) {
                require_recent(&rules::moderate_notes()).await?;
            }
        }
        None if rules::moderate_notes().allows(Some(&user)) => {
            return Err(fail(AppError::NotFound))
        }
        _ => return Err(fail(AppError::Forbidden)),
    }
    let body = clean_body(&body).map_err(fail)?;
    db::update_note(&pool, id, &body, unix_now())
        .await
        .map_err(db::db_error)
        .map_err(fail)?
        .ok_or_else(|| fail(AppError::NotFound))
}

/// Deleting another author's note needs a recent sign-in (step-up): without one the answer is
/// `StepUpRequired` and the page sends the admin through Keycloak's password page first.
#[server(prefix = "/api", endpoint = "delete_note")]
pub async fn delete_note(id: i64) -> Result<(), AppError> {
    use keycloak_bff::server::{fail, require, require_recent};
    let user = require(&rules::moderate_notes()).await?;
    let pool = pool()?;
    let note = db::get_note(&pool, id)
        .await
        .map_err(db::db_error)
        .map_err(fail)?
        .ok_or_else(|| fail(AppError::NotFound))?;
    if rules::change_needs_step_up(&user, &note) {
        require_recent(&rules::moderate_notes()).await?;
    }
    if db::delete_note(&pool, id)
        .await
        .map_err(db::db_error)
        .map_err(fail)?
    {
        Ok(())
    } else {
        Err(fail(AppError::NotFound))
    }
}
