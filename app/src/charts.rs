//! Chart specs built from a run's `Series` (pure, unit-tested). The browser hands a spec
//! to uPlot through `public/charts.js`; nothing here draws.
//!
//! To add a chart: 1. write a `fn name(&Series) -> ChartSpec` here, 2. add a test,
//! 3. place `<Chart spec=.../>` on the page.

use engine::diagnose::{Diagnosis, LimitKind};
use engine::Series;
use serde::{Deserialize, Serialize};

/// One line (or filled area) of a chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineSpec {
    pub label: String,
    /// `#rrggbb`.
    pub color: String,
    pub values: Vec<Option<f64>>,
    pub fill: bool,
    pub dash: bool,
    /// Draw as bars (histograms).
    #[serde(default)]
    pub bars: bool,
}

/// One chart: shared x axis (elapsed seconds) and its lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ChartSpec {
    pub y_label: String,
    pub height: u32,
    pub x: Vec<f64>,
    pub series: Vec<LineSpec>,
    /// x axis caption (default "elapsed (s)").
    #[serde(default)]
    pub x_label: String,
    /// Categorical x: the label of each x index (histogram buckets).
    #[serde(default)]
    pub x_labels: Vec<String>,
    /// Vertical markers at x (a steering change on the connections chart).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<Mark>,
}

/// A vertical marker with its label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    /// Elapsed seconds.
    pub x: f64,
    pub label: String,
}

/// Markers for a run's steering changes ("level 20 → 60" at its second).
pub fn steering_marks(events: &[engine::steer::SteerEvent]) -> Vec<Mark> {
    events
        .iter()
        .map(|e| Mark {
            x: e.at_ms as f64 / 1000.0,
            label: e.short(),
        })
        .collect()
}

fn line(label: &str, color: &str, values: &[f64]) -> LineSpec {
    LineSpec {
        label: label.into(),
        color: color.into(),
        values: values.iter().map(|v| Some(*v)).collect(),
        fill: false,
        dash: false,
        bars: false,
    }
}

/// Stable colour per outcome key.
pub fn color_of(key: &str) -> &'static str {
    match key {
        "opened" => "#1f8a4c",
        "http_429" => "#dd6b20",
        "http_401" | "http_403" => "#805ad5",
        k if k.starts_with("http_5") => "#c53030",
        k if k.starts_with("http_") => "#b7791f",
        "timeout" => "#6b46c1",
        "refused" => "#975a16",
        "reset" | "abnormal_1006" => "#e53e3e",
        "client_limit" => "#2d3748",
        k if k.starts_with("server_") => "#d53f8c",
        _ => "#718096",
    }
}

/// A constant dashed line marking a diagnosed level.
fn level_line(label: String, level: f64, n: usize) -> LineSpec {
    LineSpec {
        label,
        color: "#c53030".into(),
        values: vec![Some(level); n],
        fill: false,
        dash: true,
        bars: false,
    }
}

/// A probe's found levels in `unit` drawn over the experiments that found them: a dashed
/// amber segment at the level, from the experiment's start to its end (issue 16), so a
/// live probe shows each finding where it was measured.
pub fn with_found(
    mut spec: ChartSpec,
    s: &Series,
    probe: Option<&engine::report::ProbeProgress>,
    unit: &str,
) -> ChartSpec {
    let Some(p) = probe else {
        return spec;
    };
    for r in p.done.iter().filter(|r| r.unit == unit) {
        let Some(level) = r.found else {
            continue;
        };
        let (a, b) = (
            r.experiment.start_ms as f64 / 1000.0,
            r.experiment.end_ms as f64 / 1000.0 + 0.001,
        );
        let values =
            s.t.iter()
                .map(|t| (*t >= a && *t <= b).then_some(level))
                .collect();
        let per_s = if unit == engine::report::UNIT_CONNECTS_PER_SECOND {
            "/s"
        } else {
            ""
        };
        spec.series.push(LineSpec {
            label: format!("found ≈ {level:.0}{per_s} (exp {})", r.experiment.index),
            color: "#d69e2e".into(),
            values,
            fill: false,
            dash: true,
            bars: false,
        });
    }
    spec
}

/// Open connections against the schedule's target (and a diagnosed cap, if any).
pub fn connections(s: &Series, d: Option<&Diagnosis>) -> ChartSpec {
    let mut open = line("open", "#2b6cb0", &s.open);
    open.fill = true;
    let mut target = line("target", "#1b2433", &s.target);
    target.dash = true;
    let mut series = vec![open, target];
    match d {
        Some(Diagnosis {
            kind: LimitKind::ConcurrencyCap,
            level: Some(l),
            per: None,
            ..
        }) => series.push(level_line(format!("cap ≈ {l:.0}"), *l, s.t.len())),
        // A cap per identity: the plateau it makes in all.
        Some(Diagnosis {
            kind: LimitKind::ConcurrencyCap,
            level: Some(l),
            per: Some(per),
            identities: Some(n),
            ..
        }) => series.push(level_line(
            format!(
                "{n} × cap ≈ {l:.0} per {}",
                engine::diagnose::per_words(per)
            ),
            l * f64::from(*n),
            s.t.len(),
        )),
        Some(Diagnosis {
            kind: LimitKind::Saturation,
            level: Some(l),
            ..
        }) => series.push(level_line(format!("knee ≈ {l:.0}"), *l, s.t.len())),
        _ => {}
    }
    ChartSpec {
        y_label: "connections".into(),
        height: 220,
        x: s.t.clone(),
        series,
        ..Default::default()
    }
}

/// Connects per second: opened, with failures by class stacked on top. Layers are
/// cumulative and drawn largest first so each band shows its own class. A diagnosed
/// handshake rate limit is drawn as a dashed line.
pub fn connect_rate(s: &Series, d: Option<&Diagnosis>) -> ChartSpec {
    let mut layers: Vec<(String, &Vec<f64>)> = vec![("opened".into(), &s.opened_rate)];
    layers.extend(s.failed_rate.iter().map(|(k, v)| (k.clone(), v)));
    let mut acc = vec![0.0; s.t.len()];
    let mut out = Vec::new();
    for (label, values) in layers {
        for (a, v) in acc.iter_mut().zip(values.iter()) {
            *a += v;
        }
        let mut l = line(&label, color_of(&label), &acc);
        l.fill = true;
        out.push(l);
    }
    out.reverse();
    match d {
        Some(Diagnosis {
            kind: LimitKind::HandshakeRateLimit,
            level: Some(l),
            ..
        }) => out.push(level_line(format!("limit ≈ {l:.1}/s"), *l, s.t.len())),
        Some(Diagnosis {
            kind: LimitKind::LockoutRateLimit,
            level: Some(l),
            ..
        }) => out.push(level_line(format!("lockout ≈ {l:.0}/s"), *l, s.t.len())),
        _ => {}
    }
    ChartSpec {
        y_label: "connects / s".into(),
        height: 220,
        x: s.t.clone(),
        series: out,
        ..Default::default()
    }
}

/// Connect and reply latency percentiles (ms) per tick.
pub fn latency(s: &Series) -> ChartSpec {
    let mut out = Vec::new();
    let palette = [
        ("ws_connecting", ["#9ae6b4", "#38a169", "#22543d"]),
        ("ws_rtt", ["#90cdf4", "#3182ce", "#2a4365"]),
        ("ws_ping", ["#fbd38d", "#dd6b20", "#7b341e"]),
    ];
    for (metric, colors) in palette {
        if let Some(qs) = s.latency_ms.get(metric) {
            for (q, color) in ["p50", "p95", "p99"].iter().zip(colors) {
                if let Some(v) = qs.get(*q) {
                    out.push(LineSpec {
                        label: format!("{metric} {q}"),
                        color: color.into(),
                        values: v.clone(),
                        fill: false,
                        dash: false,
                        bars: false,
                    });
                }
            }
        }
    }
    ChartSpec {
        y_label: "ms".into(),
        height: 220,
        x: s.t.clone(),
        series: out,
        ..Default::default()
    }
}

/// Messages per second.
pub fn messages(s: &Series) -> ChartSpec {
    ChartSpec {
        y_label: "messages / s".into(),
        height: 180,
        x: s.t.clone(),
        series: vec![
            line("sent", "#3182ce", &s.sent_rate),
            line("received", "#38a169", &s.received_rate),
        ],
        ..Default::default()
    }
}

/// Connect failures and drops per second by class, as lines (`None` when there were none).
pub fn failures(s: &Series) -> Option<ChartSpec> {
    if s.failed_rate.is_empty() && s.drop_rate.is_empty() {
        return None;
    }
    let mut series: Vec<LineSpec> = s
        .failed_rate
        .iter()
        .map(|(k, v)| line(k, color_of(k), v))
        .collect();
    for (k, v) in &s.drop_rate {
        let mut l = line(&format!("drop {k}"), color_of(k), v);
        l.dash = true;
        series.push(l);
    }
    Some(ChartSpec {
        y_label: "per s".into(),
        height: 200,
        x: s.t.clone(),
        series,
        ..Default::default()
    })
}

/// A whole-run latency distribution as bars over 1-2-5 ms buckets.
pub fn histogram(h: &engine::compare::HistogramView) -> ChartSpec {
    let labels = h
        .le_ms
        .iter()
        .map(|b| {
            if *b >= 1000.0 {
                format!("≤{}s", b / 1000.0)
            } else {
                format!("≤{b}ms")
            }
        })
        .collect();
    ChartSpec {
        y_label: "samples".into(),
        height: 180,
        x: (0..h.counts.len()).map(|i| i as f64).collect(),
        series: vec![LineSpec {
            label: h.metric.clone(),
            color: "#2b6cb0".into(),
            values: h.counts.iter().map(|c| Some(*c as f64)).collect(),
            fill: true,
            dash: false,
            bars: true,
        }],
        x_label: "latency bucket".into(),
        x_labels: labels,
        marks: Vec::new(),
    }
}

/// Colours of the runs in a comparison, in order. The run cards repeat them as CSS
/// classes (`.cmp__run--0` … `--3` in `style/main.css`): the page CSP allows no `style`
/// attribute.
pub const RUN_COLORS: [&str; 4] = ["#2b6cb0", "#dd6b20", "#38a169", "#805ad5"];

/// One line per run on a shared elapsed-time axis (the union of the runs' ticks, to
/// 0.1 s); a run without a tick at some x has a gap there.
pub fn overlay(
    runs: &[(String, &Series)],
    y_label: &str,
    pick: &dyn Fn(&Series) -> Vec<Option<f64>>,
) -> ChartSpec {
    let key = |t: f64| (t * 10.0).round() as i64;
    let mut xs: Vec<i64> = runs
        .iter()
        .flat_map(|(_, s)| s.t.iter().map(|t| key(*t)))
        .collect();
    xs.sort_unstable();
    xs.dedup();
    let series = runs
        .iter()
        .enumerate()
        .map(|(i, (name, s))| {
            let vals = pick(s);
            let by_x: std::collections::BTreeMap<i64, Option<f64>> =
                s.t.iter().zip(vals).map(|(t, v)| (key(*t), v)).collect();
            LineSpec {
                label: name.clone(),
                color: RUN_COLORS[i % RUN_COLORS.len()].into(),
                values: xs.iter().map(|x| by_x.get(x).copied().flatten()).collect(),
                fill: false,
                dash: false,
                bars: false,
            }
        })
        .collect();
    ChartSpec {
        y_label: y_label.into(),
        height: 220,
        x: xs.iter().map(|x| *x as f64 / 10.0).collect(),
        series,
        ..Default::default()
    }
}

/// Failures per second (all classes) of a series.
pub fn failed_total(s: &Series) -> Vec<Option<f64>> {
    (0..s.t.len())
        .map(|i| {
            Some(
                s.failed_rate
                    .values()
                    .map(|v| v.get(i).copied().unwrap_or(0.0))
                    .sum(),
            )
        })
        .collect()
}

/// One latency percentile column of a series (`metric`, `q`).
pub fn latency_col(s: &Series, metric: &str, q: &str) -> Vec<Option<f64>> {
    s.latency_ms
        .get(metric)
        .and_then(|m| m.get(q))
        .cloned()
        .unwrap_or_else(|| vec![None; s.t.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> Series {
        let mut s = Series {
            t: vec![1.0, 2.0],
            opened_rate: vec![5.0, 1.0],
            ..Default::default()
        };
        s.failed_rate.insert("http_429".into(), vec![0.0, 4.0]);
        s.failed_rate.insert("timeout".into(), vec![1.0, 0.0]);
        s
    }

    #[test]
    fn steering_changes_become_markers_at_their_second() {
        use engine::steer::{SteerEvent, SteerKind};
        let marks = steering_marks(&[SteerEvent {
            at_ms: 3500,
            kind: SteerKind::Level,
            from: Some(20.0),
            to: Some(60.0),
        }]);
        assert_eq!(
            marks,
            vec![Mark {
                x: 3.5,
                label: "level → 60".into()
            }]
        );
    }

    #[test]
    fn connect_rate_stacks_failures_on_opened() {
        let c = connect_rate(&series(), None);
        let labels: Vec<&str> = c.series.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(
            labels,
            vec!["timeout", "http_429", "opened"],
            "largest (top) layer first"
        );
        assert_eq!(c.series[2].values, vec![Some(5.0), Some(1.0)]);
        assert_eq!(c.series[1].values, vec![Some(5.0), Some(5.0)]);
        assert_eq!(c.series[0].values, vec![Some(6.0), Some(5.0)]);
        assert!(c.series.iter().all(|l| l.values.len() == c.x.len()));
    }

    /// Issue 16: a probe's found rate is drawn on the connect-rate chart over the
    /// experiment that found it, and not on the connections chart.
    #[test]
    fn a_found_level_is_drawn_over_its_experiment_on_its_own_chart() {
        use engine::report::{
            Experiment, ExperimentResult, ProbeProgress, UNIT_CONNECTIONS, UNIT_CONNECTS_PER_SECOND,
        };
        let s = Series {
            t: vec![1.0, 2.0, 3.0, 4.0],
            opened_rate: vec![5.0; 4],
            ..Default::default()
        };
        let p = ProbeProgress {
            done: vec![ExperimentResult {
                experiment: Experiment {
                    index: 3,
                    start_ms: 2000,
                    end_ms: 3000,
                    ..Default::default()
                },
                unit: UNIT_CONNECTS_PER_SECOND.into(),
                found: Some(20.0),
                ..Default::default()
            }],
            ..Default::default()
        };
        let rate = with_found(
            connect_rate(&s, None),
            &s,
            Some(&p),
            UNIT_CONNECTS_PER_SECOND,
        );
        let found = rate.series.last().unwrap();
        assert_eq!(found.label, "found ≈ 20/s (exp 3)");
        assert_eq!(found.values, vec![None, Some(20.0), Some(20.0), None]);
        assert!(found.dash);
        let conns = with_found(connections(&s, None), &s, Some(&p), UNIT_CONNECTIONS);
        assert_eq!(conns, connections(&s, None));
    }

    #[test]
    fn overlay_aligns_runs_on_a_shared_axis() {
        let a = Series {
            t: vec![1.0, 2.0],
            open: vec![10.0, 20.0],
            ..Default::default()
        };
        let b = Series {
            t: vec![1.0, 2.0, 3.0],
            open: vec![5.0, 6.0, 7.0],
            ..Default::default()
        };
        let c = overlay(&[("a".into(), &a), ("b".into(), &b)], "open", &|s| {
            s.open.iter().map(|v| Some(*v)).collect()
        });
        assert_eq!(c.x, vec![1.0, 2.0, 3.0]);
        assert_eq!(c.series[0].values, vec![Some(10.0), Some(20.0), None]);
        assert_eq!(c.series[1].values, vec![Some(5.0), Some(6.0), Some(7.0)]);
    }

    #[test]
    fn failures_only_when_present_with_drops_dashed_and_colors_are_stable() {
        let mut s = Series {
            t: vec![1.0],
            ..Default::default()
        };
        assert!(failures(&s).is_none());
        s.drop_rate.insert("abnormal_1006".into(), vec![2.0]);
        let c = failures(&s).expect("drops alone make the chart");
        assert_eq!(c.series.len(), 1);
        assert_eq!(c.series[0].label, "drop abnormal_1006");
        assert!(c.series[0].dash);
        let c = failures(&series()).expect("failures make the chart");
        assert!(c.series.iter().all(|l| !l.dash), "no drops in this series");
        assert_eq!(color_of("http_503"), color_of("http_502"));
        assert_ne!(color_of("http_429"), color_of("opened"));
    }
}
