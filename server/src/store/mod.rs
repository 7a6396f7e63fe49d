//! All SQL, as small named async fns taking `&SqlitePool`. Nothing else in the project
//! writes SQL. Queries are runtime-checked (`query_as` + `FromRow`) so a clean checkout
//! builds without a database or a prepared `.sqlx/`; every query here is exercised by
//! `server/tests/`.
//!
//! Invariants: a run row is inserted whole (`insert_run`) before anything refers to it;
//! per-tick rows are one short statement each; finishing a run writes status, summary
//! and the list columns in one transaction, so a reader never sees half of it. An
//! imported run is written in short transactions while it is hidden (`importing = 1`:
//! no read of runs returns it) and shown by the one that finishes it; no transaction
//! holds the write lock for more than a few hundred ticks, so a live run's tick never
//! waits long (SQLite has one writer at a time).

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, QueryBuilder, Sqlite, SqliteExecutor, SqlitePool};

mod history;
mod steer;
pub use history::*;
pub use steer::*;

/// Opens (creating if needed) the database and applies migrations; a failed migration
/// stops startup.
pub async fn open(path: &Path) -> anyhow::Result<SqlitePool> {
    use anyhow::Context;
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .context("could not parse the database path")?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(std::time::Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await
        .with_context(|| format!("could not open the database {}", path.display()))?;
    sqlx::migrate!("../migrations")
        .run(&pool)
        .await
        .context("could not apply database migrations")?;
    Ok(pool)
}

/// A `run` row.
#[derive(Debug, Clone, FromRow)]
pub struct RunRow {
    pub run_id: String,
    pub name: String,
    pub target: String,
    pub status: String,
    pub plan_json: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
    pub summary_json: Option<String>,
    pub peak_open: Option<i64>,
    pub opened: Option<i64>,
    pub failed: Option<i64>,
    pub duration_ms: Option<i64>,
    /// Schema v2.
    pub plan_id: Option<String>,
    pub note: String,
    pub env_json: Option<String>,
    /// Schema v4: the diagnosis' kind key and its words, once computed.
    pub verdict: Option<String>,
    pub verdict_text: Option<String>,
}

/// A run about to be stored.
#[derive(Debug, Clone, Copy)]
pub struct NewRun<'a> {
    pub run_id: &'a str,
    pub name: &'a str,
    pub target: &'a str,
    pub plan_json: &'a str,
    pub created_at: i64,
    pub plan_id: Option<&'a str>,
    pub env_json: Option<&'a str>,
}

/// Inserts a new run as `queued`.
pub async fn insert_run<'e>(db: impl SqliteExecutor<'e>, r: NewRun<'_>) -> sqlx::Result<()> {
    sqlx::query("insert into run (run_id, name, target, status, plan_json, created_at, plan_id, env_json) values (?, ?, ?, 'queued', ?, ?, ?, ?)")
        .bind(r.run_id)
        .bind(r.name)
        .bind(r.target)
        .bind(r.plan_json)
        .bind(r.created_at)
        .bind(r.plan_id)
        .bind(r.env_json)
        .execute(db)
        .await?;
    Ok(())
}

/// Starts an import: the run row as a run started at its creation, hidden
/// (`importing = 1`) until `finish_import`.
pub async fn begin_import(pool: &SqlitePool, r: NewRun<'_>) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    insert_run(&mut *tx, r).await?;
    mark_running(&mut *tx, r.run_id, r.created_at).await?;
    sqlx::query("update run set importing = 1 where run_id = ?")
        .bind(r.run_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Rows per `insert` statement when storing imported ticks (5 parameters each).
const ROWS_PER_INSERT: usize = 100;

/// Stores some of an import's ticks, `(seq, elapsed_ms, tick_json)` in the delta format
/// (`engine::report::StoredTick`), in one short transaction of multi-row inserts.
/// Callers keep chunks to a few hundred ticks, so the write lock is held for
/// milliseconds, not for the whole import.
pub async fn insert_ticks(
    pool: &SqlitePool,
    run_id: &str,
    ticks: &[(i64, i64, String)],
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    for rows in ticks.chunks(ROWS_PER_INSERT) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "insert or replace into run_interval (run_id, seq, elapsed_ms, snapshot_json, tick_format) ",
        );
        qb.push_values(rows, |mut b, (seq, elapsed_ms, json)| {
            b.push_bind(run_id)
                .push_bind(*seq)
                .push_bind(*elapsed_ms)
                .push_bind(json.as_str())
                .push_bind(engine::report::TICK_FORMAT_DELTA);
        });
        qb.build().execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// Ends an import: status, summary and list columns written and the run made visible,
/// in one transaction.
pub async fn finish_import(
    pool: &SqlitePool,
    run_id: &str,
    status: &str,
    finished_at: i64,
    summary_json: &str,
    h: Headline,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    finish_run(&mut *tx, run_id, status, finished_at, summary_json, h).await?;
    sqlx::query("update run set importing = 0 where run_id = ?")
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Ticks deleted per transaction when an unfinished import is removed.
const DELETE_PAGE: i64 = 500;

/// Removes an import that did not finish, with its ticks: a page of ticks per statement,
/// so removing a large one never holds the write lock for long either.
pub async fn discard_import(pool: &SqlitePool, run_id: &str) -> sqlx::Result<()> {
    loop {
        let gone = sqlx::query(
            "delete from run_interval where run_id = ? and seq in
             (select seq from run_interval where run_id = ? order by seq limit ?)",
        )
        .bind(run_id)
        .bind(run_id)
        .bind(DELETE_PAGE)
        .execute(pool)
        .await?
        .rows_affected();
        if gone == 0 {
            break;
        }
    }
    sqlx::query("delete from run where run_id = ? and importing = 1")
        .bind(run_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// At startup: imports that a crash left half-way are removed. Returns how many.
pub async fn discard_unfinished_imports(pool: &SqlitePool) -> sqlx::Result<usize> {
    let ids: Vec<(String,)> = sqlx::query_as("select run_id from run where importing = 1")
        .fetch_all(pool)
        .await?;
    for (id,) in &ids {
        discard_import(pool, id).await?;
    }
    Ok(ids.len())
}

/// Removes a run stored as `queued` whose launch was then refused (the queue was
/// full): it never ran and nothing refers to it yet.
pub async fn discard_run(pool: &SqlitePool, run_id: &str) -> sqlx::Result<()> {
    sqlx::query("delete from run where run_id = ? and status = 'queued'")
        .bind(run_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// True for the errors worth retrying: the database is locked by another writer
/// (SQLITE_BUSY, SQLITE_LOCKED, also as extended codes) or no pool connection was free.
pub fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| matches!(c & 0xff, 5 | 6)),
        _ => false,
    }
}

/// `queued` -> `running`.
pub async fn mark_running<'e>(
    db: impl SqliteExecutor<'e>,
    run_id: &str,
    started_at: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "update run set status = 'running', started_at = ? where run_id = ? and status = 'queued'",
    )
    .bind(started_at)
    .bind(run_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Stores one tick, in the delta format (`engine::report::StoredTick`).
pub async fn insert_interval<'e>(
    db: impl SqliteExecutor<'e>,
    run_id: &str,
    seq: i64,
    elapsed_ms: i64,
    tick_json: &str,
) -> sqlx::Result<()> {
    sqlx::query("insert or replace into run_interval (run_id, seq, elapsed_ms, snapshot_json, tick_format) values (?, ?, ?, ?, ?)")
        .bind(run_id)
        .bind(seq)
        .bind(elapsed_ms)
        .bind(tick_json)
        .bind(engine::report::TICK_FORMAT_DELTA)
        .execute(db)
        .await?;
    Ok(())
}

/// Final numbers for the list columns.
#[derive(Debug, Clone, Copy)]
pub struct Headline {
    pub peak_open: i64,
    pub opened: i64,
    pub failed: i64,
    pub duration_ms: i64,
}

/// Ends a run: status, summary and list columns together.
pub async fn finish_run<'e>(
    db: impl SqliteExecutor<'e>,
    run_id: &str,
    status: &str,
    finished_at: i64,
    summary_json: &str,
    h: Headline,
) -> sqlx::Result<()> {
    sqlx::query(
        "update run set status = ?, finished_at = ?, summary_json = ?, peak_open = ?, opened = ?, failed = ?, duration_ms = ?
         where run_id = ? and status in ('queued', 'running')",
    )
    .bind(status)
    .bind(finished_at)
    .bind(summary_json)
    .bind(h.peak_open)
    .bind(h.opened)
    .bind(h.failed)
    .bind(h.duration_ms)
    .bind(run_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Ends a run without a summary (failed to start, or cancelled while queued).
pub async fn end_run_without_summary(
    pool: &SqlitePool,
    run_id: &str,
    status: &str,
    finished_at: i64,
    error: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query("update run set status = ?, finished_at = ?, error = ? where run_id = ? and status in ('queued', 'running')")
        .bind(status)
        .bind(finished_at)
        .bind(error)
        .bind(run_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// At startup: runs left `queued`/`running` by a crash become `interrupted`. Their
/// stored ticks are kept. Returns how many.
pub async fn mark_interrupted(pool: &SqlitePool, now: i64) -> sqlx::Result<u64> {
    let r = sqlx::query("update run set status = 'interrupted', finished_at = ? where status in ('queued', 'running')")
        .bind(now)
        .execute(pool)
        .await?;
    Ok(r.rows_affected())
}

pub async fn get_run(pool: &SqlitePool, run_id: &str) -> sqlx::Result<Option<RunRow>> {
    sqlx::query_as::<_, RunRow>("select * from run where run_id = ? and importing = 0")
        .bind(run_id)
        .fetch_optional(pool)
        .await
}

/// A stored tick: `(seq, tick_format, json)`, replayed by `engine::report::TickReplay`.
pub type TickRow = (i64, i64, String);

/// At most `limit` stored ticks with `after < seq < before`, in order: whole runs are
/// read a page at a time, so no read holds a pool connection for long.
pub async fn intervals_page(
    pool: &SqlitePool,
    run_id: &str,
    after: i64,
    before: i64,
    limit: i64,
) -> sqlx::Result<Vec<TickRow>> {
    sqlx::query_as(
        "select seq, tick_format, snapshot_json from run_interval where run_id = ? and seq > ? and seq < ? order by seq limit ?",
    )
    .bind(run_id)
    .bind(after)
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await
}
