//! Pass/fail thresholds on a finished run, k6 style, written in the plan:
//! `"thresholds": {"handshake_failure_rate": "< 1%", "ws_connecting.p95": "< 300ms",
//! "ws_rtt.p99": "< 1s", "drops": "== 0"}`. Pure: parsed at validation, evaluated on the
//! `Summary`.
//!
//! Metrics: `handshake_failure_rate` (failed / attempted), `drop_rate` (dropped /
//! opened), counters (`attempted`, `opened`, `failed`, `drops`, `expect_timeouts`,
//! `ping_timeouts`, `msgs_sent`, `msgs_received`, `peak_open`), and latency percentiles
//! `<metric>.<p50|p90|p95|p99|p999|max|mean>` (e.g. `ws_connecting.p95`).

use serde::{Deserialize, Serialize};

use crate::report::Summary;

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

/// A parsed threshold: `metric op value` (value in base units: seconds, ratio, count).
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub metric: String,
    pub op: Op,
    pub value: f64,
}

/// The outcome of one threshold.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdResult {
    pub metric: String,
    pub expression: String,
    /// The measured value in the threshold's units (`None`: metric had no data).
    pub actual: Option<f64>,
    pub passed: bool,
}

const COUNTERS: [&str; 9] = [
    "attempted",
    "opened",
    "failed",
    "drops",
    "expect_timeouts",
    "ping_timeouts",
    "msgs_sent",
    "msgs_received",
    "peak_open",
];
const QUANTILES: [&str; 7] = ["p50", "p90", "p95", "p99", "p999", "max", "mean"];

fn known_metric(m: &str) -> bool {
    if COUNTERS.contains(&m) || m == "handshake_failure_rate" || m == "drop_rate" {
        return true;
    }
    match m.split_once('.') {
        Some((metric, q)) => crate::report::metric::ALL.contains(&metric) && QUANTILES.contains(&q),
        None => false,
    }
}

/// Parses `metric` and `"< 300ms"`; errors name what is wrong.
pub fn parse(metric: &str, expr: &str) -> Result<Threshold, String> {
    if !known_metric(metric) {
        return Err(format!(
            "unknown metric `{metric}`; use handshake_failure_rate, drop_rate, {}, or <latency metric>.<p50|p90|p95|p99|p999|max|mean>",
            COUNTERS.join(", ")
        ));
    }
    let e = expr.trim();
    let (op, rest) = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("<", Op::Lt),
        (">", Op::Gt),
    ]
    .iter()
    .find_map(|(s, op)| e.strip_prefix(s).map(|r| (*op, r.trim())))
    .ok_or_else(|| format!("`{expr}` must start with <, <=, >, >= or =="))?;
    let value = if let Some(p) = rest.strip_suffix('%') {
        p.trim()
            .parse::<f64>()
            .map(|v| v / 100.0)
            .map_err(|_| format!("`{rest}` is not a percentage"))?
    } else if rest.ends_with("ms") || rest.ends_with('s') || rest.ends_with('m') {
        crate::plan::parse_duration(rest)?.as_secs_f64()
    } else {
        rest.parse::<f64>()
            .map_err(|_| format!("`{rest}` is not a number (units: %, ms, s, m)"))?
    };
    Ok(Threshold {
        metric: metric.to_string(),
        op,
        value,
    })
}

/// The metric's value in a summary (seconds for latencies, ratios for rates).
fn actual(metric: &str, s: &Summary) -> Option<f64> {
    let t = &s.totals;
    let ratio = |a: u64, b: u64| {
        if b == 0 {
            Some(0.0)
        } else {
            Some(a as f64 / b as f64)
        }
    };
    Some(match metric {
        "handshake_failure_rate" => return ratio(t.failed, t.attempted),
        "drop_rate" => return ratio(t.dropped, t.opened),
        "attempted" => t.attempted as f64,
        "opened" => t.opened as f64,
        "failed" => t.failed as f64,
        "drops" => t.dropped as f64,
        "expect_timeouts" => t.expect_timeouts as f64,
        "ping_timeouts" => t.ping_timeouts as f64,
        "msgs_sent" => t.msgs_sent as f64,
        "msgs_received" => t.msgs_received as f64,
        "peak_open" => s.peak_open as f64,
        other => {
            let (m, q) = other.split_once('.')?;
            let l = s.latency.get(m)?;
            let us = match q {
                "p50" => l.p50_us as f64,
                "p90" => l.p90_us as f64,
                "p95" => l.p95_us as f64,
                "p99" => l.p99_us as f64,
                "p999" => l.p999_us as f64,
                "max" => l.max_us as f64,
                _ => l.mean_us,
            };
            us / 1e6
        }
    })
}

/// Evaluates every threshold of a plan on its summary. A metric without data fails.
pub fn evaluate(
    thresholds: &std::collections::BTreeMap<String, String>,
    s: &Summary,
) -> Vec<ThresholdResult> {
    thresholds
        .iter()
        .map(|(metric, expr)| {
            let (actual, passed) = match parse(metric, expr) {
                Err(_) => (None, false),
                Ok(th) => match actual(metric, s) {
                    None => (None, false),
                    Some(a) => {
                        let ok = match th.op {
                            Op::Lt => a < th.value,
                            Op::Le => a <= th.value,
                            Op::Gt => a > th.value,
                            Op::Ge => a >= th.value,
                            Op::Eq => (a - th.value).abs() < 1e-9,
                        };
                        (Some(a), ok)
                    }
                },
            };
            ThresholdResult {
                metric: metric.clone(),
                expression: expr.clone(),
                actual,
                passed,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::LatencyStats;

    #[test]
    fn parses_units_and_ops() {
        assert_eq!(parse("ws_connecting.p95", "< 300ms").unwrap().value, 0.3);
        assert_eq!(parse("handshake_failure_rate", "<1%").unwrap().value, 0.01);
        assert_eq!(parse("drops", "== 0").unwrap().op, Op::Eq);
        assert!(parse("ws_conecting.p95", "< 1s")
            .unwrap_err()
            .contains("unknown metric"));
        assert!(parse("drops", "about 3")
            .unwrap_err()
            .contains("must start with"));
    }

    #[test]
    fn evaluates_against_a_summary() {
        let mut s = Summary::default();
        s.totals.attempted = 200;
        s.totals.failed = 1;
        s.totals.opened = 199;
        s.latency.insert(
            "ws_connecting".into(),
            LatencyStats {
                p95_us: 250_000,
                ..Default::default()
            },
        );
        let th = [
            ("handshake_failure_rate", "< 1%"),
            ("ws_connecting.p95", "< 200ms"),
            ("drops", "== 0"),
            ("ws_rtt.p99", "< 1s"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let r = evaluate(&th, &s);
        let by: std::collections::BTreeMap<_, _> =
            r.iter().map(|x| (x.metric.as_str(), x.passed)).collect();
        assert!(by["handshake_failure_rate"]);
        assert!(!by["ws_connecting.p95"]);
        assert!(by["drops"]);
        assert!(!by["ws_rtt.p99"], "no data fails");
    }
}
