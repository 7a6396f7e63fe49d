//! The `Plan`: everything a run says, as one serde model shared by the browser form, the
//! JSON API and plan files. `Plan::validate` is pure and returns every problem at once,
//! each naming the field, the value and the limit.
//!
//! Minimal JSON form:
//! `{"name":"smoke","target":"ws://127.0.0.1:9001/echo",
//!   "stages":[{"duration":"2s","connections":50},{"duration":"3s","connections":50}]}`
//! Stages ramp linearly from the previous level to `connections` over `duration`.
//!
//! Layout: this file (`Plan`, `Segment`, `Agents`, `Limits`, `FieldError`, `TargetUrl`,
//! `restore_secrets`), and under `plan/`: `script.rs` (steps, `Expect`, `HttpStep`),
//! `reconnect.rs` (`Reconnect`, `MaxAttempts`), `auth.rs` (`Secret`, token sources and
//! policies, `Auth`), `rotation.rs`, `session.rs`, `lifecycle.rs`, `probe_bounds.rs`,
//! `texts.rs` (`Plan::templated_texts`, `Plan::env_names`), `headers.rs` (every header a
//! plan sets, one check) and `validate.rs` (`Plan::validate`). All re-exported here: every type is `plan::Name`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::template::Template;

pub use crate::duration::{parse_duration, Dur};
pub use crate::schedule::Stage;

/// One stretch of a run as the swarm runs it: a plain run is one segment (its plan); a
/// probe's experiments are segments back to back (`crate::probe::next_phase` plans
/// them), each with its rate steps or bursts as (offset from the segment's start in ms,
/// length in ms, offered per second) for reading it afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub name: String,
    pub plan: Plan,
    pub steps: Vec<(u64, u64, f64)>,
}

fn default_name() -> String {
    "unnamed".into()
}
fn default_connect_timeout() -> Dur {
    Dur::secs(10)
}

/// A whole run description.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    #[serde(default = "default_name")]
    pub name: String,
    /// `ws://` or `wss://host:port/path?query` (templates allowed in the path and query).
    pub target: String,
    /// Ramp-and-hold stages (the closed model). Optional, so an open-model plan
    /// (`sessions`) or a probe can leave it out instead of writing `stages = []`.
    #[serde(default)]
    pub stages: Vec<Stage>,
    /// Cap on new connections per second (open model: paced by the clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connect_rate: Option<f64>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Dur,
    /// Extra handshake headers (values templated).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Offered subprotocols (`Sec-WebSocket-Protocol`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subprotocols: Vec<String>,
    /// Per-session variables: name -> template, rendered once when a connection
    /// attempt starts (`guest = "{{uuid}}"`), then `{{var.guest}}` everywhere templates
    /// are (URL, headers, HTTP steps, messages, matchers).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
    /// The per-connection script; empty means connect and hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub script: Vec<Step>,
    /// Rules that answer matching messages for the whole session, alongside the script
    /// (a protocol's application-level ping, acks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub responders: Vec<Responder>,
    #[serde(default)]
    pub reconnect: Reconnect,
    /// Local source addresses to bind, round-robin (needed past ~28k connections to one
    /// target address and port).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_addrs: Vec<std::net::IpAddr>,
    /// Split the run over this many agent processes (each holds its share; results are
    /// merged exactly), or `"all"`: every agent joined to the server's pool when the run
    /// starts (`serve --agents-on joined`). Without it a run uses one process, or as many
    /// as its size needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<Agents>,
    /// `wss://` only: accept any server certificate (test rigs with self-signed certs).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_tls: bool,
    /// Tokens: where they come from and how connections share them. `{{token}}` is then
    /// usable in headers, the URL and messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// "Find my limit": run a sequence of experiments within these bounds instead of
    /// `stages` (see `probe.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
    /// HTTP requests made before each handshake (e.g. create a session), whose JSON
    /// replies fill `{{var.NAME}}` for the handshake and the script.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_steps: Vec<HttpStep>,
    /// Pass/fail thresholds, e.g. `{"ws_connecting.p95": "< 300ms"}` (see `thresholds.rs`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub thresholds: BTreeMap<String, String>,
    /// Stop the run as soon as a threshold fails on the run so far (k6's abortOnFail),
    /// judged from `abort_grace` on, so a first unlucky second does not end it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abort_on_fail: bool,
    #[serde(default = "default_abort_grace")]
    pub abort_grace: Dur,
    /// The open model for sessions, instead of `stages` (leave those empty): guests
    /// arrive at a rate and each stays for a drawn duration (see `plan/lifecycle.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<Sessions>,
    /// Names whose values are not secret, so pages, shares and exports show them: header,
    /// query parameter, variable (and feeder column) names, case-insensitive; `path`
    /// for URL path segments, `subprotocols`, `body` for HTTP-step bodies. Everything
    /// else a plan brings in is hidden unless it is known safe by its shape (see
    /// `secrets`): `public = ["deploymentId"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public: Vec<String>,
    /// Changes made while the run was live (level, rate, hold), oldest first. A steered
    /// run's stored plan has its `stages` and `max_connect_rate` rewritten to what ran,
    /// so running it again reproduces it; this list says what changed and when (see
    /// `steer.rs`). The engine does not read it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steering: Vec<crate::steer::SteerEvent>,
}

fn default_abort_grace() -> Dur {
    Dur::secs(5)
}

/// How many agents a run is split over.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Agents {
    /// This many.
    Count(u32),
    /// `"all"`: every agent in the server's pool when the run starts.
    All(AllJoined),
}

/// The word `"all"`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllJoined {
    All,
}

impl Agents {
    /// The number asked for (`None` for `"all"`, known only when the run starts).
    pub fn count(self) -> Option<u32> {
        match self {
            Agents::Count(n) => Some(n),
            Agents::All(_) => None,
        }
    }
}

impl Plan {
    /// Puts back secrets that an answer redacted: every field still as `stored` reads
    /// once redacted takes `stored`'s value (same token index, same header name, the
    /// same target with its credentials). Lets a user edit (or run again) a plan they
    /// only ever saw redacted.
    pub fn restore_secrets(&mut self, stored: &Plan) {
        fn restore(
            mine: &mut serde_json::Value,
            shown: &serde_json::Value,
            real: &serde_json::Value,
        ) {
            use serde_json::Value as V;
            match (mine, shown, real) {
                (V::String(m), V::String(s), V::String(r)) if m.contains(REDACTED) && m == s => {
                    *m = r.clone();
                }
                (V::Array(m), V::Array(s), V::Array(r)) => {
                    for ((m, s), r) in m.iter_mut().zip(s).zip(r) {
                        restore(m, s, r);
                    }
                }
                (V::Object(m), V::Object(s), V::Object(r)) => {
                    for (k, m) in m.iter_mut() {
                        if let (Some(s), Some(r)) = (s.get(k), r.get(k)) {
                            restore(m, s, r);
                        }
                    }
                }
                _ => {}
            }
        }
        let (Ok(mut mine), Ok(shown), Ok(real)) = (
            serde_json::to_value(&*self),
            serde_json::to_value(stored.redacted()),
            serde_json::to_value(stored),
        ) else {
            return;
        };
        restore(&mut mine, &shown, &real);
        if let Ok(p) = serde_json::from_value(mine) {
            *self = p;
        }
    }
}

/// The plan's JSON Schema (for editors: TOML and JSON plan files).
#[cfg(feature = "schema")]
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Plan)).unwrap_or_default()
}

/// Limits a plan is validated against (set by the server's configuration).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Most connections one run may hold at once (kept below the open-file limit).
    pub max_connections: u32,
    /// Longest run.
    pub max_duration: Dur,
    /// Largest message a script may send, in bytes.
    pub max_message_bytes: usize,
    /// Highest connect rate a plan may ask for, per second.
    pub max_connect_rate: f64,
    /// Ephemeral ports available per (source address -> target address:port).
    pub ports_per_source: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 19_000,
            max_duration: Dur::secs(3600),
            max_message_bytes: 1 << 20,
            max_connect_rate: 50_000.0,
            ports_per_source: 28_000,
        }
    }
}

/// One problem with one field of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// Path of the field, e.g. `stages[1].connections`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

mod auth;
mod headers;
mod lifecycle;
mod probe_bounds;
mod reconnect;
mod rotation;
mod script;
mod session;
#[cfg(test)]
mod tests;
mod texts;
mod validate;

pub use auth::{Auth, Secret, TokenPolicy, TokenSource, REDACTED};
pub use reconnect::{MaxAttempts, Reconnect, UnlimitedWord};
pub use script::{Expect, HttpStep, Repeat, Step, Wait};

pub use lifecycle::{ArrivalStage, Sessions, Stay, MAX_ARRIVAL_STAGES};
pub use probe_bounds::Probe;
pub use rotation::{Rotation, MAX_ROTATION_TIMEOUT};
pub use session::{
    Capture, MatchSpec, Responder, MAX_CAPTURES, MAX_RESPONDERS, MAX_VARS, MAX_VAR_TEMPLATE_BYTES,
};

/// A commented plan file: what `socketswarm plan init` writes, the starter plan and
/// the New-plan editor start from.
pub const TEMPLATE: &str = include_str!("plan/template.toml");

/// A parsed `ws://` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl {
    pub host: String,
    pub port: u16,
    /// Path and query, as sent in the request line.
    pub resource: String,
    pub tls: bool,
}

impl TargetUrl {
    /// Reads a `ws://`/`wss://` target with the one URL parser (`crate::plan_url`).
    pub fn parse(text: &str) -> Result<TargetUrl, String> {
        let url = crate::plan_url::PlanUrl::parse(text, &["ws", "wss"])?;
        Ok(TargetUrl {
            port: url.port(),
            tls: url.tls(),
            resource: url.resource(),
            host: url.host,
        })
    }
}
