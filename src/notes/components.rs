//! The notes board's page and its parts.

use crate::format::format_utc;
use crate::notes::api::{list_notes, CreateNote, DeleteNote, UpdateNote};
use crate::notes::model::{NoteView, MAX_BODY_CHARS};
use crate::notes::rules;
use keycloak_bff::{needs_step_up, step_up_for, take_stepped_up, AppError, ErrorNotice, Protected};
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn NotesPage() -> impl IntoView {
    view! {
        <Title text="Notes"/>
        <Protected rule=rules::read_notes()>
            <NotesBoard/>
        </Protected>
    }
}

fn action_error<T, S>(value: S) -> impl Fn() -> Option<String> + Copy
where
    S: Get<Value = Option<Result<T, AppError>>> + Copy + Send + Sync + 'static,
{
    move || match value.get() {
        // Not an error to show: the page is on its way to Keycloak's password page.
        Some(Err(AppError::StepUpRequired)) => None,
        Some(Err(e)) => Some(e.to_string()),
        _ => None,
    }
}

/// The step-up key of a note's deletion (the note's id travels in this tab's storage).
const DELETE_AFTER_STEP_UP: &str = "notes.delete";
/// The step-up key of an edit of another author's note (`<id>\n<body>` in this tab's storage).
const UPDATE_AFTER_STEP_UP: &str = "notes.update";

#[component]
fn NotesBoard() -> impl IntoView {
    let create = ServerAction::<CreateNote>::new();
    let update = ServerAction::<UpdateNote>::new();
    let delete = ServerAction::<DeleteNote>::new();
    // The versions' signals are taken now, while the actions surely live, and read with
    // `try_get`: a server render that the client abandoned (a closed connection) disposes the
    // actions and their signals while the resource may still read them; that must not panic the
    // worker.
    let versions = [create.version(), update.version(), delete.version()];
    let board = Resource::new(
        move || versions.map(|v| v.try_get().unwrap_or_default()),
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
    // Deleting someone else's note needs a recent sign-in: the server refuses with
    // StepUpRequired, the page remembers which note and goes through Keycloak's password page;
    // back here, it deletes the note.
    // The action forgets its input once answered: keep the id of the last deletion asked for.
    let last_delete = StoredValue::new(None::<i64>);
    Effect::new(move |_| {
        if let Some(input) = delete.input().get() {
            last_delete.set_value(Some(input.id));
        }
    });
    Effect::new(move |_| {
        if needs_step_up(&delete.value().get()) {
            if let Some(id) = last_delete.get_value() {
                step_up_for(DELETE_AFTER_STEP_UP, &id.to_string());
            }
        }
    });
    Effect::new(move |_| {
        if let Some(id) = take_stepped_up(DELETE_AFTER_STEP_UP).and_then(|id| id.parse().ok()) {
            delete.dispatch(DeleteNote { id });
        }
    });
    // Writing over someone else's note needs the same: the edit is kept, and saved on return.
    let last_update = StoredValue::new(None::<(i64, String)>);
    Effect::new(move |_| {
        if let Some(input) = update.input().get() {
            last_update.set_value(Some((input.id, input.body.clone())));
        }
    });
    Effect::new(move |_| {
        if needs_step_up(&update.value().get()) {
            if let Some((id, body)) = last_update.get_value() {
                step_up_for(UPDATE_AFTER_STEP_UP, &format!("{id}\n{body}"));
            }
        }
    });
    Effect::new(move |_| {
        let kept = take_stepped_up(UPDATE_AFTER_STEP_UP);
        let edit = kept.as_deref().and_then(|text| text.split_once('\n'));
        if let Some((id, body)) = edit.and_then(|(id, body)| Some((id.parse().ok()?, body))) {
            update.dispatch(UpdateNote {
                id,
                body: body.to_owned(),
            });
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
                    // The editor is code of its own, fetched on the first click on Edit: the
                    // board's chunk stays small (docs/performance.md).
                    let text = edit_body.clone();
                    Suspend::new(async move { note_editor(id, text, update, editing).await }).into_any()
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

/// A note's editor in place. `#[lazy]`: its own WebAssembly chunk, loaded when first opened.
#[lazy]
fn note_editor(
    id: i64,
    text: String,
    update: ServerAction<UpdateNote>,
    editing: RwSignal<bool>,
) -> AnyView {
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
}
