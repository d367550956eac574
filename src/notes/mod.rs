//! The shared notes board: a small real feature behind the authorization rules. Viewers read,
//! editors write and edit their own notes, admins edit and delete any. Every action is a server
//! function (or a JSON API route) that checks its rule first; the UI only shows what the user may
//! do.
//!
//! - [`model`]: the note and what the board shows.
//! - [`rules`]: who may do what, named once.
//! - [`api`]: the server functions.
//! - [`components`]: the page and its parts.
//! - `db` (server): the queries; `rest` (server): `/api/v1/notes` for other programs.

pub mod api;
pub mod components;
pub mod model;
pub mod rules;

#[cfg(feature = "ssr")]
pub mod db;
#[cfg(feature = "ssr")]
pub mod rest;

pub use components::NotesPage;
