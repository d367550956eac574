//! The app's embedded database (SQLite, next to the sessions) and its migrations.

use crate::notes::Note;
use sqlx::SqlitePool;

/// Migrations in order; each runs once, recorded in `kc_schema_version`.
const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../../migrations/0001_notes.sql"))];

pub async fn migrate(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS kc_schema_version (version INTEGER PRIMARY KEY NOT NULL)",
    )
    .execute(pool)
    .await?;
    for (version, sql) in MIGRATIONS {
        let done: Option<i64> =
            sqlx::query_scalar("SELECT version FROM kc_schema_version WHERE version = ?")
                .bind(version)
                .fetch_optional(pool)
                .await?;
        if done.is_some() {
            continue;
        }
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO kc_schema_version (version) VALUES (?)")
            .bind(version)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version, "applied database migration");
    }
    Ok(())
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
