//! `Reads`: the read model of runs: one run's detail as its page shows it (saved plan's
//! name, the comparison with its plan's baseline), its stored ticks, and the facts a
//! comparison needs. Reads only: nothing here writes to the database.
//!
//! Budgets: building a view reads a whole run, so views are built in slots — a few for
//! the owner (pages, API), fewer for share links (anonymous readers), apart, so share
//! readers never keep the owner waiting; past a free slot for `VIEW_WAIT`, `Busy`. What
//! a view sends to be drawn is thinned to `MAX_VIEW_POINTS` points a series
//! (`Series::thinned`); the diagnosis, comparisons and CSV read the full series.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use app::api::{ApiError, BaselineView, RunDetail, RunStatus};
use engine::compare::{self, RunFacts};
use engine::report::{TickReplay, MAX_VIEW_POINTS};
use engine::{Plan, Snapshot, Summary};
use sqlx::SqlitePool;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::internal;
use crate::store::{self, RunRow};

/// Views of whole runs built at once for the owner, and through share links.
const OWNER_VIEWS: usize = 4;
const SHARED_VIEWS: usize = 2;
/// How long a view waits for a slot.
const VIEW_WAIT: Duration = Duration::from_secs(10);

/// Who a view is for: its slots are apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    Owner,
    Share,
}

/// The view slots (see the module docs).
struct ViewSlots {
    owner: Arc<Semaphore>,
    shared: Arc<Semaphore>,
}

/// The read model (a pool handle and the view slots: cheap to clone).
#[derive(Clone)]
pub struct Reads {
    pub(super) pool: SqlitePool,
    views: Arc<ViewSlots>,
}

/// Decoded histograms by metric.
fn decoded(s: &Summary) -> BTreeMap<String, Vec<(u64, u64)>> {
    s.histograms
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), engine::histogram_counts(v)?)))
        .collect()
}

/// Everything a comparison needs of one finished run.
pub(super) struct Facts {
    pub(super) detail: RunDetail,
    pub(super) summary: Summary,
    pub(super) diagnosis: engine::diagnose::Diagnosis,
    pub(super) histograms: BTreeMap<String, Vec<(u64, u64)>>,
}

impl Facts {
    pub(super) fn run_facts(&self) -> RunFacts<'_> {
        RunFacts {
            name: &self.detail.name,
            summary: &self.summary,
            diagnosis: &self.diagnosis,
            series: &self.detail.series,
            histograms: &self.histograms,
        }
    }
}

/// 409 for a run without results (live, failed to start, interrupted early).
pub(super) fn no_results(id: &str, status: &str) -> ApiError {
    ApiError::Conflict(format!(
        "run {id} is {status} and has no results to compare yet"
    ))
}

impl Reads {
    pub fn new(pool: SqlitePool) -> Reads {
        Reads {
            pool,
            views: Arc::new(ViewSlots {
                owner: Arc::new(Semaphore::new(OWNER_VIEWS)),
                shared: Arc::new(Semaphore::new(SHARED_VIEWS)),
            }),
        }
    }

    /// A slot to build a view of a whole run for `who`, waiting up to `VIEW_WAIT`.
    pub(crate) async fn view_slot(&self, who: Viewer) -> Result<OwnedSemaphorePermit, ApiError> {
        let (slots, n, whose) = match who {
            Viewer::Owner => (&self.views.owner, OWNER_VIEWS, "this server's pages"),
            Viewer::Share => (&self.views.shared, SHARED_VIEWS, "share links"),
        };
        match tokio::time::timeout(VIEW_WAIT, slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ApiError::Busy(format!(
                "{n} views of whole runs are being built for {whose}, the most at once; none finished within {} s: try again shortly",
                VIEW_WAIT.as_secs()
            ))),
        }
    }

    /// A run with everything its page shows: plan name, baseline comparison; its series
    /// thinned for drawing. Built in one of the owner's view slots.
    pub async fn get_run(&self, id: &str) -> Result<RunDetail, ApiError> {
        let _slot = self.view_slot(Viewer::Owner).await?;
        let mut d = self.run_view(id).await?;
        d.series = d.series.thinned(MAX_VIEW_POINTS);
        Ok(d)
    }

    /// `get_run` without a slot and with the full series.
    async fn run_view(&self, id: &str) -> Result<RunDetail, ApiError> {
        let mut d = self.detail(id).await?;
        let Some(plan_id) = d.plan_id.clone() else {
            return Ok(d);
        };
        let Some(p) = store::get_plan(&self.pool, &plan_id)
            .await
            .map_err(|e| internal("get_plan", e))?
        else {
            return Ok(d);
        };
        d.plan_name = Some(p.name);
        if let Ok(saved) = serde_json::from_str::<Plan>(&p.plan_json) {
            let mut plan = d.plan.clone();
            plan.restore_secrets(&saved);
            d.missing_secrets = plan.missing_secrets();
        }
        match p.baseline_run_id {
            Some(b) if b == d.id => d.is_baseline = true,
            Some(b) if d.summary.is_some() => {
                if let (Ok(base), Some(summary), Some(diagnosis)) =
                    (self.facts(&b).await, &d.summary, &d.diagnosis)
                {
                    let histograms = decoded(summary);
                    let this = RunFacts {
                        name: &d.name,
                        summary,
                        diagnosis,
                        series: &d.series,
                        histograms: &histograms,
                    };
                    let comparison = compare::compare(&[base.run_facts(), this]);
                    d.baseline = Some(BaselineView {
                        run_id: b,
                        name: base.detail.name,
                        created_at_ms: base.detail.created_at_ms,
                        comparison,
                    });
                }
            }
            _ => {}
        }
        Ok(d)
    }

    /// A finished run for comparing (409 if it has no summary).
    pub(super) async fn facts(&self, id: &str) -> Result<Facts, ApiError> {
        let detail = self.detail(id).await?;
        let (Some(summary), Some(diagnosis)) = (detail.summary.clone(), detail.diagnosis.clone())
        else {
            return Err(no_results(id, detail.status.as_str()));
        };
        let histograms = decoded(&summary);
        Ok(Facts {
            detail,
            summary,
            diagnosis,
            histograms,
        })
    }

    /// The run's stored row (404 for an unknown id): for answers that need no ticks.
    pub(crate) async fn run_row(&self, id: &str) -> Result<store::RunRow, ApiError> {
        store::get_run(&self.pool, id)
            .await
            .map_err(|e| internal("get_run", e))?
            .ok_or_else(|| ApiError::NotFound(format!("run {id}")))
    }

    /// One run's tags.
    pub(crate) async fn tags(&self, run_id: &str) -> Result<Vec<String>, ApiError> {
        Ok(store::tags_of(&self.pool, &[run_id.to_string()])
            .await
            .map_err(|e| internal("tags_of", e))?
            .remove(run_id)
            .unwrap_or_default())
    }

    /// The run itself (no saved-plan name, no baseline comparison): what exports,
    /// CSV and metadata answers need. Its ticks are replayed a page at a time into its
    /// series; only the last one is kept.
    pub(crate) async fn detail(&self, id: &str) -> Result<RunDetail, ApiError> {
        let row = self.run_row(id).await?;
        let tags = self.tags(&row.run_id).await?;
        let (series, last) = self.series(id).await?;
        super::blocking(move || build_detail(row, tags, series, last)).await?
    }

    /// The verdict of a run that just ended with `summary` (its ticks are stored): the
    /// diagnosis' kind key and its few words, as the runs list keeps them.
    pub(crate) async fn verdict(
        &self,
        id: &str,
        summary: Summary,
    ) -> Result<(String, String), ApiError> {
        let (series, _) = self.series(id).await?;
        super::blocking(move || {
            let d = engine::diagnose::for_run(&series, Some(&summary));
            (d.kind.key().to_string(), d.short())
        })
        .await
    }

    /// A run's series and its last tick, from every stored tick in order (replayed
    /// `TICK_PAGE` at a time off the async workers; no page is kept).
    async fn series(&self, id: &str) -> Result<(engine::Series, Option<Snapshot>), ApiError> {
        let mut state = (
            TickReplay::new(),
            engine::Series::default(),
            None::<Snapshot>,
        );
        let mut at = 0i64;
        loop {
            let page = store::intervals_page(&self.pool, id, at, i64::MAX, TICK_PAGE)
                .await
                .map_err(|e| internal("intervals_page", e))?;
            let Some(&(last, _, _)) = page.last() else {
                break;
            };
            let full = page.len() as i64 == TICK_PAGE;
            at = last;
            state = super::blocking(move || {
                let (mut replay, mut series, mut last) = state;
                for (_, format, json) in &page {
                    if let Some(s) = replay.row(*format, json) {
                        series.push(&s);
                        last = Some(s);
                    }
                }
                (replay, series, last)
            })
            .await?;
            if !full {
                break;
            }
        }
        Ok((state.1, state.2))
    }
}

/// Stored ticks read per query.
const TICK_PAGE: i64 = 1000;

/// A run's stored ticks with `after < seq < before`, as they were live: replayed
/// (`TickReplay`) from the run's first tick, or from `base` (a tick the caller has,
/// with `base.seq == after`). Read `TICK_PAGE` at a time (one pool connection at a
/// time, none held between pages), replayed off the async workers; a row that no longer
/// parses is skipped, as before.
pub(crate) async fn replayed(
    pool: &SqlitePool,
    id: &str,
    after: u64,
    before: u64,
    base: Option<&Snapshot>,
) -> sqlx::Result<Vec<Snapshot>> {
    let (mut replay, mut at) = match base {
        Some(b) => (TickReplay::after(b), b.seq),
        None => (TickReplay::new(), 0),
    };
    let before = i64::try_from(before).unwrap_or(i64::MAX);
    let mut ticks = Vec::new();
    loop {
        let page = store::intervals_page(pool, id, at as i64, before, TICK_PAGE).await?;
        let Some(&(last, _, _)) = page.last() else {
            break;
        };
        let full = page.len() as i64 == TICK_PAGE;
        at = last as u64;
        let (back, got) = tokio::task::spawn_blocking(move || {
            let got: Vec<Snapshot> = page
                .iter()
                .filter_map(|(_, format, json)| replay.row(*format, json))
                .filter(|s| s.seq > after)
                .collect();
            (replay, got)
        })
        .await
        .map_err(|e| sqlx::Error::Protocol(format!("replaying ticks: {e}")))?;
        replay = back;
        ticks.extend(got);
        if !full {
            break;
        }
    }
    Ok(ticks)
}

/// Computes and stores the verdict of every finished run that has none yet (the runs
/// list's verdict column and filter read it): called when a run or an import ends, and
/// once at start-up for runs stored before the column existed. The verdict is the same
/// diagnosis the run page shows. A run that cannot be read gets an empty verdict, so it
/// is not tried again.
pub(crate) async fn fill_verdicts(pool: &SqlitePool) {
    let reads = Reads::new(pool.clone());
    loop {
        let ids = match store::runs_without_verdict(pool, 50).await {
            Ok(ids) if !ids.is_empty() => ids,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!("verdicts: cannot list runs without one: {e}");
                return;
            }
        };
        for id in ids {
            let stored = async {
                let row = reads.run_row(&id).await?;
                let summary: Summary =
                    serde_json::from_str(row.summary_json.as_deref().unwrap_or("null"))
                        .map_err(|e| internal("stored summary", e))?;
                reads.verdict(&id, summary).await
            };
            let (kind, text) = stored.await.unwrap_or_else(|e| {
                tracing::warn!(run_id = %id, "verdicts: cannot diagnose the run: {e}");
                (String::new(), String::new())
            });
            if let Err(e) = store::set_verdict(pool, &id, &kind, &text).await {
                tracing::warn!(run_id = %id, "verdicts: cannot store: {e}");
                return;
            }
        }
    }
}

/// The CPU part of `Reads::detail`: plan and summary decoded, the run diagnosed.
fn build_detail(
    row: RunRow,
    tags: Vec<String>,
    series: engine::Series,
    last: Option<Snapshot>,
) -> Result<RunDetail, ApiError> {
    let plan: Plan =
        serde_json::from_str(&row.plan_json).map_err(|e| internal("stored plan", e))?;
    let summary: Option<engine::Summary> = match &row.summary_json {
        Some(s) => Some(serde_json::from_str(s).map_err(|e| internal("stored summary", e))?),
        None => None,
    };
    // Every finished run has one (callers rely on it), live ones once a tick is in.
    let diagnosis = (summary.is_some() || !series.t.is_empty())
        .then(|| engine::diagnose::for_run(&series, summary.as_ref()));
    let env = row
        .env_json
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok());
    let histograms = summary
        .as_ref()
        .map(super::views::histogram_views)
        .unwrap_or_default();
    let detail = RunDetail {
        plan_id: row.plan_id,
        plan_name: None,
        tags,
        note: row.note,
        env,
        histograms,
        baseline: None,
        is_baseline: false,
        missing_secrets: plan.missing_secrets(),
        id: row.run_id,
        name: row.name,
        status: RunStatus::parse(&row.status).unwrap_or(RunStatus::Failed),
        plan,
        created_at_ms: row.created_at,
        started_at_ms: row.started_at,
        finished_at_ms: row.finished_at,
        error: row.error,
        summary,
        last,
        series,
        diagnosis,
    };
    Ok(detail)
}
