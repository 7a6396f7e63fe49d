//! `/api/runs`: create, list, read, cancel. Bodies are read as bytes and parsed here so
//! a malformed plan gets a 400 that says where (`unknown field `conections` at line 1
//! column 80`), not a generic rejection.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use app::api::{ApiError, RunService};
use engine::Plan;

use crate::error::AppError;
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/runs", get(list_runs).post(create_run))
        .route("/api/runs/{id}", get(get_run))
        .route("/api/runs/{id}/cancel", post(cancel_run))
        .route("/api/config", get(get_config))
        .route(
            "/api/health",
            get(|| async { Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})) }),
        )
}

/// Largest accepted plan body.
const MAX_BODY: usize = 256 * 1024;

async fn create_run(
    State(st): State<AppState>,
    body: Bytes,
) -> Result<impl IntoResponse, AppError> {
    if body.len() > MAX_BODY {
        return Err(ApiError::BadRequest(format!(
            "body is {} bytes; the limit is {MAX_BODY}",
            body.len()
        ))
        .into());
    }
    let plan: Plan =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("plan: {e}")))?;
    let launched = st.runs.launch(plan).await?;
    Ok((StatusCode::CREATED, Json(launched)))
}

async fn list_runs(State(st): State<AppState>) -> Result<impl IntoResponse, AppError> {
    Ok(Json(st.runs.list().await?))
}

async fn get_run(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(st.runs.get(&id).await?))
}

async fn cancel_run(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    st.runs.cancel(&id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "status": "cancelling"})),
    ))
}

async fn get_config(State(st): State<AppState>) -> impl IntoResponse {
    Json(st.runs.defaults())
}
