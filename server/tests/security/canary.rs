//! The canary: one secret value placed in every secret-capable field of a plan (headers
//! of every kind, HTTP steps, token sources, the target's query and user info, script
//! messages) never appears in any answer, page, share, export, CSV, report, SSE event or
//! log line. Runs the real binary so its log is searched too.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

const CANARY: &str = "CANARY-c4n4ry-9f1e77";

struct Proc {
    _child: crate::common::KillOnDrop,
    base: String,
    sandbox: String,
    log: Arc<Mutex<String>>,
}

fn start(db: &std::path::Path) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_socketswarm"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--sandbox",
            "127.0.0.1:0",
            "--sandbox-tls",
            "off",
        ])
        .arg("--database")
        .arg(db)
        .args(["--log", "debug", "--tick-ms", "250"])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let err = child.stderr.take().unwrap();
    let l = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            l.lock().unwrap().push_str(&line);
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut base, mut sandbox) = (None, None);
    while base.is_none() || sandbox.is_none() {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        log.lock().unwrap().push_str(&line);
        if let Some(i) = line.find("socketswarm on http://") {
            base = Some(line[i + "socketswarm on ".len()..].trim().to_string());
        }
        if let Some(i) = line.find("sandbox target on ws://") {
            let rest = &line[i + "sandbox target on ".len()..];
            let url = rest.split("/echo").next().unwrap();
            sandbox = Some(url.trim_start_matches("ws://").to_string());
        }
    }
    let l = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            l.lock().unwrap().push_str(&line);
        }
    });
    Proc {
        _child: crate::common::KillOnDrop(child),
        base: base.unwrap(),
        sandbox: sandbox.unwrap(),
        log,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_every_field_never_leaves() {
    engine::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let p = start(&dir.path().join("c.db"));
    let http = reqwest::Client::new();
    let (step, _) = crate::security_support::http_recorder("127.0.0.1", |_: &str| {
        crate::security_support::json(200, r#"{"session_id":"s-1"}"#)
    })
    .await;
    let plan = json!({
        "name": "canary",
        "target": format!("ws://user:{CANARY}@{}/echo?access_token={CANARY}&tag=canary", p.sandbox),
        "stages": [{"duration": "750ms", "connections": 2}, {"duration": "750ms", "connections": 2}],
        "headers": {
            "Cookie": format!("sid={CANARY}"),
            "Proxy-Authorization": format!("Basic {CANARY}"),
            "X-Apikey": CANARY,
            "X-Session-Token": format!("{CANARY}-{{{{vu}}}}"),
            "X-Plain": format!("{CANARY}{{{{vu}}}}")
        },
        "http_steps": [{
            "method": "POST",
            "url": format!("http://{step}/session?key={CANARY}"),
            "headers": {"X-Api-Key": CANARY},
            "body": format!("{{\"secret\":\"{CANARY}\"}}"),
            "capture": {"sid": "session_id"}
        }],
        "auth": {"source": {"type": "static", "tokens": [CANARY]}},
        "script": [{"send": format!("hello {CANARY}")}, {"expect": {"contains": CANARY, "timeout": "1s"}}]
    });
    let resp = http
        .post(format!("{}/api/runs", p.base))
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
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Live events, to the end.
    let events = http
        .get(format!("{}/api/runs/{id}/events", p.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Finished (the last event can arrive just before the summary is stored).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let run: Value = http
            .get(format!("{}/api/runs/{id}", p.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if run["status"] != "running" && run["status"] != "queued" {
            assert_eq!(run["status"], "completed", "{}", run["error"]);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not finish"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
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
    let mut outputs = vec![("/api/runs/{id}/events".to_string(), events)];
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
    let leaks: Vec<&str> = outputs
        .iter()
        .filter(|(_, text)| text.contains(CANARY))
        .map(|(path, _)| path.as_str())
        .collect();
    assert!(leaks.is_empty(), "the canary left through {leaks:?}");
    assert!(
        outputs.iter().any(|(_, t)| t.contains("<redacted>")),
        "nothing was redacted?"
    );
    let log = p.log.lock().unwrap().clone();
    assert!(!log.contains(CANARY), "the canary is in the log");
    assert!(log.len() > 200, "the log was read");
}
