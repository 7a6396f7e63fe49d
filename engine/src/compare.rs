//! Comparing finished runs: a table of headline metrics with absolute and relative
//! change against the first run, whether a latency change is beyond noise (from the
//! stored HDR histograms), and what changed in behaviour, in words. Pure.
//!
//! Statistics, on whole-run histograms (`(value_us, count)` pairs):
//! - percentiles: a distribution-free 95 % confidence interval from order statistics
//!   (ranks `n·q ± 1.96·√(n·q·(1−q))`); a change is *significant* when the two runs'
//!   intervals do not overlap and the change is at least 5 % (smaller shifts are called
//!   negligible however sure we are of them);
//! - whole distributions: Mann–Whitney U with tie correction (normal approximation),
//!   reported as a p-value and as P(B > A), the chance that a sample of the later run
//!   is slower than one of the first.
//!
//! Layout: this file (the table: `compare`, `RunFacts`, `Comparison`, metric rows),
//! `compare/significance.rs` (the statistics above and `histogram_view`, re-exported
//! here) and `compare/behaviour.rs` (the behaviour sentences).

use serde::{Deserialize, Serialize};

use crate::diagnose::Diagnosis;
use crate::report::{metric, LatencyStats, Series, Summary};

mod behaviour;
mod significance;

use behaviour::behaviour;
pub use significance::{histogram_view, mann_whitney, quantile_ci, HistogramView, Shift};

/// One run as the comparison sees it.
pub struct RunFacts<'a> {
    pub name: &'a str,
    pub summary: &'a Summary,
    pub diagnosis: &'a Diagnosis,
    /// Per-second series (for when things first happened).
    pub series: &'a Series,
    /// Decoded whole-run histograms by metric (`(value_us, count)`, ascending).
    pub histograms: &'a std::collections::BTreeMap<String, Vec<(u64, u64)>>,
}

/// Which direction is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Lower,
    Higher,
    Neither,
}

/// Is a change beyond noise?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Significance {
    /// Beyond noise and at least 5 %.
    pub significant: bool,
    /// False when either side had too few samples for an interval (no test was made).
    pub tested: bool,
    /// `"95 % CIs disjoint"`, `"95 % CIs overlap"`, `"Mann-Whitney p = 0.003"`...
    pub method: String,
    /// Mann–Whitney two-sided p-value, for distribution rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
}

/// Change of one metric against the first run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub abs: f64,
    /// Relative change (0.38 = +38 %); `None` when the first run's value is 0.
    pub rel: Option<f64>,
    /// Only for latency rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub significance: Option<Significance>,
    /// `better`, `worse` or `same` (within 1 % or no direction).
    pub verdict: String,
}

/// One row of the comparison table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRow {
    pub key: String,
    pub label: String,
    /// `count`, `per_s`, `pct`, `ms`, `s`.
    pub unit: String,
    pub better: Better,
    /// One per run, in the order given.
    pub values: Vec<Option<f64>>,
    /// One per run; the first is always `None` (it is the reference).
    pub changes: Vec<Option<Change>>,
    /// 95 % interval of each run's value (percentile rows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intervals: Vec<Option<(f64, f64)>>,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Comparison {
    pub metrics: Vec<MetricRow>,
    /// Distribution-shift tests, one row per latency metric and later run.
    pub shifts: Vec<Shift>,
    /// What changed in behaviour, as sentences ("first 429 at 150 open → 310").
    pub behaviour: Vec<String>,
    /// The plainest statements about latency ("p95 ws_connecting +38 %, significant").
    pub headlines: Vec<String>,
}

/// Latency metrics that get percentile rows, in table order.
const LATENCY_METRICS: [&str; 6] = [
    metric::WS_CONNECTING,
    metric::TCP_CONNECT,
    metric::TLS_HANDSHAKE,
    metric::WS_RTT,
    metric::WS_PING,
    metric::TOKEN_FETCH,
];

/// The percentiles compared: quantile, name, and the run's stored value of it.
type Percentile = (f64, &'static str, fn(&LatencyStats) -> u64);
const PERCENTILES: [Percentile; 3] = [
    (0.5, "p50", |l| l.p50_us),
    (0.95, "p95", |l| l.p95_us),
    (0.99, "p99", |l| l.p99_us),
];

/// A headline metric of one run: key, label, unit, which way is better, and its value.
type CountMetric = (
    &'static str,
    &'static str,
    &'static str,
    Better,
    fn(&Summary) -> f64,
);

/// The headline (non-latency) rows, in table order.
const COUNT_METRICS: [CountMetric; 10] = [
    ("duration", "Duration", "s", Better::Neither, |s| {
        s.duration_ms as f64 / 1000.0
    }),
    (
        "peak_open",
        "Peak open connections",
        "count",
        Better::Higher,
        |s| s.peak_open as f64,
    ),
    (
        "attempted",
        "Handshakes attempted",
        "count",
        Better::Neither,
        |s| s.totals.attempted as f64,
    ),
    (
        "opened",
        "Connections opened",
        "count",
        Better::Higher,
        |s| s.totals.opened as f64,
    ),
    (
        "connect_rate",
        "Opened per second (mean)",
        "per_s",
        Better::Higher,
        |s| s.totals.opened as f64 / (s.duration_ms.max(1) as f64 / 1000.0),
    ),
    ("failed", "Handshakes failed", "count", Better::Lower, |s| {
        s.totals.failed as f64
    }),
    (
        "failure_rate",
        "Handshake failure rate",
        "pct",
        Better::Lower,
        |s| 100.0 * s.totals.failed as f64 / s.totals.attempted.max(1) as f64,
    ),
    (
        "drops",
        "Dropped by the target",
        "count",
        Better::Lower,
        |s| s.totals.dropped as f64,
    ),
    (
        "msgs_received",
        "Messages received",
        "count",
        Better::Higher,
        |s| s.totals.msgs_received as f64,
    ),
    (
        "expect_timeouts",
        "Reply timeouts",
        "count",
        Better::Lower,
        |s| s.totals.expect_timeouts as f64,
    ),
];

/// Smallest relative change called significant.
const MIN_EFFECT: f64 = 0.05;

/// Compares runs against the first one.
pub fn compare(runs: &[RunFacts<'_>]) -> Comparison {
    let mut c = Comparison::default();
    if runs.is_empty() {
        return c;
    }
    for (key, label, unit, better, f) in COUNT_METRICS {
        let values = runs.iter().map(|r| Some(f(r.summary))).collect();
        c.metrics.push(row(key, label, unit, better, values));
    }
    for metric in LATENCY_METRICS {
        if runs.iter().all(|r| !r.summary.latency.contains_key(metric)) {
            continue;
        }
        for p in PERCENTILES {
            c.metrics.push(percentile_row(runs, metric, p));
        }
        let base = runs[0].histograms.get(metric);
        for (i, r) in runs.iter().enumerate().skip(1) {
            if let (Some(a), Some(b)) = (base, r.histograms.get(metric)) {
                if let Some(s) = mann_whitney(a, b) {
                    c.shifts.push(Shift {
                        metric: metric.to_string(),
                        run: i,
                        ..s
                    });
                }
            }
        }
    }
    for m in &c.metrics {
        if m.unit != "ms" {
            continue;
        }
        for (i, ch) in m.changes.iter().enumerate() {
            let Some(ch) = ch else { continue };
            let Some(sig) = &ch.significance else {
                continue;
            };
            // Only shifts that matter: significant, and at least 1 ms (a sub-millisecond
            // shift is real but changes nothing a user waits for). The table has the rest.
            if sig.tested && sig.significant && ch.abs.abs() >= 1.0 {
                let rel = ch
                    .rel
                    .map(|r| format!("{:+.0} %", r * 100.0))
                    .unwrap_or_else(|| format!("{:+.1} ms", ch.abs));
                let word = if sig.significant {
                    "significant"
                } else {
                    "within noise"
                };
                let who = if runs.len() > 2 {
                    format!(" ({})", runs[i].name)
                } else {
                    String::new()
                };
                c.headlines.push(format!("{} {rel}, {word}{who}", m.label));
            }
        }
    }
    for r in runs.iter().skip(1) {
        let who = if runs.len() > 2 {
            format!("{}: ", r.name)
        } else {
            String::new()
        };
        for s in behaviour(&runs[0], r) {
            c.behaviour.push(format!("{who}{s}"));
        }
    }
    c
}

fn verdict(better: Better, rel: Option<f64>, abs: f64) -> String {
    let moved = match rel {
        Some(r) => r.abs() >= 0.01,
        None => abs != 0.0,
    };
    if !moved || better == Better::Neither {
        return "same".into();
    }
    let up = abs > 0.0;
    match (better, up) {
        (Better::Higher, true) | (Better::Lower, false) => "better".into(),
        _ => "worse".into(),
    }
}

fn change(better: Better, base: Option<f64>, v: Option<f64>) -> Option<Change> {
    let (a, b) = (base?, v?);
    let abs = b - a;
    let rel = (a != 0.0).then(|| abs / a);
    Some(Change {
        abs,
        rel,
        significance: None,
        verdict: verdict(better, rel, abs),
    })
}

fn row(key: &str, label: &str, unit: &str, better: Better, values: Vec<Option<f64>>) -> MetricRow {
    let base = values.first().copied().flatten();
    let changes = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            if i == 0 {
                None
            } else {
                change(better, base, *v)
            }
        })
        .collect();
    MetricRow {
        key: key.into(),
        label: label.into(),
        unit: unit.into(),
        better,
        values,
        changes,
        intervals: Vec::new(),
    }
}

fn percentile_row(
    runs: &[RunFacts<'_>],
    metric: &str,
    (q, qname, stored): Percentile,
) -> MetricRow {
    let values: Vec<Option<f64>> = runs
        .iter()
        .map(|r| {
            r.summary
                .latency
                .get(metric)
                .map(|l| stored(l) as f64 / 1000.0)
        })
        .collect();
    let intervals: Vec<Option<(f64, f64)>> = runs
        .iter()
        .map(|r| {
            r.histograms
                .get(metric)
                .and_then(|h| quantile_ci(h, q))
                .map(|(lo, hi)| (lo as f64 / 1000.0, hi as f64 / 1000.0))
        })
        .collect();
    let mut m = row(
        &format!("{metric}.{qname}"),
        &format!("{qname} {metric}"),
        "ms",
        Better::Lower,
        values,
    );
    let base_ci = intervals.first().copied().flatten();
    for (i, ch) in m.changes.iter_mut().enumerate() {
        let Some(ch) = ch else { continue };
        let (Some(a), Some(b)) = (base_ci, intervals.get(i).copied().flatten()) else {
            ch.significance = Some(Significance {
                significant: false,
                tested: false,
                method: format!("too few samples for a {qname} interval"),
                p_value: None,
            });
            ch.verdict = "same".into();
            continue;
        };
        let disjoint = a.1 < b.0 || b.1 < a.0;
        let big = ch.rel.is_none_or(|r| r.abs() >= MIN_EFFECT);
        ch.significance = Some(Significance {
            significant: disjoint && big,
            tested: true,
            method: match (disjoint, big) {
                (true, true) => "95 % CIs disjoint".into(),
                (true, false) => "95 % CIs disjoint, but under 5 %".into(),
                _ => "95 % CIs overlap".into(),
            },
            p_value: None,
        });
        if !(disjoint && big) {
            ch.verdict = "same".into();
        }
    }
    m.intervals = intervals;
    m
}

#[cfg(test)]
mod tests;
