//! The downloadable HTML report and the run page show the same sections, charts and
//! tables (the report is the page's `RunSections` rendered to a string): a finished
//! sandbox run with failures, drops, latency distributions and thresholds, fetched both
//! ways from a running server.
//! Run: `cargo test -p server --features app/ssr --test report`.
#![allow(clippy::unwrap_used)]
mod common;

use common::{plan, spawn_app};
use serde_json::json;

/// Every `open` … `close` span's text, in order (`<h2 class="x">Title` → `Title`).
fn spans(html: &str, open: &str, close: char) -> Vec<String> {
    html.split(open)
        .skip(1)
        .map(|rest| {
            let rest = if open.ends_with('=') {
                rest.trim_start_matches('"')
            } else {
                rest.split_once('>').map_or(rest, |(_, r)| r)
            };
            rest.split(close).next().unwrap_or("").trim().to_string()
        })
        .collect()
}

/// What a run's sections consist of: headings, charts, tables, outcome rows, latency
/// columns.
fn outline(html: &str) -> Vec<Vec<String>> {
    vec![
        spans(html, "<h2", '<'),
        spans(html, "data-chart=", '"'),
        spans(html, "<table class=", '"'),
        spans(html, "data-outcome=", '"'),
        spans(html, "<th class=\"num\"", '<'),
        spans(html, "data-metric=", '"'),
        spans(html, "data-said=", '"'),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_and_the_run_page_show_the_same_sections() {
    let app = spawn_app().await;
    let mut p = plan(
        "report",
        &app.ws("/echo?tag=report&cap=8&drop_after=1s"),
        10,
        "1s",
        "1s",
    );
    p["script"] = json!([{"repeat": {"every": "200ms", "steps": [{"send": "r"}, {"expect": {}}]}}]);
    p["thresholds"] = json!({"handshake_failure_rate": "< 1%", "peak_open": ">= 5"});
    let id = app.launch(p).await;
    let (_, done) = app.follow(&id).await;
    assert_eq!(done["status"], "completed");

    let page = app
        .fetch(&format!("/runs/{id}"))
        .await
        .text()
        .await
        .unwrap();
    let report = app
        .fetch(&format!("/api/runs/{id}/report.html"))
        .await
        .text()
        .await
        .unwrap();
    let (page, report) = (outline(&page), outline(&report));
    // Page-only parts (actions, downloads, the baseline panel) use no `<h2>`: the
    // headings are the same, in the same order.
    assert_eq!(page[0], report[0], "headings");
    for (what, i) in [
        ("charts", 1),
        ("tables", 2),
        ("outcome rows", 3),
        ("number columns", 4),
        ("tiles", 5),
        ("what the target said", 6),
    ] {
        assert_eq!(page[i], report[i], "{what}");
    }
    for h in [
        "Failures and session ends",
        "Latency distributions (whole run)",
        "Latency (whole run)",
        "Thresholds",
        "Plan",
    ] {
        assert!(
            report[0].iter().any(|x| x.starts_with(h)),
            "{h}: {:?}",
            report[0]
        );
    }
    for col in ["p90", "p99.9"] {
        assert!(report[4].iter().any(|c| c == col), "{col}");
    }
    assert!(report[1].iter().any(|c| c == "failures"));
    assert!(
        report[3].iter().any(|o| o == "http_429") && report[3].iter().any(|o| o == "server_1001")
    );
}
