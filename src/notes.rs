//! The shared notes board: a small real feature behind the authorization rules. Viewers read,
//! editors write and edit their own notes, admins edit and delete any. Every action is a server
//! function that checks its rule first; the UI only shows what the user may do.

use crate::auth_ui::ErrorNotice;
use crate::error::AppError;
use crate::pages::format_utc;
use crate::policy;
use leptos::prelude::*;
use leptos_meta::Title;
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

#[cfg(feature = "ssr")]
fn db() -> Result<sqlx::SqlitePool, AppError> {
    use_context::<crate::server::state::AppState>()
        .map(|s| s.db.clone())
        .ok_or(AppError::Internal)
}

#[cfg(feature = "ssr")]
fn db_error(e: sqlx::Error) -> AppError {
    tracing::error!(error = %e, "notes database");
    AppError::Internal
}

#[cfg(feature = "ssr")]
fn fail(e: AppError) -> AppError {
    crate::server::guard::set_status_for(&e);
    e
}

#[server(prefix = "/api", endpoint = "list_notes")]
pub async fn list_notes() -> Result<Board, AppError> {
    let user = crate::server::guard::require(&policy::read_notes()).await?;
    let notes = crate::server::db::list_notes(&db()?)
        .await
        .map_err(db_error)
        .map_err(fail)?;
    Ok(Board {
        can_create: policy::create_notes().allows(Some(&user)),
        notes: notes
            .into_iter()
            .map(|note| NoteView {
                can_edit: policy::can_edit(&user, &note),
                can_delete: policy::can_delete(&user, &note),
                note,
            })
            .collect(),
    })
}

#[server(prefix = "/api", endpoint = "create_note")]
pub async fn create_note(body: String) -> Result<Note, AppError> {
    let user = crate::server::guard::require(&policy::create_notes()).await?;
    let body = clean_body(&body).map_err(fail)?;
    crate::server::db::create_note(
        &db()?,
        &body,
        &user.subject,
        &user.display_name,
        crate::auth::unix_now(),
    )
    .await
    .map_err(db_error)
    .map_err(fail)
}

#[server(prefix = "/api", endpoint = "update_note")]
pub async fn update_note(id: i64, body: String) -> Result<Note, AppError> {
    let user = crate::server::guard::require(&policy::read_notes()).await?;
    let pool = db()?;
    let note = crate::server::db::get_note(&pool, id)
        .await
        .map_err(db_error)
        .map_err(fail)?
        .ok_or_else(|| fail(AppError::NotFound))?;
    if !policy::can_edit(&user, &note) {
        return Err(fail(AppError::Forbidden));
    }
    let body = clean_body(&body).map_err(fail)?;
    crate::server::db::update_note(&pool, id, &body, crate::auth::unix_now())
        .await
        .map_err(db_error)
        .map_err(fail)?
        .ok_or_else(|| fail(AppError::NotFound))
}

#[server(prefix = "/api", endpoint = "delete_note")]
pub async fn delete_note(id: i64) -> Result<(), AppError> {
    crate::server::guard::require(&policy::moderate_notes()).await?;
    if crate::server::db::delete_note(&db()?, id)
        .await
        .map_err(db_error)
        .map_err(fail)?
    {
        Ok(())
    } else {
        Err(fail(AppError::NotFound))
    }
}

#[component]
pub fn NotesPage() -> impl IntoView {
    view! {
        <Title text="Notes"/>
        <crate::auth_ui::Protected rule=policy::read_notes()>
            <NotesBoard/>
        </crate::auth_ui::Protected>
    }
}

fn action_error<T, S>(value: S) -> impl Fn() -> Option<String> + Copy
where
    S: Get<Value = Option<Result<T, AppError>>> + Copy + Send + Sync + 'static,
{
    move || match value.get() {
        Some(Err(e)) => Some(e.to_string()),
        _ => None,
    }
}

#[component]
fn NotesBoard() -> impl IntoView {
    let create = ServerAction::<CreateNote>::new();
    let update = ServerAction::<UpdateNote>::new();
    let delete = ServerAction::<DeleteNote>::new();
    let board = Resource::new(
        move || {
            (
                create.version().get(),
                update.version().get(),
                delete.version().get(),
            )
        },
        |_| list_notes(),
    );
    // A posted note leaves an empty composer.
    let composer_text = NodeRef::<leptos::html::Textarea>::new();
    Effect::new(move |_| {
        if matches!(create.value().get(), Some(Ok(_))) {
            if let Some(textarea) = composer_text.get_untracked() {
                textarea.set_value("");
            }
        }
    });
    let create_error = action_error(create.value());
    let update_error = action_error(update.value());
    let delete_error = action_error(delete.value());
    view! {
        <section class="card" data-testid="notes-board">
            <h1>"Notes"</h1>
            <Transition fallback=|| view! { <p class="muted">"Loading notes…"</p> }>
                {move || Suspend::new(async move {
                    match board.await {
                        Err(error) => view! { <ErrorNotice error/> }.into_any(),
                        Ok(b) => {
                            let composer = b.can_create.then(|| view! {
                                <ActionForm action=create attr:class="composer" attr:data-testid="note-composer">
                                    <label for="new-note">"New note"</label>
                                    <textarea id="new-note" node_ref=composer_text name="body" rows="3" maxlength=MAX_BODY_CHARS required
                                        placeholder="Write something for the team…"></textarea>
                                    <button type="submit" class="button">"Post note"</button>
                                </ActionForm>
                            });
                            let empty = b.notes.is_empty();
                            let can_create = b.can_create;
                            view! {
                                {composer}
                                <p class="error" role="alert">
                                    {create_error}{update_error}{delete_error}
                                </p>
                                {empty.then(|| view! {
                                    <p class="empty muted" data-testid="notes-empty">
                                        {if can_create { "No notes yet. Write the first one above." } else { "No notes yet." }}
                                    </p>
                                })}
                                <ul class="notes">
                                    {b.notes.into_iter().map(|v| view! { <NoteItem view=v update delete/> }).collect_view()}
                                </ul>
                            }.into_any()
                        }
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn NoteItem(
    view: NoteView,
    update: ServerAction<UpdateNote>,
    delete: ServerAction<DeleteNote>,
) -> impl IntoView {
    let editing = RwSignal::new(false);
    let NoteView {
        note,
        can_edit,
        can_delete,
    } = view;
    let id = note.id;
    let body = note.body.clone();
    let edit_body = note.body.clone();
    let edited = (note.updated_at != note.created_at).then_some(" · edited");
    view! {
        <li class="note" data-testid="note">
            {move || {
                if editing.get() {
                    let text = edit_body.clone();
                    view! {
                        <ActionForm action=update on:submit=move |_| editing.set(false) attr:class="composer">
                            <input type="hidden" name="id" value=id/>
                            <textarea name="body" rows="3" maxlength=MAX_BODY_CHARS required>{text}</textarea>
                            <div class="actions">
                                <button type="submit" class="button">"Save"</button>
                                <button type="button" class="button subtle" on:click=move |_| editing.set(false)>"Cancel"</button>
                            </div>
                        </ActionForm>
                    }
                    .into_any()
                } else {
                    view! { <p class="note-body">{body.clone()}</p> }.into_any()
                }
            }}
            <div class="note-meta">
                <span class="muted">{note.author_name.clone()} " · " {format_utc(note.created_at)} {edited}</span>
                <span class="note-actions">
                    {can_edit.then(|| view! {
                        <button type="button" class="button subtle" on:click=move |_| editing.update(|e| *e = !*e)>"Edit"</button>
                    })}
                    {can_delete.then(|| view! {
                        <ActionForm action=delete attr:class="inline">
                            <input type="hidden" name="id" value=id/>
                            <button type="submit" class="button danger">"Delete"</button>
                        </ActionForm>
                    })}
                </span>
            </div>
        </li>
    }
}
