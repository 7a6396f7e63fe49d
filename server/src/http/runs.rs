//! `/api/runs`: launch, search, read, cancel, steer, delete, import, export, report; `/api/config`
//! (the form defaults). Handlers carry the name of the server fn and service method
//! of their operation (`launch_run` -> `Launch::launch_run`). Bodies are read as bytes and parsed here so
//! a malformed plan gets a 400 that says where (`unknown field `conections` at line 1
//! column 80`), not a generic rejection. Each route that takes a body has its own
//! limit, applied while the body is read (`limits::read_body`): a launch about 2 MB,
//! an import `--max-import-bytes`.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use app::api::ApiError;
use engine::Plan;

use super::limits::{read_body, Downloader};
use super::AppState;
use crate::error::{internal, AppError};
use crate::runs::blocking;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/runs", get(search_runs).post(launch_run))
        .route("/api/runs/{id}", get(get_run).delete(delete_run))
        .route("/api/runs/{id}/cancel", post(cancel_run))
        .route("/api/runs/{id}/steer", post(steer_run))
        .route("/api/runs/{id}/report.html", get(get_report))
        // A long run's export is tens of MB: its own limit, `--max-import-bytes`.
        .route("/api/runs/import", post(import_run))
        .route("/api/runs/{id}/export.json", get(get_export))
        .route("/api/config", get(get_form_defaults))
        .route(
            "/api/health",
            get(|| async { Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})) }),
        )
}

/// Largest accepted plan body, unless the message limit needs more.
const MAX_BODY: usize = 256 * 1024;

/// Launches a plan. Its body is refused (413) once it passes room for the largest
/// message a plan may send (`--max-message-bytes`) twice plus 64 KiB, while it is read:
/// a launch never buffers more than that (it used to buffer up to 64 MiB).
async fn launch_run(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, AppError> {
    let max = MAX_BODY.max(2 * st.runs.launch.limits.max_message_bytes + 64 * 1024);
    let body = read_body(&headers, body, max).await?;
    let plan: Plan =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("plan: {e}")))?;
    let launched = st.runs.launch.launch_run(plan).await?;
    Ok((StatusCode::CREATED, Json(launched)))
}

/// Runs matching `?plan=&target=&status=&tag=&q=&from=&to=&sort=&dir=&page=&per_page=`,
/// as an array; `X-Total-Count`, `X-Page` and `X-Pages` say where the page sits.
async fn search_runs(
    State(st): State<AppState>,
    query: Result<
        axum::extract::Query<app::api::RunQuery>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<impl IntoResponse, AppError> {
    let axum::extract::Query(q) =
        query.map_err(|e| ApiError::BadRequest(format!("query: {}", e.body_text())))?;
    let page = st.runs.history.search_runs(q).await?;
    let headers = [
        ("x-total-count", page.total.to_string()),
        ("x-page", page.page.to_string()),
        ("x-pages", page.pages.to_string()),
    ];
    Ok((headers, Json(page.runs)))
}

async fn get_run(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(st.runs.reads.get_run(&id).await?))
}

/// Deletes a finished run with its ticks, tags and share links (409 while live).
pub(super) async fn delete_run(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    st.runs.history.delete_run(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn cancel_run(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    st.runs.launch.cancel_run(&id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "status": "cancelling"})),
    ))
}

/// Steers a running run: one change (`{"level":N}`, `{"rate":R}`, `{"extend_s":S}` or
/// `{"end_hold":true}`); answers with the recorded event. The access guard treats it as
/// every other state-changing request (Host, CSRF, token), as `cancel`.
async fn steer_run(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, AppError> {
    let body = read_body(&headers, body, 4096).await?;
    let req: app::api::SteerRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("steer: {e}")))?;
    let event = st.runs.launch.steer_run(&id, req).await?;
    Ok(Json(
        json!({"id": id, "event": event, "change": event.describe()}),
    ))
}

/// Stores a run exported by `socketswarm run --out json=...` (or uploaded with
/// `--server`); the body is read up to `--max-import-bytes`.
async fn import_run(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, AppError> {
    let body = read_body(&headers, body, st.limits.max_import_bytes).await?;
    let export: crate::export::ExportDoc =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("export: {e}")))?;
    drop(body);
    let launched = st.runs.launch.import_run(export).await?;
    Ok((StatusCode::CREATED, Json(launched)))
}

/// A finished run with what its export and report need.
struct Finished {
    run: app::api::RunDetail,
    summary: engine::Summary,
    diagnosis: engine::diagnose::Diagnosis,
    thresholds: Vec<engine::thresholds::ThresholdResult>,
}

/// The run if it has finished (409 while it is live or if it never ran).
fn finished(run: app::api::RunDetail) -> Result<Finished, AppError> {
    let Some(summary) = run.summary.clone() else {
        return Err(ApiError::Conflict(format!(
            "run {} is {} and has no summary yet",
            run.id,
            run.status.as_str()
        ))
        .into());
    };
    // `detail` diagnoses every run that has a summary.
    let diagnosis = run.diagnosis.clone().unwrap_or_default();
    let thresholds = engine::thresholds::evaluate(&run.plan.thresholds, &summary);
    Ok(Finished {
        run,
        summary,
        diagnosis,
        thresholds,
    })
}

/// The run as the versioned JSON export (the same document `socketswarm run --out json=`
/// writes, and `/api/runs/import` reads).
async fn get_export(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    export_download(&st, &id, Downloader::Owner).await
}

/// The JSON export of a finished run, in a download slot of `who`'s: the document
/// without its ticks is built off the async workers, then the ticks are read, replayed
/// and written a page at a time as the client reads (`export::ticks_after_head`): a
/// download holds one page of a run, however long the run.
pub(super) async fn export_download(
    st: &AppState,
    id: &str,
    who: Downloader,
) -> Result<Response, AppError> {
    let slot = st.limits.download_slot(who).await?;
    let f = finished(st.runs.reads.detail(id).await?)?;
    let head = blocking(move || encode_export_head(f))
        .await?
        .map_err(|e| internal("encode export", e))?;
    let body = crate::export::streamed(head, st.pool.clone(), id.to_string());
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        slot.stream(body),
    )
        .into_response())
}

/// The export document of `f` up to its ticks (`export::ExportDoc::head`).
fn encode_export_head(f: Finished) -> serde_json::Result<Vec<u8>> {
    crate::export::ExportDoc::new(
        &f.run.plan,
        f.run.status,
        f.summary,
        f.diagnosis,
        f.thresholds,
        f.run.series,
        Vec::new(),
    )
    .head()
}

/// The self-contained HTML report of a finished run, as a download.
async fn get_report(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    report_download(&st, &id, Downloader::Owner).await
}

/// The HTML report of a finished run as an attachment, in a download slot of `who`'s;
/// its charts drawn from the series thinned as a page's are.
pub(super) async fn report_download(
    st: &AppState,
    id: &str,
    who: Downloader,
) -> Result<Response, AppError> {
    let slot = st.limits.download_slot(who).await?;
    let mut f = finished(st.runs.reads.detail(id).await?)?;
    f.run.series = f.run.series.thinned(engine::report::MAX_VIEW_POINTS);
    let html = blocking(move || report_html(&f)).await?;
    let disposition = format!("attachment; filename=\"socketswarm-{id}.html\"");
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (
                header::CONTENT_SECURITY_POLICY,
                super::CSP_REPORT.to_string(),
            ),
        ],
        slot.body(html.into_bytes()),
    )
        .into_response())
}

/// The HTML report of `f`.
fn report_html(f: &Finished) -> String {
    let input = crate::report::ReportInput {
        plan: &f.run.plan,
        status: f.run.status,
        summary: &f.summary,
        diagnosis: &f.diagnosis,
        series: &f.run.series,
        thresholds: &f.thresholds,
        created_at_ms: Some(f.run.created_at_ms),
        env: f
            .run
            .env
            .clone()
            .map(|env| app::components::run_sections::EnvSection {
                env,
                created: f.run.created_at_ms,
                started: f.run.started_at_ms,
                finished: f.run.finished_at_ms,
            }),
    };
    crate::report::html(&input)
}

async fn get_form_defaults(State(st): State<AppState>) -> impl IntoResponse {
    Json(st.runs.launch.get_form_defaults())
}
