//! `Runs`: the one implementation of `app::api::RunService`. The JSON API handlers and
//! the pages' server fns both call it, so validation, storage and launch happen the
//! same way whichever door a run comes in by.

use std::net::SocketAddr;
use std::sync::Arc;

use app::api::{
    ApiError, BoxFuture, FormDefaults, Launched, RunDetail, RunListItem, RunService, RunStatus,
};
use engine::plan::TargetUrl;
use engine::{FieldError, Limits, Plan};
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
}

const LIST_LIMIT: i64 = 500;

fn to_item(r: RunRow) -> RunListItem {
    RunListItem {
        status: RunStatus::parse(&r.status).unwrap_or(RunStatus::Failed),
        id: r.run_id,
        name: r.name,
        target: r.target,
        created_at_ms: r.created_at,
        duration_ms: r.duration_ms,
        peak_open: r.peak_open,
        opened: r.opened,
        failed: r.failed,
    }
}

impl Runs {
    pub fn new(
        pool: SqlitePool,
        manager: ManagerHandle,
        limits: Limits,
        sandbox: Option<SocketAddr>,
        nofile: u64,
    ) -> Arc<Runs> {
        Arc::new(Runs {
            pool,
            manager,
            limits,
            sandbox,
            nofile,
        })
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
        let max = (self.nofile.saturating_sub(200) / 2) as u32;
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

    async fn detail(&self, id: &str) -> Result<RunDetail, ApiError> {
        let row = store::get_run(&self.pool, id)
            .await
            .map_err(|e| internal("get_run", e))?
            .ok_or_else(|| ApiError::NotFound(format!("run {id}")))?;
        let plan: Plan =
            serde_json::from_str(&row.plan_json).map_err(|e| internal("stored plan", e))?;
        let summary = match &row.summary_json {
            Some(s) => Some(serde_json::from_str(s).map_err(|e| internal("stored summary", e))?),
            None => None,
        };
        let ticks: Vec<engine::Snapshot> = store::intervals_after(&self.pool, id, 0)
            .await
            .map_err(|e| internal("intervals_after", e))?
            .iter()
            .filter_map(|j| serde_json::from_str(j).ok())
            .collect();
        let series = engine::Series::from_snapshots(&ticks);
        let diagnosis =
            (!series.t.is_empty()).then(|| engine::diagnose::for_run(&series, summary.as_ref()));
        let last = ticks.into_iter().last();
        Ok(RunDetail {
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
        })
    }

    /// Validates, stores the plan (secrets redacted) and hands the real plan to the
    /// manager: typed-in secrets live only in memory, for this run.
    async fn do_launch(&self, plan: Plan) -> Result<Launched, ApiError> {
        plan.validate(&self.limits).map_err(ApiError::Validation)?;
        self.check_local(&plan)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let json =
            serde_json::to_string(&plan.redacted()).map_err(|e| internal("encode plan", e))?;
        store::insert_run(&self.pool, &id, &plan.name, &plan.target, &json, now_ms())
            .await
            .map_err(|e| internal("insert_run", e))?;
        let status = match self.manager.launch(id.clone(), plan).await {
            Some(Placement::Started) => RunStatus::Running,
            Some(Placement::Queued(_)) => RunStatus::Queued,
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

/// A run exported by `socketswarm run --out json=FILE` (schema version 1).
#[derive(serde::Deserialize)]
pub struct Export {
    pub schema_version: u32,
    pub plan: Plan,
    pub status: String,
    pub summary: engine::Summary,
    #[serde(default)]
    pub ticks: Vec<engine::Snapshot>,
}

impl Runs {
    /// Stores a run made elsewhere (a CI job's `--server` upload) as a finished run.
    pub async fn import(&self, export: Export) -> Result<Launched, ApiError> {
        if export.schema_version != 1 {
            return Err(ApiError::BadRequest(format!(
                "schema_version {} is not supported; this server reads 1",
                export.schema_version
            )));
        }
        let status = match export.status.as_str() {
            "completed" | "cancelled" => export.status.clone(),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "status `{other}` cannot be imported; use completed or cancelled"
                )))
            }
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        let plan = export.plan.redacted();
        let json = serde_json::to_string(&plan).map_err(|e| internal("encode plan", e))?;
        let now = now_ms();
        let started = now - export.summary.duration_ms as i64;
        store::insert_run(&self.pool, &id, &plan.name, &plan.target, &json, started)
            .await
            .map_err(|e| internal("insert_run", e))?;
        store::mark_running(&self.pool, &id, started)
            .await
            .map_err(|e| internal("mark_running", e))?;
        for t in &export.ticks {
            let tick = serde_json::to_string(t).map_err(|e| internal("encode tick", e))?;
            store::insert_interval(&self.pool, &id, t.seq as i64, t.elapsed_ms as i64, &tick)
                .await
                .map_err(|e| internal("insert_interval", e))?;
        }
        let s = &export.summary;
        let h = store::Headline {
            peak_open: s.peak_open as i64,
            opened: s.totals.opened as i64,
            failed: s.totals.failed as i64,
            duration_ms: s.duration_ms as i64,
        };
        let summary = serde_json::to_string(s).map_err(|e| internal("encode summary", e))?;
        store::finish_run(&self.pool, &id, &status, now, &summary, h)
            .await
            .map_err(|e| internal("finish_run", e))?;
        let status = RunStatus::parse(&status).unwrap_or(RunStatus::Completed);
        Ok(Launched {
            url: format!("/runs/{id}"),
            id,
            status,
        })
    }
}

impl RunService for Runs {
    fn list(&self) -> BoxFuture<'_, Result<Vec<RunListItem>, ApiError>> {
        Box::pin(async move {
            let rows = store::list_runs(&self.pool, LIST_LIMIT)
                .await
                .map_err(|e| internal("list_runs", e))?;
            Ok(rows.into_iter().map(to_item).collect())
        })
    }

    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<RunDetail, ApiError>> {
        Box::pin(self.detail(id))
    }

    fn launch(&self, plan: Plan) -> BoxFuture<'_, Result<Launched, ApiError>> {
        Box::pin(self.do_launch(plan))
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
