//! The site the server links and serves (issue 15): embedded in the binary with
//! content-hashed, immutable URLs; `--site-root` as a development override; and a
//! server without a built site still serves its pages and says the site is missing.
//! Run: `cargo test -p server --test site` (after `scripts/build.sh` the embedded site
//! is the real one; before it, the binary has none and the test checks the notice).
#![allow(clippy::unwrap_used)]
mod common;

use common::{args, spawn_with};

const NOTICE: &str = "built without its site";

/// The `/pkg/...` URLs a page links.
fn pkg_links(html: &str) -> Vec<String> {
    let mut links: Vec<String> = html
        .split("\"/pkg/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|p| format!("/pkg/{p}"))
        .collect();
    links.sort();
    links.dedup();
    links
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_link_the_embedded_site_by_content_hash() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_with(args(dir.path().join("t.db")), dir).await;
    let page = app.fetch("/runs").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    if !server::site::Site::new(None).is_built() {
        // `cargo test` before `scripts/build.sh`: no site in the binary, said on the page.
        assert!(html.contains(NOTICE), "{html}");
        assert!(html.contains("topbar"), "the page itself still renders");
        return;
    }
    assert!(!html.contains(NOTICE));
    let links = pkg_links(&html);
    for name in ["socketswarm", "uplot", "charts"] {
        assert!(
            links
                .iter()
                .any(|l| l.starts_with(&format!("/pkg/{name}."))),
            "{name} linked: {links:?}"
        );
    }
    for link in &links {
        let r = app.fetch(link).await;
        assert_eq!(r.status(), 200, "{link}");
        let h = r.headers();
        assert_eq!(
            h["cache-control"], "public, max-age=31536000, immutable",
            "{link}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff", "{link}");
        // The hash in the name is the ETag: a new build gets a new URL.
        let etag = h["etag"].to_str().unwrap().trim_matches('"').to_string();
        assert!(
            link.contains(&format!(".{etag}.")),
            "{link} has ETag {etag}"
        );
    }
    let plain = app.fetch("/pkg/socketswarm.css").await;
    assert_eq!(plain.status(), 200);
    assert_eq!(plain.headers()["cache-control"], "no-cache");
    assert_eq!(app.fetch("/pkg/nothing.js").await.status(), 404);
    // The 404 of an unknown file is the app's page, not a file-server error.
    assert!(app
        .fetch("/pkg/nothing.js")
        .await
        .text()
        .await
        .unwrap()
        .contains("topbar"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_site_root_serves_pages_that_say_the_site_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let mut a = args(dir.path().join("t.db"));
    a.site_root = Some(site.path().to_path_buf());
    let app = spawn_with(a, dir).await;
    let page = app.fetch("/runs/new").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(NOTICE), "{html}");
    assert!(
        html.contains("form[target]"),
        "the form still renders: {html}"
    );
    // Plain, unhashed links to a site that is not there.
    assert!(pkg_links(&html).contains(&"/pkg/socketswarm.css".to_string()));
    assert_eq!(app.fetch("/pkg/socketswarm.css").await.status(), 404);
}

#[test]
fn a_site_root_that_is_not_a_directory_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = args(dir.path().join("t.db"));
    a.site_root = Some(dir.path().join("no-such-dir"));
    let err = a.validate().unwrap_err();
    assert!(
        err.contains("--site-root") && err.contains("not a directory"),
        "{err}"
    );
}
