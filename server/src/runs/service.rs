//! `Runs`: the run services together, and the one implementation of
//! `app::api::RunService`. The JSON API handlers and the pages' server fns both reach
//! the same services through it, so validation, storage and launch happen the same way
//! whichever door a run comes in by. Each operation has one name from the server fn
//! (`app/src/api.rs`, `app/src/api/history.rs`) to the trait method, the service method
//! and the route handler (`server/src/http/*.rs`); `RunService`'s `launch` and
//! `validate` are the two exceptions, both serving `launch_run`.
//!
//! - [`Reads`]   (`reads.rs`)   one run's detail, ticks and comparison facts.
//! - [`Launch`]  (`launch.rs`)  validate, launch, cancel, form defaults (and `import.rs`).
//! - [`History`] (`history.rs`) the runs list, tags and notes, delete, run again,
//!   compare, share links.
//! - [`Plans`]   (`plans.rs`)   saved plans and baselines.
//!
//! To add an operation: the server fn and the `RunService` method (named alike), the
//! method on the service it belongs to, a one-line delegation below, and (for the JSON
//! API) a handler of the same name in `http/runs.rs` or `http/history.rs`.

use std::net::SocketAddr;
use std::sync::Arc;

use app::api::{
    ApiError, BoxFuture, CompareView, FormDefaults, Launched, PlanDetail, PlanListItem, PlanSaved,
    RunDetail, RunEnv, RunListItem, RunMeta, RunPage, RunQuery, RunService, ShareKind, ShareLink,
    SharedView,
};
use engine::{FieldError, Limits, Plan};
use sqlx::SqlitePool;

use super::history::History;
use super::launch::Launch;
use super::manager::ManagerHandle;
use super::plans::Plans;
use super::reads::Reads;

/// The run services, each a handle over the same pool (and manager, for `launch`).
pub struct Runs {
    /// One run as its page shows it.
    pub reads: Reads,
    /// Validate, launch, cancel, import.
    pub launch: Arc<Launch>,
    /// The runs list, tags, compare, share links.
    pub history: History,
    /// Saved plans and baselines.
    pub plans: Plans,
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
    /// Where colleagues reach this server (`--public-url`): share links are built on it.
    pub public_url: Option<url::Url>,
    /// The server listens on a loopback address only.
    pub loopback_only: bool,
}

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
        let launch = Arc::new(Launch {
            pool: pool.clone(),
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
        });
        let reads = Reads::new(pool.clone());
        let history = History {
            pool: pool.clone(),
            reads: reads.clone(),
            launch: launch.clone(),
            share_base: cfg
                .public_url
                .as_ref()
                .map(|u| Arc::from(u.as_str().trim_end_matches('/'))),
            local_only: cfg.loopback_only && cfg.public_url.is_none(),
        };
        let plans = Plans {
            pool,
            history: history.clone(),
            launch: launch.clone(),
        };
        Arc::new(Runs {
            reads,
            launch,
            history,
            plans,
        })
    }
}

impl RunService for Runs {
    fn list_runs(&self) -> BoxFuture<'_, Result<Vec<RunListItem>, ApiError>> {
        Box::pin(self.history.list_runs())
    }
    fn get_run<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<RunDetail, ApiError>> {
        Box::pin(self.reads.get_run(id))
    }
    fn launch(&self, plan: Plan) -> BoxFuture<'_, Result<Launched, ApiError>> {
        Box::pin(self.launch.launch_run(plan))
    }
    fn cancel_run<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(self.launch.cancel_run(id))
    }
    fn steer_run<'a>(
        &'a self,
        id: &'a str,
        req: app::api::SteerRequest,
    ) -> BoxFuture<'a, Result<engine::steer::SteerEvent, ApiError>> {
        Box::pin(self.launch.steer_run(id, req))
    }
    fn validate(&self, plan: &Plan) -> Result<(), Vec<FieldError>> {
        self.launch.validate(plan)
    }
    fn get_form_defaults(&self) -> FormDefaults {
        self.launch.get_form_defaults()
    }

    fn search_runs(&self, q: RunQuery) -> BoxFuture<'_, Result<RunPage, ApiError>> {
        Box::pin(self.history.search_runs(q))
    }
    fn delete_run<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(self.history.delete_run(id))
    }
    fn update_run_meta<'a>(
        &'a self,
        id: &'a str,
        meta: RunMeta,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(self.history.update_run_meta(id, meta))
    }
    fn rerun<'a>(
        &'a self,
        id: &'a str,
        req: app::api::RerunRequest,
    ) -> BoxFuture<'a, Result<Launched, ApiError>> {
        Box::pin(self.history.rerun(id, req))
    }
    fn compare_runs<'a>(
        &'a self,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<CompareView, ApiError>> {
        Box::pin(self.history.compare_runs(ids))
    }
    fn create_share<'a>(
        &'a self,
        kind: ShareKind,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<ShareLink, ApiError>> {
        Box::pin(self.history.create_share(kind, ids))
    }
    fn get_shared<'a>(&'a self, share_id: &'a str) -> BoxFuture<'a, Result<SharedView, ApiError>> {
        Box::pin(self.history.get_shared(share_id))
    }
    fn revoke_share<'a>(&'a self, share_id: &'a str) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(self.history.revoke_share(share_id))
    }

    fn list_plans(&self) -> BoxFuture<'_, Result<Vec<PlanListItem>, ApiError>> {
        Box::pin(self.plans.list_plans())
    }
    fn get_plan<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<PlanDetail, ApiError>> {
        Box::pin(self.plans.get_plan(id))
    }
    fn save_plan<'a>(
        &'a self,
        id: Option<&'a str>,
        text: &'a str,
    ) -> BoxFuture<'a, Result<PlanSaved, ApiError>> {
        Box::pin(self.plans.save_plan(id, text))
    }
    fn duplicate_plan<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<PlanSaved, ApiError>> {
        Box::pin(self.plans.duplicate_plan(id))
    }
    fn delete_plan<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(self.plans.delete_plan(id))
    }
    fn run_plan<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Launched, ApiError>> {
        Box::pin(self.plans.run_plan(id))
    }
    fn save_run_as_plan<'a>(
        &'a self,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<PlanSaved, ApiError>> {
        Box::pin(self.plans.save_run_as_plan(run_id))
    }
    fn set_baseline<'a>(
        &'a self,
        run_id: &'a str,
        on: bool,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(self.plans.set_baseline(run_id, on))
    }
}
