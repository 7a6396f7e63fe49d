//! `AppError`: how failures become HTTP answers. Domain errors (`ApiError`) map to 4xx
//! JSON naming the field; internal errors map to a generic 500 and are logged once,
//! inside the request's trace span, with their details.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use app::api::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Api(ApiError),
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("{0:#}")]
    Anyhow(#[from] anyhow::Error),
}

impl From<ApiError> for AppError {
    fn from(e: ApiError) -> Self {
        AppError::Api(e)
    }
}

/// Logs an internal error and hides it behind `ApiError::Internal`.
pub fn internal(context: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::error!("{context}: {e}");
    ApiError::Internal
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = match &self {
            AppError::Api(ApiError::Validation(fields)) => {
                json!({"error": "validation", "message": self.to_string(), "fields": fields})
            }
            AppError::Api(ApiError::BadRequest(m)) => json!({"error": "bad_request", "message": m}),
            AppError::Api(ApiError::NotFound(what)) => {
                json!({"error": "not_found", "message": format!("{what} not found")})
            }
            AppError::Api(ApiError::Conflict(m)) => json!({"error": "conflict", "message": m}),
            AppError::Api(ApiError::Internal | ApiError::ServerFn(_))
            | AppError::Sqlx(_)
            | AppError::Anyhow(_) => {
                if !matches!(self, AppError::Api(_)) {
                    tracing::error!("{self}");
                }
                json!({"error": "internal", "message": "internal error (see the server log)"})
            }
        };
        // The same statuses the pages' server functions answer with (`ApiError::status`).
        let status = match &self {
            AppError::Api(e) => StatusCode::from_u16(e.status()).ok(),
            AppError::Sqlx(_) | AppError::Anyhow(_) => None,
        }
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(body)).into_response()
    }
}
