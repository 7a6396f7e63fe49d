//! The `Plan`: everything a run says, as one serde model shared by the browser form, the
//! JSON API and plan files. `Plan::validate` is pure and returns every problem at once,
//! each naming the field, the value and the limit.
//!
//! Minimal JSON form:
//! `{"name":"smoke","target":"ws://127.0.0.1:9001/echo",
//!   "stages":[{"duration":"2s","connections":50},{"duration":"3s","connections":50}]}`
//! Stages ramp linearly from the previous level to `connections` over `duration`.

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

/// A reply matcher with a timeout. With no matcher, any message matches.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The reply is exactly this text (templated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The reply starts with this text (templated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The reply contains this text (templated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    /// The reply matches this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// The reply is JSON (or framed JSON such as Socket.IO's `42["chat",{…}]`, read from
    /// its first `{` or `[`) with a value at this path (`type`, `$.body.id`,
    /// `[1].from`) ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_field: Option<String>,
    /// ... equal to this value. A string is a template (`{{var.guest}}`: correlate the
    /// reply with what this session sent) and also matches a number or boolean written
    /// that way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<serde_json::Value>,
    /// Variables to keep from the matching reply for later steps (`{{var.NAME}}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capture: BTreeMap<String, Capture>,
    /// How long to wait for the reply (default 5s). A timeout is counted, then the
    /// script goes on. Messages that arrive meanwhile and do not match (nor a responder)
    /// are skipped and counted (`msgs_skipped`); the reply's RTT is timed from the send
    /// before this step.
    #[serde(default = "default_expect_timeout")]
    pub timeout: Dur,
}

fn default_expect_timeout() -> Dur {
    Dur::secs(5)
}

/// A block repeated every `every` (e.g. heartbeats), `times` times or until the end.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    pub every: Dur,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
    pub steps: Vec<Step>,
}

/// A wait, fixed or with uniform jitter `[duration, duration + jitter]`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Wait {
    Fixed(Dur),
    Jittered { duration: Dur, jitter: Dur },
}

/// One step of the per-connection script.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Send a text message (templated).
    Send(String),
    /// Send a binary message given as hex (templated, then hex-decoded).
    SendBinary(String),
    /// Wait for a matching reply and time it from the scheduled send.
    Expect(Expect),
    /// Pause.
    Wait(Wait),
    /// Send a ping and require a pong within the timeout; the RTT is `ws_ping`.
    Ping(Dur),
    /// Repeat a block of steps.
    Repeat(Repeat),
    /// Close the connection (normal closure). Without it, connections are held to the end.
    Close,
}

/// What a VU does when its handshake fails or its connection drops.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reconnect {
    /// Never retry: measure raw behaviour.
    #[default]
    Never,
    /// Retry with exponential backoff and full jitter.
    Backoff {
        /// Attempts in a row (since the last open) before the VU gives up and counts in
        /// `Totals::gave_up`: a number, or `"unlimited"` to retry for as long as the run
        /// lasts, as real clients do.
        #[serde(default = "default_max_attempts")]
        max_attempts: MaxAttempts,
        #[serde(default = "default_backoff_initial")]
        initial: Dur,
        #[serde(default = "default_backoff_max")]
        max: Dur,
        /// Wait at least what a 429/503's `Retry-After` asks for.
        #[serde(default = "default_true")]
        honor_retry_after: bool,
    },
}

/// How many attempts in a row a reconnecting VU makes.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MaxAttempts {
    /// This many, then give up.
    Count(u32),
    /// `"unlimited"`: never give up while the run lasts.
    Unlimited(UnlimitedWord),
}

/// The word `"unlimited"`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnlimitedWord {
    Unlimited,
}

impl MaxAttempts {
    /// `"unlimited"`.
    pub const UNLIMITED: MaxAttempts = MaxAttempts::Unlimited(UnlimitedWord::Unlimited);

    /// The VU gives up after `streak` attempts in a row.
    pub fn exhausted(self, streak: u32) -> bool {
        match self {
            MaxAttempts::Count(n) => streak >= n,
            MaxAttempts::Unlimited(_) => false,
        }
    }
}

impl fmt::Display for MaxAttempts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxAttempts::Count(n) => write!(f, "{n}"),
            MaxAttempts::Unlimited(_) => f.write_str("unlimited"),
        }
    }
}

impl Reconnect {
    /// Backoff with the defaults a plan file gets from `{ mode = "backoff" }`.
    pub fn backoff() -> Self {
        Reconnect::Backoff {
            max_attempts: default_max_attempts(),
            initial: default_backoff_initial(),
            max: default_backoff_max(),
            honor_retry_after: true,
        }
    }

    /// Backoff that never gives up (the New-run form's reconnect): what chat and
    /// messaging clients do while their user waits.
    pub fn unlimited() -> Self {
        Reconnect::Backoff {
            max_attempts: MaxAttempts::UNLIMITED,
            initial: default_backoff_initial(),
            max: default_backoff_max(),
            honor_retry_after: true,
        }
    }
}

fn default_max_attempts() -> MaxAttempts {
    MaxAttempts::Count(5)
}
fn default_backoff_initial() -> Dur {
    Dur::millis(500)
}
fn default_backoff_max() -> Dur {
    Dur::secs(30)
}
fn default_true() -> bool {
    true
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
    /// `ws://` or `wss://host:port/path?query` (templates allowed).
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
}

fn default_abort_grace() -> Dur {
    Dur::secs(5)
}

/// One HTTP request before the handshake.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStep {
    /// `GET`, `POST`, `PUT` or `DELETE`.
    #[serde(default = "default_method")]
    pub method: String,
    /// `http(s)://...` (templated).
    pub url: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Request body (templated), sent as JSON when it parses as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Variable name -> top-level field of the JSON reply (`a.b` for nested fields).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capture: BTreeMap<String, String>,
}

fn default_method() -> String {
    "POST".into()
}

/// A secret: `{"env": "NAME"}` is read from the environment when the run starts (and
/// stored as that reference); a plain string is used for this run only and stored as
/// `"<redacted>"`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Secret {
    Env { env: String },
    Value(String),
}

/// Marker stored instead of a typed-in secret.
pub const REDACTED: &str = "<redacted>";

impl Secret {
    /// The secret's value (`None` when an env reference is unset or it was redacted).
    pub fn resolve(&self) -> Option<String> {
        match self {
            Secret::Env { env } => std::env::var(env).ok(),
            Secret::Value(v) if v == REDACTED => None,
            Secret::Value(v) => Some(v.clone()),
        }
    }
    pub(crate) fn redact(&mut self) {
        if let Secret::Value(v) = self {
            *v = REDACTED.into();
        }
    }
    /// A typed-in value that an answer redacted (it was not stored with the run).
    pub fn is_redacted(&self) -> bool {
        matches!(self, Secret::Value(v) if v == REDACTED)
    }
    /// Why it cannot be used right now, if it cannot (validation's message).
    pub fn problem(&self) -> Option<String> {
        match self {
            Secret::Env { env } if std::env::var(env).is_err() => {
                Some(format!("environment variable `{env}` is not set on the server"))
            }
            _ if self.is_redacted() => Some(
                "was typed in for an earlier run and not stored; type it again or use {\"env\": \"NAME\"}".into(),
            ),
            _ => None,
        }
    }
}

/// Where tokens come from.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TokenSource {
    /// A fixed list (a pool): slot `i` uses `tokens[i % len]`.
    Static { tokens: Vec<Secret> },
    /// OAuth2 client credentials (RFC 6749 §4.4), fetched and refreshed by the engine.
    Oauth2 {
        token_url: String,
        client_id: String,
        client_secret: Secret,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
    },
}

/// How connections share tokens.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum TokenPolicy {
    /// One token for every connection.
    #[default]
    Shared,
    /// `size` tokens, connections assigned round-robin.
    Pool { size: u32 },
    /// A new token for every `connections` connections, in order (0..n-1 share token 0).
    PerConnections { connections: u32 },
    /// A fresh token for every connection attempt.
    PerConnection,
}

fn default_auth_header() -> String {
    "Authorization".into()
}
fn default_auth_value() -> String {
    "Bearer {{token}}".into()
}
fn default_refresh_before() -> Dur {
    Dur::secs(30)
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

/// Tokens for the handshake.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    pub source: TokenSource,
    #[serde(default)]
    pub policy: TokenPolicy,
    /// Header the token goes in (empty: none; use `{{token}}` in the URL instead).
    #[serde(default = "default_auth_header")]
    pub header: String,
    #[serde(default = "default_auth_value")]
    pub value: String,
    /// Fetch a new OAuth2 token this long before `expires_in` runs out.
    #[serde(default = "default_refresh_before")]
    pub refresh_before: Dur,
    /// What a live connection does when its token is about to expire (`refresh_before`
    /// ahead): nothing (the default; the target may close it), re-authenticate on the
    /// open socket, or reconnect with the new token (see `plan/rotation.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Rotation>,
}

impl Auth {
    /// Tokens from `source` shared by `policy`, with a plan file's defaults for the rest
    /// (`Authorization: Bearer {{token}}`, refresh 30 s ahead).
    pub fn new(source: TokenSource, policy: TokenPolicy) -> Self {
        Auth {
            source,
            policy,
            header: default_auth_header(),
            value: default_auth_value(),
            refresh_before: default_refresh_before(),
            rotation: None,
        }
    }

    /// Number of token slots for `peak` connections (`None`: one per attempt).
    pub fn slots(&self, peak: u32) -> Option<u32> {
        match self.policy {
            TokenPolicy::Shared => Some(1),
            TokenPolicy::Pool { size } => Some(size.max(1)),
            TokenPolicy::PerConnections { connections } => {
                Some(peak.div_ceil(connections.max(1)).max(1))
            }
            TokenPolicy::PerConnection => None,
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

mod lifecycle;
mod probe_bounds;
mod rotation;
mod session;
mod validate;

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
    pub fn parse(text: &str) -> Result<TargetUrl, String> {
        let url = url::Url::parse(text.trim()).map_err(|e| {
            format!("`{text}` is not a URL ({e}); expected e.g. ws://127.0.0.1:9001/echo")
        })?;
        let tls = match url.scheme() {
            "ws" => false,
            "wss" => true,
            other => {
                return Err(format!(
                    "scheme `{other}` is not supported; use ws:// or wss://"
                ))
            }
        };
        let host = url
            .host_str()
            .ok_or_else(|| format!("`{text}` has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port().unwrap_or(if tls { 443 } else { 80 });
        let mut resource = url.path().to_string();
        if let Some(q) = url.query() {
            resource.push('?');
            resource.push_str(q);
        }
        Ok(TargetUrl {
            host,
            port,
            resource,
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Plan {
        serde_json::from_str(
            r#"{"name":"smoke","target":"ws://127.0.0.1:9001/echo","stages":[{"duration":"2s","connections":50},{"duration":"3s","connections":50}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn parses_minimal_plan_with_defaults() {
        let p = minimal();
        assert_eq!(p.stages.len(), 2);
        assert_eq!(p.stages[0].duration, Dur::secs(2));
        assert_eq!(p.connect_timeout, Dur::secs(10));
        assert_eq!(p.reconnect, Reconnect::Never);
        assert_eq!(p.peak_connections(), 50);
        assert_eq!(p.duration(), Duration::from_secs(5));
        assert!(p.validate(&Limits::default()).is_ok());
    }

    #[test]
    fn redacted_secrets_come_back_from_the_stored_plan() {
        let mut stored = minimal();
        stored.auth =
            serde_json::from_str(r#"{"source":{"type":"static","tokens":["t-one","t-two"]}}"#)
                .unwrap();
        stored.headers.insert("X-Api-Key".into(), "k-123".into());
        let mut edited = stored.redacted();
        assert!(!serde_json::to_string(&edited).unwrap().contains("t-one"));
        edited.name = "renamed".into();
        edited.restore_secrets(&stored);
        assert_eq!(edited.auth, stored.auth);
        assert_eq!(edited.headers["X-Api-Key"], "k-123");
        assert_eq!(edited.name, "renamed");
    }

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("3 fortnights").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(Dur::millis(1500).to_string(), "1500ms");
        assert_eq!(Dur::secs(120).to_string(), "2m");
        let d: Dur = serde_json::from_str("7").unwrap();
        assert_eq!(d, Dur::secs(7));
    }

    #[test]
    fn plan_durations_are_whole_milliseconds_and_round_trip() {
        let d = |json: &str| serde_json::from_str::<Dur>(json).unwrap();
        assert_eq!(d(r#""1.001ms""#), Dur::millis(1));
        assert_eq!(d(r#""1.5ms""#), Dur::millis(2));
        assert_eq!(d(r#""0.4ms""#), Dur::millis(1), "positive stays positive");
        assert_eq!(d(r#""0ms""#), Dur::millis(0));
        assert_eq!(d(r#""0.3s""#), Dur::millis(300));
        assert_eq!(d("0.0005"), Dur::millis(1));
        assert_eq!(d("8760.0001"), Dur::secs(8760));
        // Thresholds keep sub-millisecond precision (they do not go through `Dur`).
        assert_eq!(parse_duration("0.5ms").unwrap(), Duration::from_micros(500));
        // The case proptest found (tests/props.rs): a repeat every 1.001ms was stored
        // as "1ms" and read back as a different plan.
        let p: Plan = serde_json::from_str(
            r#"{"target":"ws://127.0.0.1:1/","stages":[{"duration":"1ms","connections":0}],
                "script":[{"repeat":{"every":"1.001ms","steps":[{"send":""}]}}]}"#,
        )
        .unwrap();
        let again: Plan = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(p, again);
    }

    #[test]
    fn reconnect_attempts_are_a_number_or_unlimited() {
        let p: Plan = serde_json::from_str(
            r#"{"target":"ws://h/x","stages":[{"duration":"1s","connections":1}],
              "reconnect":{"mode":"backoff","max_attempts":"unlimited"}}"#,
        )
        .unwrap();
        assert_eq!(p.reconnect, Reconnect::unlimited());
        assert!(p.validate(&Limits::default()).is_ok());
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains(r#""max_attempts":"unlimited""#), "{json}");
        assert!(!MaxAttempts::UNLIMITED.exhausted(u32::MAX));
        assert!(MaxAttempts::Count(5).exhausted(5));
        assert!(!MaxAttempts::Count(5).exhausted(4));
        let bad = serde_json::from_str::<Plan>(
            r#"{"target":"ws://h/x","stages":[{"duration":"1s","connections":1}],
              "reconnect":{"mode":"backoff","max_attempts":"forever"}}"#,
        );
        assert!(bad.is_err());
    }

    #[test]
    fn script_round_trips_through_json() {
        let text = r#"{"target":"ws://h/x","stages":[{"duration":"1s","connections":1}],
          "script":[{"send":"hi {{vu}}"},{"expect":{"contains":"hi","timeout":"2s"}},
                    {"repeat":{"every":"1s","times":3,"steps":[{"ping":"1s"},{"wait":"10ms"}]}},
                    {"wait":{"duration":"1s","jitter":"500ms"}},"close"],
          "reconnect":{"mode":"backoff","max_attempts":3}}"#;
        let p: Plan = serde_json::from_str(text).unwrap();
        assert_eq!(p.script.len(), 5);
        assert!(matches!(
            p.reconnect,
            Reconnect::Backoff {
                max_attempts: MaxAttempts::Count(3),
                ..
            }
        ));
        let again: Plan = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(p, again);
        assert!(p.validate(&Limits::default()).is_ok());
    }

    #[test]
    fn unknown_fields_are_rejected_by_name() {
        let e = serde_json::from_str::<Plan>(r#"{"target":"ws://h","stages":[],"conections":5}"#)
            .unwrap_err();
        assert!(e.to_string().contains("conections"), "{e}");
    }

    #[test]
    fn validation_names_field_value_and_limit() {
        let mut p = minimal();
        p.stages[1].connections = 50_000;
        p.target = "http://x".into();
        p.headers.insert("X-Bad".into(), "{{nope}}".into());
        let errs = p.validate(&Limits::default()).unwrap_err();
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(
            text.iter()
                .any(|t| t.starts_with("stages[1].connections: 50000") && t.contains("19000")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|t| t.starts_with("target: scheme `http`")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("headers.X-Bad") && t.contains("nope")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|t| t.starts_with("source_addrs")),
            "{text:?}"
        );
    }

    #[test]
    fn empty_and_zero_stages_are_refused() {
        let mut p = minimal();
        p.stages.clear();
        assert_eq!(
            p.validate(&Limits::default()).unwrap_err()[0].field,
            "stages"
        );
        p.stages.push(Stage {
            duration: Dur::secs(0),
            connections: 5,
        });
        assert!(p.validate(&Limits::default()).unwrap_err()[0]
            .message
            .contains("0s"));
    }

    #[test]
    fn too_many_connections_for_ports_needs_sources() {
        let limits = Limits {
            max_connections: 100_000,
            ports_per_source: 100,
            ..Limits::default()
        };
        let mut p = minimal();
        p.stages[0].connections = 250;
        p.stages[1].connections = 250;
        let errs = p.validate(&limits).unwrap_err();
        assert!(
            errs[0].message.contains("add 2 more source addresses"),
            "{errs:?}"
        );
        p.source_addrs = vec![
            "127.0.0.1".parse().unwrap(),
            "127.0.0.2".parse().unwrap(),
            "127.0.0.3".parse().unwrap(),
        ];
        assert!(p.validate(&limits).is_ok());
    }

    #[test]
    fn target_url_parts() {
        let t = TargetUrl::parse("ws://127.0.0.1:9001/echo?cap=5").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.resource.as_str()),
            ("127.0.0.1", 9001, "/echo?cap=5")
        );
        assert_eq!(TargetUrl::parse("ws://[::1]/").unwrap().host, "::1");
        assert!(TargetUrl::parse("not a url").is_err());
    }
}
