//! The capacity diagnosis against the sandbox's limit profiles: each must get the right
//! verdict and level (within ±5 %), and plain echo must get no false verdict.
//! Run: `cargo test -p server --test diagnosis`.
#![allow(clippy::unwrap_used)]
mod common;

use common::{plan, spawn_app};
use serde_json::{json, Value};

async fn diagnosis_of(app: &common::App, p: Value) -> Value {
    let id = app.launch(p).await;
    let (_, done) = app.follow(&id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    run["diagnosis"].clone()
}

fn level(d: &Value) -> f64 {
    d["level"].as_f64().unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_cap_is_named_with_its_level() {
    let app = spawn_app().await;
    let d = diagnosis_of(
        &app,
        plan("cap", &app.ws("/echo?cap=60&tag=d"), 120, "4s", "2s"),
    )
    .await;
    assert_eq!(d["kind"], "concurrency_cap", "{d}");
    assert!((57.0..=63.0).contains(&level(&d)), "{d}");
    assert!(d["confidence"].as_f64().unwrap() >= 0.7, "{d}");
    assert!(
        (55.0..=61.0).contains(&d["knee"]["open_at_first_rejection"].as_f64().unwrap()),
        "{d}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_rate_limit_is_named_with_its_rate() {
    let app = spawn_app().await;
    // 30 attempts/s against 20/s.
    let d = diagnosis_of(
        &app,
        plan(
            "rate",
            &app.ws("/echo?rate=20&burst=5&tag=d"),
            150,
            "5s",
            "1s",
        ),
    )
    .await;
    assert_eq!(d["kind"], "handshake_rate_limit", "{d}");
    assert!((19.0..=21.0).contains(&level(&d)), "{d}");
    assert_eq!(d["unit"], "handshakes_per_second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_drops_are_named() {
    let app = spawn_app().await;
    let d = diagnosis_of(
        &app,
        plan(
            "drops",
            &app.ws("/echo?drop_after=1s&tag=d"),
            20,
            "500ms",
            "3s",
        ),
    )
    .await;
    assert_eq!(d["kind"], "server_drops", "{d}");
    assert!(
        d["headline"].as_str().unwrap().contains("server_1001"),
        "{d}"
    );
}

/// The case that started this tool: 429s at a cap *and* drops, with reconnects refilling
/// the freed slots. The open count must never run ahead of the target's (a drop reported
/// late while its replacement's open is reported at once did, by up to 20 of 150), and the
/// cap is still named, and the drops beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_with_drops_and_reconnects_is_still_a_cap() {
    let app = spawn_app().await;
    let mut p = plan(
        "cap and drops",
        &app.ws("/echo?cap=40&drop_after=2s&tag=capdrop"),
        120,
        "3s",
        "4s",
    );
    p["reconnect"] =
        json!({"mode": "backoff", "initial": "200ms", "max": "1s", "max_attempts": 1000});
    p["script"] = json!([{"repeat": {"every": "100ms", "steps": [{"send": "x"}, {"expect": {}}]}}]);
    let id = app.launch(p).await;
    let (_, done) = app.follow(&id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    let open: Vec<f64> = run["series"]["open"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        open.iter().all(|o| *o <= 40.0),
        "open ran ahead of the cap of 40: {open:?}"
    );
    let dropped = run["summary"]["totals"]["dropped"].as_u64().unwrap_or(0);
    assert!(
        dropped >= 40,
        "the target dropped sessions: {}",
        run["summary"]["totals"]
    );
    let d = &run["diagnosis"];
    assert_eq!(d["kind"], "concurrency_cap", "{d}");
    assert!((38.0..=42.0).contains(&level(d)), "{d}");
    // The drops are a second limit hit in the same run: reported beside the cap.
    let also = d["also"].as_array().unwrap_or_else(|| panic!("{d}"));
    assert_eq!(also.len(), 1, "{d}");
    assert_eq!(also[0]["kind"], "server_drops", "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failures_are_named() {
    let app = spawn_app().await;
    let d = diagnosis_of(
        &app,
        plan(
            "auth",
            &app.ws("/echo?status=401&tag=d"),
            10,
            "500ms",
            "500ms",
        ),
    )
    .await;
    assert_eq!(d["kind"], "auth_failure", "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_echo_gets_no_false_verdict() {
    let app = spawn_app().await;
    let mut p = plan("echo", &app.ws("/echo?tag=d"), 80, "2s", "2s");
    p["script"] = json!([{"repeat": {"every": "200ms", "steps": [{"send": "x"}, {"expect": {}}]}}]);
    let d = diagnosis_of(&app, p).await;
    assert_eq!(d["kind"], "none", "{d}");
    assert_eq!(level(&d), 80.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_finds_both_the_cap_and_the_rate_limit() {
    let app = spawn_app().await;
    let p = json!({
        "name": "find my limit",
        "target": app.ws("/echo?cap=40&rate=20&burst=5&tag=probe"),
        "stages": [],
        "probe": {"max_connections": 80, "max_connect_rate": 40, "max_duration": "20s"}
    });
    let d = diagnosis_of(&app, p).await;
    let verdicts = d["verdicts"].as_array().unwrap();
    let cap = verdicts
        .iter()
        .find(|v| v["kind"] == "concurrency_cap")
        .unwrap_or_else(|| panic!("{d}"));
    assert!((38.0..=42.0).contains(&level(cap)), "{d}");
    let rate = verdicts
        .iter()
        .find(|v| v["kind"] == "handshake_rate_limit")
        .unwrap_or_else(|| panic!("{d}"));
    assert!((19.0..=21.0).contains(&level(rate)), "{d}");
    let headline = d["headline"].as_str().unwrap();
    assert!(
        headline.contains("cap ≈ 40 concurrent") && headline.contains("handshake limit ≈ "),
        "{headline}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_with_a_token_pool_finds_a_per_token_cap() {
    let app = spawn_app().await;
    let p = json!({
        "name": "per-token probe",
        "target": app.ws("/echo?auth=bearer&token_cap=15&tag=ptp"),
        "stages": [],
        "auth": {"source": {"type": "static", "tokens": ["static-a", "static-b", "static-c"]}, "policy": {"mode": "pool", "size": 3}},
        "probe": {"max_connections": 60, "max_connect_rate": 40, "max_duration": "24s"}
    });
    let d = diagnosis_of(&app, p).await;
    let verdicts = d["verdicts"].as_array().unwrap();
    let per_token = verdicts
        .iter()
        .find(|v| v["kind"] == "concurrency_cap" && v["per"] == "token")
        .unwrap_or_else(|| panic!("{d}"));
    assert!((14.0..=16.0).contains(&level(per_token)), "{d}");
    assert!(
        !verdicts
            .iter()
            .any(|v| v["kind"] == "concurrency_cap" && v["per"].is_null()),
        "not a global cap: {d}"
    );
}
