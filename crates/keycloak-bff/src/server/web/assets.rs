//! The site's static files (`/<site_pkg_dir>/`: the hydration JS and WebAssembly, the stylesheet)
//! served as a CDN would serve them:
//!
//! - brotli or gzip when the browser accepts it, from the `.br`/`.gz` files that
//!   `cargo leptos build --release --precompress` writes next to each file (the raw file
//!   otherwise), with `Vary: Accept-Encoding`;
//! - `Cache-Control: public, max-age=31536000, immutable` when the site's file names carry their
//!   content's hash (`hash-files = true` in `[package.metadata.leptos]`): a new build has new
//!   names, so a browser never asks twice for the same file; `no-cache` otherwise (asked again
//!   every time, answered `304 Not Modified` when unchanged);
//! - pages keep `no-store` ([`crate::server::web::middleware::security_headers`]);
//! - with hashed names, each file is read from disk once and then answered from memory (its
//!   name changes with its content, so the copy never goes stale): tower-http's `ServeDir` opens
//!   and reads the file on tokio's blocking threads for every request, which made a small
//!   stylesheet slower to serve than a rendered page.
//!
//! Catalogue: the static-files row of `docs/security.md` (nothing outside the site's directory).
//!
//! Merge [`static_files`] into the app's router; [`crate::server::KeycloakAuth::serve`] puts the
//! library's layers around it with every other route.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use leptos::config::LeptosOptions;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tower_http::services::ServeDir;

/// The URL path of the site's file of kind `kind` (`"css"`, `"js"`, `"wasm"`) and extension
/// `ext`: `/<pkg>/<output>.<hash>.<ext>` when the names carry hashes (read from the hash file
/// that cargo-leptos writes next to the server's binary, as Leptos itself does), else
/// `/<pkg>/<output>.<ext>`.
pub fn site_file(options: &LeptosOptions, kind: &str, ext: &str) -> String {
    let hash = options
        .hash_files
        .then(|| {
            let exe = std::env::current_exe().ok()?;
            let hashes =
                std::fs::read_to_string(exe.parent()?.join(options.hash_file.as_ref())).ok()?;
            hashes.lines().find_map(|line| {
                let (name, hash) = line.split_once(':')?;
                (name.trim() == kind).then(|| hash.trim().to_owned())
            })
        })
        .flatten();
    match hash {
        Some(hash) => format!(
            "/{}/{}.{hash}.{ext}",
            options.site_pkg_dir, options.output_name
        ),
        None => format!("/{}/{}.{ext}", options.site_pkg_dir, options.output_name),
    }
}

/// `Cache-Control` of files whose names change with their content.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// `Cache-Control` of files whose names do not: revalidated at every use.
pub const REVALIDATE: &str = "no-cache";

/// The router serving `/<site_pkg_dir>/` from `<site_root>/<site_pkg_dir>`; see the module's
/// documentation. Merge it into the app's router.
pub fn static_files<S: Clone + Send + Sync + 'static>(options: &LeptosOptions) -> Router<S> {
    let dir = std::path::Path::new(options.site_root.as_ref()).join(options.site_pkg_dir.as_ref());
    let cache = if options.hash_files {
        IMMUTABLE
    } else {
        REVALIDATE
    };
    let files = ServeDir::new(&dir).precompressed_br().precompressed_gzip();
    let prefix = format!("/{}", options.site_pkg_dir);
    let mut router = Router::new().nest_service(&prefix, files);
    if options.hash_files {
        let kept = KeptFiles::new(dir, &prefix);
        router = router.layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                let kept = kept.clone();
                async move {
                    match kept
                        .answer(request.method(), request.uri().path(), request.headers())
                        .await
                    {
                        Some(response) => response,
                        None => next.run(request).await,
                    }
                }
            },
        ));
    }
    router.layer(axum::middleware::map_response(
        move |mut response: Response| async move {
            let status = response.status();
            // A missing file may appear with the next build: never cache its absence.
            let value = if status.is_success() || status == StatusCode::NOT_MODIFIED {
                cache
            } else {
                "no-store"
            };
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
            // Caches keep the encodings apart.
            headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
            response
        },
    ))
}

/// The largest file kept in memory; a larger one is read from disk for each request.
const KEPT_FILE_MAX: usize = 16 * 1024 * 1024;

/// How many files are kept at most (a build writes a fixed set: about a hundred with `--split`).
const KEPT_FILES_MAX: usize = 4096;

/// A file of the site as it is sent: its type, and its raw, brotli and gzip bodies.
struct KeptFile {
    content_type: &'static str,
    raw: Bytes,
    br: Option<Bytes>,
    gz: Option<Bytes>,
}

/// The files of a site with hashed names, kept in memory once read (see the module's
/// documentation). Only plain names of known types directly in the directory; anything else
/// goes to `ServeDir`, which also answers what does not exist.
#[derive(Clone)]
struct KeptFiles {
    dir: Arc<Path>,
    /// `/<site_pkg_dir>/`.
    prefix: Arc<str>,
    files: Arc<RwLock<HashMap<String, Arc<KeptFile>>>>,
}

impl KeptFiles {
    fn new(dir: PathBuf, prefix: &str) -> Self {
        Self {
            dir: dir.into(),
            prefix: format!("{}/", prefix.trim_end_matches('/')).into(),
            files: Arc::default(),
        }
    }

    /// The answer from memory (the file read first when it is not kept yet), or `None` for
    /// `ServeDir`.
    async fn answer(&self, method: &Method, path: &str, headers: &HeaderMap) -> Option<Response> {
        if method != Method::GET && method != Method::HEAD {
            return None;
        }
        let name = path.strip_prefix(self.prefix.as_ref())?;
        let content_type = kept_type(name)?;
        let kept = self.files.read().ok()?.get(name).cloned();
        let file = match kept {
            Some(file) => file,
            None => self.read(name, content_type).await?,
        };
        let accepted = headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        // The smallest copy the browser accepts: brotli, then gzip, else the file itself.
        let (body, encoding) = match (&file.br, &file.gz) {
            (Some(br), _) if accepts(accepted, "br") => (br.clone(), Some("br")),
            (_, Some(gz)) if accepts(accepted, "gzip") => (gz.clone(), Some("gzip")),
            _ => (file.raw.clone(), None),
        };
        let mut response = Response::new(Body::from(body));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(file.content_type),
        );
        if let Some(encoding) = encoding {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        Some(response)
    }

    /// Reads `name` and its precompressed copies, and keeps them. `None` when it cannot be read
    /// (it does not exist, say) or is too large to keep.
    async fn read(&self, name: &str, content_type: &'static str) -> Option<Arc<KeptFile>> {
        let path = self.dir.join(name);
        let raw = tokio::fs::read(&path).await.ok()?;
        if raw.len() > KEPT_FILE_MAX {
            return None;
        }
        let copy = |ext: &str| {
            let mut with_ext = path.clone().into_os_string();
            with_ext.push(ext);
            tokio::fs::read(PathBuf::from(with_ext))
        };
        let file = Arc::new(KeptFile {
            content_type,
            raw: raw.into(),
            br: copy(".br").await.ok().map(Bytes::from),
            gz: copy(".gz").await.ok().map(Bytes::from),
        });
        if let Ok(mut files) = self.files.write() {
            if files.len() < KEPT_FILES_MAX {
                files.insert(name.to_owned(), Arc::clone(&file));
            }
        }
        Some(file)
    }
}

/// The `Content-Type` of a file that may be kept: a plain name (letters, digits, `.`, `_`, `-`;
/// not starting with a dot) of the types a site's `pkg` directory holds. `None` for anything else.
fn kept_type(name: &str) -> Option<&'static str> {
    let plain = !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !plain {
        return None;
    }
    match name.rsplit_once('.')?.1 {
        "wasm" => Some("application/wasm"),
        "js" => Some("text/javascript"),
        "css" => Some("text/css"),
        "json" => Some("application/json"),
        _ => None,
    }
}

/// Whether `Accept-Encoding: accepted` names `coding` without `q=0`.
fn accepts(accepted: &str, coding: &str) -> bool {
    accepted.split(',').any(|item| {
        let mut parts = item.split(';');
        let named = parts
            .next()
            .is_some_and(|c| c.trim().eq_ignore_ascii_case(coding));
        let refused = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        named && !refused
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    /// A site with one hashed script, precompressed like `cargo leptos build --precompress`.
    fn site(hash_files: bool) -> (tempfile::TempDir, LeptosOptions) {
        let root = tempfile::tempdir().expect("tempdir");
        let pkg = root.path().join("pkg");
        std::fs::create_dir_all(&pkg).expect("pkg");
        std::fs::write(pkg.join("app.h1.js"), "raw").expect("js");
        std::fs::write(pkg.join("app.h1.js.br"), "brotli").expect("br");
        std::fs::write(pkg.join("app.h1.js.gz"), "gzip").expect("gz");
        let options = LeptosOptions::builder()
            .output_name("app")
            .site_root(root.path().to_string_lossy().into_owned())
            .site_pkg_dir("pkg")
            .hash_files(hash_files)
            .build();
        (root, options)
    }

    async fn get(options: &LeptosOptions, path: &str, accept: Option<&str>) -> Response {
        get_from(&static_files::<()>(options), path, accept).await
    }

    /// A request to the same router (what it keeps in memory) as earlier ones.
    async fn get_from(router: &Router, path: &str, accept: Option<&str>) -> Response {
        let mut request = Request::get(path);
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT_ENCODING, accept);
        }
        router
            .clone()
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("infallible")
    }

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn the_smallest_encoding_the_browser_accepts_is_served() {
        let (_root, options) = site(true);
        let r = get(&options, "/pkg/app.h1.js", Some("gzip, deflate, br")).await;
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "br");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/javascript");
        assert!(r.headers()[header::VARY]
            .to_str()
            .unwrap_or_default()
            .contains("accept-encoding"));
        assert_eq!(body(r).await, "brotli");
        let r = get(&options, "/pkg/app.h1.js", Some("gzip")).await;
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(body(r).await, "gzip");
        let r = get(&options, "/pkg/app.h1.js", None).await;
        assert!(r.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(body(r).await, "raw");
    }

    #[tokio::test]
    async fn hashed_names_are_cached_for_a_year_and_others_revalidated() {
        let (_root, hashed) = site(true);
        let r = get(&hashed, "/pkg/app.h1.js", None).await;
        assert_eq!(r.headers()[header::CACHE_CONTROL], IMMUTABLE);
        let (_root, plain) = site(false);
        let r = get(&plain, "/pkg/app.h1.js", None).await;
        assert_eq!(r.headers()[header::CACHE_CONTROL], REVALIDATE);
    }

    #[tokio::test]
    async fn a_missing_file_is_a_404_that_nobody_caches() {
        let (_root, options) = site(true);
        let r = get(&options, "/pkg/app.h2.js", Some("br")).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    }

    #[tokio::test]
    async fn a_hashed_file_is_read_once_then_answered_from_memory() {
        let (root, options) = site(true);
        let served = static_files::<()>(&options);
        let r = get_from(&served, "/pkg/app.h1.js", Some("br")).await;
        assert_eq!(body(r).await, "brotli");
        for ext in ["", ".br", ".gz"] {
            std::fs::remove_file(root.path().join(format!("pkg/app.h1.js{ext}"))).expect("rm");
        }
        let r = get_from(&served, "/pkg/app.h1.js", Some("gzip")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CACHE_CONTROL], IMMUTABLE);
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(body(r).await, "gzip");
        // Without hashes a file may change under its name: read every time.
        let (root, plain) = site(false);
        let served = static_files::<()>(&plain);
        assert_eq!(
            body(get_from(&served, "/pkg/app.h1.js", None).await).await,
            "raw"
        );
        std::fs::remove_file(root.path().join("pkg/app.h1.js")).expect("rm");
        let r = get_from(&served, "/pkg/app.h1.js", None).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn only_plain_names_of_site_files_are_kept_and_nothing_leaves_the_directory() {
        let (root, options) = site(true);
        std::fs::write(root.path().join("secret.js"), "secret").expect("secret");
        for path in [
            "/pkg/..%2fsecret.js",
            "/pkg/%2e%2e/secret.js",
            "/pkg/../secret.js",
            "/pkg/.hidden.js",
        ] {
            let r = get(&options, path, None).await;
            assert_ne!(r.status(), StatusCode::OK, "{path}");
        }
        assert_eq!(super::kept_type("app.h1.wasm"), Some("application/wasm"));
        assert_eq!(super::kept_type("app.h1.css"), Some("text/css"));
        for name in ["sub/app.js", "..", ".env.js", "a b.js", "app.h1.map", "app"] {
            assert_eq!(super::kept_type(name), None, "{name}");
        }
    }

    #[test]
    fn an_encoding_refused_with_q_zero_is_never_chosen() {
        use super::accepts;
        assert!(accepts("gzip, deflate, br", "br"));
        assert!(accepts("BR;q=0.5", "br"));
        assert!(!accepts("br;q=0, gzip", "br"));
        assert!(accepts("br;q=0, gzip", "gzip"));
        assert!(!accepts("gzip;q=0", "gzip"));
        assert!(!accepts("", "br"));
        assert!(!accepts("identity", "gzip"));
    }

    #[test]
    fn without_hashes_the_stylesheet_has_its_plain_name() {
        let (_root, options) = site(false);
        assert_eq!(site_file(&options, "css", "css"), "/pkg/app.css");
    }
}
