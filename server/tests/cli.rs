//! The headless CLI as CI uses it: `socketswarm plan init|check` and `socketswarm run`
//! against a sandbox on port 0, checking exit codes and both output formats.
//! Run: `cargo test -p server --test cli`.
#![allow(clippy::unwrap_used)]
mod common;

use std::process::Command;

use serde_json::{json, Value};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_socketswarm"));
    c.env("RUST_LOG", "warn");
    c
}

fn sandbox() -> engine::target::TargetHandle {
    engine::target::spawn_thread("127.0.0.1:0".parse().unwrap(), None).unwrap()
}

#[test]
fn the_template_passes_plan_check() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plan.toml");
    assert!(bin()
        .args(["plan", "init"])
        .arg(&file)
        .status()
        .unwrap()
        .success());
    let out = bin().args(["plan", "check"]).arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: `smoke`"));
    // And it is the same model as the API's JSON.
    let plan: engine::Plan = toml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let again: engine::Plan = serde_json::from_value(serde_json::to_value(&plan).unwrap()).unwrap();
    assert_eq!(plan, again);
    assert_eq!(plan.thresholds.len(), 4);
    assert!(plan.vars.contains_key("guest"), "the template shows vars");
}

fn write_plan(dir: &std::path::Path, plan: &Value) -> std::path::PathBuf {
    let f = dir.join("plan.json");
    std::fs::write(&f, plan.to_string()).unwrap();
    f
}

#[test]
fn a_passing_run_exits_0_and_writes_json_and_junit() {
    let sb = sandbox();
    let dir = tempfile::tempdir().unwrap();
    let plan = json!({
        "name": "ci smoke",
        "target": format!("ws://{}/echo?tag=cli", sb.addr),
        "stages": [{"duration": "500ms", "connections": 10}, {"duration": "1s", "connections": 10}],
        "script": [{"send": "hi"}, {"expect": {"contains": "hi"}}],
        "thresholds": {"handshake_failure_rate": "< 1%", "drops": "== 0", "ws_rtt.p99": "< 2s", "ws_connecting.p95": "< 300ms"}
    });
    let f = write_plan(dir.path(), &plan);
    let (json_out, junit_out) = (dir.path().join("out.json"), dir.path().join("junit.xml"));
    let out = bin()
        .arg("run")
        .arg(&f)
        .arg("--out")
        .arg(format!("json={}", json_out.display()))
        .arg("--out")
        .arg(format!("junit={}", junit_out.display()))
        .args(["--tick-ms", "250"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.lines().filter(|l| l.contains("open ")).count() >= 3,
        "progress lines: {stderr}"
    );
    let export: Value = serde_json::from_str(&std::fs::read_to_string(&json_out).unwrap()).unwrap();
    assert_eq!(export["schema_version"], 1);
    assert_eq!(export["summary"]["totals"]["opened"], 10);
    assert_eq!(
        export["summary"]["totals"]["opened"],
        sb.sandbox.report().profiles["/echo?tag=cli"].accepted
    );
    assert_eq!(export["diagnosis"]["kind"], "none");
    assert_eq!(export["thresholds"].as_array().unwrap().len(), 4);
    // Each actual value is printed in the unit of its limit (issue 15: not `0.0009`).
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = |metric: &str| {
        stdout
            .lines()
            .find(|l| l.contains(metric) && l.contains("(actual "))
            .unwrap_or_else(|| panic!("no threshold line for {metric}: {stdout}"))
            .to_string()
    };
    let actual = |l: &str| {
        l.rsplit_once("(actual ")
            .unwrap()
            .1
            .trim_end_matches(')')
            .to_string()
    };
    let connecting = actual(&line("ws_connecting.p95 < 300ms"));
    let ms: f64 = connecting
        .strip_suffix("ms")
        .unwrap_or_else(|| panic!("not in ms: {connecting}"))
        .parse()
        .unwrap();
    let stored = export["summary"]["latency"]["ws_connecting"]["p95_us"]
        .as_f64()
        .unwrap();
    assert!(
        (ms - stored / 1000.0).abs() <= stored / 1000.0 * 0.01 + 0.001,
        "{connecting} is the stored p95 of {stored}us"
    );
    assert!(actual(&line("ws_rtt.p99 < 2s")).ends_with('s'));
    assert_eq!(actual(&line("handshake_failure_rate < 1%")), "0%");
    assert_eq!(actual(&line("drops == 0")), "0");
    // The export validates against its committed, documented schema.
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/export.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&export)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let mut bad = export;
    bad["summary"]["totals"]["opened"] = json!("ten");
    assert!(
        !validator.is_valid(&bad),
        "the schema really constrains the export"
    );
    let xml = std::fs::read_to_string(&junit_out).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .unwrap();
    assert_eq!(suite.attribute("tests"), Some("4"));
    assert_eq!(suite.attribute("failures"), Some("0"));
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .count(),
        4
    );
}

#[test]
fn a_failed_threshold_exits_99_with_a_junit_failure() {
    let sb = sandbox();
    let dir = tempfile::tempdir().unwrap();
    let plan = json!({
        "name": "ci capped",
        "target": format!("ws://{}/echo?cap=5&tag=cli2", sb.addr),
        "stages": [{"duration": "1s", "connections": 10}, {"duration": "1s", "connections": 10}],
        "thresholds": {"handshake_failure_rate": "< 1%", "peak_open": ">= 5"}
    });
    let f = write_plan(dir.path(), &plan);
    let junit_out = dir.path().join("junit.xml");
    let out = bin()
        .arg("run")
        .arg(&f)
        .arg("--out")
        .arg(format!("junit={}", junit_out.display()))
        .args(["--tick-ms", "250"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(99));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("concurrency_cap"), "{stdout}");
    let xml = std::fs::read_to_string(&junit_out).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let failed: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("failure"))
        .collect();
    assert_eq!(failed.len(), 1);
    // 5 of 10 handshakes failed, shown as the limit (`< 1%`) is written.
    assert_eq!(failed[0].attribute("message"), Some("actual 50%"));
    assert!(
        stdout.contains("✗ handshake_failure_rate < 1%  (actual 50%)"),
        "{stdout}"
    );
}

#[test]
fn a_run_that_hits_a_cap_and_drops_prints_both() {
    let sb = sandbox();
    let dir = tempfile::tempdir().unwrap();
    let plan = json!({
        "name": "ci cap and drops",
        "target": format!("ws://{}/echo?cap=40&drop_after=2s&tag=cli-also", sb.addr),
        "stages": [{"duration": "3s", "connections": 120}, {"duration": "4s", "connections": 120}],
        "reconnect": {"mode": "backoff", "initial": "200ms", "max": "1s", "max_attempts": 1000},
        "script": [{"repeat": {"every": "100ms", "steps": [{"send": "x"}, {"expect": {}}]}}]
    });
    let f = write_plan(dir.path(), &plan);
    let out = bin()
        .arg("run")
        .arg(&f)
        .args(["--tick-ms", "250"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let verdict = stdout
        .lines()
        .position(|l| l.starts_with("diagnosis: Concurrency cap ≈ 40 "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let also = stdout
        .lines()
        .position(|l| l.starts_with("also: Server-side drops: ") && l.contains("server_1001"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(also > verdict, "{stdout}");
}

#[test]
fn a_plan_that_cannot_run_exits_2_and_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let f = write_plan(
        dir.path(),
        &json!({"target": "http://nope", "stages": [{"duration": "1s", "connections": 1}], "thresholds": {"p95": "< 1s"}}),
    );
    let out = bin().arg("run").arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("target: `http://nope`: scheme `http`")
            && err.contains("thresholds.p95: unknown metric"),
        "{err}"
    );
    let out = bin()
        .arg("run")
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_ci_run_uploads_to_a_server_and_writes_a_self_contained_report() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(common::spawn_app());
    let dir = tempfile::tempdir().unwrap();
    let plan = json!({
        "name": "uploaded from ci",
        "target": app.ws("/echo?cap=4&tag=up"),
        "stages": [{"duration": "500ms", "connections": 6}, {"duration": "1s", "connections": 6}],
        "thresholds": {"opened": ">= 4"}
    });
    let f = write_plan(dir.path(), &plan);
    let report = dir.path().join("report.html");
    let out = bin()
        .arg("run")
        .arg(&f)
        .args(["--server", &app.base, "--tick-ms", "250"])
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let url = stdout
        .lines()
        .find_map(|l| l.strip_prefix("uploaded: "))
        .unwrap()
        .to_string();
    let id = url.rsplit('/').next().unwrap().to_string();
    let (status, run) = rt.block_on(app.get(&format!("/api/runs/{id}")));
    assert_eq!(status, 200);
    assert_eq!(run["status"], "completed");
    assert_eq!(run["summary"]["totals"]["opened"], 4);
    assert_eq!(run["summary"]["totals"]["failures"]["http_429"], 2);
    assert!(
        run["series"]["t"].as_array().unwrap().len() >= 4,
        "ticks were imported"
    );
    // The report is one file: data, styles, chart library and plan inline.
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("uPlot") && html.contains("socketswarmCharts.render"));
    assert!(html.contains("uploaded from ci") && html.contains("data-outcome=\"http_429\""));
    assert!(
        !html.contains("src=\"/") && !html.contains("href=\"/"),
        "no server-relative assets"
    );
    // The server renders the same report for the imported run.
    let served = rt.block_on(async {
        reqwest::get(format!("{}/api/runs/{id}/report.html", app.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(served.contains("uploaded from ci"));
}

#[test]
fn the_committed_json_schema_is_current() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/plan.schema.json"
    ))
    .unwrap();
    assert_eq!(
        committed.trim(),
        server::cli::schema().trim(),
        "run `socketswarm plan schema > docs/plan.schema.json`"
    );
    let schema: Value = serde_json::from_str(&committed).unwrap();
    for field in [
        "target",
        "stages",
        "script",
        "auth",
        "probe",
        "thresholds",
        "http_steps",
        "vars",
        "responders",
    ] {
        assert!(
            schema["properties"][field].is_object(),
            "schema documents `{field}`"
        );
    }
    // Issue 14: captures, responders and the new matchers are described too.
    for (def, field) in [
        ("Expect", "capture"),
        ("Expect", "prefix"),
        ("Expect", "text"),
        ("Capture", "json"),
        ("Capture", "group"),
        ("Responder", "reply"),
        ("Responder", "json_field"),
    ] {
        assert!(
            schema["$defs"][def]["properties"][field].is_object(),
            "schema documents `{def}.{field}`"
        );
    }
}

#[test]
fn the_browser_form_and_a_toml_plan_file_are_one_model() {
    let form = app::form::RunForm {
        name: "from the form".into(),
        target: "ws://127.0.0.1:9001/echo".into(),
        connections: "50".into(),
        ramp_secs: "5".into(),
        hold_secs: "10".into(),
        message_every_secs: "1".into(),
        max_connect_rate: "20".into(),
        reconnect: "on".into(),
        token_url: "http://127.0.0.1:9001/oauth/token".into(),
        client_id: "loadtest".into(),
        client_secret: "env:HOME".into(),
        connections_per_token: "10".into(),
        ..Default::default()
    };
    let plan = form.to_plan().unwrap();
    assert!(plan.auth.is_some());
    let text = toml::to_string(&plan).unwrap();
    let back: engine::Plan = toml::from_str(&text).unwrap();
    assert_eq!(back, plan, "{text}");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("form.toml");
    std::fs::write(&f, text).unwrap();
    assert!(bin()
        .args(["plan", "check"])
        .arg(&f)
        .status()
        .unwrap()
        .success());
}

#[test]
fn abort_on_fail_stops_the_run_early_with_99() {
    let sb = sandbox();
    let dir = tempfile::tempdir().unwrap();
    let plan = json!({
        "name": "abort early",
        "target": format!("ws://{}/echo?status=503&tag=abort", sb.addr),
        "stages": [{"duration": "1s", "connections": 20}, {"duration": "60s", "connections": 20}],
        "thresholds": {"handshake_failure_rate": "< 1%"},
        "abort_on_fail": true,
        "abort_grace": "500ms"
    });
    let f = write_plan(dir.path(), &plan);
    let json_out = dir.path().join("out.json");
    let started = std::time::Instant::now();
    let out = bin()
        .arg("run")
        .arg(&f)
        .arg("--out")
        .arg(format!("json={}", json_out.display()))
        .args(["--tick-ms", "250"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(99));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "stopped long before the 61 s plan ended"
    );
    let export: Value = serde_json::from_str(&std::fs::read_to_string(&json_out).unwrap()).unwrap();
    assert_eq!(export["summary"]["end_reason"], "threshold_failed");
    assert_eq!(
        export["summary"]["aborted_by"],
        "handshake_failure_rate < 1%"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("aborted early"));
}

/// `run` splits a plan over local agent processes too (`agents = N`): merged totals
/// equal what the sandbox counted.
#[test]
fn a_headless_run_over_agents_merges_exactly() {
    let sb = sandbox();
    let dir = tempfile::tempdir().unwrap();
    let plan = json!({
        "name": "cli agents",
        "target": format!("ws://{}/echo?tag=cli-agents", sb.addr),
        "agents": 2,
        "stages": [{"duration": "1s", "connections": 30}, {"duration": "1s", "connections": 30}]
    });
    let file = write_plan(dir.path(), &plan);
    let json_out = dir.path().join("out.json");
    let out = bin()
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(format!("json={}", json_out.display()))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let export: Value = serde_json::from_str(&std::fs::read_to_string(&json_out).unwrap()).unwrap();
    assert_eq!(export["summary"]["totals"]["opened"], 30);
    assert_eq!(
        export["summary"]["agents"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(
        sb.sandbox.report().profiles["/echo?tag=cli-agents"].accepted,
        30
    );
}

/// `target --processes 3`: three processes share one port (the kernel spreads the
/// connections) and the stats address adds their counters up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_in_three_processes_counts_as_one() {
    use std::io::{BufRead, BufReader};
    let mut target = bin()
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .args([
            "target",
            "--listen",
            "127.0.0.1:0",
            "--processes",
            "3",
            "--stats-listen",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(target.stdout.take().unwrap()).lines();
    // Ends the target (and so its helpers) also when an assertion below fails.
    let _target = common::KillOnDrop(target);
    let (mut ws, mut stats) = (None, None);
    while ws.is_none() || stats.is_none() {
        let line = lines.next().expect("the target started").unwrap();
        if let Some(i) = line.find("sandbox target on ws://") {
            ws = Some(
                line[i + "sandbox target on ws://".len()..]
                    .split("/echo")
                    .next()
                    .unwrap()
                    .to_string(),
            );
        }
        if let Some(i) = line.find("counters on http://") {
            // The line goes on with the log's fields (` helpers=2`).
            stats = line[i + "counters on http://".len()..]
                .split_whitespace()
                .next()
                .map(str::to_string);
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let dir = tempfile::tempdir().unwrap();
    let plan = json!({
        "name": "shared port",
        "target": format!("ws://{}/echo?tag=shared", ws.unwrap()),
        "stages": [{"duration": "1s", "connections": 300}, {"duration": "1s", "connections": 300}]
    });
    let file = write_plan(dir.path(), &plan);
    let out = bin().arg("run").arg(&file).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    engine::install_crypto_provider();
    let report: Value = reqwest::get(format!("http://{}", stats.unwrap()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        report["profiles"]["/echo?tag=shared"]["accepted"], 300,
        "{report}"
    );
}
