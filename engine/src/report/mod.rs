//! What leaves the engine: per-tick `Snapshot`s and one final `Summary`. Pure serde types,
//! also compiled into the browser build. Metric names follow k6 (`ws_connecting`,
//! `ws_msgs_sent`, ...). Every counter is cumulative in `Totals` and per-tick in
//! `Interval`, so charts and the stored series need no client-side differencing.
//!
//! Layout: this file (the run's types: `Totals`, `Snapshot`, `AgentTick`, `Summary`,
//! `Evidence`, agents' status, the [`metric`] keys), `identities.rs` (per-identity
//! totals and their bounded merge) and `series.rs` (`Series`, the chart columns, and its
//! CSV); both re-exported here, so every type is `report::Name`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod identities;
mod keys;
mod probe_progress;
mod series;
mod stored;
#[cfg(test)]
mod tests;
mod text;
mod thin;

use identities::legacy_tokens;
pub use identities::{
    merge_identities, Identities, IdentityTotals, DIM_SOURCE, DIM_TOKEN, MAX_DIMENSIONS,
    MAX_IDENTITIES,
};
pub use keys::OutcomeKeys;
pub use probe_progress::{
    Experiment, ExperimentResult, ProbeProgress, UNIT_CONNECTIONS, UNIT_CONNECTS_PER_SECOND,
};
pub use series::{csv_cell, Series, SERIES_IDENTITIES};
pub use stored::{StoredTick, TickEncoder, TickReplay, TICK_FORMAT_DELTA, TICK_FORMAT_SNAPSHOT};
pub use text::target_text;
pub use thin::MAX_VIEW_POINTS;

/// The largest answer an HTTP step may give (its JSON is parsed whole): longer ones end
/// the attempt as `step_too_large`.
pub const MAX_STEP_ANSWER: usize = 1 << 20;

/// The largest answer a token endpoint may give (a token and its expiry): longer ones
/// end the attempt as `token_too_large`.
pub const MAX_TOKEN_ANSWER: usize = 64 << 10;

/// Where the run is along its stages (goose's AttackPhase).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Ramping,
    Holding,
    Draining,
}

// The run status each reason stands for is `app::api::RunStatus::ended`, the one mapping.
/// Why a run ended.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// All stages ran to the end.
    Completed,
    /// A user (or server shutdown) cancelled it.
    Cancelled,
    /// A threshold failed and the plan says `abort_on_fail`.
    ThresholdFailed,
    /// An agent stopped reporting (its process died, its connection broke for good).
    AgentLost,
}

/// An agent the coordinator gave up on, and why.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LostAgent {
    pub agent: u32,
    pub reason: String,
}

/// A session the target ends sooner than this after opening was "closed at once".
pub const AT_ONCE_MS: u64 = 1000;

/// Cumulative counters of a run (or of one interval, in `Interval`).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Totals {
    /// Connection attempts started (every retry counts).
    pub attempted: u64,
    /// Handshakes that reached an open WebSocket.
    pub opened: u64,
    /// Attempts that failed, by kind (`http_429`, `refused`, `timeout`, ...).
    pub failed: u64,
    pub failures: BTreeMap<String, u64>,
    /// Sessions that ended, by kind (`server_1001`, `abnormal_1006`, `client`, ...).
    pub closed: u64,
    pub closes: BTreeMap<String, u64>,
    /// Sessions ended by the target or network (every close kind except `client`).
    pub dropped: u64,
    /// Of those, sessions the target ended within `AT_ONCE_MS` of opening: accepted, then
    /// closed at once (how some services enforce a cap).
    pub closed_at_once: u64,
    /// Connections whose reconnect policy ran out of attempts (`max_attempts` in a row
    /// failed or dropped): they stopped trying before the run ended.
    pub gave_up: u64,
    pub msgs_sent: u64,
    pub msgs_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// `expect` steps that timed out.
    pub expect_timeouts: u64,
    /// `ping` steps that got no pong in time.
    pub ping_timeouts: u64,
    /// Messages received while an `expect` waited that neither matched it nor a
    /// responder: unrelated pushes the correlation skipped.
    pub msgs_skipped: u64,
    /// `capture`s that found nothing in their matching message (the variable kept its
    /// value).
    pub capture_misses: u64,
    /// Messages a responder matched.
    pub auto_matched: u64,
    /// Replies responders sent (also in `msgs_sent`).
    pub auto_replies: u64,
    /// The open model for sessions (`plan.sessions`): guests that arrived (one each,
    /// whatever their reconnects) ...
    pub arrivals: u64,
    /// ... and guests that left by their own choice when their stay was over (a
    /// `client` close, never a drop; guests still inside at the run's end are not
    /// departures).
    pub departures: u64,
    /// Live connections that took a new token before theirs expired (`auth.rotation`),
    /// and rotations that failed (token fetch refused, no re-authentication reply in
    /// time, the reconnect refused).
    pub rotations: u64,
    pub rotation_failures: u64,
}

impl Totals {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Totals) {
        self.attempted += other.attempted;
        self.opened += other.opened;
        self.failed += other.failed;
        self.closed += other.closed;
        self.dropped += other.dropped;
        self.closed_at_once += other.closed_at_once;
        self.gave_up += other.gave_up;
        self.msgs_sent += other.msgs_sent;
        self.msgs_received += other.msgs_received;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.expect_timeouts += other.expect_timeouts;
        self.ping_timeouts += other.ping_timeouts;
        self.msgs_skipped += other.msgs_skipped;
        self.capture_misses += other.capture_misses;
        self.auto_matched += other.auto_matched;
        self.auto_replies += other.auto_replies;
        self.arrivals += other.arrivals;
        self.departures += other.departures;
        self.rotations += other.rotations;
        self.rotation_failures += other.rotation_failures;
        for (k, v) in &other.failures {
            *self.failures.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.closes {
            *self.closes.entry(k.clone()).or_default() += v;
        }
    }

    /// Connections open now: opened minus closed.
    pub fn open(&self) -> u64 {
        self.opened.saturating_sub(self.closed)
    }
}

/// Percentiles of one latency metric, in microseconds.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct LatencyStats {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

/// One tick of a live run.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Snapshot {
    /// 1, 2, 3, ... one per tick; the SSE event id.
    pub seq: u64,
    pub elapsed_ms: u64,
    pub phase: Phase,
    /// Connections the schedule wants open now.
    pub target: u32,
    /// Connections open now.
    pub open: u64,
    /// Highest open count seen so far.
    pub peak_open: u64,
    /// Attempts in flight now (started, neither open nor failed yet): a target that
    /// stops answering shows here long before `connect_timeout` turns them into
    /// `timeout`s.
    pub connecting: u64,
    pub totals: Totals,
    /// What happened during this tick only.
    pub interval: Totals,
    /// Latency percentiles of this tick, by metric (`ws_connecting`, `ws_rtt`, ...).
    pub latency: BTreeMap<String, LatencyStats>,
    /// Per client identity, by dimension (only the dimensions the plan varies).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub identities: Identities,
    /// Read from runs stored before `identities`: per token slot.
    #[serde(skip_serializing)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub tokens: BTreeMap<u32, IdentityTotals>,
    /// The agents of a run split over processes (empty for one process).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<AgentStatus>,
    /// Whole-run HDR histograms so far (V2 deflate, base64) by metric, as
    /// `Summary::histograms`: what `/metrics` turns into Prometheus histograms. In
    /// memory only, never serialized: stored ticks and SSE frames stay small.
    #[serde(skip)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub histograms: BTreeMap<String, String>,
    /// Probe runs: the experiment running and what the finished ones showed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeProgress>,
}

impl Snapshot {
    /// Identities, including those of a run stored before `identities` existed.
    pub fn identities(&self) -> std::borrow::Cow<'_, Identities> {
        if self.tokens.is_empty() {
            std::borrow::Cow::Borrowed(&self.identities)
        } else {
            let mut ids = self.identities.clone();
            legacy_tokens(&self.tokens, &mut ids);
            std::borrow::Cow::Owned(ids)
        }
    }
}

/// What one agent sends each tick: that tick's deltas, never running totals, so a
/// resent tick is recognised by `(agent, seq)` and late data adds up wherever it lands.
/// The coordinator (`merge::Merger`) turns tick k of every agent into one `Snapshot`.
/// Histograms travel as HdrHistogram V2 (deflate, base64): merging them is exact.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct AgentTick {
    /// Which agent (0-based index of the run's agents).
    pub agent: u32,
    /// 1, 2, 3, ... one per tick of this agent.
    pub seq: u64,
    /// Since the agent's start (the run's start barrier).
    pub elapsed_ms: u64,
    /// This agent's share of the schedule's target now.
    pub target: u32,
    /// Connections this agent holds open at the tick's end, and the most it held within
    /// the tick.
    pub open: u64,
    pub peak_in_tick: u64,
    /// Attempts in flight now.
    pub connecting: u64,
    /// What happened during this tick.
    pub interval: Totals,
    /// Handshakes per identity during this tick (labelled, deltas).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub identities: Identities,
    /// Evidence first seen during this tick.
    pub evidence: Evidence,
    /// This tick's latency samples by metric.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub histograms: BTreeMap<String, String>,
    /// The agent's last tick: all its connections have ended.
    pub last: bool,
    /// The agent's process: its id, CPU time used so far, files open now.
    pub process: ProcessStats,
}

/// What an agent's process uses (read from `/proc` on Linux; zeros elsewhere).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ProcessStats {
    pub pid: u32,
    /// User + system CPU time since the process started.
    pub cpu_ms: u64,
    pub open_files: u64,
}

/// One agent as the coordinator last heard from it (shown on the run page).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct AgentStatus {
    pub agent: u32,
    pub open: u64,
    pub target: u32,
    /// CPU used over its last tick, in % of one core.
    pub cpu_pct: f64,
    pub open_files: u64,
    pub pid: u32,
    /// Its newest tick, and how long ago it arrived.
    pub last_seq: u64,
    pub last_tick_age_ms: u64,
    /// Its share ended, or the coordinator gave up on it.
    pub done: bool,
    pub lost: bool,
    /// Everything it sent (the merged totals are the sum of these).
    pub totals: Totals,
}

/// One experiment of a probe run and when it ran (elapsed ms of the run).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct PhaseSpan {
    pub name: String,
    pub start_ms: u64,
    pub end_ms: u64,
    /// Probe rate steps: (start_ms, end_ms, offered arrivals per second).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<(u64, u64, f64)>,
}

/// Close codes whose reasons are kept, distinct reasons kept per code, and the longest
/// reason kept (RFC 6455 §5.5 allows 123 bytes; a peer that sends more is cut here).
/// A hostile target sending a new reason on every close costs at most
/// `MAX_CLOSE_CODES × MAX_CLOSE_REASONS × MAX_CLOSE_REASON_BYTES` bytes.
pub const MAX_CLOSE_CODES: usize = 8;
pub const MAX_CLOSE_REASONS: usize = 5;
pub const MAX_CLOSE_REASON_BYTES: usize = 123;

/// Evidence kept from failed handshakes and from the close frames the target sent:
/// what the target said.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Evidence {
    /// Distinct `Retry-After` values seen, with counts.
    pub retry_after: BTreeMap<String, u64>,
    /// A few `X-RateLimit-*` / `RateLimit-*` headers seen (first of each name).
    pub rate_limit_headers: BTreeMap<String, String>,
    /// Up to a few sample bodies per HTTP status.
    pub bodies: BTreeMap<u16, Vec<String>>,
    /// The reason texts of the target's close frames, by close code, with how often
    /// each was sent (bounded: see `MAX_CLOSE_REASONS`; secrets scrubbed). Absent from
    /// exports made before it existed.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub close_reasons: BTreeMap<u16, BTreeMap<String, u64>>,
}

/// Statuses whose sample bodies are kept, bodies kept per status, and the longest body
/// sample, `Retry-After` value and rate-limit header (name or value) kept.
pub const MAX_BODY_STATUSES: usize = 8;
pub const MAX_BODIES: usize = 3;
pub const MAX_BODY_BYTES: usize = 256;
pub const MAX_HEADER_VALUE_BYTES: usize = 128;
/// Distinct `Retry-After` values and rate-limit headers kept.
pub const MAX_HEADERS: usize = 16;

/// `reason` as a close reason is kept: at most `MAX_CLOSE_REASON_BYTES`, control
/// characters made visible (`target_text`).
pub(crate) fn bounded_reason(reason: &str) -> std::borrow::Cow<'_, str> {
    target_text(reason, MAX_CLOSE_REASON_BYTES)
}

impl Evidence {
    /// Everything a target says enters here (this process's connections, an agent's
    /// tick, an import): made safe to show (`target_text`) and kept within the bounds.
    /// Counts `n` closes with `code` and `reason`: a reason already kept is always
    /// counted; a new one only while its code (and the code count) has room. Empty
    /// reasons are not evidence.
    pub fn add_close_reason(&mut self, code: u16, reason: &str, n: u64) {
        let reason = bounded_reason(reason);
        let reason = reason.as_ref();
        if reason.is_empty() {
            return;
        }
        if !self.close_reasons.contains_key(&code) && self.close_reasons.len() >= MAX_CLOSE_CODES {
            return;
        }
        let mine = self.close_reasons.entry(code).or_default();
        if let Some(c) = mine.get_mut(reason) {
            *c += n;
        } else if mine.len() < MAX_CLOSE_REASONS {
            mine.insert(reason.to_string(), n);
        }
    }

    /// Counts `n` refusals that said `Retry-After: value` (16 distinct values kept).
    pub fn add_retry_after(&mut self, value: &str, n: u64) {
        let value = target_text(value, MAX_HEADER_VALUE_BYTES);
        if self.retry_after.len() < MAX_HEADERS || self.retry_after.contains_key(value.as_ref()) {
            *self.retry_after.entry(value.into_owned()).or_default() += n;
        }
    }

    /// Keeps the first value of a rate-limit header (16 names kept).
    pub fn add_rate_limit_header(&mut self, name: &str, value: &str) {
        if self.rate_limit_headers.len() < MAX_HEADERS {
            let name = target_text(name, MAX_HEADER_VALUE_BYTES);
            if !self.rate_limit_headers.contains_key(name.as_ref()) {
                let value = target_text(value, MAX_HEADER_VALUE_BYTES).into_owned();
                self.rate_limit_headers.insert(name.into_owned(), value);
            }
        }
    }

    /// Keeps a sample body of a refusal with `status` (3 distinct per status, for 8
    /// statuses).
    pub fn add_body(&mut self, status: u16, body: &str) {
        if !self.bodies.contains_key(&status) && self.bodies.len() >= MAX_BODY_STATUSES {
            return;
        }
        let body = target_text(body, MAX_BODY_BYTES);
        let mine = self.bodies.entry(status).or_default();
        if mine.len() < MAX_BODIES && !mine.iter().any(|b| *b == body) {
            mine.push(body.into_owned());
        }
    }

    /// Adds `other`, keeping the bounds above (what an agent or an import sends is
    /// taken through the same `add_*` as this process's own evidence).
    pub fn merge(&mut self, other: &Evidence) {
        for (code, reasons) in &other.close_reasons {
            for (reason, n) in reasons {
                self.add_close_reason(*code, reason, *n);
            }
        }
        for (k, n) in &other.retry_after {
            self.add_retry_after(k, *n);
        }
        for (k, v) in &other.rate_limit_headers {
            self.add_rate_limit_header(k, v);
        }
        for (status, bodies) in &other.bodies {
            for b in bodies {
                self.add_body(*status, b);
            }
        }
    }
}

/// The result of a finished run.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Summary {
    pub duration_ms: u64,
    pub end_reason: Option<EndReason>,
    pub peak_open: u64,
    pub totals: Totals,
    /// Whole-run latency percentiles by metric.
    pub latency: BTreeMap<String, LatencyStats>,
    pub evidence: Evidence,
    /// Per client identity, by dimension, final.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub identities: Identities,
    /// Read from runs stored before `identities`: per token slot.
    #[serde(skip_serializing)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub tokens: BTreeMap<u32, IdentityTotals>,
    /// Whole-run HDR histograms (V2 deflate, base64) by metric, so runs can be merged
    /// and compared later.
    pub histograms: BTreeMap<String, String>,
    /// With `abort_on_fail`: the threshold that stopped the run (`metric expression`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aborted_by: Option<String>,
    /// Probe runs: the experiments, in order, with their time spans.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<PhaseSpan>,
    /// Probe runs: every experiment and what it showed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeProgress>,
    /// Agents that stopped reporting before the end (the run then ends `agent_lost`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lost_agents: Vec<LostAgent>,
    /// The agents of a run split over processes, as they ended (empty for one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<AgentStatus>,
}

impl Summary {
    /// Adds a later phase of the same (probe) run: counters and evidence add up, the
    /// peak is the highest, histograms merge exactly (so the latency table is that of
    /// every phase, as one run recording every sample would give; issue 16) and a
    /// cancelled phase makes the run cancelled.
    #[cfg(feature = "runtime")]
    pub fn absorb_phase(&mut self, other: &Summary) {
        let mut hist = crate::stats::Merged::new();
        hist.add_histograms(&self.histograms);
        hist.add_histograms(&other.histograms);
        self.histograms = hist.encoded_histograms();
        self.latency = hist.latency();
        self.totals.merge(&other.totals);
        self.peak_open = self.peak_open.max(other.peak_open);
        if matches!(
            other.end_reason,
            Some(EndReason::Cancelled | EndReason::AgentLost)
        ) {
            self.end_reason = other.end_reason;
        }
        self.lost_agents.extend(other.lost_agents.iter().cloned());
        self.evidence.merge(&other.evidence);
        merge_identities(&mut self.identities, &other.identities);
    }

    /// Identities, including those of a run stored before `identities` existed.
    pub fn identities(&self) -> Identities {
        let mut ids = self.identities.clone();
        legacy_tokens(&self.tokens, &mut ids);
        ids
    }
}

/// Latency metric keys (k6 names where k6 has one).
pub mod metric {
    /// Whole handshake: scheduled start -> 101 received.
    pub const WS_CONNECTING: &str = "ws_connecting";
    /// TCP connect.
    pub const TCP_CONNECT: &str = "tcp_connect";
    /// Upgrade request sent -> 101 (or other status) received.
    pub const WS_UPGRADE: &str = "ws_upgrade";
    /// `expect` reply round trip, from the scheduled send.
    pub const WS_RTT: &str = "ws_rtt";
    /// Ping -> pong.
    pub const WS_PING: &str = "ws_ping";
    /// Open -> first message received.
    pub const WS_FIRST_MSG: &str = "ws_first_msg";
    /// Open -> close.
    pub const WS_SESSION: &str = "ws_session_duration";
    /// TLS handshake (`wss://` only).
    pub const TLS_HANDSHAKE: &str = "tls_handshake";
    /// OAuth2 token request -> answer.
    pub const TOKEN_FETCH: &str = "token_fetch";
    /// An HTTP step before the handshake.
    pub const HTTP_STEP: &str = "http_step";
    /// Refused handshakes: upgrade request sent -> the refusing status line. Long waits
    /// mean the target queued the upgrade before refusing it.
    pub const WS_REFUSED: &str = "ws_refused";
    /// A responder's reply: the message it answers received -> the reply written.
    pub const WS_AUTO_REPLY: &str = "ws_auto_reply";
    /// A token rotation on a live connection (`auth.rotation`): due -> the new token in
    /// use (re-authentication sent, or its reply received; or the reconnect open).
    pub const WS_ROTATION: &str = "ws_rotation";
    /// Index order matches the engine's internal metric ids.
    pub const ALL: [&str; 13] = [
        WS_CONNECTING,
        TCP_CONNECT,
        WS_UPGRADE,
        WS_RTT,
        WS_PING,
        WS_FIRST_MSG,
        WS_SESSION,
        TLS_HANDSHAKE,
        TOKEN_FETCH,
        HTTP_STEP,
        WS_REFUSED,
        WS_AUTO_REPLY,
        WS_ROTATION,
    ];
}
