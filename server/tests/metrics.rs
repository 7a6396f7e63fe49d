//! `GET /metrics` scraped while a sandbox run is live and after it ended, parsed by a
//! parser we did not write — the Prometheus project's Python client
//! (`prometheus_client.parser.text_string_to_metric_families`; Debian's
//! `python3-prometheus-client`, installed by `scripts/setup.sh --test`) — and checked
//! against the run's stored summary and the sandbox's own counters. Also: `/metrics`
//! obeys the same access rules as the API.
//! Run: `cargo test -p server --features app/ssr --test metrics`.
#![allow(clippy::unwrap_used)]
mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};

use common::{bearer_client, plan, raw, spawn_app, spawn_tuned};
use serde_json::{json, Value};

/// Reads the exposition on stdin, prints every sample as JSON.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append({"family": fam.name, "type": fam.type, "name": s.name,
                    "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;

#[derive(Debug, Clone)]
struct Sample {
    family: String,
    kind: String,
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The exposition as the Prometheus client's parser reads it. Debian's package lives in
/// the system Python, which may not be the first `python3` on PATH.
fn parse(text: &str) -> Vec<Sample> {
    let mut why = Vec::new();
    for python in ["/usr/bin/python3", "python3"] {
        let child = Command::new(python)
            .args(["-c", PARSE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                why.push(format!("{python}: {e}"));
                continue;
            }
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No module named 'prometheus_client'") {
            why.push(format!("{python}: no prometheus_client"));
            continue;
        }
        assert!(
            out.status.success(),
            "the Prometheus parser refused the exposition: {stderr}\n{text}"
        );
        let parsed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        return parsed
            .into_iter()
            .map(|s| Sample {
                family: s["family"].as_str().unwrap().into(),
                kind: s["type"].as_str().unwrap().into(),
                name: s["name"].as_str().unwrap().into(),
                labels: serde_json::from_value(s["labels"].clone()).unwrap(),
                value: s["value"].as_f64().unwrap(),
            })
            .collect();
    }
    panic!(
        "no Python with prometheus_client ({}): run `scripts/setup.sh --test` (Debian package python3-prometheus-client)",
        why.join("; ")
    );
}

/// The samples named `name` whose labels include `labels`.
fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

/// The one sample named `name` with `labels`, as an integer.
fn one(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> u64 {
    let found = find(samples, name, labels);
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    found[0].value as u64
}

/// Sum of the samples named `name` with `labels`.
fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> u64 {
    find(samples, name, labels)
        .iter()
        .map(|s| s.value as u64)
        .sum()
}

async fn scrape(http: &reqwest::Client, base: &str) -> (String, Vec<Sample>) {
    let r = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    let samples = parse(&text);
    (text, samples)
}

/// Every histogram of `run`: buckets cumulative in `le` order, `+Inf` = `_count`.
/// Returns `(_count, _sum)` by metric.
fn histograms(samples: &[Sample], run: &str) -> BTreeMap<String, (u64, f64)> {
    let mut out = BTreeMap::new();
    for c in find(
        samples,
        "socketswarm_run_latency_seconds_count",
        &[("run", run)],
    ) {
        assert_eq!(c.family, "socketswarm_run_latency_seconds");
        assert_eq!(c.kind, "histogram");
        let m = c.labels["metric"].as_str();
        let mut buckets: Vec<(f64, u64)> = find(
            samples,
            "socketswarm_run_latency_seconds_bucket",
            &[("run", run), ("metric", m)],
        )
        .iter()
        .map(|b| (b.labels["le"].parse::<f64>().unwrap(), b.value as u64))
        .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(buckets.len() > 10, "{m}: {buckets:?}");
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{m}: not cumulative: {buckets:?}"
        );
        let (inf, total) = *buckets.last().unwrap();
        assert!(inf.is_infinite());
        assert_eq!(total, c.value as u64, "{m}: +Inf bucket = _count");
        let sum = find(
            samples,
            "socketswarm_run_latency_seconds_sum",
            &[("run", run), ("metric", m)],
        )[0]
        .value;
        out.insert(m.to_string(), (total, sum));
    }
    out
}

/// Reads the run's SSE stream until a snapshot shows at least `opened` opened.
async fn until_opened(app: &common::App, id: &str, opened: u64) -> Value {
    use futures_util::StreamExt;
    let url = format!("{}/api/runs/{id}/events", app.base);
    let resp = app.http.get(url).send().await.unwrap();
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    while let Some(chunk) = stream.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if !block.lines().any(|l| l.trim() == "event: snapshot") {
                continue;
            }
            let data: String = block
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            let snap: Value = serde_json::from_str(&data).unwrap();
            if snap["totals"]["opened"].as_u64().unwrap() >= opened {
                return snap;
            }
        }
    }
    panic!("the run ended before {opened} connections opened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_run_and_its_end_are_scraped_parsed_and_agree_with_the_summary() {
    let app = spawn_app().await;
    let name = "metrics \"quoted\" \\ plan";
    // A cap of 15 (429 beyond) and every session dropped after 1 s with 1001: failures
    // and drops of known kinds, messages with round trips.
    let mut p = plan(
        name,
        &app.ws("/echo?tag=metrics&cap=15&drop_after=1s"),
        20,
        "1s",
        "2s",
    );
    p["script"] = json!([{"repeat": {"every": "200ms", "steps": [{"send": "m {{vu}}"}, {"expect": {"contains": "m {{vu}}"}}]}}]);
    let id = app.launch(p).await;

    // Live: once 10 are open, the run is in the exposition as running.
    let snap = until_opened(&app, &id, 10).await;
    let (_, live) = scrape(&app.http, &app.base).await;
    let run = [("run", id.as_str())];
    assert_eq!(
        one(
            &live,
            "socketswarm_run_info",
            &[("run", &id), ("status", "running")]
        ),
        1
    );
    assert_eq!(
        find(&live, "socketswarm_run_info", &run)[0].labels["plan"],
        name,
        "the plan label survives escaping"
    );
    assert_eq!(
        one(&live, "socketswarm_runs_active", &[("state", "running")]),
        1
    );
    let attempts = one(&live, "socketswarm_run_connect_attempts_total", &run);
    let opened = one(&live, "socketswarm_run_connections_opened_total", &run);
    let failed = one(&live, "socketswarm_run_connect_failed_total", &run);
    assert!(opened >= snap["totals"]["opened"].as_u64().unwrap());
    assert!(
        attempts >= opened + failed,
        "{attempts} < {opened} + {failed}"
    );
    assert!(one(&live, "socketswarm_run_open_connections", &run) <= 15);
    assert!(one(&live, "socketswarm_run_target_connections", &run) <= 20);
    let live_hist = histograms(&live, &id);
    assert!(live_hist["ws_connecting"].0 >= opened, "{live_hist:?}");

    // After: the final values, equal to the stored summary and the sandbox's counts.
    let (_, done) = app.follow(&id).await;
    assert_eq!(done["status"], "completed");
    let (_, stored) = app.get(&format!("/api/runs/{id}")).await;
    let summary = &stored["summary"];
    let t = &summary["totals"];
    let sb = app
        .sandbox_profile("/echo?cap=15&drop_after=1s&tag=metrics")
        .await;
    let n = |v: &Value| {
        v.as_u64()
            .unwrap_or_else(|| panic!("not a count: {v}\nsummary {summary}\nsandbox {sb}"))
    };
    let (text, after) = scrape(&app.http, &app.base).await;
    eprintln!(
        "exposition after one run: {} bytes, {} samples",
        text.len(),
        after.len()
    );
    assert_eq!(
        one(
            &after,
            "socketswarm_run_info",
            &[("run", &id), ("status", "completed")]
        ),
        1
    );
    assert_eq!(
        one(&after, "socketswarm_runs_active", &[("state", "running")]),
        0
    );
    assert_eq!(
        one(
            &after,
            "socketswarm_runs_finished_total",
            &[("status", "completed")]
        ),
        1
    );
    let attempts = one(&after, "socketswarm_run_connect_attempts_total", &run);
    let opened = one(&after, "socketswarm_run_connections_opened_total", &run);
    let failed = one(&after, "socketswarm_run_connect_failed_total", &run);
    assert_eq!(attempts, n(&t["attempted"]));
    assert_eq!(attempts, opened + failed, "every attempt opened or failed");
    assert_eq!(opened, n(&t["opened"]));
    assert_eq!(opened, n(&sb["accepted"]), "the sandbox accepted as many");
    // Failures by kind and class, from the one classifier.
    let f429 = one(
        &after,
        "socketswarm_run_connect_failures_total",
        &[("run", &id), ("kind", "http_429"), ("class", "rejected")],
    );
    assert!(f429 > 0, "{text}");
    assert_eq!(f429, n(&t["failures"]["http_429"]));
    assert_eq!(
        sum(&after, "socketswarm_run_connect_failures_total", &run),
        failed
    );
    // Drops by kind: the sandbox's 1001 after a second.
    let d1001 = one(
        &after,
        "socketswarm_run_drops_total",
        &[("run", &id), ("kind", "server_1001")],
    );
    assert!(d1001 > 0, "{text}");
    assert_eq!(d1001, n(&t["closes"]["server_1001"]));
    assert_eq!(
        sum(&after, "socketswarm_run_drops_total", &run),
        n(&t["dropped"])
    );
    assert_eq!(
        one(&after, "socketswarm_run_sessions_closed_total", &run),
        n(&t["closed"])
    );
    // Messages, as the summary counted them. The sandbox closes sessions under messages
    // in flight: it read at most what was sent, and sent at least what arrived.
    let sent = one(&after, "socketswarm_run_messages_sent_total", &run);
    let received = one(&after, "socketswarm_run_messages_received_total", &run);
    assert!(sent > 0);
    assert_eq!(sent, n(&t["msgs_sent"]));
    assert_eq!(received, n(&t["msgs_received"]));
    assert!(
        n(&sb["msgs_in"]) <= sent && received <= n(&sb["msgs_out"]),
        "{sb}"
    );
    assert_eq!(one(&after, "socketswarm_run_open_connections", &run), 0);
    assert_eq!(one(&after, "socketswarm_run_target_connections", &run), 0);
    assert_eq!(
        one(&after, "socketswarm_run_peak_open_connections", &run),
        n(&summary["peak_open"])
    );
    // One histogram per metric the summary has percentiles of, with as many samples; the
    // sum agrees with the summary's mean (HDR buckets: within 0.1 %, plus rounding).
    let hist = histograms(&after, &id);
    let latency = summary["latency"].as_object().unwrap();
    assert_eq!(
        hist.keys().collect::<Vec<_>>(),
        latency.keys().collect::<Vec<_>>()
    );
    for (m, (count, sum_s)) in &hist {
        assert_eq!(*count, n(&latency[m]["count"]), "{m}");
        let mean_s = latency[m]["mean_us"].as_f64().unwrap() / 1e6;
        let expected = mean_s * *count as f64;
        assert!(
            (sum_s - expected).abs() <= expected * 0.002 + 1e-6 * *count as f64,
            "{m}: sum {sum_s} vs mean x count {expected}"
        );
    }
    assert!(hist["ws_rtt"].0 > 0, "round trips were measured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_obey_the_access_rules_of_the_api() {
    const TOKEN: &str = "t0k3n-for-the-tests-0123";
    let app = spawn_tuned(|a| a.access_token = Some(TOKEN.into())).await;
    let r = app.fetch("/metrics").await;
    assert_eq!(r.status(), 401, "no token, no metrics");
    let (_, samples) = scrape(&bearer_client(TOKEN), &app.base).await;
    assert_eq!(
        one(&samples, "socketswarm_runs_active", &[("state", "running")]),
        0
    );
    let (status, _) = raw(
        &app,
        "GET",
        "/metrics",
        &[
            ("Host", "rebind.example"),
            ("Authorization", &format!("Bearer {TOKEN}")),
        ],
        "",
    )
    .await;
    assert_eq!(status, 421, "a foreign Host is refused even with the token");
}
