//! # engine: the swarm
//!
//! Load generation and measurement only: no HTTP server of the product, no SQL, no UI.
//! Plans come in, results leave as data (`Update`s on a channel).
//!
//! Module map:
//! - [`plan`]      the `Plan` model (UI form, JSON API and plan file are one model) and
//!   `validate(&Limits)` returning field errors; `plan::Segment` (what the swarm runs),
//!   `plan::Probe` (a probe's bounds), sessions and lifecycles. Pure.
//! - [`duration`]  `Dur` and `parse_duration` (`"250ms"`, `"2s"`); a leaf. Pure.
//! - [`plan_url`]  the one reading of a plan's URL: what is checked, connected to and
//!   shown; URLs that parsers read two ways are refused. Pure.
//! - [`capture`]   reading messages: a small JSON path, framed JSON, captured text. Pure.
//! - [`probe`]     "find my limit": plans a probe run's experiments (`next_phase`); their
//!   verdicts are read in `diagnose::probe`. Pure.
//! - [`protocol`]  the coordinator–agent frames (JSON over one WebSocket). Pure.
//! - [`schedule`]  how many connections should have been started at time `t`. Pure.
//! - [`steer`]     steering a live run: level, rate, extend or end the hold, re-planned
//!   from the moment of the change (`steer::apply`), and the events that record it. Pure.
//! - [`secrets`]   the one redaction rule, deny by default: every value a plan brings in
//!   is hidden unless marked public or known safe by its shape; what a stored plan
//!   misses, and that a placeholder never runs. Pure.
//! - [`template`]  `{{vu}}`, `{{attempt}}`, `{{uuid}}`, `{{now_ms}}`, `{{env.NAME}}`. Pure.
//! - [`thresholds`] pass/fail thresholds on a finished run (k6 style). Pure.
//! - [`said`]      "what the target said": statuses, bodies, headers, close codes. Pure.
//! - [`report`]    wire types that leave the engine: `Snapshot`, `Summary`, `Totals`. Pure.
//! - [`diagnose`]  which limit a run hit (cap, rate, auth, drops, client), with evidence. Pure.
//! - [`compare`]   runs side by side: metric deltas, significance from the stored
//!   histograms, behaviour changes in words. Pure.
//! - [`outcome`]   the small closed set of connection outcomes (`FailKind`, `CloseKind`)
//!   and the one classifier. Pure.
//!
//! With the `runtime` feature (everything that needs tokio):
//! - `handshake`   a hand-written client upgrade (times the phases, keeps 429 evidence).
//! - `conn`        one virtual user's life: connect, script, reconnect policy.
//! - `stats`       mergeable partial results and HDR histograms.
//! - `aggregate`   an agent's aggregator task: partials in, one `AgentTick` per tick out.
//! - [`budget`]    the process's budget for bytes held for targets (messages arriving,
//!   HTTP-step and token answers being read), and the capped reads that keep to it.
//! - [`load_runtime`] the runtime VUs run on, apart from the ticks' (a connect burst
//!   never starves the heartbeat).
//! - [`merge`]     the coordinator: tick k of every agent -> the run's snapshot k; the summary.
//! - [`coordinate`] the coordinator task: agents' ticks in, the run's updates out (lost
//!   agents, thresholds on merged data).
//! - [`swarm`]     the controller that paces VUs along the schedule; `swarm::start`.
//! - `tokens`      token pools and OAuth2 client credentials (reqwest), per-slot caching.
//! - [`outbound`]  the operator's allowlist enforced on the addresses a run connects to
//!   (resolved once per run, pinned, no redirects).
//! - `tls`         rustls for `wss://` targets and the sandbox's TLS listener.
//! - [`target`]    the sandbox WebSocket target (echo, caps, rate limits, drops) and
//!   its `/stats` counters.
//!
//! Checklists for newcomers live where the work starts: adding a sandbox profile in
//! `target` (`engine/src/target/mod.rs`), an outcome kind in [`outcome`], a limit kind in
//! [`diagnose`].

pub mod capture;
pub mod compare;
pub mod diagnose;
pub mod duration;
pub mod outcome;
pub mod plan;
pub mod plan_url;
pub mod probe;
pub mod protocol;
pub mod report;
pub mod said;
pub mod schedule;
pub mod secrets;
pub mod steer;
pub mod template;
pub mod thresholds;

#[cfg(feature = "runtime")]
mod aggregate;
#[cfg(feature = "runtime")]
pub mod budget;
#[cfg(feature = "runtime")]
mod conn;
#[cfg(feature = "runtime")]
pub mod coordinate;
#[cfg(feature = "runtime")]
mod handshake;
#[cfg(feature = "runtime")]
pub mod load_runtime;
#[cfg(feature = "runtime")]
pub mod merge;
#[cfg(feature = "runtime")]
pub mod outbound;
#[cfg(feature = "runtime")]
mod stats;
#[cfg(feature = "runtime")]
pub use stats::histogram_counts;
#[cfg(feature = "runtime")]
pub mod swarm;
#[cfg(feature = "runtime")]
pub mod target;
#[cfg(feature = "runtime")]
mod tls;
#[cfg(feature = "runtime")]
mod tokens;

pub use plan::{FieldError, Limits, Plan, Stage};

/// Makes rustls's ring provider the process default (idempotent). Any TLS client in the
/// process (reqwest included) needs one; call it early in `main` and before tests build
/// HTTP clients.
#[cfg(feature = "runtime")]
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
pub use report::{EndReason, Phase, Series, Snapshot, Summary, Totals};
