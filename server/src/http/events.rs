//! `GET /api/runs/{id}/events`: Server-Sent Events. While the run is live: one
//! `snapshot` event per tick (id = seq, data = `Snapshot` JSON), then one `done` event
//! (data = the stored `RunDetail`), then the stream ends. A finished run answers `done`
//! at once; an unknown run is a 404. A client reconnecting with `Last-Event-ID` first
//! gets the stored ticks it missed. Streams end on server shutdown so they never hold
//! graceful shutdown open.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use futures_util::stream::{self, Stream, StreamExt};
use tokio_stream::wrappers::WatchStream;

use app::api::RunService;

use crate::error::AppError;
use crate::state::AppState;
use crate::store;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/api/runs/{id}/events", get(run_events))
}

fn snapshot_event(s: &engine::Snapshot) -> Event {
    Event::default()
        .event("snapshot")
        .id(s.seq.to_string())
        .json_data(s)
        .unwrap_or_else(|_| Event::default().comment("encode error"))
}

async fn run_events(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    // 404 for unknown runs, before any stream starts (a cheap lookup: the run's ticks are
    // only read for the final `done`).
    if store::get_run(&st.pool, &id).await?.is_none() {
        return Err(app::api::ApiError::NotFound(format!("run {id}")).into());
    }
    let last_seen: Option<u64> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let live = st.manager.subscribe(id.clone()).await;
    // Ticks stored before this connection, when resuming (no gaps, no repeats).
    let mut sent_upto = last_seen.unwrap_or(0);
    let mut missed = Vec::new();
    if let Some(after) = last_seen {
        for json in store::intervals_after(&st.pool, &id, after as i64).await? {
            if let Ok(snap) = serde_json::from_str::<engine::Snapshot>(&json) {
                sent_upto = sent_upto.max(snap.seq);
                missed.push(snapshot_event(&snap));
            }
        }
    }
    let live_stream = match live {
        Some(rx) => WatchStream::new(rx)
            .filter_map(move |s| {
                let ev = s.filter(|s| s.seq > sent_upto).map(|s| snapshot_event(&s));
                async move { ev }
            })
            .boxed(),
        None => stream::empty().boxed(),
    };
    let (runs, done_id) = (st.runs.clone(), id.clone());
    let done = stream::once(async move {
        match runs.get(&done_id).await {
            Ok(detail) => Event::default()
                .event("done")
                .json_data(&detail)
                .unwrap_or_else(|_| Event::default().event("done")),
            Err(_) => Event::default().event("done").data("{}"),
        }
    });
    let stream = stream::iter(missed)
        .chain(live_stream)
        .chain(done)
        .map(Ok)
        .take_until(st.shutdown.clone().cancelled_owned());
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
