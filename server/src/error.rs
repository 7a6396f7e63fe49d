//! `AppError`: how failures become HTTP answers. Domain errors (`ApiError`) map to 4xx
//! JSON naming the field; internal errors map to a generic 500 and are logged once,
//! inside the request's trace span, with their details.

use axum::http::{header, StatusCode};
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
    /// A limit the server sets on itself was reached (too many event streams, no free
    /// export slot, a body too large): the status, a short `error` code, a message that
    /// names the limit and, when waiting helps, the seconds for `Retry-After`.
    #[error("{message}")]
    Refused {
        status: StatusCode,
        error: &'static str,
        message: String,
        retry_after: Option<u64>,
    },
}

impl AppError {
    /// 429 for a client that asks for more than its share; try again after `retry_after` s.
    pub fn too_many(error: &'static str, message: String, retry_after: u64) -> AppError {
        AppError::Refused {
            status: StatusCode::TOO_MANY_REQUESTS,
            error,
            message,
            retry_after: Some(retry_after),
        }
    }

    /// 503 when the server is busy for everyone; try again after `retry_after` s.
    pub fn busy(error: &'static str, message: String, retry_after: u64) -> AppError {
        AppError::Refused {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error,
            message,
            retry_after: Some(retry_after),
        }
    }

    /// 408 for a body that arrived too slowly (`http::pace`); the connection is closed.
    pub fn slow_body() -> AppError {
        AppError::Refused {
            status: StatusCode::REQUEST_TIMEOUT,
            error: "request_timeout",
            message: "the request body arrived too slowly (clients without the access token must send it at 16 KiB/s or faster, after a grace of --header-timeout-ms)".into(),
            retry_after: None,
        }
    }

    /// 413 for a body past the route's limit.
    pub fn too_large(limit: usize) -> AppError {
        AppError::Refused {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            error: "too_large",
            message: format!(
                "the body is larger than this route allows; the limit is {limit} bytes"
            ),
            retry_after: None,
        }
    }
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
        if let AppError::Refused {
            status,
            error,
            message,
            retry_after,
        } = self
        {
            return refused(status, error, &message, retry_after);
        }
        let body = match &self {
            AppError::Api(ApiError::Validation(fields)) => {
                json!({"error": "validation", "message": self.to_string(), "fields": fields})
            }
            AppError::Api(ApiError::BadRequest(m)) => json!({"error": "bad_request", "message": m}),
            AppError::Api(ApiError::NotFound(what)) => {
                json!({"error": "not_found", "message": format!("{what} not found")})
            }
            AppError::Api(ApiError::Conflict(m)) => json!({"error": "conflict", "message": m}),
            AppError::Api(ApiError::Busy(m)) => json!({"error": "busy", "message": m}),
            AppError::Api(ApiError::Internal | ApiError::ServerFn(_))
            | AppError::Sqlx(_)
            | AppError::Anyhow(_)
            | AppError::Refused { .. } => {
                if !matches!(self, AppError::Api(_)) {
                    tracing::error!("{self}");
                }
                json!({"error": "internal", "message": "internal error (see the server log)"})
            }
        };
        // The same statuses the pages' server functions answer with (`ApiError::status`).
        let status = match &self {
            AppError::Api(e) => StatusCode::from_u16(e.status()).ok(),
            AppError::Sqlx(_) | AppError::Anyhow(_) | AppError::Refused { .. } => None,
        }
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(body)).into_response()
    }
}

/// The answer to a refusal: `{error, message}` and, if given, `Retry-After`.
fn refused(
    status: StatusCode,
    error: &'static str,
    message: &str,
    retry_after: Option<u64>,
) -> Response {
    let body = Json(json!({"error": error, "message": message}));
    if status == StatusCode::REQUEST_TIMEOUT {
        // The rest of a too-slow body is never read: the connection goes with it.
        return (status, [(header::CONNECTION, "close")], body).into_response();
    }
    match retry_after {
        Some(secs) => (status, [(header::RETRY_AFTER, secs.to_string())], body).into_response(),
        None => (status, body).into_response(),
    }
}
