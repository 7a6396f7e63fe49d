//! `GET /api/runs/{id}/events`: Server-Sent Events. While the run is live: one
//! `snapshot` event per tick (id = seq, data = `Snapshot` JSON), then one `done` event
//! (data = the stored `RunDetail`), then the stream ends. A finished run answers `done`
//! at once; an unknown run is a 404. A client reconnecting with `Last-Event-ID` first
//! gets the stored ticks it missed; a reader that falls behind the live ticks gets the
//! skipped ones from the database, so every seq arrives exactly once, in order. Streams
//! end on server shutdown so they never hold graceful shutdown open.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
    Router::new()
        .route("/api/runs/{id}/events", get(run_events))
        .route("/share/{sid}/events", get(share_events))
}

/// The same stream for a run share link (its `done` event carries the run as the share
/// shows it: no saved plan, no baseline).
async fn share_events(
    State(st): State<AppState>,
    Path(sid): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let id = match st.runs.share_target(&sid).await? {
        (app::api::ShareKind::Run, ids) if ids.len() == 1 => ids[0].clone(),
        _ => return Err(app::api::ApiError::NotFound("share link".into()).into()),
    };
    run_events(State(st), Path(id), headers).await
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
    // The watch channel keeps only the newest tick: a reader that falls behind would
    // skip some. Every tick is stored before it is published, so gaps are filled from
    // the database and each reader sees every seq exactly once, in order.
    let last = Arc::new(AtomicU64::new(sent_upto));
    let (pool, rid) = (st.pool.clone(), id.clone());
    let live_stream = match live {
        Some(rx) => WatchStream::new(rx)
            .then(move |s| {
                let (pool, rid, last) = (pool.clone(), rid.clone(), last.clone());
                async move {
                    let mut evs = Vec::new();
                    let Some(s) = s else {
                        return stream::iter(evs);
                    };
                    let prev = last.load(Ordering::SeqCst);
                    if s.seq <= prev {
                        return stream::iter(evs);
                    }
                    if s.seq > prev + 1 {
                        if let Ok(rows) = store::intervals_after(&pool, &rid, prev as i64).await {
                            evs.extend(
                                rows.iter()
                                    .filter_map(|j| {
                                        serde_json::from_str::<engine::Snapshot>(j).ok()
                                    })
                                    .filter(|m| m.seq < s.seq)
                                    .map(|m| snapshot_event(&m)),
                            );
                        }
                    }
                    evs.push(snapshot_event(&s));
                    last.store(s.seq, Ordering::SeqCst);
                    stream::iter(evs)
                }
            })
            .flatten()
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
