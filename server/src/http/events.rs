//! `GET /api/runs/{id}/events`: Server-Sent Events. While the run is live: one
//! `snapshot` event per tick (id = seq, data = `Snapshot` JSON), then one `done` event
//! (data = the stored `RunDetail`), then the stream ends. A finished run answers `done`
//! at once; an unknown run is a 404. A client reconnecting with `Last-Event-ID` (or
//! connecting with `?after=SEQ`, as the run page does with the ticks it was rendered
//! with) first gets the stored ticks it lacks; one with neither gets every stored tick; a reader that falls behind the live ticks gets the
//! skipped ones from the database, so every seq arrives exactly once, in order. Streams
//! end on server shutdown so they never hold graceful shutdown open. Each stream holds a
//! slot of `HttpLimits` (per share link and in all) while it lives: past the caps, 429.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use futures_util::stream::{self, Stream, StreamExt};
use tokio_stream::wrappers::WatchStream;

use app::api::{ApiError, RunDetail, SharedView};
use serde::Deserialize;
use sqlx::SqlitePool;

use super::limits::StreamSlot;
use super::AppState;
use crate::error::AppError;
use crate::store;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/runs/{id}/events", get(run_events))
        .route("/share/{sid}/events", get(share_events))
}

/// `?after=SEQ`: the client already has the ticks up to SEQ (the run page passes the
/// last tick it was rendered with), like a `Last-Event-ID` on its first connection.
#[derive(Deserialize)]
struct After {
    after: Option<u64>,
}

/// Where to resume: `Last-Event-ID` (a reconnect) wins over `?after=`.
fn resume_point(headers: &HeaderMap, q: &After) -> Option<u64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .or(q.after)
}

async fn run_events(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<After>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    // 404 for unknown runs, before any stream starts (a cheap lookup: the run's ticks are
    // only read for the final `done`).
    if store::get_run(&st.pool, &id).await?.is_none() {
        return Err(ApiError::NotFound(format!("run {id}")).into());
    }
    let slot = st.limits.stream_slot(None)?;
    let (reads, done_id) = (st.runs.reads.clone(), id.clone());
    let done = async move { done_event(reads.get_run(&done_id).await) };
    events(&st, id, resume_point(&headers, &q), done, slot).await
}

/// The same stream for a run share link; its `done` event carries the run as the share
/// shows it (no saved plan, no baseline).
async fn share_events(
    State(st): State<AppState>,
    Path(sid): Path<String>,
    Query(q): Query<After>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let id = super::history::shared_run(&st, &sid).await?;
    let slot = st.limits.stream_slot(Some(&sid))?;
    let history = st.runs.history.clone();
    let done = async move {
        done_event(history.get_shared(&sid).await.and_then(|v| match v {
            SharedView::Run(d) => Ok(*d),
            SharedView::Compare(_) => Err(ApiError::NotFound("share link".into())),
        }))
    };
    events(&st, id, resume_point(&headers, &q), done, slot).await
}

fn snapshot_event(s: &engine::Snapshot) -> Event {
    Event::default()
        .event("snapshot")
        .id(s.seq.to_string())
        .json_data(s)
        .unwrap_or_else(|_| Event::default().comment("encode error"))
}

fn done_event(detail: Result<RunDetail, ApiError>) -> Event {
    match detail {
        Ok(detail) => Event::default()
            .event("done")
            .json_data(&detail)
            .unwrap_or_else(|_| Event::default().event("done")),
        Err(_) => Event::default().event("done").data("{}"),
    }
}

/// Stored ticks with `after < seq < before`, in order, as they were live: replayed
/// from `base` (the tick at `after` this reader got last) when there is one, else from
/// the run's first tick (stored ticks hold what changed, not running totals).
async fn stored_ticks(
    pool: &SqlitePool,
    id: &str,
    after: u64,
    before: u64,
    base: Option<&engine::Snapshot>,
) -> sqlx::Result<Vec<engine::Snapshot>> {
    let base = base.filter(|b| b.seq == after);
    crate::runs::reads::replayed(pool, id, after, before, base).await
}

/// The stored ticks after `resume`, then the live ones, then `done`. The stream owns
/// `slot`, so the slot is free again as soon as the stream ends or its client leaves.
async fn events(
    st: &AppState,
    id: String,
    resume: Option<u64>,
    done: impl std::future::Future<Output = Event> + Send + 'static,
    slot: StreamSlot,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let live = st.manager.subscribe(id.clone()).await;
    // Ticks stored before this connection, when resuming (no gaps, no repeats).
    let missed = match resume {
        Some(after) => stored_ticks(&st.pool, &id, after, u64::MAX, None).await?,
        None => Vec::new(),
    };
    let sent_upto = missed.last().map_or(resume.unwrap_or(0), |s| s.seq);
    // The watch channel keeps only the newest tick: a reader that falls behind would
    // skip some. Every tick is stored before it is published, so gaps are filled from
    // the database (replayed from the last tick this reader got) and each reader sees
    // every seq exactly once, in order.
    let last = Arc::new(AtomicU64::new(sent_upto));
    let base = Arc::new(tokio::sync::Mutex::new(missed.last().cloned()));
    let pool = st.pool.clone();
    let live_stream = match live {
        Some(rx) => WatchStream::new(rx)
            .then(move |s| {
                let (pool, id, last, base) = (pool.clone(), id.clone(), last.clone(), base.clone());
                async move {
                    let Some(s) = s else {
                        return Vec::new();
                    };
                    let prev = last.load(Ordering::SeqCst);
                    if s.seq <= prev {
                        return Vec::new();
                    }
                    let mut base = base.lock().await;
                    let mut ticks = if s.seq > prev + 1 {
                        stored_ticks(&pool, &id, prev, s.seq, base.as_ref())
                            .await
                            .unwrap_or_default()
                    } else {
                        Vec::new()
                    };
                    last.store(s.seq, Ordering::SeqCst);
                    *base = Some(s.clone());
                    ticks.push(s);
                    ticks
                }
            })
            .flat_map(stream::iter)
            .boxed(),
        None => stream::empty().boxed(),
    };
    let stream = stream::iter(missed)
        .chain(live_stream)
        .map(|s| snapshot_event(&s))
        .chain(stream::once(done))
        .map(move |event| {
            let _held = &slot;
            Ok(event)
        })
        .take_until(st.shutdown.clone().cancelled_owned());
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
