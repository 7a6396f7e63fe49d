//! Unit tests of the exposition: buckets, escaping, a whole run, and the Grafana
//! dashboard's queries against what is exposed.
use super::*;
use base64::Engine as _;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};

fn encoded(values_us: &[u64]) -> String {
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
    for v in values_us {
        h.record(*v).unwrap();
    }
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(&h, &mut bytes)
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn run(id: &str, plan: &str, f: Option<RunFigures>) -> RunEntry {
    RunEntry {
        id: id.into(),
        plan: plan.into(),
        status: RunStatus::Running,
        figures: f,
    }
}

#[test]
fn buckets_are_cumulative_and_count_everything() {
    let (at, n, sum) = buckets(&[(10, 2), (100, 3), (1_000, 1), (90_000_000, 4)]);
    assert_eq!(n, 10);
    assert_eq!(sum, 20 + 300 + 1_000 + 360_000_000);
    assert_eq!(at[0], 2, "le 25 µs");
    assert_eq!(at[2], 5, "le 100 µs holds 100 µs");
    assert_eq!(at[5], 6, "le 1 ms");
    assert_eq!(*at.last().unwrap(), 6, "90 s is only in +Inf");
    assert!(at.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(buckets(&[]), ([0; LADDER_US.len()], 0, 0));
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
    assert_eq!(escape("x\ny"), "x\\ny");
    assert_eq!(seconds(25).to_string(), "0.000025");
    assert_eq!(seconds(1_000_000).to_string(), "1");
}

/// One running run with failures, drops, messages and a histogram, one queued.
fn example() -> Exposition {
    let mut totals = Totals {
        attempted: 12,
        opened: 9,
        failed: 3,
        closed: 4,
        msgs_sent: 7,
        ..Totals::default()
    };
    totals.failures.insert("http_429".into(), 2);
    totals.failures.insert("timeout".into(), 1);
    totals.closes.insert("server_1001".into(), 3);
    totals.closes.insert("client".into(), 1);
    let f = RunFigures {
        target: 10,
        open: 5,
        peak_open: 9,
        connecting: 0,
        totals,
        histograms: [("ws_connecting".to_string(), encoded(&[40, 200, 3_000]))].into(),
    };
    Exposition {
        running: 1,
        queued: 1,
        ended: vec![(RunStatus::Completed, 2)],
        runs: vec![run("r1", "say \"hi\"", Some(f)), run("r2", "", None)],
        inflight: Default::default(),
    }
}

#[test]
fn a_run_renders_its_counters_failures_drops_and_histograms() {
    let text = render(&example());
    let has = |line: &str| assert!(text.lines().any(|l| l == line), "{line}\n{text}");
    has(r#"socketswarm_runs_active{state="queued"} 1"#);
    has(r#"socketswarm_runs_finished_total{status="completed"} 2"#);
    has(r#"socketswarm_runs_finished_total{status="failed"} 0"#);
    has(r#"socketswarm_run_info{run="r2",plan="",status="running"} 1"#);
    has(r#"socketswarm_run_open_connections{run="r1",plan="say \"hi\""} 5"#);
    has(r#"socketswarm_run_connect_attempts_total{run="r1",plan="say \"hi\""} 12"#);
    has(
        r#"socketswarm_run_connect_failures_total{run="r1",plan="say \"hi\"",kind="http_429",class="rejected"} 2"#,
    );
    has(
        r#"socketswarm_run_connect_failures_total{run="r1",plan="say \"hi\"",kind="timeout",class="stalled"} 1"#,
    );
    has(r#"socketswarm_run_drops_total{run="r1",plan="say \"hi\"",kind="server_1001"} 3"#);
    assert!(
        !text.contains(r#"kind="client""#),
        "a client close is no drop"
    );
    has(
        r#"socketswarm_run_latency_seconds_bucket{run="r1",plan="say \"hi\"",metric="ws_connecting",le="0.00005"} 1"#,
    );
    has(
        r#"socketswarm_run_latency_seconds_bucket{run="r1",plan="say \"hi\"",metric="ws_connecting",le="+Inf"} 3"#,
    );
    has(
        r#"socketswarm_run_latency_seconds_count{run="r1",plan="say \"hi\"",metric="ws_connecting"} 3"#,
    );
    assert!(
        !text.contains(r#"run="r2",plan="",metric"#) && !text.contains(r#"metric="ws_rtt""#),
        "no figures, no samples; no metric without samples"
    );
    // Each family is declared once, before its samples.
    let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
    let mut unique = types.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(types.len(), unique.len());
}

/// `socketswarm_…` names in `text`.
fn names(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("socketswarm_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(&tail[..end]);
        rest = &tail[end..];
    }
    out
}

/// Label names an expression groups by (`by (le, run)`) or matches (`{run=~…}`).
fn labels_used(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (open, close) in [("by (", ')'), ("{", '}')] {
        for part in expr.split(open).skip(1) {
            let inside = part.split(close).next().unwrap_or("");
            for item in inside.split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        }
    }
    out
}

/// Every query of `docs/grafana-dashboard.json`: panel targets and variables.
fn dashboard_queries() -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr" | "definition", serde_json::Value::String(q)) => {
                            out.push(q.clone())
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("../../../docs/grafana-dashboard.json")).unwrap();
    let mut out = Vec::new();
    walk(&doc, &mut out);
    out
}

#[test]
fn every_series_the_dashboard_queries_is_exposed_with_its_labels() {
    let text = render(&example());
    // Sample name -> the label names it carries.
    let mut exposed: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        let labels = exposed.entry(name).or_default();
        if let Some(inside) = line.split_once('{').and_then(|(_, r)| r.rsplit_once('}')) {
            for kv in inside.0.split("\",") {
                labels.push(kv.split('=').next().unwrap());
            }
        }
    }
    let queries = dashboard_queries();
    assert!(queries.len() >= 12, "{queries:?}");
    for q in &queries {
        let used = names(q);
        assert!(
            !used.is_empty(),
            "a query without a socketswarm series: {q}"
        );
        for name in &used {
            assert!(
                exposed.contains_key(name),
                "{name} (in `{q}`) is not exposed"
            );
        }
        for label in labels_used(q) {
            assert!(
                used.iter().any(|n| exposed[n].contains(&label.as_str())),
                "label `{label}` (in `{q}`) is on none of its series"
            );
        }
    }
}
