//! The read model's conversions shared by the run service and its history side: a
//! stored row as a list item, a summary's histograms as views. Pure; no SQL here.

use app::api::{RunListItem, RunStatus};
use engine::compare::{self, HistogramView};
use engine::Summary;

use crate::store::RunRow;

/// A stored run's row as the runs list shows it.
pub(super) fn to_item(r: RunRow) -> RunListItem {
    RunListItem {
        plan_id: r.plan_id,
        plan_name: None,
        tags: Vec::new(),
        note: r.note,
        status: RunStatus::parse(&r.status).unwrap_or(RunStatus::Failed),
        id: r.run_id,
        name: r.name,
        target: r.target,
        created_at_ms: r.created_at,
        duration_ms: r.duration_ms,
        peak_open: r.peak_open,
        opened: r.opened,
        failed: r.failed,
        verdict: r.verdict,
        verdict_text: r.verdict_text,
    }
}

/// Latency distributions of a finished run, connect first.
pub(crate) fn histogram_views(s: &Summary) -> Vec<HistogramView> {
    const ORDER: [&str; 6] = [
        "ws_connecting",
        "ws_rtt",
        "tls_handshake",
        "token_fetch",
        "ws_ping",
        "ws_first_msg",
    ];
    ORDER
        .iter()
        .filter_map(|m| {
            let counts = engine::histogram_counts(s.histograms.get(*m)?)?;
            Some(compare::histogram_view(m, &counts))
        })
        .collect()
}
