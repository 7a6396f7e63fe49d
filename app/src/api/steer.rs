//! Steering a live run: the request (one change: `level`, `rate`, `extend_s` or
//! `end_hold`) that `POST /api/runs/{id}/steer` and the `steer_run` server fn both take.
//! The server reads and applies it (`server/src/runs/steer.rs`); the answer is the
//! recorded `engine::steer::SteerEvent`.

use engine::steer::SteerEvent;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::ApiError;

/// One change to a live run; exactly one field is given. Numbers are read wide (a
/// negative level or a zero rate is answered with a 422 naming the field and the limit,
/// not a parse error).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SteerRequest {
    /// Hold this many connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<i64>,
    /// Open at most this many connections per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Hold this many seconds longer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extend_s: Option<f64>,
    /// `true`: end the hold now (a normal finish, after the planned ramp-down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_hold: Option<bool>,
}

/// Steers a running run (the run page's Steer panel).
#[server]
pub async fn steer_run(id: String, req: SteerRequest) -> Result<SteerEvent, ApiError> {
    super::service()?.steer_run(&id, req).await
}
