//! The notes board's queries (SQLite; the schema is in `migrations/`, applied at start-up).

use crate::notes::model::Note;
use keycloak_bff::AppError;
use sqlx::SqlitePool;

/// A database failure, logged here and answered as a plain 500.
pub fn db_error(e: sqlx::Error) -> AppError {
    tracing::error!(error = %e, "notes database");
    AppError::Internal
}

type NoteRow = (i64, String, String, String, i64, i64);

fn note((id, body, author_sub, author_name, created_at, updated_at): NoteRow) -> Note {
    Note {
        id,
        body,
        author_sub,
        author_name,
        created_at,
        updated_at,
    }
}

const COLUMNS: &str = "id, body, author_sub, author_name, created_at, updated_at";

pub async fn list_notes(pool: &SqlitePool) -> Result<Vec<Note>, sqlx::Error> {
    let rows: Vec<NoteRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM notes ORDER BY created_at DESC, id DESC LIMIT 500"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(note).collect())
}

pub async fn get_note(pool: &SqlitePool, id: i64) -> Result<Option<Note>, sqlx::Error> {
    let row: Option<NoteRow> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM notes WHERE id = ?"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(note))
}

pub async fn create_note(
    pool: &SqlitePool,
    body: &str,
    author_sub: &str,
    author_name: &str,
    now: i64,
) -> Result<Note, sqlx::Error> {
    let row: NoteRow = sqlx::query_as(&format!(
        "INSERT INTO notes (body, author_sub, author_name, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?) RETURNING {COLUMNS}"
    ))
    .bind(body)
    .bind(author_sub)
    .bind(author_name)
    .bind(now)
    .bind(now)
    .fetch_one(pool)
    .await?;
    Ok(note(row))
}

pub async fn update_note(
    pool: &SqlitePool,
    id: i64,
    body: &str,
    now: i64,
) -> Result<Option<Note>, sqlx::Error> {
    let row: Option<NoteRow> = sqlx::query_as(&format!(
        "UPDATE notes SET body = ?, updated_at = ? WHERE id = ? RETURNING {COLUMNS}"
    ))
    .bind(body)
    .bind(now)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(note))
}

pub async fn delete_note(pool: &SqlitePool, id: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM notes WHERE id = ?")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}
