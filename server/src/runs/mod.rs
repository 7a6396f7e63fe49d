//! Runs: the manager actor that owns live runs (`manager`; one run's life: `drive`),
//! and the services the pages and the JSON API share, gathered in `service::Runs`:
//! `reads` (one run's detail and ticks), `launch` (validate, launch, cancel; `import`
//! too), `history` (the runs list, tags, compare and share links), `plans` (saved
//! plans and baselines), `steer` (steering a live run). `views`: row and summary conversions they share. No SQL
//! here: every query is a named fn in `crate::store`.
mod drive;
pub mod history;
pub mod import;
pub mod launch;
pub mod manager;
pub mod plans;
pub mod reads;
pub mod service;
pub mod steer;
pub(crate) mod views;

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs CPU-heavy work (parsing, diagnosing or encoding a whole run) on the blocking
/// pool, so the async workers keep answering other requests meanwhile.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, app::api::ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| crate::error::internal("blocking task", e))
}
