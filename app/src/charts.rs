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
}

/// One chart: shared x axis (elapsed seconds) and its lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ChartSpec {
    pub y_label: String,
    pub height: u32,
    pub x: Vec<f64>,
    pub series: Vec<LineSpec>,
}

fn line(label: &str, color: &str, values: &[f64]) -> LineSpec {
    LineSpec {
        label: label.into(),
        color: color.into(),
        values: values.iter().map(|v| Some(*v)).collect(),
        fill: false,
        dash: false,
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
    }
}

/// Open connections against the schedule's target (and a diagnosed cap, if any).
pub fn connections(s: &Series, d: Option<&Diagnosis>) -> ChartSpec {
    let mut open = line("open", "#2b6cb0", &s.open);
    open.fill = true;
    let mut target = line("target", "#1b2433", &s.target);
    target.dash = true;
    let mut series = vec![open, target];
    if let Some(Diagnosis {
        kind: LimitKind::ConcurrencyCap,
        level: Some(l),
        ..
    }) = d
    {
        series.push(level_line(format!("cap ≈ {l:.0}"), *l, s.t.len()));
    }
    ChartSpec {
        y_label: "connections".into(),
        height: 220,
        x: s.t.clone(),
        series,
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
    if let Some(Diagnosis {
        kind: LimitKind::HandshakeRateLimit,
        level: Some(l),
        ..
    }) = d
    {
        out.push(level_line(format!("limit ≈ {l:.1}/s"), *l, s.t.len()));
    }
    ChartSpec {
        y_label: "connects / s".into(),
        height: 220,
        x: s.t.clone(),
        series: out,
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
    }
}

/// Sessions ended by the target per second, by close kind (`None` when there were none).
pub fn drops(s: &Series) -> Option<ChartSpec> {
    if s.drop_rate.is_empty() {
        return None;
    }
    let series = s
        .drop_rate
        .iter()
        .map(|(k, v)| line(k, color_of(k), v))
        .collect();
    Some(ChartSpec {
        y_label: "drops / s".into(),
        height: 180,
        x: s.t.clone(),
        series,
    })
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
    }
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

    #[test]
    fn drops_only_when_present_and_colors_are_stable() {
        assert!(drops(&series()).is_none());
        assert_eq!(color_of("http_503"), color_of("http_502"));
        assert_ne!(color_of("http_429"), color_of("opened"));
    }
}
