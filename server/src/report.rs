//! The self-contained HTML report: one file with its data, CSS, chart library (uPlot,
//! vendored in `server/assets/`, MIT) and chart specs inline, so it opens from disk with
//! no server. Written by `socketswarm run --report FILE.html` and served at
//! `GET /api/runs/{id}/report.html`. The charts are the same specs the pages draw
//! (`app::charts`).

use std::fmt::Write;

use app::api::RunStatus;
use engine::diagnose::Diagnosis;
use engine::thresholds::ThresholdResult;
use engine::{Plan, Series, Summary};

const STYLE: &str = include_str!("../../style/main.css");
const UPLOT_CSS: &str = include_str!("../assets/uplot.min.css");
const UPLOT_JS: &str = include_str!("../assets/uplot.iife.min.js");
const CHARTS_JS: &str = include_str!("../../public/charts.js");

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
    pub env: Option<Environment<'a>>,
}

/// The environment section of a report.
pub struct Environment<'a> {
    pub env: &'a app::api::RunEnv,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
}

/// Escapes text for HTML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JSON safe to embed in a `<script>`. Escaping `</` alone is not enough: `<!--` then
/// `<script` switches the HTML parser into the "script data double escaped" state, where
/// the next `</script>` no longer ends the element and the rest of the page becomes
/// script (an imported outcome named `<!--<script>` blanked every chart). So every `<`,
/// `>` and `&` becomes a `\uXXXX` escape, which means the same inside a JSON string and
/// can never start markup; U+2028/U+2029 too, for JavaScript engines older than ES2019.
/// Characters outside strings are JSON punctuation, so escaping the whole text is safe.
fn script_json(v: &impl serde::Serialize) -> String {
    let json = serde_json::to_string(v).unwrap_or_else(|_| "null".into());
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// Renders the report.
pub fn html(r: &ReportInput<'_>) -> String {
    let t = &r.summary.totals;
    let d = r.diagnosis;
    let mut out = String::with_capacity(128 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>socketswarm report: {name}</title><style>{STYLE}\n{UPLOT_CSS}</style><script>{UPLOT_JS}</script><script>{CHARTS_JS}</script></head>\
         <body><header class=\"topbar\"><span class=\"topbar__brand\">socketswarm</span><span>report</span></header><main class=\"page run-detail\">\
         <div class=\"run-detail__head\"><h1>{name}</h1><span class=\"badge badge--{status}\" data-status=\"{status}\">{status}</span></div>\
         <p class=\"run-detail__meta\"><span class=\"mono\">{target}</span>{created} · {dur}</p>",
        name = esc(&r.plan.name),
        status = r.status.as_str(),
        target = esc(&r.plan.target),
        created = r.created_at_ms.map(|c| format!(" · created {}", app::fmt::timestamp(c))).unwrap_or_default(),
        dur = app::fmt::ms(r.summary.duration_ms),
    );
    let tile = |label: &str, metric: &str, value: String, sub: String| {
        format!("<div class=\"tile\"><div class=\"tile__label\">{label}</div><div class=\"tile__value\" data-metric=\"{metric}\">{value}</div><div class=\"tile__sub\">{sub}</div></div>")
    };
    out.push_str("<div class=\"tiles\">");
    out.push_str(&tile(
        "Peak open",
        "peak_open",
        app::fmt::count(r.summary.peak_open),
        String::new(),
    ));
    out.push_str(&tile(
        "Connects ok",
        "opened",
        app::fmt::count(t.opened),
        format!("{} attempted", app::fmt::count(t.attempted)),
    ));
    out.push_str(&tile(
        "Connects failed",
        "failed",
        app::fmt::count(t.failed),
        format!("{} dropped after open", app::fmt::count(t.dropped)),
    ));
    out.push_str(&tile(
        "Messages sent / received",
        "messages",
        format!(
            "{} / {}",
            app::fmt::count(t.msgs_sent),
            app::fmt::count(t.msgs_received)
        ),
        format!("{} expect timeouts", app::fmt::count(t.expect_timeouts)),
    ));
    out.push_str("</div>");

    let tone = if d.kind == engine::diagnose::LimitKind::None {
        "ok"
    } else {
        "limit"
    };
    let _ = write!(
        out,
        "<section class=\"diagnosis diagnosis--{tone}\" data-kind=\"{}\"><h2 class=\"diagnosis__title\">Diagnosis</h2><p class=\"diagnosis__headline\">{}</p>\
         <p class=\"diagnosis__meta\">{}</p>",
        d.kind.key(),
        esc(&d.headline),
        esc(&d.meta_line()),
    );
    if let Some(a) = d.alternatives_line() {
        let _ = write!(
            out,
            "<p class=\"diagnosis__alternatives\">Also fits: {}</p>",
            esc(&a)
        );
    }
    if let Some(t) = &d.separate_by {
        let _ = write!(
            out,
            "<p class=\"diagnosis__separate\"><strong>To tell them apart: </strong>{}</p>",
            esc(t)
        );
    }
    out.push_str("<ul class=\"diagnosis__evidence\">");
    for e in d
        .evidence
        .iter()
        .chain(&app::components::diagnosis::knee_lines(d))
    {
        let _ = write!(out, "<li>{}</li>", esc(e));
    }
    out.push_str("</ul>");
    if !d.also.is_empty() {
        out.push_str("<div class=\"diagnosis__also\"><h3>Also found</h3><ul>");
        for x in &d.also {
            let _ = write!(
                out,
                "<li data-kind=\"{}\"><strong>{}</strong> <span class=\"diagnosis__meta\">{}</span><ul class=\"diagnosis__evidence\">",
                x.kind.key(),
                esc(&x.headline),
                esc(&x.meta_line()),
            );
            for e in &x.evidence {
                let _ = write!(out, "<li>{}</li>", esc(e));
            }
            out.push_str("</ul></li>");
        }
        out.push_str("</ul></div>");
    }
    if !d.verdicts.is_empty() {
        out.push_str("<ul class=\"diagnosis__verdicts\">");
        for v in &d.verdicts {
            let _ = write!(
                out,
                "<li data-kind=\"{}\">{}</li>",
                v.kind.key(),
                esc(&v.meta_line())
            );
        }
        out.push_str("</ul>");
    }
    out.push_str("</section>");

    let charts = [
        (
            "Open connections vs target",
            app::charts::connections(r.series, Some(d)),
        ),
        (
            "Connects per second (failures stacked by class)",
            app::charts::connect_rate(r.series, Some(d)),
        ),
        (
            "Latency percentiles per second",
            app::charts::latency(r.series),
        ),
        ("Messages per second", app::charts::messages(r.series)),
    ];
    out.push_str("<section class=\"run-detail__charts\">");
    let mut scripts = String::new();
    for (i, (title, spec)) in charts.iter().enumerate() {
        let _ = write!(out, "<figure class=\"chart\"><figcaption class=\"chart__title\">{}</figcaption><div class=\"chart__plot\" id=\"chart{i}\"></div></figure>", esc(title));
        let _ = write!(
            scripts,
            "socketswarmCharts.render(document.getElementById('chart{i}'), JSON.stringify({}));",
            script_json(spec)
        );
    }
    out.push_str("</section>");

    out.push_str("<section class=\"run-detail__section\"><h2>Failures and session ends</h2><table class=\"failures\"><thead><tr><th>Stage</th><th>Outcome</th><th class=\"num\">Count</th></tr></thead><tbody>");
    for (k, v) in &t.failures {
        let _ = write!(out, "<tr data-outcome=\"{k}\"><td>handshake / connect</td><td class=\"mono\">{k}</td><td class=\"num\">{v}</td></tr>", k = esc(k));
    }
    for (k, v) in &t.closes {
        let _ = write!(out, "<tr data-outcome=\"{k}\"><td>session end</td><td class=\"mono\">{k}</td><td class=\"num\">{v}</td></tr>", k = esc(k));
    }
    out.push_str("</tbody></table></section>");

    out.push_str("<section class=\"run-detail__section\"><h2>Latency (whole run)</h2><table class=\"latency\"><thead><tr><th>Metric</th><th class=\"num\">count</th><th class=\"num\">p50</th><th class=\"num\">p95</th><th class=\"num\">p99</th><th class=\"num\">max</th></tr></thead><tbody>");
    for (k, l) in &r.summary.latency {
        let _ = write!(
            out,
            "<tr><td class=\"mono\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(k),
            l.count,
            app::fmt::us(l.p50_us),
            app::fmt::us(l.p95_us),
            app::fmt::us(l.p99_us),
            app::fmt::us(l.max_us)
        );
    }
    out.push_str("</tbody></table></section>");

    if !r.thresholds.is_empty() {
        out.push_str("<section class=\"run-detail__section\"><h2>Thresholds</h2><table><tbody>");
        for th in r.thresholds {
            let _ = write!(
                out,
                "<tr data-passed=\"{}\"><td>{}</td><td class=\"mono\">{} {}</td><td class=\"num\">{}</td></tr>",
                th.passed,
                if th.passed { "✓ passed" } else { "✗ failed" },
                esc(&th.metric),
                esc(&th.expression),
                esc(&th.actual_text())
            );
        }
        out.push_str("</tbody></table></section>");
    }
    if let Some(e) = &r.env {
        let when = |ms: Option<i64>| ms.map(app::fmt::timestamp).unwrap_or_else(|| "—".into());
        let _ = write!(
            out,
            "<section class=\"run-detail__section\"><h2>Environment</h2><table class=\"kv\"><tbody>\
             <tr><th>socketswarm</th><td>{}</td></tr><tr><th>Host</th><td>{} ({}, {} CPUs)</td></tr>\
             <tr><th>Open-file limit</th><td>{}</td></tr><tr><th>Started</th><td>{}</td></tr><tr><th>Ended</th><td>{}</td></tr>\
             </tbody></table></section>",
            esc(&e.env.version),
            esc(&e.env.host),
            esc(&e.env.os),
            e.env.cpus,
            app::fmt::count(e.env.nofile),
            when(e.started_at_ms),
            when(e.finished_at_ms)
        );
    }
    let _ = write!(
        out,
        "<section class=\"run-detail__section\"><h2>Plan</h2><pre class=\"plan\">{}</pre></section></main><script>window.addEventListener('load', function () {{ {scripts} }});</script></body></html>",
        esc(&serde_json::to_string_pretty(&r.plan.redacted()).unwrap_or_default())
    );
    out
}

#[cfg(test)]
mod tests {
    use super::script_json;

    #[test]
    fn script_json_cannot_open_or_close_markup() {
        let j = script_json(&["<!--<script>", "</script>&", "\u{2028}\u{2029}"]);
        assert_eq!(
            j,
            r#"["\u003c!--\u003cscript\u003e","\u003c/script\u003e\u0026","\u2028\u2029"]"#
        );
        let back: Vec<String> = serde_json::from_str(&j).unwrap_or_default();
        assert_eq!(back, ["<!--<script>", "</script>&", "\u{2028}\u{2029}"]);
    }
}
