//! The canary: a different secret value in every field a plan can bring a secret in
//! (header values of every kind, URL user info and query values of the target, HTTP
//! steps and token endpoint, subprotocols, `vars`, HTTP-step bodies, token sources, the
//! server environment a plan reads), echoed back by a hostile target, never appears in
//! any answer, page, share page, export, CSV, report, SSE event, `/metrics`, log line,
//! SQLite file (WAL included) or agent process environment. Values differ per field, so
//! hiding one value everywhere by value cannot hide another field's miss. Runs the real
//! binary so its log and its agent processes are searched too.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::security_support::{echo_refuser, http_recorder, json as answer, start_binary, Proc};

/// The access token: never in an agent process's environment nor the log either.
const TOKEN: &str = "canary-access-T0ken-5b7e2d91aa";

/// The canary of `field`: secret-shaped (letters and digits mixed), unique per field.
fn canary(i: usize) -> String {
    format!("k{i:02}C4n4ry9f1e77")
}

/// Every field that carries a canary, by name (index = `canary(i)`).
const FIELDS: [&str; 24] = [
    "target user info",
    "target ?access_token=",
    "target ?jwt=",
    "header Cookie",
    "header Proxy-Authorization",
    "header X-Apikey",
    "header X-Session-Token (templated)",
    "header X-Plain (templated)",
    "header X-Jwt",
    "header from {{env}}",
    "subprotocol bearer",
    "vars value",
    "http step ?key=",
    "http step ?client_secret=",
    "http step header X-Api-Key",
    "http step header X-Jwt",
    "http step body",
    "token_url user info",
    "token_url ?api_key=",
    "token_url ?password=",
    "oauth client secret",
    "static token",
    "target password (refused run)",
    "target ?sig= (refused run)",
];

fn c(field: &str) -> String {
    canary(FIELDS.iter().position(|f| *f == field).expect(field))
}

async fn launch(http: &reqwest::Client, base: &str, plan: &Value) -> String {
    let resp = http
        .post(format!("{base}/api/runs"))
        .header("content-type", "application/json")
        .body(plan.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        201,
        "{}",
        resp.text().await.unwrap()
    );
    resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn run_json(http: &reqwest::Client, base: &str, id: &str) -> Value {
    http.get(format!("{base}/api/runs/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits for the run to end; returns its detail.
async fn finished(http: &reqwest::Client, base: &str, id: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let run = run_json(http, base, id).await;
        if run["status"] != "running" && run["status"] != "queued" {
            return run;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not finish"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The environment of process `pid`, as `/proc` shows it.
fn environ(pid: u64) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default())
        .replace('\0', "\n")
}

/// Every page and download of run `id` (and its share link and saved plan).
async fn outputs_of(http: &reqwest::Client, p: &Proc, id: &str) -> Vec<(String, String)> {
    let events = http
        .get(format!("{}/api/runs/{id}/events", p.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let share: Value = http
        .post(format!("{}/api/runs/{id}/share", p.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sid = share["id"].as_str().unwrap().to_string();
    let saved: Value = http
        .post(format!("{}/api/runs/{id}/plan", p.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or(Value::Null);
    let mut outputs = vec![(format!("/api/runs/{id}/events"), events)];
    let mut paths = vec![
        format!("/api/runs/{id}"),
        "/api/runs".to_string(),
        "/runs".to_string(),
        format!("/runs/{id}"),
        format!("/api/runs/{id}/export.json"),
        format!("/api/runs/{id}/series.csv"),
        format!("/api/runs/{id}/report.html"),
        format!("/share/{sid}"),
        format!("/api/shares/{sid}"),
        format!("/share/{sid}/export.json"),
        format!("/share/{sid}/series.csv"),
        format!("/share/{sid}/report.html"),
        format!("/share/{sid}/events"),
        "/plans".to_string(),
        "/metrics".to_string(),
        "/api/agents".to_string(),
    ];
    if let Some(pid) = saved["id"].as_str() {
        paths.push(format!("/api/plans/{pid}"));
        paths.push(format!("/api/plans/{pid}/plan.toml"));
        paths.push(format!("/plans/{pid}"));
    }
    for path in paths {
        let r = http.get(format!("{}{path}", p.base)).send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        outputs.push((path, r.text().await.unwrap()));
    }
    outputs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_every_field_never_leaves() {
    engine::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let env_value = c("header from {{env}}");
    let p = start_binary(
        &db,
        &["--allow-env", "SS_CANARY_*", "--allow-target", "127.0.0.1"],
        &[
            ("SS_CANARY_ENV", env_value.as_str()),
            ("SOCKETSWARM_ACCESS_TOKEN", TOKEN),
        ],
    );
    let mut auth = reqwest::header::HeaderMap::new();
    auth.insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let http = reqwest::Client::builder()
        .default_headers(auth)
        .no_proxy()
        .build()
        .unwrap();
    let (helper, _) = http_recorder("127.0.0.1", |path: &str| {
        if path.starts_with("/token") {
            answer(
                200,
                r#"{"access_token":"tok-from-helper","expires_in":3600}"#,
            )
        } else {
            answer(200, r#"{"session_id":"s-1"}"#)
        }
    })
    .await;
    // Echoes the request target (query values) and the X-Jwt value in its body.
    let refuser = echo_refuser("127.0.0.1", |head: &str| {
        let line = head.lines().next().unwrap_or_default().to_string();
        let jwt = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("x-jwt:"))
            .unwrap_or_default()
            .to_string();
        format!("{line} {jwt}")
    })
    .await;
    let common = |target: String| {
        json!({
            "name": "canary",
            "target": target,
            "stages": [{"duration": "750ms", "connections": 2}, {"duration": "750ms", "connections": 2}],
            "connect_timeout": "2s",
            "headers": {
                "Cookie": format!("sid={}", c("header Cookie")),
                "Proxy-Authorization": format!("Basic {}", c("header Proxy-Authorization")),
                "X-Apikey": c("header X-Apikey"),
                "X-Session-Token": format!("{}-{{{{vu}}}}", c("header X-Session-Token (templated)")),
                "X-Plain": format!("{}{{{{vu}}}}", c("header X-Plain (templated)")),
                "X-Jwt": c("header X-Jwt"),
                "X-Env": "{{env.SS_CANARY_ENV}}"
            },
            "subprotocols": ["chat", format!("base64url.bearer.authorization.k8s.io.{}", c("subprotocol bearer"))],
            "vars": {"pass": c("vars value")},
            "http_steps": [{
                "method": "POST",
                "url": format!("http://{helper}/session?key={}&client_secret={}",
                    c("http step ?key="), c("http step ?client_secret=")),
                "headers": {"X-Api-Key": c("http step header X-Api-Key"), "X-Jwt": c("http step header X-Jwt")},
                "body": format!("{{\"secret\":\"{}\"}}", c("http step body")),
                "capture": {"sid": "session_id"}
            }],
            "script": [{"send": "hello {{var.pass}}"}, {"expect": {"contains": "hello", "timeout": "1s"}}]
        })
    };
    // A: an OAuth token endpoint with credentials in its URL; the sandbox echoes.
    let mut a = common(format!(
        "ws://user:{}@{}/echo?access_token={}&jwt={}&tag=canary",
        c("target user info"),
        p.sandbox,
        c("target ?access_token="),
        c("target ?jwt=")
    ));
    a["auth"] = json!({"source": {"type": "oauth2",
        "token_url": format!("http://tu:{}@{helper}/token?api_key={}&password={}",
            c("token_url user info"), c("token_url ?api_key="), c("token_url ?password=")),
        "client_id": "cid", "client_secret": c("oauth client secret")}});
    // B: static tokens, split over two agent processes (their environments are read).
    let mut b = common(format!("ws://{}/echo?tag=canary-b", p.sandbox));
    b["auth"] = json!({"source": {"type": "static", "tokens": [c("static token")]}});
    b["agents"] = json!(2);
    b["stages"] =
        json!([{"duration": "1s", "connections": 4}, {"duration": "2s", "connections": 4}]);
    // C: a target that refuses and echoes what it was sent.
    let mut cc = common(format!(
        "ws://u:{}@{refuser}/ws?sig={}&jwt={}",
        c("target password (refused run)"),
        c("target ?sig= (refused run)"),
        c("target ?jwt=")
    ));
    cc["auth"] = json!({"source": {"type": "static", "tokens": [c("static token")]}});

    let mut outputs = Vec::new();
    let mut children = Vec::new();
    for (name, plan) in [("A", a), ("B", b), ("C", cc)] {
        let id = launch(&http, &p.base, &plan).await;
        if name == "B" {
            // The agent processes, while they run.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while children.len() < 2 && std::time::Instant::now() < deadline {
                let run = run_json(&http, &p.base, &id).await;
                for agent in run["last"]["agents"].as_array().into_iter().flatten() {
                    if let Some(pid) = agent["pid"].as_u64().filter(|p| *p > 0) {
                        let env = environ(pid);
                        if !env.is_empty() && !children.iter().any(|(p, _)| *p == pid) {
                            children.push((pid, env));
                        }
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            assert_eq!(children.len(), 2, "the agent processes were read");
        }
        let run = finished(&http, &p.base, &id).await;
        assert_eq!(run["status"], "completed", "run {name}: {}", run["error"]);
        if name == "C" {
            let failures = &run["summary"]["totals"]["failures"];
            assert!(failures["http_401"].as_u64() > Some(0), "{failures}");
            let evidence = run["summary"]["evidence"].to_string();
            assert!(evidence.contains("<redacted>"), "echoes kept: {evidence}");
        }
        outputs.extend(
            outputs_of(&http, &p, &id)
                .await
                .into_iter()
                .map(|(path, text)| (format!("run {name}: {path}"), text)),
        );
    }
    // Give the WAL its last writes, then read the database files as they are on disk.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", db.display());
        let bytes = std::fs::read(&path).unwrap_or_default();
        outputs.push((path, String::from_utf8_lossy(&bytes).to_string()));
    }
    outputs.push(("the server's log".into(), p.log.lock().unwrap().clone()));
    for (pid, env) in &children {
        outputs.push((format!("agent process {pid}'s environment"), env.clone()));
    }
    let mut leaks: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let values = FIELDS
        .iter()
        .enumerate()
        .map(|(i, f)| (*f, canary(i)))
        .chain([("the access token", TOKEN.to_string())]);
    for (field, value) in values {
        for (where_, text) in &outputs {
            if text.contains(&value) {
                leaks.entry(field).or_default().push(where_.clone());
            }
        }
    }
    assert!(leaks.is_empty(), "canaries left: {leaks:#?}");
    assert!(
        outputs.iter().any(|(_, t)| t.contains("<redacted>")),
        "nothing was redacted?"
    );
    assert!(p.log.lock().unwrap().len() > 200, "the log was read");
}
