//! Access control and input safety through HTTP: the access token (cookie and bearer),
//! share links that reach only their run, cross-site request refusal, the target
//! allowlist, and secrets that never come back out (answers, exports, reports, logs).
//! Run: `cargo test -p server --test access`.
#![allow(clippy::unwrap_used)]
mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::{args, plan, spawn_with, App};
use serde_json::{json, Value};

const TOKEN: &str = "t0k3n-for-the-tests-0123";

/// Everything this test binary logs, for the "no secrets in logs" check.
fn log_buffer() -> Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug,hyper=info,sqlx=info,h2=info,rustls=info")
            .with_writer(move || Writer(w.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct Writer(Arc<Mutex<Vec<u8>>>);
impl Write for Writer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn app_with(f: impl FnOnce(&mut server::config::ServeArgs)) -> App {
    let dir = tempfile::tempdir().unwrap();
    let mut a = args(dir.path().join("t.db"));
    f(&mut a);
    spawn_with(a, dir).await
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_token_guards_everything_but_share_links() {
    let app = app_with(|a| a.access_token = Some(TOKEN.into())).await;
    let http = no_redirects();
    let get = |path: &str, auth: Option<&str>| {
        let mut r = http.get(format!("{}{path}", app.base));
        if let Some(h) = auth {
            r = r.header("authorization", h);
        }
        r.send()
    };
    // No token: pages go to the login form, the API says 401.
    let r = get("/runs", None).await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?next=%2Fruns");
    let r = get("/api/runs", None).await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("access token"));
    assert_eq!(
        get("/api/runs", Some("Bearer wrong-token-0000000"))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(get("/api/health", None).await.unwrap().status(), 200);
    assert_eq!(get("/login", None).await.unwrap().status(), 200);

    // Bearer: the API works.
    let bearer = format!("Bearer {TOKEN}");
    let p = plan("guarded", &app.ws("/echo"), 3, "300ms", "300ms");
    let r = http
        .post(format!("{}/api/runs", app.base))
        .header("authorization", &bearer)
        .body(p.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, done) = common::follow_sse(
        &reqwest::Client::builder()
            .default_headers(
                [(reqwest::header::AUTHORIZATION, bearer.parse().unwrap())]
                    .into_iter()
                    .collect(),
            )
            .build()
            .unwrap(),
        &format!("{}/api/runs/{id}/events", app.base),
        None,
    )
    .await;
    assert_eq!(done["status"], "completed");

    // The login form: a wrong token goes back with an error, the right one sets the cookie.
    let r = http
        .post(format!("{}/login", app.base))
        .form(&[("token", "nope-nope-nope-nope"), ("next", "/runs")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/login?failed=true"));
    assert!(r.headers().get("set-cookie").is_none());
    let r = http
        .post(format!("{}/login", app.base))
        .form(&[("token", TOKEN), ("next", "//evil.example/")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "/",
        "only local paths are followed"
    );
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let pair = cookie.split(';').next().unwrap().to_string();
    let r = http
        .get(format!("{}/runs/{id}", app.base))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("guarded"));

    // A share link opens its run without the token, and nothing else.
    let r = http
        .post(format!("{}/api/runs/{id}/share", app.base))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    let sid = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    for path in [
        format!("/share/{sid}"),
        format!("/share/{sid}/report.html"),
        format!("/share/{sid}/export.json"),
        format!("/share/{sid}/series.csv"),
        format!("/share/{sid}/events"),
        format!("/api/shares/{sid}"),
    ] {
        assert_eq!(get(&path, None).await.unwrap().status(), 200, "{path}");
    }
    let page = get(&format!("/share/{sid}"), None)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("guarded"));
    assert!(
        !page.contains("/api/runs/"),
        "share pages link only through /share/"
    );
    // Knowing the run id from the share does not open the instance.
    assert_eq!(
        get(&format!("/api/runs/{id}"), None)
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        get(&format!("/runs/{id}"), None).await.unwrap().status(),
        303
    );
    assert_eq!(
        get(&format!("/api/runs/{id}/report.html"), None)
            .await
            .unwrap()
            .status(),
        401
    );
    // The share server fn answers only for real share ids.
    let r = http
        .post(format!("{}/api/share_view", app.base))
        .form(&[("share_id", "0123456789abcdef0123456789abcdef")])
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_client_error() || r.status().is_server_error(),
        "{}",
        r.status()
    );
    let r = http
        .post(format!("{}/api/share_view", app.base))
        .form(&[("share_id", sid.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the share's own server fn is open");
    // Revoking a share needs the token; then the link is dead.
    let r = http
        .delete(format!("{}/api/shares/{sid}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .delete(format!("{}/api/shares/{sid}", app.base))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        get(&format!("/share/{sid}/report.html"), None)
            .await
            .unwrap()
            .status(),
        404
    );
    // State-changing calls are never open.
    let r = http
        .post(format!("{}/api/runs/{id}/rerun", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_requests_are_refused_and_store_nothing() {
    let app = app_with(|_| {}).await;
    let p = plan("csrf", &app.ws("/echo"), 1, "200ms", "200ms").to_string();
    for (name, value) in [
        ("origin", "http://evil.example"),
        ("origin", "http://127.0.0.1:1"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        let r = app
            .http
            .post(format!("{}/api/runs", app.base))
            .header(name, value)
            .body(p.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{name}: {value}");
        let body: Value = r.json().await.unwrap();
        assert!(body["message"]
            .as_str()
            .unwrap()
            .starts_with("cross-site request refused"));
    }
    let (_, list) = app.get("/api/runs").await;
    assert_eq!(list, json!([]), "nothing was launched");
    // The same request from the app's own origin works.
    let origin = app.base.clone();
    let r = app
        .http
        .post(format!("{}/api/runs", app.base))
        .header("origin", origin)
        .header("sec-fetch-site", "same-origin")
        .body(p)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    app.follow(r.json::<Value>().await.unwrap()["id"].as_str().unwrap())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allowlist_refuses_other_targets_naming_the_field() {
    let app = app_with(|a| a.allow_target = vec!["127.0.0.1:9".into()]).await;
    // The sandbox runs on another port: refused, with the list in the message.
    let (s, body) = app
        .post(
            "/api/runs",
            &plan("x", &app.ws("/echo"), 1, "1s", "1s").to_string(),
        )
        .await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["fields"][0]["field"], "target");
    let msg = body["fields"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("is not in this server's target allowlist (127.0.0.1:9)"),
        "{msg}"
    );
    let (_, list) = app.get("/api/runs").await;
    assert_eq!(list, json!([]));
    drop(app);
    // Allowed: the sandbox's own address.
    let mut app2 = app_with(|a| a.allow_target = vec!["127.0.0.0/8".into()]).await;
    let id = app2
        .launch(plan("ok", &app2.ws("/echo"), 2, "300ms", "300ms"))
        .await;
    let (_, done) = app2.follow(&id).await;
    assert_eq!(done["status"], "completed");
    // Token endpoints are checked too.
    let mut p = plan("tok", &app2.ws("/echo"), 1, "1s", "1s");
    p["auth"] = json!({"source": {"type": "oauth2", "token_url": "http://192.0.2.1/token", "client_id": "a", "client_secret": "b"}});
    let (s, body) = app2.post("/api/runs", &p.to_string()).await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["fields"][0]["field"], "auth.source.token_url");
    app2.stop().await;
}

#[test]
fn listening_beyond_loopback_needs_a_token_or_an_explicit_opt_out() {
    let mut a = args("x.db".into());
    a.listen = "0.0.0.0:3000".parse().unwrap();
    let e = a.validate().unwrap_err();
    assert!(e.contains("--access-token"), "{e}");
    a.access_token = Some("short".into());
    assert!(a.validate().unwrap_err().contains("at least 24 characters"));
    a.access_token = Some(TOKEN.into());
    assert!(a.validate().is_ok());
    a.access_token = None;
    a.allow_remote = true;
    assert!(a.validate().is_ok());
    a.allow_target = vec!["10.0.0.0/99".into()];
    assert!(a.validate().unwrap_err().contains("--allow-target"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_come_back_out() {
    let logs = log_buffer();
    let app = app_with(|_| {}).await;
    let mut p = plan("secrets", &app.ws("/echo?auth=bearer"), 3, "300ms", "500ms");
    p["auth"] = json!({"source": {"type": "static", "tokens": ["static-SECRET-token-1"]}});
    p["headers"] = json!({"X-Api-Key": "hdr-SECRET-2"});
    let id = app.launch(p).await;
    let (_, done) = app.follow(&id).await;
    assert_eq!(done["status"], "completed");
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    assert_eq!(
        run["summary"]["totals"]["opened"], 3,
        "the secret token worked"
    );
    let (_, saved) = app.post(&format!("/api/runs/{id}/plan"), "").await;
    let pid = saved["id"].as_str().unwrap();
    let (_, share) = app.post(&format!("/api/runs/{id}/share"), "").await;
    let sid = share["id"].as_str().unwrap();
    let mut seen = String::new();
    for path in [
        format!("/api/runs/{id}"),
        format!("/api/runs/{id}/export.json"),
        format!("/api/runs/{id}/report.html"),
        format!("/api/runs/{id}/series.csv"),
        format!("/api/plans/{pid}"),
        format!("/api/plans/{pid}/plan.toml"),
        format!("/api/shares/{sid}"),
        format!("/share/{sid}"),
        format!("/runs/{id}"),
        "/api/runs".to_string(),
    ] {
        let r = app.fetch(&path).await;
        assert_eq!(r.status(), 200, "{path}");
        let text = r.text().await.unwrap();
        assert!(!text.contains("SECRET"), "{path} leaks a secret");
        seen.push_str(&text);
    }
    assert!(seen.contains("<redacted>"), "secrets are shown as redacted");
    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(logs.contains(&id), "the run was logged");
    assert!(!logs.contains("SECRET"), "logs leak a secret");
}
