//! One reading of a URL: what the allowlist checks, what is connected to and what a run
//! shows as its target are one parse. Seen: `ws://127.0.0.2:18090\@127.0.0.1:18095/echo`
//! connected to 127.0.0.2 and was shown as `ws://<redacted>@127.0.0.1:18095/echo`. URLs
//! that two readers take two ways (a `\`, a `#` or `?` before an `@`, control characters)
//! are refused naming the field; the rest are shown as they are connected.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::common::{self, App};
use crate::security_support::{http_recorder, json};

async fn app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let mut a = common::args(dir.path().join("t.db"));
    // Both addresses are allowed: the attack is about what is shown, not the list.
    a.allow_target = vec!["127.0.0.0/8".into()];
    common::spawn_with(a, dir).await
}

/// A TCP listener on 127.0.0.2 that counts the connections reaching it.
async fn counter() -> (String, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind(("127.0.0.2", 0))
        .await
        .unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (addr, n)
}

fn plan(target: &str) -> Value {
    json!({"name": "urls", "target": target,
        "stages": [{"duration": "100ms", "connections": 1}, {"duration": "300ms", "connections": 1}],
        "connect_timeout": "1s"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_read_two_ways_are_refused_and_the_rest_shown_as_connected() {
    let app = app().await;
    let (other, reached) = counter().await;
    let sb = app.sandbox.clone();
    let (helper, _) = http_recorder("127.0.0.1", |_: &str| {
        json(200, r#"{"access_token":"t","expires_in":3600,"id":"x"}"#)
    })
    .await;
    // Targets: the text names the sandbox after an `@`, a parser goes to 127.0.0.2.
    for target in [
        format!("ws://{other}\\@{sb}/echo"),
        format!("ws://{other}#@{sb}/echo"),
        format!("ws://{other}\t@{sb}/echo"),
        format!("ws://{sb}\\@{other}/echo"),
        format!("ws://{other}/echo\\x"),
        format!(" ws://{other}/echo"),
    ] {
        let (status, body) = app.post("/api/runs", &plan(&target).to_string()).await;
        assert_eq!(status, 422, "{target:?} accepted: {body}");
        assert_eq!(body["fields"][0]["field"], "target", "{target:?}: {body}");
    }
    // HTTP steps and token endpoints are read by the same parser.
    let mut p = plan(&app.ws("/echo"));
    p["http_steps"] = json!([{"method": "GET", "url": format!("http://{other}\\@{helper}/s")}]);
    let (status, body) = app.post("/api/runs", &p.to_string()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["fields"][0]["field"], "http_steps[0].url", "{body}");
    let mut p = plan(&app.ws("/echo"));
    p["auth"] = json!({"source": {"type": "oauth2",
        "token_url": format!("http://{other}#@{helper}/token"),
        "client_id": "c", "client_secret": "s3cr3t-client-value"}});
    let (status, body) = app.post("/api/runs", &p.to_string()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["fields"][0]["field"], "auth.source.token_url",
        "{body}"
    );
    assert_eq!(reached.load(Ordering::SeqCst), 0, "a refused URL connected");

    // Unambiguous URLs: shown exactly as connected (an `@` after the path or the query
    // began stays there; user info is hidden but the host stays the host).
    let (_, run) = app
        .post(
            "/api/runs",
            &plan(&format!("ws://{other}?@{sb}/echo")).to_string(),
        )
        .await;
    let id = run["id"].as_str().unwrap().to_string();
    app.follow(&id).await;
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    assert_eq!(run["plan"]["target"], format!("ws://{other}?@{sb}/echo"));
    let target = format!("ws://{other}/@{sb}/echo");
    let id = app.launch(plan(&target)).await;
    app.follow(&id).await;
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    assert!(
        run["plan"]["target"]
            .as_str()
            .unwrap()
            .starts_with(&format!("ws://{other}/")),
        "shown: {}",
        run["plan"]["target"]
    );
    let (_, list) = app.get("/api/runs").await;
    assert!(
        list.to_string().contains(&format!("ws://{other}/")),
        "the runs list: {list}"
    );
    assert!(
        reached.load(Ordering::SeqCst) >= 1,
        "it connected where it says"
    );
    let target = format!("ws://u:pw-Secret-9f@{sb}/echo");
    let id = app.launch(plan(&target)).await;
    app.follow(&id).await;
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    assert_eq!(
        run["plan"]["target"],
        format!("ws://<redacted>@{sb}/echo"),
        "{}",
        run["plan"]["target"]
    );
}
