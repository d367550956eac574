//! `/api/v1/notes` for other programs (a bearer token) and the browser (its session): the same
//! rules as the server functions, answered as JSON.

use crate::notes::model::{clean_body, Note};
use crate::notes::{db, rules};
use crate::server::state::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use keycloak_bff::server::{unix_now, ApiUser};
use keycloak_bff::AppError;
use serde::Deserialize;

/// `GET /api/v1/notes`: the notes (rule: read notes).
async fn list(State(state): State<AppState>, caller: ApiUser) -> Result<Json<Vec<Note>>, AppError> {
    caller.require(&rules::read_notes())?;
    Ok(Json(db::list_notes(&state.db).await.map_err(db::db_error)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewNote {
    body: String,
}

/// `POST /api/v1/notes` with `{"body": "..."}`: creates a note (rule: create notes).
async fn create(
    State(state): State<AppState>,
    caller: ApiUser,
    body: Result<Json<NewNote>, JsonRejection>,
) -> Result<(StatusCode, Json<Note>), AppError> {
    let user = caller.require(&rules::create_notes())?;
    let Json(new) = body.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let text = clean_body(&new.body)?;
    let note = db::create_note(
        &state.db,
        &text,
        &user.subject,
        &user.display_name,
        unix_now(),
    )
    .await
    .map_err(db::db_error)?;
    Ok((StatusCode::CREATED, Json(note)))
}

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/notes", get(list).post(create))
}
