//! Importing a run made elsewhere (`POST /api/runs/import`, what `socketswarm run
//! --server` uploads): checked whole before anything is stored, then stored in short
//! transactions.
//!
//! Why: an import was one write transaction over every tick. A 60 MB one held SQLite's
//! only write lock for longer than the 5 s busy timeout, so concurrent imports and
//! launches failed with 500 and a live run lost ticks its viewers had seen (attack
//! report 7a/7b). And nothing was checked: names with commas, newlines and `<!--` fed
//! the CSV and HTML report holes (8f, 8g).
//!
//! Invariants: an import that fails a check stores nothing and is answered 400 naming
//! the field (`ticks[3].seq`) and the limit. One that passes is bounded as a live run
//! is — its outcome keys (`report::OutcomeKeys`: a run keeps a few codes of each family
//! and counts the rest in `…_other`), its evidence (`Evidence::merge`: the same bounds
//! and the same neutralised text) — then stored `CHUNK` ticks per transaction while
//! hidden (see `store::begin_import`), as what changed in each (`report::TickEncoder`);
//! between chunks the importer leaves the lock free for as long as it held it, so other
//! writers get in; if any step fails the partial run is removed.

use std::time::{Duration, Instant};

use app::api::{ApiError, Launched, RunStatus};
use engine::outcome::{CloseKind, FailKind};
use engine::report::{
    Evidence, Identities, LatencyStats, OutcomeKeys, TickEncoder, Totals, MAX_DIMENSIONS,
    MAX_IDENTITIES,
};
use engine::{Snapshot, Summary};

use super::launch::Launch;
use super::now_ms;
use crate::error::internal;
use crate::export::{ExportDoc, SCHEMA_VERSION};
use crate::store;

/// Ticks stored per transaction.
const CHUNK: usize = 250;

/// Bounds on the pause between chunks (the pause equals the time the chunk took).
const MIN_PAUSE: Duration = Duration::from_millis(5);
const MAX_PAUSE: Duration = Duration::from_millis(200);

/// The largest count or time an import may carry: 2^53 - 1, the largest integer a
/// browser reads exactly (and far below where sums or `i64` columns could overflow).
const MAX_NUMBER: u64 = (1 << 53) - 1;

/// Longest plan name (as `Plan::validate` allows), target URL, identity and phase name.
const MAX_NAME: usize = 200;
const MAX_TARGET: usize = 2048;
/// Longest latency metric name (they become CSV columns and chart series), and most
/// metrics a tick or summary may carry.
const MAX_METRIC: usize = 64;
const MAX_METRICS: usize = 32;

/// The name of the field being checked, built only when a check fails (an import
/// has up to `--max-import-ticks` ticks of some forty numbers each).
type Field<'a> = &'a dyn Fn() -> String;

/// A failed check: `field: message`, answered as 400.
fn bad(field: Field<'_>, message: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!("{}: {message}", field()))
}

/// Text shown in lists, reports and CSVs: bounded, and without control characters
/// (a newline starts a new CSV row).
fn check_text(field: Field<'_>, s: &str, max: usize) -> Result<(), ApiError> {
    if s.len() > max {
        return Err(bad(
            field,
            format!("is {} bytes long; the limit is {max}", s.len()),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(bad(field, "must not contain control characters"));
    }
    Ok(())
}

fn check_number(field: Field<'_>, n: u64) -> Result<(), ApiError> {
    if n > MAX_NUMBER {
        return Err(bad(field, format!("{n} is larger than {MAX_NUMBER}")));
    }
    Ok(())
}

/// Counters: every number bounded, every outcome key one socketswarm writes (`http_429`,
/// `server_1001`, … — the keys become CSV columns and chart series).
fn check_totals(field: Field<'_>, t: &Totals) -> Result<(), ApiError> {
    for (name, n) in [
        ("attempted", t.attempted),
        ("opened", t.opened),
        ("failed", t.failed),
        ("closed", t.closed),
        ("dropped", t.dropped),
        ("closed_at_once", t.closed_at_once),
        ("msgs_sent", t.msgs_sent),
        ("msgs_received", t.msgs_received),
        ("bytes_sent", t.bytes_sent),
        ("bytes_received", t.bytes_received),
        ("expect_timeouts", t.expect_timeouts),
        ("ping_timeouts", t.ping_timeouts),
        ("msgs_skipped", t.msgs_skipped),
        ("capture_misses", t.capture_misses),
        ("auto_matched", t.auto_matched),
        ("auto_replies", t.auto_replies),
        ("arrivals", t.arrivals),
        ("departures", t.departures),
        ("rotations", t.rotations),
        ("rotation_failures", t.rotation_failures),
    ] {
        check_number(&|| format!("{}.{name}", field()), n)?;
    }
    for (key, n) in &t.failures {
        if FailKind::parse(key).is_none_or(|k| k.key() != *key) {
            return Err(bad(
                &|| format!("{}.failures", field()),
                format!("{key:?} is not a connect failure key (http_429, refused, timeout, …)"),
            ));
        }
        check_number(&|| format!("{}.failures.{key}", field()), *n)?;
    }
    for (key, n) in &t.closes {
        // `protocol` is how older versions wrote `protocol_violation`.
        if CloseKind::parse(key).is_none_or(|k| k.key() != *key && key != "protocol") {
            return Err(bad(
                &|| format!("{}.closes", field()),
                format!("{key:?} is not a session end key (server_1001, abnormal_1006, client, …)"),
            ));
        }
        check_number(&|| format!("{}.closes.{key}", field()), *n)?;
    }
    Ok(())
}

/// Latency percentiles: metric names as socketswarm writes them (`ws_rtt`), the mean
/// finite and not negative.
fn check_latency(
    field: Field<'_>,
    latency: &std::collections::BTreeMap<String, LatencyStats>,
) -> Result<(), ApiError> {
    if latency.len() > MAX_METRICS {
        return Err(bad(
            field,
            format!("{} metrics; the limit is {MAX_METRICS}", latency.len()),
        ));
    }
    for (metric, stats) in latency {
        let plain = metric
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if metric.is_empty() || metric.len() > MAX_METRIC || !plain {
            return Err(bad(
                field,
                format!(
                    "{metric:?} is not a metric name (a-z, 0-9 and _, at most {MAX_METRIC} bytes)"
                ),
            ));
        }
        let mean = stats.mean_us;
        if !mean.is_finite() || mean < 0.0 {
            return Err(bad(
                &|| format!("{}.{metric}.mean_us", field()),
                format!("{mean} is not a finite, non-negative number"),
            ));
        }
    }
    Ok(())
}

/// Per-identity counters: names bounded and printable, at most `MAX_IDENTITIES` per
/// dimension.
fn check_identities(field: Field<'_>, ids: &Identities) -> Result<(), ApiError> {
    if ids.len() > MAX_DIMENSIONS {
        return Err(bad(
            field,
            format!("{} dimensions; the limit is {MAX_DIMENSIONS}", ids.len()),
        ));
    }
    for (dim, per) in ids {
        check_text(&|| format!("{} dimension", field()), dim, MAX_NAME)?;
        if per.len() > MAX_IDENTITIES {
            return Err(bad(
                &|| format!("{}.{dim}", field()),
                format!("{} identities; the limit is {MAX_IDENTITIES}", per.len()),
            ));
        }
        for id in per.keys() {
            check_text(&|| format!("{}.{dim}", field()), id, MAX_NAME)?;
        }
    }
    Ok(())
}

fn check_summary(s: &Summary) -> Result<(), ApiError> {
    check_number(&|| "summary.duration_ms".into(), s.duration_ms)?;
    check_number(&|| "summary.peak_open".into(), s.peak_open)?;
    check_totals(&|| "summary.totals".into(), &s.totals)?;
    check_latency(&|| "summary.latency".into(), &s.latency)?;
    check_identities(&|| "summary.identities".into(), &s.identities)?;
    for (i, p) in s.phases.iter().enumerate() {
        check_text(&|| format!("summary.phases[{i}].name"), &p.name, MAX_NAME)?;
        if !p.steps.iter().all(|(_, _, r)| r.is_finite() && *r >= 0.0) {
            return Err(bad(
                &|| format!("summary.phases[{i}].steps"),
                "rates must be finite and not negative",
            ));
        }
    }
    if let Some(a) = &s.aborted_by {
        check_text(&|| "summary.aborted_by".into(), a, MAX_NAME)?;
    }
    Ok(())
}

/// One tick, after `prev` (the tick before it, if any): `seq` strictly increasing,
/// `elapsed_ms` never going back.
fn check_tick(i: usize, t: &Snapshot, prev: Option<&Snapshot>) -> Result<(), ApiError> {
    let field = |name: &str| format!("ticks[{i}].{name}");
    check_number(&|| field("seq"), t.seq)?;
    check_number(&|| field("elapsed_ms"), t.elapsed_ms)?;
    if let Some(p) = prev {
        if t.seq <= p.seq {
            return Err(bad(
                &|| field("seq"),
                format!("{} does not follow {}: seq must increase", t.seq, p.seq),
            ));
        }
        if t.elapsed_ms < p.elapsed_ms {
            return Err(bad(
                &|| field("elapsed_ms"),
                format!(
                    "{} is before the previous tick's {}",
                    t.elapsed_ms, p.elapsed_ms
                ),
            ));
        }
    }
    for (name, n) in [
        ("open", t.open),
        ("peak_open", t.peak_open),
        ("connecting", t.connecting),
    ] {
        check_number(&|| field(name), n)?;
    }
    check_totals(&|| field("totals"), &t.totals)?;
    check_totals(&|| field("interval"), &t.interval)?;
    check_latency(&|| field("latency"), &t.latency)?;
    check_identities(&|| field("identities"), &t.identities)
}

/// Every check, before anything is stored; the first failure names its field.
fn check_export(e: &ExportDoc, max_ticks: usize) -> Result<(), ApiError> {
    if e.schema_version != SCHEMA_VERSION {
        return Err(bad(
            &|| "schema_version".into(),
            format!(
                "{} is not supported; this server reads {SCHEMA_VERSION}",
                e.schema_version
            ),
        ));
    }
    if !matches!(
        e.run_status(),
        Some(RunStatus::Completed | RunStatus::Cancelled)
    ) {
        return Err(bad(
            &|| "status".into(),
            format!(
                "`{}` cannot be imported; use completed or cancelled",
                e.status
            ),
        ));
    }
    check_text(&|| "plan.name".into(), &e.plan.name, MAX_NAME)?;
    check_text(&|| "plan.target".into(), &e.plan.target, MAX_TARGET)?;
    if e.ticks.len() > max_ticks {
        return Err(bad(
            &|| "ticks".into(),
            format!(
                "{} ticks; the limit is {max_ticks} (--max-import-ticks)",
                e.ticks.len()
            ),
        ));
    }
    check_summary(&e.summary)?;
    let mut prev = None;
    for (i, t) in e.ticks.iter().enumerate() {
        check_tick(i, t, prev)?;
        prev = Some(t);
    }
    Ok(())
}

/// Bounds a checked import as a live run is bounded: one `OutcomeKeys` over its ticks
/// in order, then its summary (so ticks and summary keep the same keys), and its
/// evidence taken in through `Evidence::merge` (the bounds, and target text made safe).
fn bound_export(e: &mut ExportDoc) {
    fn agents(agents: &mut [engine::report::AgentStatus], keys: &mut OutcomeKeys) {
        for a in agents.iter_mut() {
            keys.bound(&mut a.totals);
        }
    }
    let mut keys = OutcomeKeys::new();
    for t in &mut e.ticks {
        keys.bound(&mut t.interval);
        keys.bound(&mut t.totals);
        agents(&mut t.agents, &mut keys);
    }
    keys.bound(&mut e.summary.totals);
    agents(&mut e.summary.agents, &mut keys);
    let mut evidence = Evidence::default();
    evidence.merge(&e.summary.evidence);
    e.summary.evidence = evidence;
}

/// A chunk of ticks as rows: `(seq, elapsed_ms, tick_json)`, each what changed since
/// the tick before (`encoder` has seen every earlier chunk).
fn encode_chunk(chunk: &[Snapshot], encoder: &mut TickEncoder) -> Vec<(i64, i64, String)> {
    chunk
        .iter()
        .map(|t| {
            // A tick is plain maps and numbers (checked finite): it always encodes.
            let json = serde_json::to_string(&encoder.encode(t)).unwrap_or_else(|_| "{}".into());
            (t.seq as i64, t.elapsed_ms as i64, json)
        })
        .collect()
}

impl Launch {
    /// Stores a run made elsewhere (a CI job's `--server` upload) as a finished run.
    pub async fn import_run(&self, export: ExportDoc) -> Result<Launched, ApiError> {
        let max_ticks = self.max_import_ticks;
        // A hundred thousand ticks take a while to check: off the async workers.
        let (checked, mut export) = super::blocking(move || {
            let mut export = export;
            let checked = check_export(&export, max_ticks);
            if checked.is_ok() {
                bound_export(&mut export);
            }
            (checked, export)
        })
        .await?;
        checked?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let plan = export.plan.redacted();
        let plan_json = serde_json::to_string(&plan).map_err(|e| internal("encode plan", e))?;
        let s = &export.summary;
        let summary = serde_json::to_string(s).map_err(|e| internal("encode summary", e))?;
        let h = store::Headline {
            peak_open: s.peak_open as i64,
            opened: s.totals.opened as i64,
            failed: s.totals.failed as i64,
            duration_ms: s.duration_ms as i64,
        };
        let now = now_ms();
        let run = store::NewRun {
            run_id: &id,
            name: &plan.name,
            target: &plan.target,
            plan_json: &plan_json,
            created_at: now - s.duration_ms as i64,
            plan_id: None,
            env_json: None,
        };
        store::begin_import(&self.pool, run)
            .await
            .map_err(|e| internal("begin_import", e))?;
        let ticks = std::mem::take(&mut export.ticks);
        let stored = match self.store_ticks(&id, ticks).await {
            Ok(()) => store::finish_import(&self.pool, &id, &export.status, now, &summary, h).await,
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            if let Err(e2) = store::discard_import(&self.pool, &id).await {
                tracing::error!(run_id = %id, "could not remove a failed import: {e2}");
            }
            return Err(internal("import", e));
        }
        super::reads::fill_verdicts(&self.pool).await;
        Ok(Launched {
            url: format!("/runs/{id}"),
            status: export.run_status().unwrap_or(RunStatus::Completed),
            id,
        })
    }

    /// The ticks, `CHUNK` per transaction. A blocking thread encodes the next chunks
    /// while this task stores one; after each chunk the lock stays free for as long as
    /// the chunk held it, so waiting writers (live ticks first) get their turn.
    async fn store_ticks(&self, id: &str, ticks: Vec<Snapshot>) -> sqlx::Result<()> {
        let (tx, mut chunks) = tokio::sync::mpsc::channel(2);
        let encoder = tokio::task::spawn_blocking(move || {
            let mut encoder = TickEncoder::new();
            for chunk in ticks.chunks(CHUNK) {
                if tx.blocking_send(encode_chunk(chunk, &mut encoder)).is_err() {
                    return; // storing failed; nobody waits for more
                }
            }
        });
        while let Some(rows) = chunks.recv().await {
            let started = Instant::now();
            store::insert_ticks(&self.pool, id, &rows).await?;
            tokio::time::sleep(started.elapsed().clamp(MIN_PAUSE, MAX_PAUSE)).await;
        }
        let _ = encoder.await;
        Ok(())
    }
}
