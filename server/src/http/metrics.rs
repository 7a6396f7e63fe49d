//! `GET /metrics`: the Prometheus scrape endpoint. It asks the manager for the live and
//! recently finished runs, reads each live run's latest snapshot, and hands the lot to
//! the pure renderer (`crate::metrics`). Like every route it sits behind the access
//! guard: the `Host` check always, and with `--access-token` a scraper sends
//! `Authorization: Bearer TOKEN` (see the README's *Metrics*).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::AppState;
use crate::metrics::{self, Exposition, RunEntry, RunFigures};
use crate::runs::manager::MetricsView;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(get_metrics))
}

/// The exposition of a manager's view: live runs first (by id), then the recent ones.
fn exposition(view: MetricsView) -> Exposition {
    let (mut running, mut queued) = (0, 0);
    let mut runs: Vec<RunEntry> = Vec::with_capacity(view.live.len() + view.recent.len());
    for live in view.live {
        if live.status == app::api::RunStatus::Queued {
            queued += 1;
        } else {
            running += 1;
        }
        let figures = live
            .snapshots
            .borrow()
            .as_ref()
            .map(RunFigures::of_snapshot);
        runs.push(RunEntry {
            id: live.run_id,
            plan: live.plan,
            status: live.status,
            figures,
        });
    }
    runs.extend(view.recent.iter().map(|e| (**e).clone()));
    Exposition {
        running,
        queued,
        ended: view.ended,
        runs,
        inflight: engine::budget::Budget::process().usage(),
    }
}

async fn get_metrics(State(st): State<AppState>) -> Response {
    let Some(view) = st.manager.metrics().await else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the run manager has stopped\n",
        )
            .into_response();
    };
    // Decoding every run's histograms is CPU work: off the async workers.
    match crate::runs::blocking(move || metrics::render(&exposition(view))).await {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => crate::error::AppError::from(e).into_response(),
    }
}
