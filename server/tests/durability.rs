//! Durability with the real binary: SIGTERM ends live runs as `cancelled` with a final
//! flush; `kill -9` leaves them to be marked `interrupted` at the next start, with every
//! tick flushed before the kill kept. Run: `cargo test -p server --test durability`.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

struct Proc {
    child: Child,
    base: String,
    sandbox: String,
}

/// A test never leaves a server behind, even when it fails half-way.
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `socketswarm` on free ports with `db`; returns once it listens.
fn start(db: &Path) -> Proc {
    engine::install_crypto_provider();
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
        .args(["--log", "info", "--tick-ms", "250"])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut base, mut sandbox) = (None, None);
    while base.is_none() || sandbox.is_none() {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        if let Some(i) = line.find("socketswarm on http://") {
            base = Some(line[i + "socketswarm on ".len()..].trim().to_string());
        }
        if let Some(i) = line.find("sandbox target on ws://") {
            let rest = &line[i + "sandbox target on ".len()..];
            sandbox = Some(rest.split("/echo").next().unwrap().to_string());
        }
    }
    // Keep draining the log so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Proc {
        child,
        base: base.unwrap(),
        sandbox: sandbox.unwrap(),
    }
}

async fn get(base: &str, path: &str) -> Value {
    reqwest::get(format!("{base}{path}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Launches a long run and waits until it holds its 8 connections with ≥ 3 ticks stored.
async fn long_run(p: &Proc) -> String {
    let plan = json!({"name": "long", "target": format!("{}/echo", p.sandbox),
        "stages": [{"duration": "500ms", "connections": 8}, {"duration": "60s", "connections": 8}]});
    let r: Value = reqwest::Client::new()
        .post(format!("{}/api/runs", p.base))
        .body(plan.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = r["id"].as_str().unwrap().to_string();
    // Bounded wait (the run is 60 s long; this takes about 1 s).
    for _ in 0..200 {
        let run = get(&p.base, &format!("/api/runs/{id}")).await;
        if run["last"]["open"] == 8 && run["series"]["t"].as_array().unwrap().len() >= 3 {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the run never held 8 connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cancels_live_runs_with_a_final_flush() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
    let mut p = start(&db);
    let id = long_run(&p).await;
    let status = Command::new("kill")
        .args(["-TERM", &p.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = p.child.wait().unwrap();
    assert!(exit.success(), "clean exit on SIGTERM: {exit}");
    let mut q = start(&db);
    let run = get(&q.base, &format!("/api/runs/{id}")).await;
    assert_eq!(run["status"], "cancelled");
    assert_eq!(run["summary"]["end_reason"], "cancelled");
    assert_eq!(run["summary"]["totals"]["opened"], 8);
    assert_eq!(
        run["summary"]["totals"]["closes"]["client"], 8,
        "every connection closed by us"
    );
    let ticks = run["series"]["t"].as_array().unwrap().len();
    assert!(ticks >= 3, "ticks kept: {ticks}");
    assert_eq!(
        run["last"]["totals"], run["summary"]["totals"],
        "final tick flushed"
    );
    q.child.kill().unwrap();
    q.child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_leaves_an_interrupted_run_with_its_flushed_ticks() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
    let mut p = start(&db);
    let id = long_run(&p).await;
    let before = get(&p.base, &format!("/api/runs/{id}")).await;
    let flushed = before["series"]["t"].as_array().unwrap().len();
    p.child.kill().unwrap(); // SIGKILL
    p.child.wait().unwrap();
    let mut q = start(&db);
    let run = get(&q.base, &format!("/api/runs/{id}")).await;
    assert_eq!(run["status"], "interrupted");
    let kept = run["series"]["t"].as_array().unwrap().len();
    assert!(
        kept >= flushed,
        "kept {kept} ticks, {flushed} were flushed before the kill"
    );
    assert_eq!(run["last"]["open"], 8);
    let list = get(&q.base, "/api/runs?status=interrupted").await;
    assert_eq!(list[0]["id"], id.as_str());
    q.child.kill().unwrap();
    q.child.wait().unwrap();
}
