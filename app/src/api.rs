//! Wire types shared by the JSON API, the server fns and the pages, plus the
//! `RunService` seam: the server implements it once, and both `/api/...` handlers and
//! the server fns below call it, so the pages and the API can never disagree.

use std::fmt;

pub mod history;
pub mod steer;
pub use history::*;
pub use steer::*;

use engine::{FieldError, Limits, Plan, Series, Snapshot, Summary};
use leptos::prelude::*;
use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

/// Lifecycle of a run. Finished states never change again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Completed,
    Cancelled,
    Failed,
    /// The server stopped (crash, kill -9) while the run was live.
    Interrupted,
}

impl RunStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::Cancelled,
        RunStatus::Failed,
        RunStatus::Interrupted,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }
    pub fn parse(s: &str) -> Option<RunStatus> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
    /// The status a run ends in: the one mapping from the engine's `EndReason` (a
    /// run's summary without one ran to its end).
    pub fn ended(reason: Option<engine::report::EndReason>) -> RunStatus {
        use engine::report::EndReason;
        match reason {
            None | Some(EndReason::Completed) => RunStatus::Completed,
            Some(EndReason::Cancelled | EndReason::ThresholdFailed) => RunStatus::Cancelled,
            Some(EndReason::AgentLost) => RunStatus::Failed,
        }
    }
    /// Queued or running.
    pub fn is_live(&self) -> bool {
        matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

/// One row of the runs list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunListItem {
    pub id: String,
    pub name: String,
    pub target: String,
    pub status: RunStatus,
    pub created_at_ms: i64,
    pub duration_ms: Option<i64>,
    pub peak_open: Option<i64>,
    pub opened: Option<i64>,
    pub failed: Option<i64>,
    /// The saved plan it came from, if any.
    #[serde(default)]
    pub plan_id: Option<String>,
    #[serde(default)]
    pub plan_name: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub note: String,
    /// A finished run's verdict: the kind key (`concurrency_cap`, `none`, …) and its
    /// words ("concurrency cap ≈ 150"); absent while live or not yet computed.
    #[serde(default)]
    pub verdict: Option<String>,
    #[serde(default)]
    pub verdict_text: Option<String>,
}

/// Where a run ran: the process that drove it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunEnv {
    pub version: String,
    pub host: String,
    pub os: String,
    pub cpus: u32,
    /// Open-file limit of the process (sockets it could hold).
    pub nofile: u64,
}

/// Everything about one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDetail {
    pub id: String,
    pub name: String,
    pub status: RunStatus,
    pub plan: Plan,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    /// Why the run failed to start, when `status` is `failed`.
    pub error: Option<String>,
    /// Present once the run finished.
    pub summary: Option<Summary>,
    /// The latest stored tick (live runs show this until the stream takes over).
    pub last: Option<Snapshot>,
    /// Every stored tick as chart columns.
    pub series: Series,
    /// Which limit the run hit, with its evidence (from the series and summary).
    pub diagnosis: Option<engine::diagnose::Diagnosis>,
    #[serde(default)]
    pub plan_id: Option<String>,
    #[serde(default)]
    pub plan_name: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub note: String,
    #[serde(default)]
    pub env: Option<RunEnv>,
    /// Whole-run latency distributions (finished runs).
    #[serde(default)]
    pub histograms: Vec<engine::compare::HistogramView>,
    /// This run against its plan's baseline (when it has one and is not it).
    #[serde(default)]
    pub baseline: Option<history::BaselineView>,
    /// This run is its plan's baseline.
    #[serde(default)]
    pub is_baseline: bool,
    /// Typed-in secrets its plan did not keep (and its saved plan, if any, cannot give
    /// back): what "Run again" asks for (issue 16 item 5).
    #[serde(default)]
    pub missing_secrets: Vec<engine::secrets::MissingSecret>,
}

/// Answer to a launch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Launched {
    pub id: String,
    pub url: String,
    pub status: RunStatus,
}

/// What the "New run" form starts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FormDefaults {
    /// The embedded sandbox's echo URL, when it runs.
    pub target: String,
    pub limits: Limits,
}

/// Errors the pages and the API can show. Never carries internal details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ApiError {
    /// The plan or a form field is invalid; every problem names its field.
    Validation(Vec<FieldError>),
    /// The body could not be read (malformed JSON, wrong type); says where.
    BadRequest(String),
    NotFound(String),
    /// The request conflicts with the run's state (e.g. cancelling a finished run).
    Conflict(String),
    /// A limit on how much may wait was reached (e.g. the run queue is full); says which.
    /// Trying again later can work.
    Busy(String),
    /// Something failed on our side; details are in the server log.
    Internal,
    /// Transport-level server fn failure (browser side).
    ServerFn(String),
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Validation(errs) => {
                let parts: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
                write!(f, "invalid plan: {}", parts.join("; "))
            }
            ApiError::BadRequest(m) => write!(f, "bad request: {m}"),
            ApiError::NotFound(what) => write!(f, "{what} not found"),
            ApiError::Conflict(m) | ApiError::Busy(m) => write!(f, "{m}"),
            ApiError::Internal => write!(f, "internal error (see the server log)"),
            ApiError::ServerFn(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// The HTTP status that answers it: 422, 400, 404, 409, 429, else 500.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::Validation(_) => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::NotFound(_) => 404,
            ApiError::Conflict(_) => 409,
            ApiError::Busy(_) => 429,
            ApiError::Internal | ApiError::ServerFn(_) => 500,
        }
    }
}

impl FromServerFnError for ApiError {
    type Encoder = JsonEncoding;
    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            // The request's arguments did not parse: the caller's mistake.
            ServerFnErrorErr::Args(m) => ApiError::BadRequest(format!("arguments: {m}")),
            ServerFnErrorErr::MissingArg(m) => {
                ApiError::BadRequest(format!("missing argument: {m}"))
            }
            other => ApiError::ServerFn(other.to_string()),
        }
    }

    /// A server fn's error answer, encoded. On the server this is the one place every
    /// server fn error passes through, so it also sets the answer's status (422 for a bad
    /// plan, 404 for an unknown id …) instead of server_fn's blanket 500, which logged
    /// bad input as a server failure.
    fn ser(&self) -> leptos::server_fn::Bytes {
        #[cfg(feature = "ssr")]
        service::set_error_status(self.status());
        <JsonEncoding as leptos::server_fn::Encodes<ApiError>>::encode(self)
            .unwrap_or_else(|_| leptos::server_fn::Bytes::from_static(b"\"Internal\""))
    }
}

#[cfg(feature = "ssr")]
pub use service::*;

#[cfg(feature = "ssr")]
mod service {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;

    /// A boxed, sendable future (keeps `RunService` object-safe).
    pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

    /// What the server offers the pages and the API. Implemented in `server::runs`.
    pub trait RunService: Send + Sync + 'static {
        fn list_runs(&self) -> BoxFuture<'_, Result<Vec<RunListItem>, ApiError>>;
        fn get_run<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<RunDetail, ApiError>>;
        fn launch(&self, plan: Plan) -> BoxFuture<'_, Result<Launched, ApiError>>;
        fn cancel_run<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ApiError>>;
        /// One steering change of a running run (see `steer`).
        fn steer_run<'a>(
            &'a self,
            id: &'a str,
            req: SteerRequest,
        ) -> BoxFuture<'a, Result<engine::steer::SteerEvent, ApiError>>;
        /// Every check a plan must pass on this server (the environment it may read,
        /// then its fields against the limits).
        fn validate(&self, plan: &Plan) -> Result<(), Vec<FieldError>>;
        fn get_form_defaults(&self) -> FormDefaults;

        // History (see `history`): the filtered list, run metadata, saved plans,
        // baselines, comparisons and share links.
        fn search_runs(&self, q: RunQuery) -> BoxFuture<'_, Result<RunPage, ApiError>>;
        fn delete_run<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ApiError>>;
        fn update_run_meta<'a>(
            &'a self,
            id: &'a str,
            meta: RunMeta,
        ) -> BoxFuture<'a, Result<(), ApiError>>;
        fn rerun<'a>(
            &'a self,
            id: &'a str,
            req: RerunRequest,
        ) -> BoxFuture<'a, Result<Launched, ApiError>>;
        fn list_plans(&self) -> BoxFuture<'_, Result<Vec<PlanListItem>, ApiError>>;
        fn get_plan<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<PlanDetail, ApiError>>;
        /// Creates (`id` None) or replaces a saved plan from TOML or JSON text.
        fn save_plan<'a>(
            &'a self,
            id: Option<&'a str>,
            text: &'a str,
        ) -> BoxFuture<'a, Result<PlanSaved, ApiError>>;
        fn duplicate_plan<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<PlanSaved, ApiError>>;
        fn delete_plan<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ApiError>>;
        fn run_plan<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Launched, ApiError>>;
        /// Saves a run's plan as a new saved plan (and links the run to it).
        fn save_run_as_plan<'a>(
            &'a self,
            run_id: &'a str,
        ) -> BoxFuture<'a, Result<PlanSaved, ApiError>>;
        /// Makes a run its plan's baseline (`on`), or clears it.
        fn set_baseline<'a>(
            &'a self,
            run_id: &'a str,
            on: bool,
        ) -> BoxFuture<'a, Result<(), ApiError>>;
        fn compare_runs<'a>(
            &'a self,
            ids: &'a [String],
        ) -> BoxFuture<'a, Result<CompareView, ApiError>>;
        fn create_share<'a>(
            &'a self,
            kind: ShareKind,
            ids: &'a [String],
        ) -> BoxFuture<'a, Result<ShareLink, ApiError>>;
        fn get_shared<'a>(
            &'a self,
            share_id: &'a str,
        ) -> BoxFuture<'a, Result<SharedView, ApiError>>;
        /// Revokes a share link.
        fn revoke_share<'a>(&'a self, share_id: &'a str) -> BoxFuture<'a, Result<(), ApiError>>;
    }

    /// The handle provided to server fns through Leptos context.
    pub type Service = Arc<dyn RunService>;

    pub(crate) fn service() -> Result<Service, ApiError> {
        use_context::<Service>().ok_or(ApiError::Internal)
    }

    /// Sets the status of the answer being made (a page or a server fn's).
    pub(crate) fn set_status(status: u16) {
        if let (Some(resp), Ok(status)) = (
            use_context::<leptos_axum::ResponseOptions>(),
            http::StatusCode::from_u16(status),
        ) {
            resp.set_status(status);
        }
    }

    /// Sets the status of a server fn's error answer. A plain form post (no JavaScript)
    /// keeps Leptos's redirect back to the form instead.
    pub(super) fn set_error_status(status: u16) {
        let form_post = use_context::<http::request::Parts>().is_some_and(|req| {
            req.method == http::Method::POST
                && req
                    .headers
                    .get(http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("text/html"))
        });
        if !form_post {
            set_status(status);
        }
    }
}

/// Runs, newest first.
#[server]
pub async fn list_runs() -> Result<Vec<RunListItem>, ApiError> {
    service()?.list_runs().await
}

/// One run with its stored summary or latest tick.
#[server]
pub async fn get_run(id: String) -> Result<RunDetail, ApiError> {
    service()?.get_run(&id).await
}

/// Defaults for the "New run" form.
#[server]
pub async fn get_form_defaults() -> Result<FormDefaults, ApiError> {
    Ok(service()?.get_form_defaults())
}

/// Launches a run from the "New run" form, then redirects to its page.
#[server]
pub async fn launch_run(form: crate::form::RunForm) -> Result<Launched, ApiError> {
    let svc = service()?;
    // Every problem at once: what the form could not read and what the service's
    // validation says about the rest, on form fields (issue 16 item 8).
    let plan = form
        .to_valid_plan(|plan| svc.validate(plan))
        .map_err(ApiError::Validation)?;
    let launched = svc.launch(plan).await?;
    leptos_axum::redirect(&launched.url);
    Ok(launched)
}

/// Launches a run from a whole plan written as JSON (everything the API takes: scripts,
/// tokens, probes), then redirects to its page.
#[server]
pub async fn launch_plan_json(plan_json: String) -> Result<Launched, ApiError> {
    let svc = service()?;
    let plan: Plan =
        serde_json::from_str(&plan_json).map_err(|e| ApiError::BadRequest(format!("plan: {e}")))?;
    let launched = svc.launch(plan).await?;
    leptos_axum::redirect(&launched.url);
    Ok(launched)
}

/// Cancels a queued or running run.
#[server]
pub async fn cancel_run(id: String) -> Result<(), ApiError> {
    service()?.cancel_run(&id).await?;
    leptos_axum::redirect(&format!("/runs/{id}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::RunStatus;
    use engine::report::EndReason;

    #[test]
    fn every_end_reason_has_one_status() {
        assert_eq!(RunStatus::ended(None), RunStatus::Completed);
        assert_eq!(
            RunStatus::ended(Some(EndReason::Completed)),
            RunStatus::Completed
        );
        assert_eq!(
            RunStatus::ended(Some(EndReason::Cancelled)),
            RunStatus::Cancelled
        );
        assert_eq!(
            RunStatus::ended(Some(EndReason::ThresholdFailed)),
            RunStatus::Cancelled
        );
        assert_eq!(
            RunStatus::ended(Some(EndReason::AgentLost)),
            RunStatus::Failed
        );
    }
}
