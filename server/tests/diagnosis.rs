//! The capacity diagnosis against the sandbox's limit profiles: each must get the right
//! verdict and level (within ±5 %), and plain echo must get no false verdict.
//! Run: `cargo test -p server --test diagnosis`.
#![allow(clippy::unwrap_used)]
mod common;

use common::{plan, record_fixture, spawn_app, Label};
use serde_json::{json, Value};

async fn diagnosis_of(app: &common::App, p: Value) -> Value {
    diagnosed(app, p).await.1
}

/// Runs `p` to its end: (run id, diagnosis).
async fn diagnosed(app: &common::App, p: Value) -> (String, Value) {
    let id = app.launch(p).await;
    let (_, done) = app.follow(&id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    (id, run["diagnosis"].clone())
}

/// Runs `p`, records it as a corpus fixture (when asked to) and returns the diagnosis.
async fn labelled(app: &common::App, name: &str, p: Value, label: Label<'_>) -> Value {
    let source = format!(
        "sandbox {}",
        p["target"]
            .as_str()
            .unwrap_or_default()
            .split('/')
            .nth(3)
            .unwrap_or_default()
    );
    let (id, d) = diagnosed(app, p).await;
    record_fixture(app, &id, name, &source, label).await;
    d
}

fn within(d: &Value, truth: f64) -> bool {
    (level(d) - truth).abs() <= 0.05 * truth
}

fn how(d: &Value) -> &str {
    d["enforcement"]["how"].as_str().unwrap_or("")
}

/// The verdict, or the alternative, that names `kind` (and `per`).
fn reading<'a>(d: &'a Value, kind: &str, per: Option<&str>) -> Option<&'a Value> {
    let per = per.map_or(Value::Null, |p| Value::String(p.into()));
    std::iter::once(d)
        .chain(d["alternatives"].as_array().into_iter().flatten())
        .find(|x| {
            x["kind"] == kind
                && x["per"]
                    .as_str()
                    .map_or(Value::Null, |p| Value::String(p.into()))
                    == per
        })
}

fn level(d: &Value) -> f64 {
    d["level"].as_f64().unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_cap_is_named_with_its_level() {
    let app = spawn_app().await;
    let label = Label {
        kind: "concurrency_cap",
        level: Some(60.0),
        per: None,
        how: Some("rejected"),
    };
    let p = plan("cap", &app.ws("/echo?cap=60&tag=d"), 120, "4s", "2s");
    let d = labelled(&app, "sandbox-cap-60", p, label).await;
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
    let label = Label {
        kind: "handshake_rate_limit",
        level: Some(20.0),
        per: None,
        how: Some("rejected"),
    };
    let p = plan(
        "rate",
        &app.ws("/echo?rate=20&burst=5&tag=d"),
        150,
        "5s",
        "1s",
    );
    let d = labelled(&app, "sandbox-rate-20-30s", p, label).await;
    assert_eq!(d["kind"], "handshake_rate_limit", "{d}");
    assert!((19.0..=21.0).contains(&level(&d)), "{d}");
    assert_eq!(d["unit"], "handshakes_per_second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_drops_are_named() {
    let app = spawn_app().await;
    let label = Label {
        kind: "server_drops",
        level: None,
        per: None,
        how: None,
    };
    let p = plan(
        "drops",
        &app.ws("/echo?drop_after=1s&tag=d"),
        20,
        "500ms",
        "3s",
    );
    let d = labelled(&app, "sandbox-drops", p, label).await;
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
    let label = Label {
        kind: "concurrency_cap",
        level: Some(40.0),
        per: None,
        how: Some("rejected"),
    };
    record_fixture(
        &app,
        &id,
        "sandbox-cap-40-with-drops",
        "sandbox cap=40, drop_after=2s, reconnects",
        label,
    )
    .await;
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
    let label = Label {
        kind: "auth_failure",
        level: None,
        per: None,
        how: None,
    };
    let p = plan(
        "auth",
        &app.ws("/echo?status=401&tag=d"),
        10,
        "500ms",
        "500ms",
    );
    let d = labelled(&app, "sandbox-auth-401", p, label).await;
    assert_eq!(d["kind"], "auth_failure", "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_echo_gets_no_false_verdict() {
    let app = spawn_app().await;
    let mut p = plan("echo", &app.ws("/echo?tag=d"), 80, "2s", "2s");
    p["script"] = json!([{"repeat": {"every": "200ms", "steps": [{"send": "x"}, {"expect": {}}]}}]);
    let label = Label {
        kind: "none",
        level: None,
        per: None,
        how: None,
    };
    let d = labelled(&app, "sandbox-echo", p, label).await;
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

// The cases real gateways showed (issue: "right about the limit on gateways we did not
// write"), rebuilt on the sandbox. server/tests/gateways.rs runs them against nginx and
// HAProxy.

/// Case 1: 200 connections ramped over 4 s then held 3 s against 20/s (burst 5): the
/// level comes from the saturated seconds only (it read 15.0/s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case1_a_rate_limit_reads_its_level_from_saturated_seconds() {
    let app = spawn_app().await;
    let p = plan(
        "rate",
        &app.ws("/echo?rate=20&burst=5&tag=c1"),
        200,
        "4s",
        "3s",
    );
    let label = Label {
        kind: "handshake_rate_limit",
        level: Some(20.0),
        per: None,
        how: Some("rejected"),
    };
    let d = labelled(&app, "sandbox-rate-20", p, label).await;
    assert_eq!(d["kind"], "handshake_rate_limit", "{d}");
    assert!(within(&d, 20.0), "{d}");
    assert!(d["uncertainty"].as_f64().unwrap() <= 2.0, "{d}");
    assert_eq!(how(&d), "rejected", "{d}");
    assert_eq!(d["enforcement"]["status"], 429, "{d}");
}

/// Case 2: a limiter that counts refused attempts. One steady ramp fits a cap of 20 as
/// well (it was called a cap at 95 %): both are named below 60 %, with the experiment
/// that tells them apart. With a pause in the load, it is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case2_a_lockout_limiter_is_ambiguous_in_a_ramp_and_named_after_a_pause() {
    let app = spawn_app().await;
    let p = plan(
        "lockout",
        &app.ws("/echo?lockout=20&tag=c2"),
        200,
        "4s",
        "3s",
    );
    let label = Label {
        kind: "lockout_rate_limit",
        level: Some(20.0),
        per: None,
        how: Some("rejected"),
    };
    let d = labelled(&app, "sandbox-lockout-20-ramp", p, label).await;
    assert!(d["confidence"].as_f64().unwrap() < 0.6, "{d}");
    let lockout = reading(&d, "lockout_rate_limit", None).unwrap_or_else(|| panic!("{d}"));
    assert!(within(lockout, 20.0), "{d}");
    assert!(reading(&d, "concurrency_cap", None).is_some(), "{d}");
    assert!(d["separate_by"].as_str().unwrap().contains("Pause"), "{d}");

    let mut p = plan(
        "lockout pause",
        &app.ws("/echo?lockout=20&tag=c2p"),
        50,
        "1s",
        "4s",
    );
    p["stages"] = json!([
        {"duration": "1s", "connections": 50}, {"duration": "4s", "connections": 50},
        {"duration": "1s", "connections": 100}, {"duration": "2s", "connections": 100}
    ]);
    let label = Label {
        kind: "lockout_rate_limit",
        level: Some(20.0),
        per: None,
        how: Some("rejected"),
    };
    let d = labelled(&app, "sandbox-lockout-20-pause", p, label).await;
    assert_eq!(d["kind"], "lockout_rate_limit", "{d}");
    assert!(within(&d, 20.0), "{d}");
    assert!(d["confidence"].as_f64().unwrap() >= 0.8, "{d}");
}

/// Case 3: a cap enforced by not answering ("no clear limit" before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case3_a_cap_that_stops_answering_is_a_stalled_cap() {
    let app = spawn_app().await;
    let mut p = plan(
        "stall",
        &app.ws("/echo?stall_cap=150&tag=c3"),
        300,
        "6s",
        "5s",
    );
    p["connect_timeout"] = json!("3s");
    let label = Label {
        kind: "concurrency_cap",
        level: Some(150.0),
        per: None,
        how: Some("stalled"),
    };
    let d = labelled(&app, "sandbox-stall-150", p, label).await;
    assert_eq!(d["kind"], "concurrency_cap", "{d}");
    assert!(within(&d, 150.0), "{d}");
    assert_eq!(how(&d), "stalled", "{d}");
    assert!(d["confidence"].as_f64().unwrap() >= 0.8, "{d}");
}

/// Case 4: 50 per source address with three addresses: one run cannot tell it from a
/// global cap of 150 (all three fill at once), so both are named below 60 %.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case4_a_cap_per_source_address_is_named_beside_the_global_reading() {
    let app = spawn_app().await;
    let mut p = plan(
        "per address",
        &app.ws("/echo?addr_cap=50&tag=c4"),
        300,
        "6s",
        "4s",
    );
    p["source_addrs"] = json!(["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    let label = Label {
        kind: "concurrency_cap",
        level: Some(50.0),
        per: Some("source_addr"),
        how: Some("rejected"),
    };
    let d = labelled(&app, "sandbox-addr-50x3", p, label).await;
    assert!(d["confidence"].as_f64().unwrap() < 0.6, "{d}");
    let per = reading(&d, "concurrency_cap", Some("source_addr")).unwrap_or_else(|| panic!("{d}"));
    assert!(within(per, 50.0), "{d}");
    assert!(
        d["separate_by"]
            .as_str()
            .unwrap()
            .contains("single source address"),
        "{d}"
    );
}

/// Case 5 (held before, kept): a cap that queues the upgrade, then answers 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case5_a_queueing_cap_names_its_wait() {
    let app = spawn_app().await;
    let p = plan(
        "queue",
        &app.ws("/echo?queue_cap=150&queue_wait=2s&tag=c5"),
        300,
        "6s",
        "4s",
    );
    let label = Label {
        kind: "concurrency_cap",
        level: Some(150.0),
        per: None,
        how: Some("queued"),
    };
    let d = labelled(&app, "sandbox-queue-150", p, label).await;
    assert_eq!(d["kind"], "concurrency_cap", "{d}");
    assert!(within(&d, 150.0), "{d}");
    assert_eq!(how(&d), "queued", "{d}");
    assert_eq!(d["enforcement"]["status"], 503, "{d}");
    let wait = d["enforcement"]["wait_ms"].as_f64().unwrap();
    assert!((1800.0..=2600.0).contains(&wait), "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_that_accepts_then_closes_names_the_close_code() {
    let app = spawn_app().await;
    let p = plan(
        "close",
        &app.ws("/echo?close_cap=60&close_code=1013&tag=cc"),
        120,
        "4s",
        "3s",
    );
    let label = Label {
        kind: "concurrency_cap",
        level: Some(60.0),
        per: None,
        how: Some("accepted_then_closed"),
    };
    let d = labelled(&app, "sandbox-close-60", p, label).await;
    assert_eq!(d["kind"], "concurrency_cap", "{d}");
    assert!(within(&d, 60.0), "{d}");
    assert_eq!(how(&d), "accepted_then_closed", "{d}");
    assert_eq!(d["enforcement"]["close_code"], 1013, "{d}");
    assert!(
        d["also"].as_array().is_none_or(|a| a.is_empty()),
        "the closes are the cap's: {d}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latency_knee_without_refusals_is_a_saturation_verdict() {
    let app = spawn_app().await;
    let p = plan(
        "knee",
        &app.ws("/echo?knee=100&knee_slope=2ms&tag=kn"),
        200,
        "10s",
        "2s",
    );
    let label = Label {
        kind: "saturation",
        level: Some(100.0),
        per: None,
        how: Some("slowed"),
    };
    let d = labelled(&app, "sandbox-knee-100", p, label).await;
    assert_eq!(d["kind"], "saturation", "{d}");
    assert!((90.0..=115.0).contains(&level(&d)), "{d}");
    assert_eq!(how(&d), "slowed", "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_per_header_value_is_named_along_that_header() {
    let app = spawn_app().await;
    let mut p = plan(
        "per key",
        &app.ws("/echo?key_cap=30&key=header:x-api-key&tag=ky"),
        150,
        "5s",
        "3s",
    );
    p["headers"] = json!({"X-Api-Key": "k-{{vu % 3}}"});
    let label = Label {
        kind: "concurrency_cap",
        level: Some(30.0),
        per: Some("header:X-Api-Key"),
        how: Some("rejected"),
    };
    let d = labelled(&app, "sandbox-key-30x3", p, label).await;
    let per =
        reading(&d, "concurrency_cap", Some("header:X-Api-Key")).unwrap_or_else(|| panic!("{d}"));
    assert!(within(per, 30.0), "{d}");
    assert!(
        d["confidence"].as_f64().unwrap() < 0.6,
        "all three keys filled at once: {d}"
    );
}

/// The probe separates what one run cannot: every case, within the user's bounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_names_each_case_with_per_and_enforcement() {
    let app = spawn_app().await;
    let probe = |q: &str| {
        json!({
            "name": format!("probe {q}"),
            "target": app.ws(&format!("/echo?{q}")),
            "stages": [],
            "probe": {"max_connections": 300, "max_connect_rate": 60, "max_duration": "30s"}
        })
    };
    let cases: Vec<(Value, &str, f64, Option<&str>, &str)> = vec![
        (
            probe("lockout=20&tag=pl"),
            "lockout_rate_limit",
            20.0,
            None,
            "rejected",
        ),
        (
            probe("stall_cap=150&tag=ps"),
            "concurrency_cap",
            150.0,
            None,
            "stalled",
        ),
        (
            {
                let mut p = probe("addr_cap=50&tag=pa");
                p["source_addrs"] = json!(["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
                p
            },
            "concurrency_cap",
            50.0,
            Some("source_addr"),
            "rejected",
        ),
    ];
    for (p, kind, truth, per, enforced) in cases {
        let d = diagnosis_of(&app, p).await;
        let v = d["verdicts"]
            .as_array()
            .and_then(|v| v.first())
            .unwrap_or_else(|| panic!("{d}"));
        assert_eq!(v["kind"], kind, "{d}");
        assert!(within(v, truth), "{d}");
        assert_eq!(v["per"].as_str(), per, "{d}");
        assert_eq!(how(v), enforced, "{d}");
    }
}
