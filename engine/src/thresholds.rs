//! Pass/fail thresholds on a finished run, k6 style, written in the plan:
//! `"thresholds": {"handshake_failure_rate": "< 1%", "ws_connecting.p95": "< 300ms",
//! "ws_rtt.p99": "< 1s", "drops": "== 0"}`. Pure: parsed at validation, evaluated on the
//! `Summary`.
//!
//! Metrics: `handshake_failure_rate` (failed / attempted), `drop_rate` (dropped /
//! opened), counters (`attempted`, `opened`, `failed`, `drops`, `expect_timeouts`,
//! `ping_timeouts`, `msgs_sent`, `msgs_received`, `peak_open`, `msgs_skipped`,
//! `capture_misses`, `auto_matched`, `auto_replies`, `arrivals`, `departures`,
//! `rotations`, `rotation_failures`), and latency percentiles
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

const COUNTERS: [&str; 17] = [
    "attempted",
    "opened",
    "failed",
    "drops",
    "expect_timeouts",
    "ping_timeouts",
    "msgs_sent",
    "msgs_received",
    "peak_open",
    "msgs_skipped",
    "capture_misses",
    "auto_matched",
    "auto_replies",
    "arrivals",
    "departures",
    "rotations",
    "rotation_failures",
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
    let value = match Unit::of(rest) {
        Unit::Percent => rest
            .trim_end_matches('%')
            .trim()
            .parse::<f64>()
            .map(|v| v / 100.0)
            .map_err(|_| format!("`{rest}` is not a percentage"))?,
        Unit::Millis | Unit::Seconds | Unit::Minutes => {
            crate::duration::parse_duration(rest)?.as_secs_f64()
        }
        Unit::Plain => rest
            .parse::<f64>()
            .map_err(|_| format!("`{rest}` is not a number (units: %, ms, s, m)"))?,
    };
    Ok(Threshold {
        metric: metric.to_string(),
        op,
        value,
    })
}

/// The unit a threshold's limit is written in; its measured value is shown in the same
/// unit (`ws_connecting.p95 < 300ms` -> `actual 0.9ms`, not `0.0009`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// `< 1%`: a ratio, shown as a percentage.
    Percent,
    /// `< 300ms`.
    Millis,
    /// `< 2s`.
    Seconds,
    /// `< 1m`.
    Minutes,
    /// `== 0`: a count (or a bare ratio/seconds value), shown as it is.
    Plain,
}

impl Unit {
    /// The unit of a limit as written (`300ms`, `1%`, `0`), by its suffix.
    pub fn of(limit: &str) -> Self {
        let l = limit.trim();
        if l.ends_with('%') {
            Self::Percent
        } else if l.ends_with("ms") {
            Self::Millis
        } else if l.ends_with('s') {
            Self::Seconds
        } else if l.ends_with('m') {
            Self::Minutes
        } else {
            Self::Plain
        }
    }

    /// A value in base units (ratio, seconds, count) written in this unit, to about
    /// three significant digits: `0.0009` s as `0.9ms`, `0.005` as `0.5%`.
    pub fn format(self, base: f64) -> String {
        let (v, suffix) = match self {
            Self::Percent => (base * 100.0, "%"),
            Self::Millis => (base * 1e3, "ms"),
            Self::Seconds => (base, "s"),
            Self::Minutes => (base / 60.0, "m"),
            Self::Plain => (base, ""),
        };
        format!("{}{suffix}", significant(v))
    }
}

/// `v` with about three significant digits and no trailing zeros (`0.9`, `12.3`, `300`).
fn significant(v: f64) -> String {
    let a = v.abs();
    let decimals = if a == 0.0 || a >= 100.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        // Enough decimals for three significant digits of a small value, at most 6.
        (2 - a.log10().floor() as i32).clamp(2, 6) as usize
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

impl ThresholdResult {
    /// The measured value in the unit of the threshold's limit (`0.9ms`), or `no data`.
    pub fn actual_text(&self) -> String {
        let limit = self.expression.trim().trim_start_matches(['<', '>', '=']);
        match self.actual {
            Some(a) => Unit::of(limit).format(a),
            None => "no data".into(),
        }
    }
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
        "msgs_skipped" => t.msgs_skipped as f64,
        "capture_misses" => t.capture_misses as f64,
        "auto_matched" => t.auto_matched as f64,
        "auto_replies" => t.auto_replies as f64,
        "arrivals" => t.arrivals as f64,
        "departures" => t.departures as f64,
        "rotations" => t.rotations as f64,
        "rotation_failures" => t.rotation_failures as f64,
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
    fn actual_values_read_in_the_unit_of_their_limit() {
        let shown = |expression: &str, actual: f64| {
            ThresholdResult {
                metric: "m".into(),
                expression: expression.into(),
                actual: Some(actual),
                passed: true,
            }
            .actual_text()
        };
        // The case of issue 15: `actual 0.0009` for a limit of 300ms.
        assert_eq!(shown("< 300ms", 0.0009), "0.9ms");
        assert_eq!(shown("<300ms", 0.01234), "12.3ms");
        assert_eq!(shown("< 1s", 0.25), "0.25s");
        assert_eq!(shown("<= 2s", 1.5), "1.5s");
        assert_eq!(shown("< 1m", 90.0), "1.5m");
        assert_eq!(shown("< 1%", 0.005), "0.5%");
        assert_eq!(shown("< 1%", 0.0), "0%");
        assert_eq!(shown("< 1%", 1.0 / 3.0), "33.3%");
        assert_eq!(shown("== 0", 3.0), "3");
        assert_eq!(shown(">= 100", 12000.0), "12000");
        assert_eq!(shown("< 1500ms", 1.2346), "1235ms");
        assert_eq!(shown("< 1ms", 0.000_012_34), "0.0123ms");
        let none = ThresholdResult {
            metric: "m".into(),
            expression: "< 1s".into(),
            actual: None,
            passed: false,
        };
        assert_eq!(none.actual_text(), "no data");
        // Parsing reads the same units.
        assert_eq!(Unit::of("300ms"), Unit::Millis);
        assert_eq!(parse("ws_rtt.p99", "< 1m").unwrap().value, 60.0);
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
