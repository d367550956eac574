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
//! - pages keep `no-store` ([`crate::server::web::middleware::security_headers`]).
//!
//! Merge [`static_files`] into the app's router; [`crate::server::KeycloakAuth::serve`] puts the
//! library's layers around it with every other route.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Router;
use leptos::config::LeptosOptions;
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
    let files = ServeDir::new(dir).precompressed_br().precompressed_gzip();
    Router::new()
        .nest_service(&format!("/{}", options.site_pkg_dir), files)
        .layer(axum::middleware::map_response(
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
        let mut request = Request::get(path);
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT_ENCODING, accept);
        }
        static_files::<()>(options)
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

    #[test]
    fn without_hashes_the_stylesheet_has_its_plain_name() {
        let (_root, options) = site(false);
        assert_eq!(site_file(&options, "css", "css"), "/pkg/app.css");
    }
}
