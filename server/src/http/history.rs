//! `/api/...` for the history workflow (saved plans, run tags/notes, delete, run again,
//! baselines, compare, share links, CSV) and the read-only `/share/{id}/...` downloads.
//!
//! Share downloads resolve the share id to its run here; nothing under `/share/` takes
//! a run id, so a share link reaches exactly what it names.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use app::api::{parse_ids, ApiError, RunMeta, ShareKind};

use super::limits::Downloader;
use super::runs::{delete_run, export_download, report_download};
use super::AppState;
use crate::error::AppError;
use crate::runs::blocking;
use crate::runs::plans::MAX_PLAN_TEXT;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/runs/{id}/meta",
            get(get_run_meta)
                .put(update_run_meta)
                .patch(update_run_meta),
        )
        // The same as `DELETE /api/runs/{id}`, for clients that only POST.
        .route("/api/runs/{id}/delete", post(delete_run))
        .route("/api/runs/{id}/rerun", post(rerun))
        .route("/api/runs/{id}/plan", post(save_run_as_plan))
        .route(
            "/api/runs/{id}/baseline",
            post(set_baseline).delete(clear_baseline),
        )
        .route("/api/runs/{id}/series.csv", get(series_csv))
        .route("/api/runs/{id}/share", post(share_run))
        .route("/api/compare", get(compare_runs))
        .route("/api/compare/share", post(share_compare))
        .route("/api/plans", get(list_plans).post(create_plan))
        .route(
            "/api/plans/{id}",
            get(get_plan).put(update_plan).delete(delete_plan),
        )
        .route("/api/plans/{id}/duplicate", post(duplicate_plan))
        .route("/api/plans/{id}/runs", post(run_plan))
        .route("/api/plans/{id}/plan.toml", get(get_plan_toml))
        .route("/api/shares/{sid}", get(get_shared).delete(revoke_share))
        .route("/share/{sid}/report.html", get(share_report))
        .route("/share/{sid}/export.json", get(share_export))
        .route("/share/{sid}/series.csv", get(share_csv))
}

fn text_body(body: &Bytes) -> Result<&str, ApiError> {
    if body.len() > MAX_PLAN_TEXT {
        return Err(ApiError::BadRequest(format!(
            "body is {} bytes; the limit is {MAX_PLAN_TEXT}",
            body.len()
        )));
    }
    std::str::from_utf8(body).map_err(|e| ApiError::BadRequest(format!("body: not UTF-8 ({e})")))
}

async fn get_run_meta(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(st.runs.history.get_run_meta(&id).await?))
}

async fn update_run_meta(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, AppError> {
    let meta: RunMeta =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("meta: {e}")))?;
    let meta = meta.normalized();
    st.runs.history.update_run_meta(&id, meta.clone()).await?;
    Ok(Json(meta))
}

/// Runs a run's plan again. The body is optional: `{"secrets": {KEY: value}}` gives the
/// typed-in secrets the run did not keep (its `missing_secrets`), `"plan"` an edited plan.
async fn rerun(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, AppError> {
    let req: app::api::RerunRequest = if body.iter().all(u8::is_ascii_whitespace) {
        Default::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("rerun: {e}")))?
    };
    Ok((
        StatusCode::CREATED,
        Json(st.runs.history.rerun(&id, req).await?),
    ))
}

async fn save_run_as_plan(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    Ok((
        StatusCode::CREATED,
        Json(st.runs.plans.save_run_as_plan(&id).await?),
    ))
}

async fn set_baseline(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    st.runs.plans.set_baseline(&id, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_baseline(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    st.runs.plans.set_baseline(&id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The run's per-second series as a CSV attachment named after `name`, in a download
/// slot of `who`'s (the series is built from every tick).
async fn csv_download(
    st: &AppState,
    id: &str,
    name: &str,
    who: Downloader,
) -> Result<Response, AppError> {
    let slot = st.limits.download_slot(who).await?;
    let d = st.runs.reads.detail(id).await?;
    let csv = blocking(move || d.series.to_csv()).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"socketswarm-{name}.csv\""),
            ),
        ],
        slot.body(csv.into_bytes()),
    )
        .into_response())
}

async fn series_csv(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    csv_download(&st, &id, &id, Downloader::Owner).await
}

async fn share_run(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    let link = st.runs.history.create_share(ShareKind::Run, &[id]).await?;
    Ok((StatusCode::CREATED, Json(link)))
}

#[derive(Deserialize)]
struct RunsParam {
    #[serde(default)]
    runs: String,
}

fn runs_param(
    q: Result<Query<RunsParam>, axum::extract::rejection::QueryRejection>,
) -> Result<Vec<String>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(format!("query: {}", e.body_text())))?;
    Ok(parse_ids(&q.runs))
}

/// `GET /api/compare?runs=a,b,...`
async fn compare_runs(
    State(st): State<AppState>,
    q: Result<Query<RunsParam>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, AppError> {
    let ids = runs_param(q)?;
    Ok(Json(st.runs.history.compare_runs(&ids).await?))
}

async fn share_compare(
    State(st): State<AppState>,
    q: Result<Query<RunsParam>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, AppError> {
    let ids = runs_param(q)?;
    let link = st
        .runs
        .history
        .create_share(ShareKind::Compare, &ids)
        .await?;
    Ok((StatusCode::CREATED, Json(link)))
}

async fn list_plans(State(st): State<AppState>) -> Result<impl IntoResponse, AppError> {
    Ok(Json(st.runs.plans.list_plans().await?))
}

/// Body: a plan as TOML (or JSON), e.g. an exported `plan.toml`.
async fn create_plan(
    State(st): State<AppState>,
    body: Bytes,
) -> Result<impl IntoResponse, AppError> {
    let saved = st.runs.plans.save_plan(None, text_body(&body)?).await?;
    Ok((StatusCode::CREATED, Json(saved)))
}

async fn get_plan(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(st.runs.plans.get_plan(&id).await?))
}

async fn update_plan(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(
        st.runs
            .plans
            .save_plan(Some(&id), text_body(&body)?)
            .await?,
    ))
}

async fn delete_plan(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    st.runs.plans.delete_plan(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn duplicate_plan(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    Ok((
        StatusCode::CREATED,
        Json(st.runs.plans.duplicate_plan(&id).await?),
    ))
}

async fn run_plan(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    Ok((
        StatusCode::CREATED,
        Json(st.runs.plans.run_plan(&id).await?),
    ))
}

/// The saved plan as a commented TOML file (secrets redacted).
async fn get_plan_toml(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    let (name, toml) = st.runs.plans.get_plan_toml(&id).await?;
    let file: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "application/toml; charset=utf-8".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}.toml\""),
            ),
        ],
        toml,
    ))
}

/// What a share link shows, as JSON.
async fn get_shared(
    State(st): State<AppState>,
    Path(sid): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(st.runs.history.get_shared(&sid).await?))
}

/// Revokes a share link (needs the access token, like every other change).
async fn revoke_share(
    State(st): State<AppState>,
    Path(sid): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    st.runs.history.revoke_share(&sid).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The run a run share names (404 for comparison shares and unknown ids).
pub(super) async fn shared_run(st: &AppState, sid: &str) -> Result<String, AppError> {
    match st.runs.history.share_target(sid).await? {
        (ShareKind::Run, ids) if ids.len() == 1 => Ok(ids[0].clone()),
        _ => Err(ApiError::NotFound("share link".into()).into()),
    }
}

async fn share_report(
    State(st): State<AppState>,
    Path(sid): Path<String>,
) -> Result<Response, AppError> {
    let id = shared_run(&st, &sid).await?;
    report_download(&st, &id, Downloader::Share).await
}

async fn share_export(
    State(st): State<AppState>,
    Path(sid): Path<String>,
) -> Result<Response, AppError> {
    let id = shared_run(&st, &sid).await?;
    export_download(&st, &id, Downloader::Share).await
}

async fn share_csv(
    State(st): State<AppState>,
    Path(sid): Path<String>,
) -> Result<Response, AppError> {
    let id = shared_run(&st, &sid).await?;
    csv_download(&st, &id, &sid, Downloader::Share).await
}
