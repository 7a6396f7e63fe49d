//! Headers a plan sets, wherever it sets them (the handshake's `headers`, `auth.header`,
//! HTTP steps' `headers`): none may override what the transport writes itself (`Host`,
//! framing, the WebSocket upgrade), none may be given twice. Seen: `Host` was refused in
//! `headers` but accepted in `auth.header` (two Host headers on the wire) and in an HTTP
//! step's headers (its virtual host switched).

use serde_json::{json, Value};

use crate::common::{self, App};
use crate::security_support::{http_recorder, json};

async fn app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let mut a = common::args(dir.path().join("t.db"));
    a.allow_target = vec!["127.0.0.1".into()];
    common::spawn_with(a, dir).await
}

fn hold(app: &App) -> Value {
    json!({
        "name": "headers",
        "target": app.ws("/echo"),
        "stages": [{"duration": "300ms", "connections": 1}],
        "connect_timeout": "2s"
    })
}

/// Launches `p`; the answer must be a 422 naming `field`.
async fn refused(app: &App, p: &Value, field: &str) {
    let (status, body) = app.post("/api/runs", &p.to_string()).await;
    assert_eq!(status, 422, "accepted with {field}: {body}");
    let fields: Vec<String> = body["fields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["field"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        fields.iter().any(|f| f == field),
        "{field} not named: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auth_header_cannot_be_one_the_transport_writes() {
    let app = app().await;
    for name in [
        "Host",
        "host",
        "HOST",
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "Upgrade",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Protocol",
        "Sec-WebSocket-Extensions",
    ] {
        let mut p = hold(&app);
        p["auth"] = json!({"source": {"type": "static", "tokens": ["t0k3n-for-the-host-test"]},
            "header": name, "value": "evil.example"});
        refused(&app, &p, "auth.header").await;
    }
    // Nor one the plan's own headers already set (two lines of one header).
    let mut p = hold(&app);
    p["headers"] = json!({"authorization": "Bearer x"});
    p["auth"] = json!({"source": {"type": "static", "tokens": ["t0k3n-for-the-host-test"]}});
    refused(&app, &p, "auth.header").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_headers_cannot_frame_or_repeat() {
    let app = app().await;
    for name in [
        "Transfer-Encoding",
        "Content-Length",
        "Sec-WebSocket-Protocol",
        "Sec-WebSocket-Extensions",
        "Sec-WebSocket-Accept",
        "Keep-Alive",
        "TE",
    ] {
        let mut p = hold(&app);
        p["headers"] = json!({ name: "x" });
        refused(&app, &p, &format!("headers.{name}")).await;
    }
    let mut p = hold(&app);
    p["headers"] = json!({"X-Tenant": "a", "x-tenant": "b"});
    refused(&app, &p, "headers.x-tenant").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_steps_cannot_switch_the_virtual_host() {
    let app = app().await;
    let (step, hits) = http_recorder("127.0.0.1", |_: &str| json(200, r#"{"id":"s"}"#)).await;
    for name in [
        "Host",
        "host",
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "Upgrade",
        "Bad Name",
        "X-A:b",
        "H\u{043e}st",
        "Host\t",
    ] {
        let mut p = hold(&app);
        p["http_steps"] = json!([{"method": "POST", "url": format!("http://{step}/session"),
            "headers": { name: "vhost-b.test" }}]);
        refused(&app, &p, &format!("http_steps[0].headers.{name}")).await;
    }
    let mut p = hold(&app);
    p["http_steps"] = json!([{"method": "GET", "url": format!("http://{step}/s"),
        "headers": {"X-A": "1", "x-a": "2"}}]);
    refused(&app, &p, "http_steps[0].headers.x-a").await;
    assert!(
        hits.all()
            .iter()
            .all(|h| !h.head.to_ascii_lowercase().contains("vhost-b")),
        "a request went out with another Host: {:?}",
        hits.all()
    );
}
