//! `Launch`: what a plan must pass on this server (environment, limits, size against
//! this process and its agents, the embedded sandbox, the target allowlist), starting
//! a run (stored with its plan redacted, handed to the manager with the real one),
//! cancelling one, and the "New run" form's defaults. Imports (`import.rs`) also come
//! in through here. Typed-in secrets live only in memory, for the run.

use std::net::SocketAddr;

use app::api::{ApiError, FormDefaults, Launched, RunEnv, RunStatus};
use engine::plan::{Agents, TargetUrl};
use engine::{FieldError, Limits, Plan};
use sqlx::SqlitePool;

use super::manager::{CancelOutcome, ManagerHandle, Placement};
use super::now_ms;
use crate::error::internal;
use crate::store;

/// Launching and stopping runs, and what a plan must pass first.
pub struct Launch {
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

impl Launch {
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
    pub fn validate(&self, plan: &Plan) -> Result<(), Vec<FieldError>> {
        self.env_allow.check_plan(plan)?;
        plan.validate(&self.limits)
    }

    /// Checks that only apply on this server: the embedded sandbox shares our
    /// open-file limit, so a run against it may hold only half as many sockets.
    pub(super) fn check_local(&self, plan: &Plan) -> Result<(), ApiError> {
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

    /// Validates, stores the plan (secrets redacted) and hands the real plan to the
    /// manager: typed-in secrets live only in memory, for this run.
    pub(super) async fn launch(
        &self,
        mut plan: Plan,
        plan_id: Option<&str>,
    ) -> Result<Launched, ApiError> {
        // A steered run's plan (run again) already has its changes in `stages`; its
        // `steering` list is that run's history, not this one's (see `super::steer`).
        plan.steering.clear();
        self.split(&mut plan)?;
        self.validate(&plan).map_err(ApiError::Validation)?;
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

    /// Launches a plan as it is (no saved plan).
    pub async fn launch_run(&self, plan: Plan) -> Result<Launched, ApiError> {
        self.launch(plan, None).await
    }

    /// Cancels a queued or running run (404 unknown, 409 already over).
    pub async fn cancel_run(&self, id: &str) -> Result<(), ApiError> {
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
    }

    /// Defaults for the "New run" form: the embedded sandbox as the target, the limits.
    pub fn get_form_defaults(&self) -> FormDefaults {
        FormDefaults {
            target: self
                .sandbox
                .map(|a| format!("ws://{a}/echo"))
                .unwrap_or_else(|| "ws://127.0.0.1:9001/echo".into()),
            limits: self.limits,
        }
    }
}
