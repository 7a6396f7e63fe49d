//! Secrets deny-by-default, without changing what a plan does. Seen: a harmless
//! `session_cap=150` in the starter plan's URL was hidden (its name holds "session"), and
//! the exported plan then ran with the literal `<redacted>` (500 of 500 handshakes 400,
//! exit 0); meanwhile `?jwt=`, `X-Jwt`, a subprotocol bearer token and `vars` values
//! were shown. Here: harmless values stay visible and exports run as the browser ran
//! them; secret-shaped values are hidden whatever their names; a plan that still holds a
//! placeholder is refused, naming the field, by the API and by `plan check`.

use std::process::Command;

use serde_json::{json, Value};

use crate::common::{self, App};

async fn app(starter: bool) -> App {
    let dir = tempfile::tempdir().unwrap();
    let mut a = common::args(dir.path().join("t.db"));
    a.starter_plan = starter;
    common::spawn_with(a, dir).await
}

fn short(app: &App, target: &str) -> Value {
    json!({"name": "values", "target": format!("ws://{}{target}", app.sandbox),
        "stages": [{"duration": "100ms", "connections": 1}, {"duration": "300ms", "connections": 1}],
        "connect_timeout": "2s"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harmless_values_stay_visible_and_exports_run_the_same() {
    let app = app(false).await;
    // The sandbox's web-messaging deployment takes these parameters.
    let mut p = short(
        &app,
        "/webmessaging?deploymentId=demo-deployment&session_cap=150&idle=60s&reply_delay=200ms",
    );
    p["headers"] = json!({"X-Client-Version": "2.1.0", "Accept-Language": "en-US",
        "X-Request-Id": "{{uuid}}", "X-Transport": "websocket", "X-Ts": "1733650000123"});
    p["vars"] = json!({"guest": "guest-{{vu}}-{{uuid}}", "tenant": "acme"});
    p["subprotocols"] = json!(["graphql-transport-ws"]);
    let id = app.launch(p.clone()).await;
    app.follow(&id).await;
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    for key in ["target", "headers", "vars", "subprotocols"] {
        assert_eq!(run["plan"][key], p[key], "{key} as stored and shown");
    }
    assert_eq!(
        run["missing_secrets"],
        json!([]),
        "{}",
        run["missing_secrets"]
    );
    let (_, export) = app.get(&format!("/api/runs/{id}/export.json")).await;
    for key in ["target", "headers", "vars", "subprotocols"] {
        assert_eq!(export["plan"][key], p[key], "{key} in the export");
    }
    assert!(
        !export.to_string().contains("<redacted>"),
        "{}",
        export["plan"]
    );
    // The export's plan runs as the first did: the sandbox sees the same query.
    let again = app.launch(export["plan"].clone()).await;
    app.follow(&again).await;
    let (_, run) = app.get(&format!("/api/runs/{again}")).await;
    assert_eq!(run["summary"]["totals"]["opened"], 1, "{}", run["summary"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_shaped_values_are_hidden_whatever_their_names() {
    let app = app(false).await;
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJndWVzdC00MiJ9.q7ZfT3kPx9LmW2vBn8sRt";
    let mut p = short(&app, &format!("/echo?jwt={jwt}&q={jwt}&n=42"));
    p["headers"] = json!({"X-Jwt": jwt, "X-Trace": jwt});
    p["vars"] = json!({"who": jwt});
    p["subprotocols"] = json!([
        "chat",
        format!("base64url.bearer.authorization.k8s.io.{jwt}")
    ]);
    let id = app.launch(p).await;
    app.follow(&id).await;
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    let (_, list) = app.get("/api/runs").await;
    for text in [run.to_string(), list.to_string()] {
        assert!(!text.contains("q7ZfT3kPx9LmW2vBn8sRt"), "shown: {text}");
    }
    assert!(
        run["plan"]["target"].as_str().unwrap().ends_with("&n=42"),
        "a number stays: {}",
        run["plan"]["target"]
    );
    // Each hidden value is asked for again by its field, never run as a placeholder.
    let keys: Vec<&str> = run["missing_secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["key"].as_str().unwrap())
        .collect();
    for key in [
        "headers.X-Jwt",
        "headers.X-Trace",
        "vars.who",
        "subprotocols.1",
    ] {
        assert!(keys.contains(&key), "{key} not asked for: {keys:?}");
    }
    // Marked public, a value is shown.
    let mut p = short(
        &app,
        "/echo?deploymentId=3f2a9c1e-8b7d-4e0f-a1b2-c3d4e5f60718",
    );
    p["public"] = json!(["deploymentId"]);
    let id = app.launch(p.clone()).await;
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    assert_eq!(run["plan"]["target"], p["target"]);
}

/// Writes `plan` to a file and runs `socketswarm plan check` on it.
fn plan_check(plan: &Value) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.json");
    std::fs::write(&path, plan.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_socketswarm"))
        .args(["plan", "check"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_holding_a_placeholder_never_runs() {
    let app = app(false).await;
    let cases: Vec<(&str, Value)> = vec![
        (
            "target",
            json!({"target": app.ws("/echo?session_cap=<redacted>")}),
        ),
        (
            "headers.X-Api-Key",
            json!({"headers": {"X-Api-Key": "<redacted>"}}),
        ),
        ("vars.guest", json!({"vars": {"guest": "<redacted>"}})),
        ("subprotocols[0]", json!({"subprotocols": ["<redacted>"]})),
        (
            "script[0].send",
            json!({"script": [{"send": "hello <redacted>"}]}),
        ),
        (
            "http_steps[0].headers.X-K",
            json!({"http_steps": [{"method": "GET", "url": format!("http://{}/x", app.sandbox),
                "headers": {"X-K": "<redacted>"}}]}),
        ),
    ];
    for (field, patch) in cases {
        let mut p = short(&app, "/echo");
        for (k, v) in patch.as_object().unwrap() {
            p[k] = v.clone();
        }
        let (status, body) = app.post("/api/runs", &p.to_string()).await;
        assert_eq!(status, 422, "{field}: accepted with a placeholder: {body}");
        assert!(
            body["fields"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["field"] == field && f["message"].to_string().contains("<redacted>")),
            "{field} not named: {body}"
        );
        let (code, out) = plan_check(&p);
        assert_ne!(code, 0, "plan check passed {field}: {out}");
        assert!(
            out.contains(field),
            "plan check did not name {field}: {out}"
        );
    }
    // A real export of a run whose secret was hidden: its plan does not run as it is.
    let mut p = short(&app, "/echo");
    p["headers"] = json!({"X-Api-Key": "sk_live_9fQ2xLm7Rt4Vb8Nw"});
    let id = app.launch(p).await;
    app.follow(&id).await;
    let (_, export) = app.get(&format!("/api/runs/{id}/export.json")).await;
    let (status, body) = app.post("/api/runs", &export["plan"].to_string()).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("headers.X-Api-Key"), "{body}");
    let (code, out) = plan_check(&export["plan"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("headers.X-Api-Key"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starter_plans_export_and_run_as_in_the_browser() {
    let app = app(true).await;
    let (_, plans) = app.get("/api/plans").await;
    let plans = plans.as_array().unwrap().clone();
    assert!(plans.len() >= 2, "{plans:?}");
    for item in plans {
        let pid = item["id"].as_str().unwrap();
        let (_, shown) = app.get(&format!("/api/plans/{pid}")).await;
        let toml = app
            .fetch(&format!("/api/plans/{pid}/plan.toml"))
            .await
            .text()
            .await
            .unwrap();
        let name = shown["name"].clone();
        assert!(
            !toml.contains("<redacted>"),
            "{name}: the plan file:\n{toml}"
        );
        assert!(
            !shown.to_string().contains("<redacted>"),
            "{name}: nothing in a starter plan is secret: {}",
            shown["plan"]
        );
        // The file, checked and run as a user would: the same plan the page runs.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("starter.toml");
        std::fs::write(&path, &toml).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_socketswarm"))
            .args(["plan", "check"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {out:?}");
        let file_plan: Value =
            serde_json::to_value(server::cli::read_plan(&path).unwrap()).unwrap();
        assert_eq!(file_plan, shown["plan"], "{name}: file and page differ");
        let (status, launched) = app.post(&format!("/api/plans/{pid}/runs"), "").await;
        assert_eq!(status, 201, "{launched}");
        let rid = launched["id"].as_str().unwrap();
        let (_, run) = app.get(&format!("/api/runs/{rid}")).await;
        assert_eq!(
            run["plan"], file_plan,
            "{name}: the run stored another plan"
        );
        let _ = app.post(&format!("/api/runs/{rid}/cancel"), "").await;
        app.follow(rid).await;
    }
}
