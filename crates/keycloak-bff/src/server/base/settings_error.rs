//! Why the settings could not be loaded: one error for the settings file, the environment and
//! the remote API routes, each with a message that names the setting.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
/// Why the settings could not be loaded.
pub enum SettingsError {
    #[error("cannot read settings file {path}: {source}")]
    /// The settings file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// What reading it said.
        source: std::io::Error,
    },
    #[error("invalid settings: {0}")]
    /// A setting is missing or invalid; the message names it.
    Invalid(String),
}
