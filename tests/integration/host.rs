//! A page opened on another loopback name of `auth.public_url`'s host (cargo-leptos prints
//! `http://127.0.0.1:…` while the public URL says `localhost`) goes to the public URL before
//! anything sets a cookie, once: behind a real nginx that rewrites `Host` to such a name, the
//! browser gets its page after one redirect, never a loop.

use crate::common::*;
use reqwest::header::{LOCATION, SET_COOKIE};
use reqwest::StatusCode;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A browser's top-level page load of `url`, redirects not followed.
async fn navigate_to(client: &reqwest::Client, url: &str) -> reqwest::Response {
    client
        .get(url)
        .header("sec-fetch-mode", "navigate")
        .header("sec-fetch-dest", "document")
        .header("sec-fetch-site", "none")
        .send()
        .await
        .expect("GET")
}

/// nginx, stopped by its master when dropped (also when an assertion fails).
struct Nginx(std::process::Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

#[tokio::test]
async fn a_page_opened_on_127_0_0_1_goes_to_the_public_url_before_any_cookie_is_set() {
    let port = free_port();
    let public = format!("http://localhost:{port}");
    let _app = spawn_app_on(
        tempfile::tempdir().expect("tmp"),
        browser(),
        &[("APP_AUTH_PUBLIC_URL", &public)],
        port,
    )
    .await;
    let client = no_redirects();
    let r = navigate_to(&client, &format!("http://127.0.0.1:{port}/notes?page=2")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()[LOCATION],
        format!("{public}/notes?page=2&kc_host=1").as_str()
    );
    assert!(
        r.headers().get(SET_COOKIE).is_none(),
        "no cookie on 127.0.0.1"
    );
    // On the public name, the mark goes (once), still before any cookie.
    let r = navigate_to(&client, &format!("{public}/notes?page=2&kc_host=1")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()[LOCATION],
        format!("{public}/notes?page=2").as_str()
    );
    assert!(r.headers().get(SET_COOKIE).is_none());
    // Never a way out of the origin: a path that looks like a protocol-relative URL stays a path.
    for path in ["//evil.example/?kc_host=1", "/\\evil.example/?kc_host=1"] {
        let r = navigate_to(&client, &format!("{public}{path}")).await;
        let to = r.headers()[LOCATION].to_str().expect("location").to_owned();
        assert!(to.starts_with(&format!("{public}/")), "{path} -> {to}");
    }
    // Not a page load (a script, a server function, the JSON API): answered where it arrived.
    let r = client
        .get(format!("http://127.0.0.1:{port}/health/live"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    // The public name itself: no redirect.
    let r = navigate_to(&client, &format!("{public}/")).await;
    assert_ne!(
        r.headers().get(LOCATION).map(|l| l.to_str().unwrap_or("")),
        Some(format!("{public}/?kc_host=1").as_str())
    );
}

#[tokio::test]
async fn behind_a_proxy_that_rewrites_host_a_page_comes_after_one_redirect_never_a_loop() {
    // The browser uses http://localhost:<nginx>; nginx passes `Host: 127.0.0.1:<nginx>` on.
    let nginx_port = free_port();
    let public = format!("http://localhost:{nginx_port}");
    let app = spawn_app_in(
        tempfile::tempdir().expect("tmp"),
        browser(),
        // Silent sign-on off: the page itself answers, not a detour through Keycloak.
        &[
            ("APP_AUTH_PUBLIC_URL", &public),
            ("APP_AUTH_SILENT_SSO", "false"),
        ],
    )
    .await;
    let app_port = app
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .expect("app port");
    let dir = tempfile::tempdir().expect("tmp");
    let conf = dir.path().join("nginx.conf");
    let prefix = dir.path().display();
    std::fs::write(
        &conf,
        format!(
            "daemon off;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log warn;\n\
             events {{ worker_connections 64; }}\nhttp {{\n  access_log off;\n\
             client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n\
             fastcgi_temp_path {prefix}/fastcgi;\n  uwsgi_temp_path {prefix}/uwsgi;\n\
             scgi_temp_path {prefix}/scgi;\n  server {{\n    listen 127.0.0.1:{nginx_port};\n\
             location / {{\n      proxy_pass http://127.0.0.1:{app_port};\n\
             proxy_set_header Host 127.0.0.1:{nginx_port};\n    }}\n  }}\n}}\n"
        ),
    )
    .expect("nginx.conf");
    // Its workers must not hold the test's output open: nothing inherited, and stopped by its
    // master (SIGTERM), never a SIGKILL that would orphan them.
    let nginx = std::process::Command::new("nginx")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(Nginx)
        .expect("nginx (Debian's package)");
    let client = no_redirects();
    let mut first = None;
    for _ in 0..100 {
        if let Ok(r) = client
            .get(format!("{public}/"))
            .header("sec-fetch-mode", "navigate")
            .header("sec-fetch-dest", "document")
            .header("sec-fetch-site", "none")
            .send()
            .await
        {
            first = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let first = first.expect("nginx answers");
    assert_eq!(
        first.status(),
        StatusCode::SEE_OTHER,
        "sent to the public URL once"
    );
    let to = first.headers()[LOCATION]
        .to_str()
        .expect("location")
        .to_owned();
    assert_eq!(to, format!("{public}/?kc_host=1"));
    let second = navigate_to(&client, &to).await;
    drop(nginx);
    assert_eq!(
        second.status(),
        StatusCode::OK,
        "the marked request is served, not sent again: {:?}",
        second.headers().get(LOCATION)
    );
}

#[tokio::test]
async fn a_silent_sign_in_that_comes_back_without_its_cookie_lands_home_signed_out_not_on_an_error()
{
    let app = spawn_app().await;
    // Keycloak's answer to `prompt=none`, for a sign-in whose sealed cookie stayed on another
    // name of the host: nothing was signed in, so no error page.
    let r = app
        .get("/auth/callback?error=login_required&state=started-elsewhere&iss=x")
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/");
    // Any other answer with an unknown state is still refused plainly.
    let r = app
        .get("/auth/callback?error=access_denied&state=started-elsewhere")
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = app
        .get("/auth/callback?code=abc&state=started-elsewhere")
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}
