//! Where a run may connect and what it may read: the allowlist holds on the addresses
//! actually connected (templates, redirects, names that change), plans read only the
//! environment the operator allows, and rendered values cannot add header lines.
//! Everything "off the list" listens on 127.0.0.2; the allowlist is `127.0.0.1`.

use serde_json::{json, Value};

use crate::common::{self, App};
use crate::security_support::{http_recorder, json, Answer};

async fn guarded(allow_env: &[&str], max_concurrent: usize) -> App {
    let dir = tempfile::tempdir().unwrap();
    let mut a = common::args(dir.path().join("t.db"));
    a.allow_target = vec!["127.0.0.1".into()];
    a.allow_env = allow_env.iter().map(|s| s.to_string()).collect();
    a.max_concurrent_runs = max_concurrent;
    common::spawn_with(a, dir).await
}

/// One connection to the sandbox for half a second.
fn hold(app: &App, name: &str) -> Value {
    json!({
        "name": name,
        "target": app.ws(&format!("/echo?tag={name}")),
        "stages": [{"duration": "500ms", "connections": 1}, {"duration": "500ms", "connections": 1}],
        "connect_timeout": "2s"
    })
}

async fn finish(app: &App, p: Value) -> Value {
    let id = app.launch(p).await;
    app.follow(&id).await;
    app.get(&format!("/api/runs/{id}")).await.1
}

fn off_list() -> impl Fn(&str) -> Answer + Send + Sync + 'static {
    |path: &str| {
        if path.contains("token") {
            json(200, r#"{"access_token":"stolen","expires_in":3600}"#)
        } else {
            json(200, r#"{"ok":true}"#)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_cannot_move_a_request_off_the_list() {
    let app = guarded(&[], 2).await;
    let (off, off_hits) = http_recorder("127.0.0.2", off_list()).await;
    let (helper, _) = http_recorder("127.0.0.1", move |p: &str| {
        if p.starts_with("/session") {
            json(200, &format!(r#"{{"h":"{off}/var-host#"}}"#))
        } else {
            json(200, "{}")
        }
    })
    .await;
    // A typed static token that names another host, used as the URL's user info.
    let mut p = hold(&app, "via-token");
    p["http_steps"] = json!([{"method": "GET", "url": format!("http://{{{{token}}}}@{helper}/x")}]);
    p["auth"] = json!({"source": {"type": "static", "tokens": [format!("{off}/via-token#")]}});
    let (status, body) = app.post("/api/runs", &p.to_string()).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("http_steps[0].url"), "{body}");
    assert!(body.to_string().contains("path and query"), "{body}");
    // A value captured from an allowed step, used as the host.
    let mut p = hold(&app, "via-var");
    p["http_steps"] = json!([
        {"method": "POST", "url": format!("http://{helper}/session"), "capture": {"h": "h"}},
        {"method": "GET", "url": format!("http://{{{{var.h}}}}@{helper}/y")}
    ]);
    let (status, body) = app.post("/api/runs", &p.to_string()).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("http_steps[1].url"), "{body}");
    assert_eq!(off_hits.count(), 0, "{:?}", off_hits.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed_and_the_client_secret_stays() {
    std::env::set_var("SS_TEST_OAUTH_SECRET", "oauth-secret-CANARY-7f3a91");
    let app = guarded(&["SS_TEST_*"], 2).await;
    let (off, off_hits) = http_recorder("127.0.0.2", off_list()).await;
    let (helper, helper_hits) = http_recorder("127.0.0.1", move |p: &str| {
        if p.starts_with("/redirect") {
            (
                302,
                vec![("Location".into(), format!("http://{off}/redirected"))],
                String::new(),
            )
        } else if p.starts_with("/token") {
            (
                307,
                vec![("Location".into(), format!("http://{off}/token-307"))],
                String::new(),
            )
        } else {
            json(200, "{}")
        }
    })
    .await;
    let mut p = hold(&app, "redirect");
    p["http_steps"] = json!([{"method": "GET", "url": format!("http://{helper}/redirect")}]);
    let run = finish(&app, p).await;
    assert_eq!(
        run["summary"]["totals"]["failures"]["step_http_302"], 1,
        "{}",
        run["summary"]
    );

    let mut p = hold(&app, "oauth-307");
    p["auth"] = json!({"source": {"type": "oauth2", "token_url": format!("http://{helper}/token307"),
        "client_id": "cid", "client_secret": {"env": "SS_TEST_OAUTH_SECRET"}}});
    let run = finish(&app, p).await;
    assert_eq!(
        run["summary"]["totals"]["failures"]["token_http_307"], 1,
        "{}",
        run["summary"]
    );
    assert!(helper_hits
        .all()
        .iter()
        .any(|h| h.path.starts_with("/token307")));
    assert_eq!(
        off_hits.count(),
        0,
        "followed off the list: {:?}",
        off_hits.all()
    );
}

/// Adds `ip name` to /etc/hosts and takes exactly that line out again when dropped.
struct HostsLine {
    name: String,
}

const HOSTS: &str = "/etc/hosts";

impl HostsLine {
    fn point(name: &str, ip: &str) -> HostsLine {
        let text = std::fs::read_to_string(HOSTS).unwrap();
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !l.ends_with(&format!(" {name}")))
            .collect();
        let mut out = kept.join("\n");
        out.push_str(&format!("\n{ip} {name}\n"));
        std::fs::write(HOSTS, out)
            .unwrap_or_else(|e| panic!("this test changes {HOSTS} (CI runs as root): {e}"));
        HostsLine { name: name.into() }
    }
}

impl Drop for HostsLine {
    fn drop(&mut self) {
        if let Ok(text) = std::fs::read_to_string(HOSTS) {
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| !l.ends_with(&format!(" {}", self.name)))
                .collect();
            let _ = std::fs::write(HOSTS, kept.join("\n") + "\n");
        }
    }
}

/// A run accepted while its name pointed at an allowed address is checked again when it
/// starts: the name now points off the list, so it never connects there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_changes_after_admission_is_checked_where_it_connects() {
    let app = guarded(&[], 1).await;
    let port: u16 = app.sandbox.rsplit(':').next().unwrap().parse().unwrap();
    let name = format!("ss-rebind-{}.test", std::process::id());
    // Off the list, on the same port as the (allowed) sandbox.
    let off = tokio::net::TcpListener::bind(("127.0.0.2", port))
        .await
        .unwrap();
    let reached = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let r = reached.clone();
    tokio::spawn(async move {
        while off.accept().await.is_ok() {
            r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let line = HostsLine::point(&name, "127.0.0.1");
    // One run at a time: this one holds the slot while the next waits in the queue.
    let mut blocker = hold(&app, "blocker");
    blocker["stages"] = json!([{"duration": "1500ms", "connections": 1}]);
    let blocker = app.launch(blocker).await;
    let mut p = hold(&app, "rebound");
    p["target"] = json!(format!("ws://{name}:{port}/echo?tag=rebound"));
    let (status, body) = app.post("/api/runs", &p.to_string()).await;
    assert_eq!(
        status, 201,
        "accepted while the name points at 127.0.0.1: {body}"
    );
    assert_eq!(body["status"], "queued", "{body}");
    let queued = body["id"].as_str().unwrap().to_string();
    let _moved = HostsLine::point(&name, "127.0.0.2");
    app.follow(&blocker).await;
    app.follow(&queued).await;
    drop(line);
    let (_, run) = app.get(&format!("/api/runs/{queued}")).await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("127.0.0.2") && error.contains("allowlist"),
        "{error}"
    );
    assert_eq!(
        reached.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "connected off the list"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_read_only_the_environment_the_operator_allows() {
    std::env::set_var("SS_SECRET_OUTSIDE", "not-for-plans-2a9f");
    std::env::set_var("SS_TEST_CAP", "env-SECRET-CANARY-51c2e0");
    let app = guarded(&["SS_TEST_*"], 2).await;
    let mut p = hold(&app, "env-out");
    p["target"] = json!(app.ws("/echo?cap={{env.SS_SECRET_OUTSIDE}}"));
    let (status, body) = app.post("/api/runs", &p.to_string()).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("--allow-env"), "{body}");
    // The server's own settings, even under an allowed prefix.
    let own = guarded(&["SOCKETSWARM_*"], 2).await;
    let mut p = hold(&own, "env-own");
    p["headers"] = json!({"X-T": "{{env.SOCKETSWARM_ACCESS_TOKEN}}"});
    let (status, body) = own.post("/api/runs", &p.to_string()).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("own settings"), "{body}");
    // An allowed value that the target echoes in its refusal is not kept.
    let mut p = hold(&app, "env-echo");
    p["target"] = json!(app.ws("/echo?cap={{env.SS_TEST_CAP}}"));
    let id = app.launch(p).await;
    app.follow(&id).await;
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    assert_eq!(
        run["summary"]["totals"]["failures"]["http_400"], 1,
        "{}",
        run["summary"]
    );
    let bodies = run["summary"]["evidence"]["bodies"].to_string();
    assert!(bodies.contains("cap=<redacted>"), "{bodies}");
    let (_, share) = app.post(&format!("/api/runs/{id}/share"), "").await;
    let sid = share["id"].as_str().unwrap_or_else(|| panic!("{share}"));
    let export = app
        .fetch(&format!("/share/{sid}/export.json"))
        .await
        .text()
        .await
        .unwrap();
    for text in [run.to_string(), export] {
        assert!(
            !text.contains("env-SECRET-CANARY-51c2e0"),
            "the value leaked"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_breaks_in_rendered_values_do_not_add_header_lines() {
    let app = guarded(&[], 2).await;
    let mut p = hold(&app, "crlf-token");
    p["auth"] = json!({"source": {"type": "static", "tokens": ["abc\r\nX-Injected: 1"]}});
    let (status, body) = app.post("/api/runs", &p.to_string()).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("auth.source.tokens[0]"), "{body}");
    // A value captured from a peer cannot do it either.
    let (helper, _) = http_recorder("127.0.0.1", |_: &str| {
        json(200, r#"{"t":"abc\r\nX-Injected: 1"}"#)
    })
    .await;
    let (target, target_hits) = http_recorder("127.0.0.1", |_: &str| json(404, "{}")).await;
    let mut p = hold(&app, "crlf-var");
    p["target"] = json!(format!("ws://{target}/ws"));
    p["http_steps"] =
        json!([{"method": "POST", "url": format!("http://{helper}/s"), "capture": {"t": "t"}}]);
    p["headers"] = json!({"X-T": "{{var.t}}"});
    let run = finish(&app, p).await;
    assert_eq!(
        run["summary"]["totals"]["failures"]["bad_value"], 1,
        "{}",
        run["summary"]
    );
    assert!(
        target_hits
            .all()
            .iter()
            .all(|h| !h.head.contains("X-Injected")),
        "{:?}",
        target_hits.all()
    );
}
