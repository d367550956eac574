//! Runtime settings: `Leptos.toml` (edited by the operator), every key overridable by an
//! environment variable `APP_<SECTION>_<KEY>` (e.g. `APP_KEYCLOAK_ISSUER_URL`). Unknown keys, in the
//! file or in `APP_*` variables, are rejected with a message naming the key. The client secret is
//! read only from `APP_KEYCLOAK_CLIENT_SECRET` or from the file named by
//! `keycloak.client_secret_file`, never from `Leptos.toml` itself.

use secrecy::SecretString;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

pub const ENV_PREFIX: &str = "APP_";
/// Names another settings file instead of `./Leptos.toml`.
pub const ENV_SETTINGS_FILE: &str = "APP_SETTINGS_FILE";
const SECTIONS: [&str; 3] = ["app", "keycloak", "session"];

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read settings file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid settings: {0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> SettingsError {
    SettingsError::Invalid(msg.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// A SQLite file under `app.data_dir`: sessions survive restarts (the default).
    Sqlite,
    /// In memory: every restart signs everybody out. For tests and throw-away runs.
    Memory,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    #[serde(default)]
    app: AppSection,
    keycloak: KeycloakSection,
    #[serde(default)]
    session: SessionSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppSection {
    #[serde(default = "default_public_url")]
    public_url: String,
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
}

impl Default for AppSection {
    fn default() -> Self {
        Self {
            public_url: default_public_url(),
            data_dir: default_data_dir(),
        }
    }
}

fn default_public_url() -> String {
    "http://localhost:3000".into()
}
fn default_data_dir() -> PathBuf {
    "data".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeycloakSection {
    issuer_url: String,
    client_id: String,
    #[serde(default)]
    client_secret: Option<SecretString>,
    #[serde(default)]
    client_secret_file: Option<PathBuf>,
    #[serde(default = "default_http_timeout")]
    http_timeout_secs: u64,
    #[serde(default = "default_leeway")]
    leeway_secs: u64,
    #[serde(default = "default_algorithms")]
    algorithms: Vec<String>,
}

fn default_http_timeout() -> u64 {
    5
}
fn default_leeway() -> u64 {
    30
}
fn default_algorithms() -> Vec<String> {
    vec!["RS256".into()]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionSection {
    #[serde(default = "default_store")]
    store: StoreKind,
    #[serde(default = "default_cookie_name")]
    cookie_name: String,
    #[serde(default = "default_pending_ttl")]
    pending_login_ttl_secs: u64,
    #[serde(default = "default_max_pending")]
    max_pending_logins: u64,
    #[serde(default = "default_refresh_margin")]
    refresh_margin_secs: u64,
}

impl Default for SessionSection {
    fn default() -> Self {
        Self {
            store: default_store(),
            cookie_name: default_cookie_name(),
            pending_login_ttl_secs: default_pending_ttl(),
            max_pending_logins: default_max_pending(),
            refresh_margin_secs: default_refresh_margin(),
        }
    }
}

fn default_store() -> StoreKind {
    StoreKind::Sqlite
}
fn default_cookie_name() -> String {
    "kc_leptos_session".into()
}
fn default_pending_ttl() -> u64 {
    600
}
fn default_max_pending() -> u64 {
    5
}
fn default_refresh_margin() -> u64 {
    30
}

/// Everything the server needs, parsed and checked at start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The URL browsers use to reach the app; redirects and the origin check derive from it,
    /// never from request headers.
    pub public_url: Url,
    pub data_dir: PathBuf,
    pub keycloak: KeycloakSettings,
    pub session: SessionSettings,
}

#[derive(Debug, Clone)]
pub struct KeycloakSettings {
    /// `http://localhost:8080/realms/demo`: the `iss` of every token, and the discovery base.
    pub issuer_url: Url,
    pub client_id: String,
    pub client_secret: SecretString,
    pub http_timeout: Duration,
    pub leeway_secs: i64,
    /// Signature algorithms accepted, pinned here and never taken from a token.
    pub algorithms: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub store: StoreKind,
    pub cookie_name: String,
    pub pending_login_ttl_secs: i64,
    pub max_pending_logins: usize,
    pub refresh_margin_secs: i64,
}

impl Settings {
    /// Reads `APP_SETTINGS_FILE` or `./Leptos.toml`, then the `APP_*` variables of the process.
    pub fn load() -> Result<Self, SettingsError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let path = env
            .get(ENV_SETTINGS_FILE)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("Leptos.toml"));
        let text = std::fs::read_to_string(&path).map_err(|source| SettingsError::Read {
            path: path.clone(),
            source,
        })?;
        Self::from_parts(&text, &env)
    }

    /// Builds settings from the text of a settings file and a set of environment variables.
    pub fn from_parts(
        file_text: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<Self, SettingsError> {
        let mut table: toml::Table =
            toml::from_str(file_text).map_err(|e| invalid(format!("Leptos.toml: {e}")))?;
        if let Some(toml::Value::Table(kc)) = table.get("keycloak") {
            if kc.contains_key("client_secret") {
                return Err(invalid(
                    "keycloak.client_secret must not be written in Leptos.toml: set \
                     APP_KEYCLOAK_CLIENT_SECRET or keycloak.client_secret_file",
                ));
            }
        }
        overlay_env(&mut table, env)?;
        let parsed: FileSettings = table
            .try_into()
            .map_err(|e: toml::de::Error| invalid(e.message().to_owned()))?;
        Self::validate(parsed)
    }

    fn validate(f: FileSettings) -> Result<Self, SettingsError> {
        let public_url = parse_base_url("app.public_url", &f.app.public_url)?;
        if public_url.path() != "/" {
            return Err(invalid(
                "app.public_url must not have a path (serve the app at the root)",
            ));
        }
        let issuer_url = Url::parse(&f.keycloak.issuer_url)
            .map_err(|e| invalid(format!("keycloak.issuer_url: {e}")))?;
        if !matches!(issuer_url.scheme(), "http" | "https") {
            return Err(invalid("keycloak.issuer_url must be http or https"));
        }
        if f.keycloak.client_id.trim().is_empty() {
            return Err(invalid("keycloak.client_id is empty"));
        }
        let client_secret = match (f.keycloak.client_secret, &f.keycloak.client_secret_file) {
            (Some(s), _) => s,
            (None, Some(path)) => read_secret_file(path)?,
            (None, None) => return Err(invalid(
                "no client secret: set APP_KEYCLOAK_CLIENT_SECRET or keycloak.client_secret_file",
            )),
        };
        let allowed = [
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
        ];
        if f.keycloak.algorithms.is_empty() {
            return Err(invalid("keycloak.algorithms is empty"));
        }
        for alg in &f.keycloak.algorithms {
            if !allowed.contains(&alg.as_str()) {
                return Err(invalid(format!(
                    "keycloak.algorithms: {alg:?} is not an asymmetric signature algorithm this app accepts ({})",
                    allowed.join(", ")
                )));
            }
        }
        if !crate::auth::cookie::is_valid_name(&f.session.cookie_name) {
            return Err(invalid(format!(
                "session.cookie_name {:?} is not a valid cookie name",
                f.session.cookie_name
            )));
        }
        if f.keycloak.http_timeout_secs == 0 || f.keycloak.http_timeout_secs > 120 {
            return Err(invalid(
                "keycloak.http_timeout_secs must be between 1 and 120",
            ));
        }
        Ok(Settings {
            public_url,
            data_dir: f.app.data_dir,
            keycloak: KeycloakSettings {
                issuer_url,
                client_id: f.keycloak.client_id,
                client_secret,
                http_timeout: Duration::from_secs(f.keycloak.http_timeout_secs),
                leeway_secs: f.keycloak.leeway_secs.min(300) as i64,
                algorithms: f.keycloak.algorithms,
            },
            session: SessionSettings {
                store: f.session.store,
                cookie_name: f.session.cookie_name,
                pending_login_ttl_secs: f.session.pending_login_ttl_secs.clamp(30, 3600) as i64,
                max_pending_logins: f.session.max_pending_logins.clamp(1, 20) as usize,
                refresh_margin_secs: f.session.refresh_margin_secs.min(3600) as i64,
            },
        })
    }

    /// The issuer exactly as Keycloak writes it in `iss` (no trailing slash).
    pub fn issuer(&self) -> String {
        self.keycloak
            .issuer_url
            .as_str()
            .trim_end_matches('/')
            .to_owned()
    }

    /// `https://app.example` (scheme, host and port), for the origin check.
    pub fn public_origin(&self) -> String {
        self.public_url.origin().ascii_serialization()
    }

    pub fn public_url_is_https(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// An absolute URL of the app for `path` (which starts with `/`).
    pub fn absolute(&self, path: &str) -> String {
        format!("{}{}", self.public_origin(), path)
    }
}

fn parse_base_url(key: &str, value: &str) -> Result<Url, SettingsError> {
    let url = Url::parse(value).map_err(|e| invalid(format!("{key}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(invalid(format!("{key} must be an http(s) URL with a host")));
    }
    Ok(url)
}

fn read_secret_file(path: &Path) -> Result<SecretString, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        invalid(format!(
            "keycloak.client_secret_file {}: {e}",
            path.display()
        ))
    })?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(invalid(format!(
            "keycloak.client_secret_file {} is empty",
            path.display()
        )));
    }
    Ok(SecretString::from(secret.to_owned()))
}

/// Writes every `APP_<SECTION>_<KEY>` variable over the file's table. Values that read as a
/// number or a boolean become one; `algorithms` takes a comma-separated list.
fn overlay_env(
    table: &mut toml::Table,
    env: &BTreeMap<String, String>,
) -> Result<(), SettingsError> {
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if name == ENV_SETTINGS_FILE {
            continue;
        }
        let lower = rest.to_ascii_lowercase();
        let Some((section, key)) = SECTIONS.iter().find_map(|s| {
            lower
                .strip_prefix(s)
                .and_then(|k| k.strip_prefix('_'))
                .map(|k| (*s, k.to_owned()))
        }) else {
            return Err(invalid(format!(
                "unknown setting variable {name}: expected APP_APP_*, APP_KEYCLOAK_* or APP_SESSION_*"
            )));
        };
        let value = if key == "algorithms" {
            toml::Value::Array(
                value
                    .split(',')
                    .map(|s| toml::Value::String(s.trim().to_owned()))
                    .collect(),
            )
        } else if let Ok(n) = value.parse::<i64>() {
            toml::Value::Integer(n)
        } else if let Ok(b) = value.parse::<bool>() {
            toml::Value::Boolean(b)
        } else {
            toml::Value::String(value.clone())
        };
        let entry = table
            .entry(section.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match entry {
            toml::Value::Table(t) => {
                t.insert(key, value);
            }
            _ => {
                return Err(invalid(format!(
                    "[{section}] in Leptos.toml is not a table"
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const FILE: &str = r#"
        [app]
        public_url = "http://localhost:3000"
        [keycloak]
        issuer_url = "http://localhost:8080/realms/demo"
        client_id = "demo-app"
    "#;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn err(file: &str, vars: &[(&str, &str)]) -> String {
        match Settings::from_parts(file, &env(vars)) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_file_with_a_secret_from_the_environment_gives_defaults_for_the_rest() {
        let s = Settings::from_parts(FILE, &env(&[("APP_KEYCLOAK_CLIENT_SECRET", "s3cr:et%")]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.issuer(), "http://localhost:8080/realms/demo");
        assert_eq!(s.keycloak.client_secret.expose_secret(), "s3cr:et%");
        assert_eq!(s.session.store, StoreKind::Sqlite);
        assert_eq!(s.session.refresh_margin_secs, 30);
        assert_eq!(s.keycloak.algorithms, vec!["RS256"]);
        assert_eq!(s.public_origin(), "http://localhost:3000");
    }

    #[test]
    fn every_key_can_be_overridden_by_an_environment_variable() {
        let s = Settings::from_parts(
            FILE,
            &env(&[
                ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                ("APP_APP_PUBLIC_URL", "https://app.example"),
                ("APP_APP_DATA_DIR", "/var/lib/app"),
                ("APP_KEYCLOAK_ISSUER_URL", "https://id.example/realms/r"),
                ("APP_KEYCLOAK_CLIENT_ID", "other"),
                ("APP_KEYCLOAK_HTTP_TIMEOUT_SECS", "9"),
                ("APP_KEYCLOAK_LEEWAY_SECS", "10"),
                ("APP_KEYCLOAK_ALGORITHMS", "RS256, PS256"),
                ("APP_SESSION_STORE", "memory"),
                ("APP_SESSION_COOKIE_NAME", "sid"),
                ("APP_SESSION_PENDING_LOGIN_TTL_SECS", "120"),
                ("APP_SESSION_MAX_PENDING_LOGINS", "3"),
                ("APP_SESSION_REFRESH_MARGIN_SECS", "60"),
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.public_origin(), "https://app.example");
        assert_eq!(s.data_dir, PathBuf::from("/var/lib/app"));
        assert_eq!(s.issuer(), "https://id.example/realms/r");
        assert_eq!(s.keycloak.client_id, "other");
        assert_eq!(s.keycloak.http_timeout, Duration::from_secs(9));
        assert_eq!(s.keycloak.leeway_secs, 10);
        assert_eq!(s.keycloak.algorithms, vec!["RS256", "PS256"]);
        assert_eq!(s.session.store, StoreKind::Memory);
        assert_eq!(s.session.cookie_name, "sid");
        assert_eq!(s.session.pending_login_ttl_secs, 120);
        assert_eq!(s.session.max_pending_logins, 3);
        assert_eq!(s.session.refresh_margin_secs, 60);
    }

    #[test]
    fn an_unknown_key_in_the_file_is_rejected_by_name() {
        let file = format!("{FILE}\nrefresh_marginn = 3\n");
        let e = err(&file, &[("APP_KEYCLOAK_CLIENT_SECRET", "x")]);
        assert!(e.contains("refresh_marginn"), "{e}");
        let e = err(
            &format!("{FILE}\n[sesion]\nstore = \"memory\"\n"),
            &[("APP_KEYCLOAK_CLIENT_SECRET", "x")],
        );
        assert!(e.contains("sesion"), "{e}");
    }

    #[test]
    fn an_unknown_environment_variable_is_rejected_by_name() {
        let e = err(
            FILE,
            &[
                ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                ("APP_SESSION_STOR", "memory"),
            ],
        );
        assert!(e.contains("stor"), "{e}");
        let e = err(
            FILE,
            &[
                ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                ("APP_SESSIONS_STORE", "memory"),
            ],
        );
        assert!(e.contains("APP_SESSIONS_STORE"), "{e}");
    }

    #[test]
    fn a_client_secret_written_in_the_file_is_refused() {
        let file = FILE.replace(
            "client_id = \"demo-app\"",
            "client_id = \"demo-app\"\nclient_secret = \"oops\"",
        );
        let e = err(&file, &[]);
        assert!(e.contains("must not be written in Leptos.toml"), "{e}");
    }

    #[test]
    fn a_missing_secret_is_an_error_that_says_where_to_put_it() {
        assert!(err(FILE, &[]).contains("APP_KEYCLOAK_CLIENT_SECRET"));
    }

    #[test]
    fn the_secret_can_come_from_a_file_and_never_shows_in_debug_output() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("secret");
        std::fs::write(&path, "from-file-secret\n").unwrap_or_else(|e| panic!("{e}"));
        let file = format!(
            "{FILE}client_secret_file = {:?}\n",
            path.display().to_string()
        );
        let s = Settings::from_parts(&file, &env(&[])).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.keycloak.client_secret.expose_secret(), "from-file-secret");
        assert!(!format!("{s:?}").contains("from-file-secret"));
    }

    #[test]
    fn symmetric_or_none_algorithms_cannot_be_configured() {
        for alg in ["HS256", "none"] {
            let e = err(
                FILE,
                &[
                    ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                    ("APP_KEYCLOAK_ALGORITHMS", alg),
                ],
            );
            assert!(e.contains("algorithms"), "{e}");
        }
    }

    #[test]
    fn a_public_url_with_a_path_or_without_a_host_is_refused() {
        for url in ["http://localhost:3000/app", "localhost:3000", "ftp://x"] {
            let e = err(
                FILE,
                &[
                    ("APP_KEYCLOAK_CLIENT_SECRET", "x"),
                    ("APP_APP_PUBLIC_URL", url),
                ],
            );
            assert!(e.contains("public_url"), "{url}: {e}");
        }
    }
}
