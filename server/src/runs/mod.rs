//! Runs: the manager actor that owns live runs, and the `RunService` the pages and the
//! JSON API share.
pub(crate) mod history;
pub mod manager;
mod plans;
pub mod service;

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
