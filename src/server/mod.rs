//! The demo's server side: its state, settings, JSON API and start-up.

pub mod api;
pub mod startup;
pub mod state;
pub mod telemetry;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The demo's own `[app]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoSettings {
    /// Where the notes database (`notes.sqlite3`) lives.
    pub data_dir: PathBuf,
}

impl Default for DemoSettings {
    fn default() -> Self {
        Self {
            data_dir: "data".into(),
        }
    }
}

/// All settings: the library's sections and the demo's `[app]`.
pub type Settings = keycloak_bff::server::Settings<DemoSettings>;
