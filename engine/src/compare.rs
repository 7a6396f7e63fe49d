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

use serde::{Deserialize, Serialize};

use crate::diagnose::{first_nonzero, Diagnosis, LimitKind};
use crate::report::{metric, LatencyStats, Series, Summary};

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

/// Mann–Whitney result for one metric between the first run and run `run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shift {
    pub metric: String,
    pub run: usize,
    pub p_value: f64,
    /// P(sample of run `run` > sample of the first run) (+½ ties).
    pub prob_slower: f64,
    pub n_a: u64,
    pub n_b: u64,
    /// `slower`, `faster` or `same`: shifted when p < 0.01 and P(slower) is at least
    /// 0.05 away from even.
    pub verdict: String,
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
            if sig.tested && (m.key.ends_with("p95") || sig.significant) {
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

/// The value at 1-based rank `k` of a histogram.
fn value_at_rank(h: &[(u64, u64)], k: u64) -> Option<u64> {
    let mut seen = 0;
    for &(v, c) in h {
        seen += c;
        if seen >= k {
            return Some(v);
        }
    }
    h.last().map(|x| x.0)
}

/// Distribution-free 95 % confidence interval of the `q` quantile (order statistics,
/// normal approximation of the binomial). `None` unless at least 5 samples lie on each
/// side of the quantile (n·min(q, 1−q) ≥ 5: p50 needs 10 samples, p95 100, p99 500) —
/// below that the approximation does not hold and no claim is made.
pub fn quantile_ci(h: &[(u64, u64)], q: f64) -> Option<(u64, u64)> {
    let n: u64 = h.iter().map(|x| x.1).sum();
    if (n as f64) * q.min(1.0 - q) < 5.0 {
        return None;
    }
    let nf = n as f64;
    let half = 1.96 * (nf * q * (1.0 - q)).sqrt();
    let lo = (nf * q - half).floor().max(1.0) as u64;
    let hi = ((nf * q + half).ceil() as u64 + 1).min(n);
    Some((value_at_rank(h, lo)?, value_at_rank(h, hi)?))
}

/// Mann–Whitney U of `b` against `a`, with tie correction and the normal
/// approximation. `None` when either side is empty.
pub fn mann_whitney(a: &[(u64, u64)], b: &[(u64, u64)]) -> Option<Shift> {
    let na: u64 = a.iter().map(|x| x.1).sum();
    let nb: u64 = b.iter().map(|x| x.1).sum();
    if na == 0 || nb == 0 {
        return None;
    }
    let (mut i, mut j) = (0, 0);
    let mut rank_before = 0f64;
    let mut rank_sum_b = 0f64;
    let mut tie_term = 0f64;
    while i < a.len() || j < b.len() {
        let va = a.get(i).map(|x| x.0);
        let vb = b.get(j).map(|x| x.0);
        let v = match (va, vb) {
            (Some(x), Some(y)) => x.min(y),
            (Some(x), None) => x,
            (None, Some(y)) => y,
            (None, None) => break,
        };
        let ca = if va == Some(v) {
            i += 1;
            a[i - 1].1
        } else {
            0
        };
        let cb = if vb == Some(v) {
            j += 1;
            b[j - 1].1
        } else {
            0
        };
        let t = (ca + cb) as f64;
        let avg = rank_before + (t + 1.0) / 2.0;
        rank_sum_b += cb as f64 * avg;
        rank_before += t;
        tie_term += t * t * t - t;
    }
    let (naf, nbf) = (na as f64, nb as f64);
    let n = naf + nbf;
    let u_b = rank_sum_b - nbf * (nbf + 1.0) / 2.0;
    let mean = naf * nbf / 2.0;
    let var = naf * nbf / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)).max(1.0));
    let p_value = if var <= 0.0 {
        1.0
    } else {
        let z = (u_b - mean).abs() / var.sqrt();
        erfc(z / std::f64::consts::SQRT_2).clamp(0.0, 1.0)
    };
    let prob_slower = u_b / (naf * nbf);
    let shifted = p_value < 0.01 && (prob_slower - 0.5).abs() >= 0.05;
    let verdict = match (shifted, prob_slower > 0.5) {
        (false, _) => "same",
        (true, true) => "slower",
        (true, false) => "faster",
    };
    Some(Shift {
        metric: String::new(),
        run: 1,
        p_value,
        prob_slower,
        n_a: na,
        n_b: nb,
        verdict: verdict.into(),
    })
}

/// Complementary error function (W. J. Cody's rational approximation via
/// Numerical Recipes' `erfcc`, |error| < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

fn fmt_n(v: f64) -> String {
    if v.fract() == 0.0 || v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A latency distribution for display: sample counts in 1-1.5-2-3-5-7 buckets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HistogramView {
    pub metric: String,
    /// Upper bound of each bucket, in ms (a bucket holds `(previous bound, bound]`).
    pub le_ms: Vec<f64>,
    pub counts: Vec<u64>,
}

/// Buckets a stored histogram (`(value_us, count)`) into 1-1.5-2-3-5-7 steps from 0.1 ms,
/// from one bucket below the fastest sample to one above the slowest.
pub fn histogram_view(metric: &str, h: &[(u64, u64)]) -> HistogramView {
    let mut bounds_us = Vec::new();
    let mut decade = 100u64;
    while decade <= 100_000_000 {
        for m in [10, 15, 20, 30, 50, 70] {
            bounds_us.push(decade * m / 10);
        }
        decade *= 10;
    }
    // The last bucket also takes anything slower than its bound (700 s).
    let mut counts = vec![0u64; bounds_us.len()];
    for &(v, c) in h {
        let i = bounds_us
            .partition_point(|b| *b < v)
            .min(bounds_us.len() - 1);
        counts[i] += c;
    }
    let le_ms: Vec<f64> = bounds_us.iter().map(|b| *b as f64 / 1000.0).collect();
    // One empty bucket either side keeps a lone bucket readable as a bar.
    let first = counts
        .iter()
        .position(|c| *c > 0)
        .unwrap_or(0)
        .saturating_sub(1);
    let last = (counts.iter().rposition(|c| *c > 0).unwrap_or(0) + 1).min(counts.len() - 1);
    HistogramView {
        metric: metric.into(),
        le_ms: le_ms[first..=last].to_vec(),
        counts: counts[first..=last].to_vec(),
    }
}

/// What changed in behaviour from run `a` to run `b`, in words.
fn behaviour(a: &RunFacts<'_>, b: &RunFacts<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let (da, db) = (a.diagnosis, b.diagnosis);
    // A verdict in words, with the identity it counts: "concurrency cap per token".
    let name = |d: &Diagnosis| match (d.kind, &d.per) {
        (LimitKind::None, _) => "no limit".to_string(),
        (k, Some(p)) => format!("{} per {}", k.words(), crate::diagnose::per_words(p)),
        (k, None) => k.words().to_string(),
    };
    if name(da) != name(db) {
        out.push(format!("verdict: {} → {}", name(da), name(db)));
    } else if da.kind != LimitKind::None {
        if let (Some(x), Some(y)) = (da.level, db.level) {
            if (x - y).abs() > f64::max(1.0, 0.02 * x) {
                out.push(format!(
                    "{} level {} → {} {}",
                    name(da),
                    fmt_n(x),
                    fmt_n(y),
                    db.unit.replace('_', " ")
                ));
            }
        }
    }
    let ka = &da.knee;
    let kb = &db.knee;
    let first_kind = |d: &Diagnosis| {
        d.failures
            .iter()
            .filter(|(k, _)| {
                matches!(
                    crate::outcome::FailKind::parse(k),
                    Some(crate::outcome::FailKind::Status(_))
                )
            })
            .max_by_key(|(_, v)| **v)
            .map(|(k, _)| k.trim_start_matches("http_").to_string())
            .unwrap_or_else(|| "rejection".into())
    };
    match (ka.open_at_first_rejection, kb.open_at_first_rejection) {
        (Some(x), Some(y)) if (x - y).abs() >= 1.0 => out.push(format!(
            "first {} at {} open connections → {}",
            first_kind(db),
            fmt_n(x),
            fmt_n(y)
        )),
        (Some(x), None) => out.push(format!(
            "rejections gone (first {} was at {} open connections)",
            first_kind(da),
            fmt_n(x)
        )),
        (None, Some(y)) => out.push(format!(
            "rejections appeared: first {} at {} open connections{}",
            first_kind(db),
            fmt_n(y),
            kb.first_rejection_s
                .map(|s| format!(", after {} s", fmt_n(s)))
                .unwrap_or_default()
        )),
        _ => {}
    }
    // Drops by close kind: appeared, vanished, or moved a lot.
    let (ca, cb) = (&a.summary.totals.closes, &b.summary.totals.closes);
    let is_drop = |k: &str| crate::outcome::CloseKind::parse(k).is_some_and(|c| c.is_drop());
    for (k, vb) in cb {
        if !is_drop(k) {
            continue;
        }
        let va = ca.get(k).copied().unwrap_or(0);
        if va == 0 && *vb > 0 {
            let when = first_nonzero(&b.series.t, b.series.drop_rate.get(k))
                .map(|s| format!(" after {} s", fmt_n(s)))
                .unwrap_or_default();
            out.push(format!("drops with {k} appeared{when} ({vb})"));
        } else if va > 0 && *vb == 0 {
            out.push(format!("drops with {k} gone (were {va})"));
        }
    }
    for (k, va) in ca {
        if is_drop(k) && *va > 0 && !cb.contains_key(k) {
            out.push(format!("drops with {k} gone (were {va})"));
        }
    }
    // Failure classes that appeared or vanished.
    let fa = &a.summary.totals.failures;
    let fb = &b.summary.totals.failures;
    for (k, vb) in fb {
        if *vb > 0 && fa.get(k).copied().unwrap_or(0) == 0 {
            out.push(format!("{k} failures appeared ({vb})"));
        }
    }
    for (k, va) in fa {
        if *va > 0 && fb.get(k).copied().unwrap_or(0) == 0 {
            out.push(format!("{k} failures gone (were {va})"));
        }
    }
    if a.summary.peak_open != b.summary.peak_open {
        out.push(format!(
            "peak open connections {} → {}",
            a.summary.peak_open, b.summary.peak_open
        ));
    }
    out.dedup();
    out
}

#[cfg(test)]
mod tests;
