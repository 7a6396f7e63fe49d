//! `Runs`: the one implementation of `app::api::RunService`. The JSON API handlers and
//! the pages' server fns both call it, so validation, storage and launch happen the
//! same way whichever door a run comes in by.

use std::net::SocketAddr;
use std::sync::Arc;

use app::api::{
    ApiError, BoxFuture, CompareView, FormDefaults, Launched, PlanDetail, PlanListItem, PlanSaved,
    RunDetail, RunEnv, RunListItem, RunMeta, RunPage, RunQuery, RunService, RunStatus, ShareKind,
    ShareLink, SharedView,
};
use engine::plan::{Agents, TargetUrl};
use engine::{FieldError, Limits, Plan, Snapshot};
use sqlx::SqlitePool;

use super::manager::{CancelOutcome, ManagerHandle, Placement};
use super::now_ms;
use crate::error::internal;
use crate::store::{self, RunRow};

/// The run service.
pub struct Runs {
    pub pool: SqlitePool,
    pub manager: ManagerHandle,
    /// Limits every plan is validated against.
    pub limits: Limits,
    /// Where the embedded sandbox listens, if it runs in this process.
    pub sandbox: Option<SocketAddr>,
    /// File descriptors this process may hold (shared with the embedded sandbox).
    pub nofile: u64,
    /// Where runs run (stored with each run).
    pub env: RunEnv,
    /// Where runs may send traffic (`--allow-target`).
    pub allowlist: crate::allow::Allowlist,
    /// Which environment variables plans may read (`--allow-env`).
    pub env_allow: crate::allow::EnvAllow,
    /// File descriptors kept for HTTP connections (out of `nofile`).
    pub http_connections: u64,
    /// Most ticks an imported run may hold (`--max-import-ticks`).
    pub max_import_ticks: usize,
    /// Connections a run may hold in this process; a larger one is split over agents.
    pub in_process: u32,
    /// Connections one agent process holds.
    pub per_agent: u32,
    /// Agents come from the pool (`--agents-on joined`): `agents: "all"` is allowed.
    pub joined: bool,
}

/// What `Runs` is built from (settled at startup).
pub struct RunsConfig {
    pub limits: Limits,
    pub sandbox: Option<SocketAddr>,
    pub nofile: u64,
    pub http_connections: u64,
    pub allowlist: crate::allow::Allowlist,
    pub env_allow: crate::allow::EnvAllow,
    pub max_import_ticks: usize,
    /// Connections a run may hold in this process; a larger one is split over agents.
    pub in_process: u32,
    /// Connections one agent process holds.
    pub per_agent: u32,
    /// Agents come from the pool (`--agents-on joined`): `agents: "all"` is allowed.
    pub joined: bool,
}

/// Runs `GET /api/runs` without a `per_page` answers.
const LIST_LIMIT: u32 = 200;

impl Runs {
    pub fn new(pool: SqlitePool, manager: ManagerHandle, cfg: RunsConfig) -> Arc<Runs> {
        let nofile = cfg.nofile;
        let env = RunEnv {
            version: env!("CARGO_PKG_VERSION").into(),
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .or_else(|_| std::fs::read_to_string("/etc/hostname"))
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            nofile,
        };
        Arc::new(Runs {
            pool,
            manager,
            limits: cfg.limits,
            sandbox: cfg.sandbox,
            nofile,
            env,
            allowlist: cfg.allowlist,
            env_allow: cfg.env_allow,
            http_connections: cfg.http_connections,
            max_import_ticks: cfg.max_import_ticks,
            in_process: cfg.in_process,
            per_agent: cfg.per_agent,
            joined: cfg.joined,
        })
    }

    /// A run larger than this process can hold is split over local agent processes
    /// (local mode): as many as its size needs, unless the plan says how many.
    fn split(&self, plan: &mut Plan) -> Result<(), ApiError> {
        let peak = plan.peak_connections();
        match plan.agents {
            None if peak > self.in_process => {
                plan.agents = Some(Agents::Count(plan.agents_needed(self.per_agent).max(2)));
            }
            Some(Agents::All(_)) if !self.joined => {
                return Err(ApiError::Validation(vec![FieldError {
                    field: "agents".into(),
                    message: "\"all\" means every agent joined to this server's pool, and this server has no pool (start it with --agents-on joined --agent-pool-token …), so give a number".into(),
                }]))
            }
            Some(Agents::Count(n)) if peak > self.in_process.max(self.per_agent.saturating_mul(n)) => {
                return Err(ApiError::Validation(vec![FieldError {
                    field: "agents".into(),
                    message: format!(
                        "{n} agent(s) cannot hold {peak} connections: one process holds {} here; ask for {} agents or leave `agents` out",
                        self.per_agent,
                        peak.div_ceil(self.per_agent.max(1))
                    ),
                }]))
            }
            _ => {}
        }
        Ok(())
    }

    /// Every check a plan passes before it is stored or run: the environment it may
    /// read first (so validation's "variable not set" cannot probe the server's
    /// environment), then the plan itself against this server's limits.
    pub(crate) fn validate_plan(&self, plan: &Plan) -> Result<(), Vec<FieldError>> {
        self.env_allow.check_plan(plan)?;
        plan.validate(&self.limits)
    }

    /// Checks that only apply on this server: the embedded sandbox shares our
    /// open-file limit, so a run against it may hold only half as many sockets.
    fn check_local(&self, plan: &Plan) -> Result<(), ApiError> {
        let Some(sb) = self.sandbox else {
            return Ok(());
        };
        let Ok(url) = TargetUrl::parse(&plan.target) else {
            return Ok(());
        };
        let same_port = url.port == sb.port();
        let local = matches!(url.host.as_str(), "127.0.0.1" | "localhost" | "::1")
            || url.host == sb.ip().to_string();
        // What is left after the fixed reserve and the HTTP connections, for both ends.
        let max = (self.nofile.saturating_sub(200 + self.http_connections) / 2) as u32;
        if same_port && local && plan.peak_connections() > max {
            return Err(ApiError::Validation(vec![FieldError {
                field: "stages".into(),
                message: format!(
                    "{} connections to the embedded sandbox need {} sockets in this one process, whose open-file limit is {}; the most is {max}. Run `socketswarm target --listen 127.0.0.1:9002` as a separate process and aim at it.",
                    plan.peak_connections(),
                    2 * plan.peak_connections(),
                    self.nofile
                ),
            }]));
        }
        Ok(())
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
    /// CSV and metadata answers need.
    pub(crate) async fn detail(&self, id: &str) -> Result<RunDetail, ApiError> {
        Ok(self.detail_with_ticks(id).await?.0)
    }

    /// The run and every stored tick, each tick read once (an export needs both).
    pub(crate) async fn detail_with_ticks(
        &self,
        id: &str,
    ) -> Result<(RunDetail, Vec<Snapshot>), ApiError> {
        let row = self.run_row(id).await?;
        let tags = self.tags(&row.run_id).await?;
        let ticks = self.ticks(id).await?;
        super::blocking(move || build_detail(row, tags, ticks)).await?
    }

    /// Every stored tick of a run, in order: read `TICK_PAGE` at a time (one pool
    /// connection at a time, none held between pages), parsed off the async workers.
    pub(crate) async fn ticks(&self, id: &str) -> Result<Vec<Snapshot>, ApiError> {
        let mut ticks = Vec::new();
        let mut after = 0;
        loop {
            let page = store::intervals_page(&self.pool, id, after, TICK_PAGE)
                .await
                .map_err(|e| internal("intervals_page", e))?;
            let Some(&(last, _)) = page.last() else {
                break;
            };
            let full = page.len() as i64 == TICK_PAGE;
            after = last;
            ticks.extend(super::blocking(move || parse_ticks(&page)).await?);
            if !full {
                break;
            }
        }
        Ok(ticks)
    }

    /// Validates, stores the plan (secrets redacted) and hands the real plan to the
    /// manager: typed-in secrets live only in memory, for this run.
    pub(super) async fn do_launch(
        &self,
        mut plan: Plan,
        plan_id: Option<&str>,
    ) -> Result<Launched, ApiError> {
        self.split(&mut plan)?;
        self.validate_plan(&plan).map_err(ApiError::Validation)?;
        self.check_local(&plan)?;
        self.allowlist
            .check_plan(&plan)
            .await
            .map_err(ApiError::Validation)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        // Only the redacted plan is stored: its name and target are what lists show.
        let shown = plan.redacted();
        let json = serde_json::to_string(&shown).map_err(|e| internal("encode plan", e))?;
        let env = serde_json::to_string(&self.env).map_err(|e| internal("encode env", e))?;
        store::insert_run(
            &self.pool,
            store::NewRun {
                run_id: &id,
                name: &shown.name,
                target: &shown.target,
                plan_json: &json,
                created_at: now_ms(),
                plan_id,
                env_json: Some(&env),
            },
        )
        .await
        .map_err(|e| internal("insert_run", e))?;
        let status = match self.manager.launch(id.clone(), plan).await {
            Some(Placement::Started) => RunStatus::Running,
            Some(Placement::Queued(_)) => RunStatus::Queued,
            Some(Placement::QueueFull(max)) => {
                if let Err(e) = store::discard_run(&self.pool, &id).await {
                    tracing::error!(run_id = %id, "could not remove a refused run: {e}");
                }
                return Err(ApiError::Busy(format!(
                    "{max} runs are already waiting to start, the most this server queues (--max-queued-runs); try again when one has started"
                )));
            }
            None => {
                let _ = store::end_run_without_summary(
                    &self.pool,
                    &id,
                    "failed",
                    now_ms(),
                    Some("the server is shutting down"),
                )
                .await;
                return Err(ApiError::Conflict("the server is shutting down".into()));
            }
        };
        Ok(Launched {
            url: format!("/runs/{id}"),
            id,
            status,
        })
    }
}

/// Stored ticks read per query.
const TICK_PAGE: i64 = 1000;

/// Stored tick JSON to ticks (a tick that no longer parses is skipped, as before).
fn parse_ticks(page: &[(i64, String)]) -> Vec<Snapshot> {
    page.iter()
        .filter_map(|(_, j)| serde_json::from_str(j).ok())
        .collect()
}

/// The CPU part of `Runs::detail`: plan and summary decoded, series built, the run
/// diagnosed. Gives the ticks back for callers that need them too.
fn build_detail(
    row: RunRow,
    tags: Vec<String>,
    ticks: Vec<Snapshot>,
) -> Result<(RunDetail, Vec<Snapshot>), ApiError> {
    let plan: Plan =
        serde_json::from_str(&row.plan_json).map_err(|e| internal("stored plan", e))?;
    let summary: Option<engine::Summary> = match &row.summary_json {
        Some(s) => Some(serde_json::from_str(s).map_err(|e| internal("stored summary", e))?),
        None => None,
    };
    let series = engine::Series::from_snapshots(&ticks);
    // Every finished run has one (callers rely on it), live ones once a tick is in.
    let diagnosis = (summary.is_some() || !series.t.is_empty())
        .then(|| engine::diagnose::for_run(&series, summary.as_ref()));
    let last = ticks.last().cloned();
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
    Ok((detail, ticks))
}

impl RunService for Runs {
    fn list(&self) -> BoxFuture<'_, Result<Vec<RunListItem>, ApiError>> {
        Box::pin(async move {
            let q = RunQuery {
                per_page: Some(LIST_LIMIT),
                ..Default::default()
            };
            self.matching_runs(&q).await
        })
    }

    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<RunDetail, ApiError>> {
        Box::pin(self.full_detail(id))
    }

    fn launch(&self, plan: Plan) -> BoxFuture<'_, Result<Launched, ApiError>> {
        Box::pin(self.do_launch(plan, None))
    }

    fn cancel<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            match self.manager.cancel(id.to_string()).await {
                CancelOutcome::Cancelled => Ok(()),
                CancelOutcome::NotLive => match store::get_run(&self.pool, id)
                    .await
                    .map_err(|e| internal("get_run", e))?
                {
                    None => Err(ApiError::NotFound(format!("run {id}"))),
                    Some(r) => Err(ApiError::Conflict(format!(
                        "run {id} is {} and cannot be cancelled",
                        r.status
                    ))),
                },
            }
        })
    }

    fn search(&self, q: RunQuery) -> BoxFuture<'_, Result<RunPage, ApiError>> {
        Box::pin(self.search_runs(q))
    }
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(self.delete_run(id))
    }
    fn update_meta<'a>(
        &'a self,
        id: &'a str,
        meta: RunMeta,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(self.set_meta(id, meta))
    }
    fn rerun<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Launched, ApiError>> {
        Box::pin(self.run_again(id))
    }
    fn plans(&self) -> BoxFuture<'_, Result<Vec<PlanListItem>, ApiError>> {
        Box::pin(self.list_plans())
    }
    fn plan<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<PlanDetail, ApiError>> {
        Box::pin(self.plan_detail(id))
    }
    fn save_plan<'a>(
        &'a self,
        id: Option<&'a str>,
        text: &'a str,
    ) -> BoxFuture<'a, Result<PlanSaved, ApiError>> {
        Box::pin(self.store_plan(id, text))
    }
    fn duplicate_plan<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<PlanSaved, ApiError>> {
        Box::pin(self.copy_plan(id))
    }
    fn delete_plan<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(self.remove_plan(id))
    }
    fn launch_plan<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Launched, ApiError>> {
        Box::pin(self.run_saved_plan(id))
    }
    fn plan_from_run<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<PlanSaved, ApiError>> {
        Box::pin(self.save_run_plan(run_id))
    }
    fn set_baseline<'a>(
        &'a self,
        run_id: &'a str,
        on: bool,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(self.mark_baseline(run_id, on))
    }
    fn compare<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<CompareView, ApiError>> {
        Box::pin(self.compare_runs(ids))
    }
    fn share<'a>(
        &'a self,
        kind: ShareKind,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<ShareLink, ApiError>> {
        Box::pin(self.make_share(kind, ids))
    }
    fn shared<'a>(&'a self, share_id: &'a str) -> BoxFuture<'a, Result<SharedView, ApiError>> {
        Box::pin(self.open_share(share_id))
    }
    fn unshare<'a>(&'a self, share_id: &'a str) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(self.revoke_share(share_id))
    }

    fn validate(&self, plan: &Plan) -> Result<(), Vec<FieldError>> {
        self.validate_plan(plan)
    }

    fn defaults(&self) -> FormDefaults {
        FormDefaults {
            target: self
                .sandbox
                .map(|a| format!("ws://{a}/echo"))
                .unwrap_or_else(|| "ws://127.0.0.1:9001/echo".into()),
            limits: self.limits,
        }
    }
}
