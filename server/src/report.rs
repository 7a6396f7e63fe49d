//! The self-contained HTML report: one file with its data, CSS, chart library (uPlot,
//! vendored in `server/assets/`, MIT) and chart specs inline, so it opens from disk with
//! no server. Written by `socketswarm run --report FILE.html` and served at
//! `GET /api/runs/{id}/report.html`. Its body is the run page's own
//! `app::components::run_sections::RunSections` rendered to a string (Leptos SSR), so
//! the report and the run page show the same sections and tables; each chart carries
//! its spec (`EmbedSpecs`) and the report's script draws them with the pages' glue.

use leptos::prelude::*;

use app::api::RunStatus;
use app::components::chart::EmbedSpecs;
use app::components::run_sections::{EnvSection, RunSections};
use app::components::tiles::TileData;
use engine::diagnose::Diagnosis;
use engine::thresholds::ThresholdResult;
use engine::{Plan, Series, Summary};

const STYLE: &str = include_str!("../../style/main.css");
const UPLOT_CSS: &str = include_str!("../assets/uplot.min.css");
const UPLOT_JS: &str = include_str!("../assets/uplot.iife.min.js");
const CHARTS_JS: &str = include_str!("../../public/charts.js");

/// Draws every chart from the spec it carries, once the page has loaded.
const DRAW_CHARTS: &str = "window.addEventListener('load', function () { \
     document.querySelectorAll('figure.chart').forEach(function (f) { \
     var spec = f.querySelector('script.chart__spec'), plot = f.querySelector('.chart__plot'); \
     if (spec && plot) { socketswarmCharts.render(plot, spec.textContent); } }); });";

/// What a report shows.
pub struct ReportInput<'a> {
    pub plan: &'a Plan,
    pub status: RunStatus,
    pub summary: &'a Summary,
    pub diagnosis: &'a Diagnosis,
    pub series: &'a Series,
    pub thresholds: &'a [ThresholdResult],
    /// When the run was created (unix ms), if known.
    pub created_at_ms: Option<i64>,
    /// Where it ran (version, host, open-file limit, start/end), if known.
    pub env: Option<EnvSection>,
}

/// Escapes text for HTML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The run page's sections of a finished run, as HTML (charts with their specs).
fn sections(r: &ReportInput<'_>) -> String {
    let s = r.summary;
    let tiles = TileData::finished(s, r.plan.peak_connections());
    let owner = Owner::new();
    owner.with(|| {
        provide_context(EmbedSpecs);
        view! {
            <RunSections
                tiles=Signal::stored(tiles)
                diagnosis=Signal::stored(Some(r.diagnosis.clone()))
                live=false
                agents=Signal::stored(s.agents.clone())
                lost_agents=s.lost_agents.clone()
                series=Signal::stored(r.series.clone())
                histograms=crate::runs::views::histogram_views(s)
                summary=Some(s.clone())
                latency=Signal::stored(s.latency.clone())
                thresholds=Signal::stored(r.thresholds.to_vec())
                plan_json=serde_json::to_string_pretty(&r.plan.redacted()).unwrap_or_default()
                env=r.env.clone()
                steering=Signal::stored(r.plan.steering.clone())
            />
        }
        .to_html()
    })
}

/// Renders the report.
pub fn html(r: &ReportInput<'_>) -> String {
    let body = sections(r);
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>socketswarm report: {name}</title><style>{STYLE}\n{UPLOT_CSS}</style><script>{UPLOT_JS}</script><script>{CHARTS_JS}</script></head>\
         <body><header class=\"topbar\"><span class=\"topbar__brand\">socketswarm</span><span>report</span></header><main class=\"page run-detail\">\
         <div class=\"run-detail__head\"><h1>{name}</h1><span class=\"badge badge--{status}\" data-status=\"{status}\">{status}</span></div>\
         <p class=\"run-detail__meta\"><span class=\"mono\">{target}</span>{created} · {dur}{ended}</p>\
         {body}</main><script>{DRAW_CHARTS}</script></body></html>",
        name = esc(&r.plan.name),
        status = r.status.as_str(),
        target = esc(&r.plan.target),
        created = r
            .created_at_ms
            .map(|c| format!(" · created {}", app::fmt::timestamp(c)))
            .unwrap_or_default(),
        dur = app::fmt::ms(r.summary.duration_ms),
        ended = r
            .summary
            .end_reason
            .map(|e| format!(" · ended: {e:?}").to_lowercase())
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_is_the_run_sections_with_chart_specs() {
        let plan: Plan = serde_json::from_value(serde_json::json!({
            "name": "<b>report</b>",
            "target": "ws://127.0.0.1:9001/echo",
            "stages": [{"duration": "1s", "connections": 2}],
        }))
        .unwrap();
        let mut summary = Summary {
            duration_ms: 1000,
            peak_open: 2,
            ..Summary::default()
        };
        summary.totals.failures.insert("<!--<script>".into(), 1);
        summary.latency.insert(
            "ws_connecting".into(),
            engine::report::LatencyStats {
                count: 2,
                p90_us: 900,
                p999_us: 999,
                ..Default::default()
            },
        );
        let ticks: Vec<engine::Snapshot> = (1..=2)
            .map(|seq| engine::Snapshot {
                seq,
                elapsed_ms: seq * 500,
                totals: summary.totals.clone(),
                interval: summary.totals.clone(),
                ..Default::default()
            })
            .collect();
        let series = Series::from_snapshots(&ticks);
        let diagnosis = engine::diagnose::for_run(&series, Some(&summary));
        let html = html(&ReportInput {
            plan: &plan,
            status: RunStatus::Completed,
            summary: &summary,
            diagnosis: &diagnosis,
            series: &series,
            thresholds: &[],
            created_at_ms: None,
            env: None,
        });
        assert!(html.contains("<h1>&lt;b&gt;report&lt;/b&gt;</h1>"));
        for part in [
            ">p90<",
            ">p99.9<",
            "Failures and session ends",
            "diagnosis__headline",
        ] {
            assert!(html.contains(part), "{part}");
        }
        // Every chart carries its spec, and no outcome name can break out of it.
        let figures = html.matches("<figure data-chart=").count();
        assert!(figures >= 5, "{figures}");
        assert_eq!(html.matches("class=\"chart__spec\"").count(), figures);
        assert!(!html.contains("<!--<script>"));
    }
}
