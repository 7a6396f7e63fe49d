//! `Plans`: saved plans: list, read (secrets redacted on the page; the TOML download
//! holds the values, so it runs as the page does),
//! create/replace from TOML or JSON (redacted secrets keep the stored value; the plan
//! validates before anything is written), duplicate, delete, run, a run's plan saved as
//! a plan, and the per-plan baseline.

use app::api::{ApiError, Launched, PlanDetail, PlanListItem, PlanSaved, RunQuery, RunStatus};
use engine::{FieldError, Plan};

use std::sync::Arc;

use sqlx::SqlitePool;

use super::history::History;
use super::launch::Launch;
use super::now_ms;
use crate::error::internal;
use crate::plan_file;
use crate::store;

/// The web-messaging guest flow example, the second starter plan.
const WEB_MESSAGING_EXAMPLE: &str = include_str!("../../../examples/web-messaging-guests.json");

/// Largest plan file accepted.
pub(crate) const MAX_PLAN_TEXT: usize = 256 * 1024;

fn field(field: &str, message: String) -> ApiError {
    ApiError::Validation(vec![FieldError {
        field: field.into(),
        message,
    }])
}

/// The saved-plans service (handles only: cheap to clone).
#[derive(Clone)]
pub struct Plans {
    pub(super) pool: SqlitePool,
    /// A plan's page lists its runs.
    pub(super) history: History,
    /// Plans are validated as runs are, and run.
    pub(super) launch: Arc<Launch>,
}

impl Plans {
    pub async fn list_plans(&self) -> Result<Vec<PlanListItem>, ApiError> {
        let rows = store::list_plans(&self.pool)
            .await
            .map_err(|e| internal("list_plans", e))?;
        Ok(rows
            .into_iter()
            .map(|r| {
                // As every page shows a plan: redacted.
                let target = serde_json::from_str::<Plan>(&r.plan.plan_json)
                    .map(|p| p.redacted().target)
                    .unwrap_or_default();
                PlanListItem {
                    id: r.plan.plan_id,
                    name: r.plan.name,
                    target,
                    created_at_ms: r.plan.created_at,
                    updated_at_ms: r.plan.updated_at,
                    runs: r.runs,
                    last_run_at_ms: r.last_run_at,
                    last_status: r.last_status.as_deref().and_then(RunStatus::parse),
                    baseline_run_id: r.plan.baseline_run_id,
                }
            })
            .collect())
    }

    async fn plan_row(&self, id: &str) -> Result<(store::PlanRow, Plan), ApiError> {
        let row = store::get_plan(&self.pool, id)
            .await
            .map_err(|e| internal("get_plan", e))?
            .ok_or_else(|| ApiError::NotFound(format!("plan {id}")))?;
        let plan = serde_json::from_str(&row.plan_json).map_err(|e| internal("stored plan", e))?;
        Ok((row, plan))
    }

    pub async fn get_plan(&self, id: &str) -> Result<PlanDetail, ApiError> {
        let (row, plan) = self.plan_row(id).await?;
        let plan = plan.redacted();
        let toml = plan_file::to_toml(&plan).map_err(|e| internal("plan toml", e))?;
        let runs = self
            .history
            .matching_runs(&RunQuery {
                plan: Some(id.to_string()),
                per_page: Some(20),
                ..Default::default()
            })
            .await?;
        Ok(PlanDetail {
            id: row.plan_id,
            name: row.name,
            plan,
            toml,
            created_at_ms: row.created_at,
            updated_at_ms: row.updated_at,
            baseline_run_id: row.baseline_run_id,
            runs,
        })
    }

    /// The plan as a commented TOML file, with the values it holds: a value hidden on
    /// the page is never written into the file as a placeholder, so the file runs as
    /// the page runs it (behind the access token, like the plan itself).
    pub async fn get_plan_toml(&self, id: &str) -> Result<(String, String), ApiError> {
        let (row, plan) = self.plan_row(id).await?;
        let toml = plan_file::to_toml(&plan).map_err(|e| internal("plan toml", e))?;
        Ok((row.name, toml))
    }

    /// Creates or replaces a saved plan from TOML/JSON text. Redacted secrets keep the
    /// stored value; the plan must validate before anything is written.
    pub async fn save_plan(&self, id: Option<&str>, text: &str) -> Result<PlanSaved, ApiError> {
        if text.len() > MAX_PLAN_TEXT {
            return Err(field(
                "text",
                format!("{} bytes; the limit is {MAX_PLAN_TEXT}", text.len()),
            ));
        }
        let mut plan = plan_file::parse(text).map_err(|e| field("text", e))?;
        let existing = match id {
            Some(id) => Some(self.plan_row(id).await?),
            None => None,
        };
        if let Some((_, stored)) = &existing {
            plan.restore_secrets(stored);
        }
        self.launch.validate(&plan).map_err(ApiError::Validation)?;
        let json = serde_json::to_string(&plan).map_err(|e| internal("encode plan", e))?;
        let now = now_ms();
        let id = match existing {
            Some((row, _)) => {
                store::update_plan(&self.pool, &row.plan_id, &plan.name, &json, now)
                    .await
                    .map_err(|e| internal("update_plan", e))?;
                row.plan_id
            }
            None => {
                let id = uuid::Uuid::new_v4().simple().to_string();
                store::insert_plan(&self.pool, &id, &plan.name, &json, now)
                    .await
                    .map_err(|e| internal("insert_plan", e))?;
                id
            }
        };
        Ok(PlanSaved {
            url: format!("/plans/{id}"),
            id,
        })
    }

    pub async fn duplicate_plan(&self, id: &str) -> Result<PlanSaved, ApiError> {
        let (row, mut plan) = self.plan_row(id).await?;
        plan.name = format!("{} (copy)", row.name);
        let json = serde_json::to_string(&plan).map_err(|e| internal("encode plan", e))?;
        let new_id = uuid::Uuid::new_v4().simple().to_string();
        store::insert_plan(&self.pool, &new_id, &plan.name, &json, now_ms())
            .await
            .map_err(|e| internal("insert_plan", e))?;
        Ok(PlanSaved {
            url: format!("/plans/{new_id}"),
            id: new_id,
        })
    }

    pub async fn delete_plan(&self, id: &str) -> Result<(), ApiError> {
        let found = store::delete_plan(&self.pool, id)
            .await
            .map_err(|e| internal("delete_plan", e))?;
        found
            .then_some(())
            .ok_or_else(|| ApiError::NotFound(format!("plan {id}")))
    }

    pub async fn run_plan(&self, id: &str) -> Result<Launched, ApiError> {
        let (row, plan) = self.plan_row(id).await?;
        self.launch.launch(plan, Some(&row.plan_id)).await
    }

    /// Saves a run's plan as a new saved plan and links the run to it. Secrets that
    /// were typed in stay redacted: the plan page asks for them (or an env reference).
    pub async fn save_run_as_plan(&self, run_id: &str) -> Result<PlanSaved, ApiError> {
        let row = store::get_run(&self.pool, run_id)
            .await
            .map_err(|e| internal("get_run", e))?
            .ok_or_else(|| ApiError::NotFound(format!("run {run_id}")))?;
        if let Some(pid) = &row.plan_id {
            if store::get_plan(&self.pool, pid)
                .await
                .map_err(|e| internal("get_plan", e))?
                .is_some()
            {
                return Ok(PlanSaved {
                    url: format!("/plans/{pid}"),
                    id: pid.clone(),
                });
            }
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        store::insert_plan(&self.pool, &id, &row.name, &row.plan_json, now_ms())
            .await
            .map_err(|e| internal("insert_plan", e))?;
        store::set_run_plan(&self.pool, run_id, &id)
            .await
            .map_err(|e| internal("set_run_plan", e))?;
        Ok(PlanSaved {
            url: format!("/plans/{id}"),
            id,
        })
    }

    pub async fn set_baseline(&self, run_id: &str, on: bool) -> Result<(), ApiError> {
        let row = store::get_run(&self.pool, run_id)
            .await
            .map_err(|e| internal("get_run", e))?
            .ok_or_else(|| ApiError::NotFound(format!("run {run_id}")))?;
        let Some(pid) = row.plan_id else {
            return Err(ApiError::Conflict(format!(
                "run {run_id} is not from a saved plan; save it as a plan first"
            )));
        };
        if on && row.summary_json.is_none() {
            return Err(ApiError::Conflict(format!(
                "run {run_id} is {} and has no results; only a finished run can be a baseline",
                row.status
            )));
        }
        store::set_baseline(&self.pool, &pid, on.then_some(run_id))
            .await
            .map_err(|e| internal("set_baseline", e))
    }

    /// On a first start (no runs, no plans) with the embedded sandbox: saves the
    /// commented starter plan (`socketswarm plan init`) and the web-messaging example
    /// (`examples/web-messaging-guests.json`) aimed at it, so the Plans page has plans
    /// ready to run.
    pub async fn seed_starter_plan(&self) -> Result<bool, ApiError> {
        let Some(sandbox) = self.launch.sandbox else {
            return Ok(false);
        };
        if !store::is_empty(&self.pool)
            .await
            .map_err(|e| internal("is_empty", e))?
        {
            return Ok(false);
        }
        let text = crate::cli::TEMPLATE
            .replace("ws://127.0.0.1:9001/echo", &format!("ws://{sandbox}/echo"))
            .replace("name = \"smoke\"", "name = \"sandbox smoke (starter)\"");
        self.save_plan(None, &text).await?;
        // The second: the web-messaging guest flow (issue 14), 500 guests against the
        // sandbox's deployment capped at 150.
        let guests =
            WEB_MESSAGING_EXAMPLE.replace("ws://127.0.0.1:9001/", &format!("ws://{sandbox}/"));
        self.save_plan(None, &guests).await?;
        Ok(true)
    }
}
