//! `AppState`: what every handler can reach. Cloned per request (all fields are handles).
//! It lives in `http` because it is made of HTTP-side handles (host allowlist, login
//! throttle, limits) and only handlers read it; `lib.rs` builds it once.

use std::sync::Arc;

use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

use crate::runs::manager::ManagerHandle;
use crate::runs::service::Runs;

#[derive(Clone)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    /// The built site (embedded, or `--site-root`): what `/pkg/...` serves and the
    /// shell links.
    pub site: crate::site::Site,
    pub pool: SqlitePool,
    /// The run services (concrete, for the API handlers: `runs.history.search_runs` …).
    pub runs: Arc<Runs>,
    /// The same service as the pages' server fns see it (through Leptos context).
    pub service: app::api::Service,
    pub manager: ManagerHandle,
    /// Cancelled on SIGTERM/Ctrl-C: ends runs and SSE streams.
    pub shutdown: CancellationToken,
    /// `--access-token`, when set (see `http::access`).
    pub access_token: Option<Arc<str>>,
    /// The `Host` values requests may name (listen address, `--public-url`).
    pub hosts: Arc<super::hosts::HostAllowlist>,
    /// Where agents of runs split over processes dial in (`/api/agents/join/{key}`).
    pub hub: Arc<crate::agents::hub::Hub>,
    /// Wrong-token records per client address, shared by every request (`/login`, and
    /// the guard for Bearer and cookie tokens).
    pub throttle: Arc<super::throttle::LoginThrottle>,
    /// Caps on event streams and downloads at once (see `http::HttpLimits`).
    pub limits: Arc<super::HttpLimits>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(s: &AppState) -> Self {
        s.leptos_options.clone()
    }
}
