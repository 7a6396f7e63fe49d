//! What leaves the engine: per-tick `Snapshot`s and one final `Summary`. Pure serde types,
//! also compiled into the browser build. Metric names follow k6 (`ws_connecting`,
//! `ws_msgs_sent`, ...). Every counter is cumulative in `Totals` and per-tick in
//! `Interval`, so charts and the stored series need no client-side differencing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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

/// Handshake outcomes of one client identity (a token slot, a source address, a header
/// or query value the plan varies), cumulative.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct IdentityTotals {
    pub attempted: u64,
    pub opened: u64,
    /// Turned away: 429/503, no answer in time, or TCP refused/reset.
    pub rejected: u64,
    /// Refused with 401/403.
    pub auth_failed: u64,
    /// Any other failure.
    pub other_failed: u64,
    pub closed: u64,
}

impl IdentityTotals {
    pub fn merge(&mut self, o: &IdentityTotals) {
        self.attempted += o.attempted;
        self.opened += o.opened;
        self.rejected += o.rejected;
        self.auth_failed += o.auth_failed;
        self.other_failed += o.other_failed;
        self.closed += o.closed;
    }
    pub fn open(&self) -> u64 {
        self.opened.saturating_sub(self.closed)
    }
}

/// Per client identity, by dimension: `token` (slot number), `source_addr` (the
/// address), `header:NAME` and `query:NAME` (`#1`, `#2`, … in order of first use, so a
/// key's value never leaves the engine). Each dimension tracks at most
/// `MAX_IDENTITIES` identities.
pub type Identities = BTreeMap<String, BTreeMap<String, IdentityTotals>>;

/// Identities tracked per dimension (per-connection values would grow without bound).
pub const MAX_IDENTITIES: usize = 256;

/// The dimension key of token slots.
pub const DIM_TOKEN: &str = "token";
/// The dimension key of local source addresses.
pub const DIM_SOURCE: &str = "source_addr";

/// Adds `from` into `into`, keeping the per-dimension bound.
pub fn merge_identities(into: &mut Identities, from: &Identities) {
    for (dim, ids) in from {
        let mine = into.entry(dim.clone()).or_default();
        for (id, t) in ids {
            if mine.len() < MAX_IDENTITIES || mine.contains_key(id) {
                mine.entry(id.clone()).or_default().merge(t);
            }
        }
    }
}

/// Runs stored before identities had dimensions kept per-token totals by slot number:
/// they read as the `token` dimension.
fn legacy_tokens(tokens: &BTreeMap<u32, IdentityTotals>, into: &mut Identities) {
    if !tokens.is_empty() && !into.contains_key(DIM_TOKEN) {
        into.insert(
            DIM_TOKEN.into(),
            tokens
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        );
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

/// Evidence kept from failed handshakes: what the target said.
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
}

impl Evidence {
    /// Adds `other`, keeping the bounds: 16 Retry-After values, 16 headers, 3 bodies
    /// per status.
    pub fn merge(&mut self, other: &Evidence) {
        for (k, n) in &other.retry_after {
            if self.retry_after.len() < 16 || self.retry_after.contains_key(k) {
                *self.retry_after.entry(k.clone()).or_default() += n;
            }
        }
        for (k, v) in &other.rate_limit_headers {
            if self.rate_limit_headers.len() < 16 {
                self.rate_limit_headers
                    .entry(k.clone())
                    .or_insert_with(|| v.clone());
            }
        }
        for (status, bodies) in &other.bodies {
            let mine = self.bodies.entry(*status).or_default();
            for b in bodies {
                if mine.len() < 3 && !mine.contains(b) {
                    mine.push(b.clone());
                }
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
    /// Agents that stopped reporting before the end (the run then ends `agent_lost`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lost_agents: Vec<LostAgent>,
    /// The agents of a run split over processes, as they ended (empty for one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<AgentStatus>,
}

impl Summary {
    /// Adds a later phase of the same (probe) run: counters and evidence add up, the
    /// peak is the highest, latency and histograms stay those of the first phase, and a
    /// cancelled phase makes the run cancelled.
    pub fn absorb_phase(&mut self, other: &Summary) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_merge_adds_maps_and_counts() {
        let mut a = Totals {
            attempted: 2,
            opened: 1,
            failed: 1,
            ..Default::default()
        };
        a.failures.insert("http_429".into(), 1);
        let mut b = Totals {
            attempted: 3,
            opened: 3,
            closed: 1,
            ..Default::default()
        };
        b.failures.insert("http_429".into(), 2);
        b.closes.insert("client".into(), 1);
        a.merge(&b);
        assert_eq!((a.attempted, a.opened, a.failed, a.closed), (5, 4, 1, 1));
        assert_eq!(a.failures["http_429"], 3);
        assert_eq!(a.open(), 3);
    }
}

/// A run's ticks as columns, ready for charts. Rates are per second (interval counts
/// divided by the tick's actual length), latencies in milliseconds.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Series {
    /// Last `seq` included (live updates append only newer ticks).
    pub last_seq: u64,
    /// Elapsed seconds at each tick.
    pub t: Vec<f64>,
    pub target: Vec<f64>,
    pub open: Vec<f64>,
    /// Connects per second that opened.
    pub opened_rate: Vec<f64>,
    /// Connect failures per second, by outcome key.
    pub failed_rate: BTreeMap<String, Vec<f64>>,
    /// Session ends per second not caused by us, by outcome key.
    pub drop_rate: BTreeMap<String, Vec<f64>>,
    pub sent_rate: Vec<f64>,
    pub received_rate: Vec<f64>,
    /// Per-tick percentiles (ms) by metric and quantile name (`p50`, `p95`, `p99`).
    pub latency_ms: BTreeMap<String, BTreeMap<String, Vec<Option<f64>>>>,
    /// Attempts in flight at each tick (started, not yet open or failed).
    pub connecting: Vec<f64>,
    /// Sessions the target closed within `AT_ONCE_MS` of opening, per second.
    pub closed_at_once_rate: Vec<f64>,
    /// Per identity dimension (`token`, `source_addr`, `header:NAME`, `query:NAME`) and
    /// identity (at most `SERIES_IDENTITIES` per dimension): open connections, and
    /// cumulative rejections.
    pub identity_open: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
    pub identity_rejected: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
}

/// Identities per dimension kept as series columns (the summary keeps more).
pub const SERIES_IDENTITIES: usize = 64;

impl Series {
    /// Builds the series of `snaps` (in seq order).
    pub fn from_snapshots(snaps: &[Snapshot]) -> Series {
        let mut s = Series::default();
        for snap in snaps {
            s.push(snap);
        }
        s
    }

    /// The series as CSV, one row per tick: `t_s,target,open,opened_per_s`, then
    /// `failed_<kind>_per_s`, `dropped_<kind>_per_s`, `sent_per_s`, `received_per_s`
    /// and `<metric>_<q>_ms` columns (empty cell = no sample that second). Header cells
    /// carry outcome names, which an imported run can set to anything, so each goes
    /// through [`csv_cell`]; the other cells are numbers we format.
    pub fn to_csv(&self) -> String {
        let mut head = vec![
            "t_s".to_string(),
            "target".into(),
            "open".into(),
            "opened_per_s".into(),
        ];
        let mut cols: Vec<Vec<Option<f64>>> = vec![
            self.t.iter().map(|v| Some(*v)).collect(),
            self.target.iter().map(|v| Some(*v)).collect(),
            self.open.iter().map(|v| Some(*v)).collect(),
            self.opened_rate.iter().map(|v| Some(*v)).collect(),
        ];
        for (k, v) in &self.failed_rate {
            head.push(format!("failed_{k}_per_s"));
            cols.push(v.iter().map(|v| Some(*v)).collect());
        }
        for (k, v) in &self.drop_rate {
            head.push(format!("dropped_{k}_per_s"));
            cols.push(v.iter().map(|v| Some(*v)).collect());
        }
        head.push("sent_per_s".into());
        cols.push(self.sent_rate.iter().map(|v| Some(*v)).collect());
        head.push("received_per_s".into());
        cols.push(self.received_rate.iter().map(|v| Some(*v)).collect());
        for (m, qs) in &self.latency_ms {
            for (q, v) in qs {
                head.push(format!("{m}_{q}_ms"));
                cols.push(v.clone());
            }
        }
        let head: Vec<String> = head.iter().map(|h| csv_cell(h).into_owned()).collect();
        let mut out = head.join(",");
        out.push('\n');
        for i in 0..self.t.len() {
            let row: Vec<String> = cols
                .iter()
                .map(|c| match c.get(i).copied().flatten() {
                    Some(v) if v.fract() == 0.0 => format!("{v:.0}"),
                    Some(v) => format!("{v:.3}"),
                    None => String::new(),
                })
                .collect();
            out.push_str(&row.join(","));
            out.push('\n');
        }
        out
    }

    /// Appends one tick (ignored if not newer than the last one).
    pub fn push(&mut self, snap: &Snapshot) {
        if snap.seq <= self.last_seq && !self.t.is_empty() {
            return;
        }
        let n = self.t.len();
        let prev_ms = self
            .t
            .last()
            .map(|t| (t * 1000.0).round() as u64)
            .unwrap_or(0);
        let mut secs = (snap.elapsed_ms.saturating_sub(prev_ms) as f64 / 1000.0).max(0.001);
        // The final tick can be a sliver (the run ended just after a tick): rate it over
        // a normal tick's length so a few late replies do not look like a spike.
        if let [.., a, b] = self.t[..] {
            secs = secs.max(b - a);
        }
        let rate = |v: u64| v as f64 / secs;
        self.last_seq = snap.seq;
        self.t.push(snap.elapsed_ms as f64 / 1000.0);
        self.target.push(f64::from(snap.target));
        self.open.push(snap.open as f64);
        self.opened_rate.push(rate(snap.interval.opened));
        self.sent_rate.push(rate(snap.interval.msgs_sent));
        self.received_rate.push(rate(snap.interval.msgs_received));
        let grow = |map: &mut BTreeMap<String, Vec<f64>>,
                    from: &BTreeMap<String, u64>,
                    keep: &dyn Fn(&str) -> bool| {
            for k in from.keys().filter(|k| keep(k)) {
                map.entry(k.clone()).or_insert_with(|| vec![0.0; n]);
            }
            for (k, col) in map.iter_mut() {
                col.push(rate(from.get(k).copied().unwrap_or(0)));
            }
        };
        grow(&mut self.failed_rate, &snap.interval.failures, &|_| true);
        self.connecting.push(snap.connecting as f64);
        self.closed_at_once_rate
            .push(rate(snap.interval.closed_at_once));
        let ids = snap.identities();
        for (dim, by_id) in ids.iter() {
            let open = self.identity_open.entry(dim.clone()).or_default();
            for id in by_id.keys() {
                if open.len() < SERIES_IDENTITIES || open.contains_key(id) {
                    open.entry(id.clone()).or_insert_with(|| vec![0.0; n]);
                }
            }
            let rejected = self.identity_rejected.entry(dim.clone()).or_default();
            for id in open.keys() {
                rejected.entry(id.clone()).or_insert_with(|| vec![0.0; n]);
            }
        }
        for (dim, cols) in self.identity_open.iter_mut() {
            for (id, col) in cols.iter_mut() {
                let t = ids.get(dim).and_then(|m| m.get(id));
                col.push(t.map(|t| t.open() as f64).unwrap_or(0.0));
            }
        }
        for (dim, cols) in self.identity_rejected.iter_mut() {
            for (id, col) in cols.iter_mut() {
                let t = ids.get(dim).and_then(|m| m.get(id));
                col.push(
                    t.map(|t| t.rejected as f64)
                        .or_else(|| col.last().copied())
                        .unwrap_or(0.0),
                );
            }
        }
        // The one drop rule (`CloseKind::is_drop`); a key this build does not know
        // stays a drop, as `Totals::dropped` counts it.
        grow(&mut self.drop_rate, &snap.interval.closes, &|k| {
            crate::outcome::CloseKind::parse(k).is_none_or(|c| c.is_drop())
        });
        for metric in [
            metric::WS_CONNECTING,
            metric::WS_RTT,
            metric::WS_PING,
            metric::WS_REFUSED,
        ] {
            let l = snap.latency.get(metric);
            if l.is_none() && !self.latency_ms.contains_key(metric) {
                continue;
            }
            let by_q = self.latency_ms.entry(metric.to_string()).or_default();
            for (q, v) in [
                ("p50", l.map(|l| l.p50_us)),
                ("p95", l.map(|l| l.p95_us)),
                ("p99", l.map(|l| l.p99_us)),
            ] {
                let col = by_q.entry(q.to_string()).or_insert_with(|| vec![None; n]);
                col.push(v.map(|us| us as f64 / 1000.0));
            }
        }
    }
}

/// One CSV cell (RFC 4180): quoted when it holds `,`, `"`, CR or LF (quotes doubled),
/// so a name never spills into other cells or rows; and a cell that a spreadsheet would
/// read as a formula (starting with `=`, `+`, `-`, `@`, tab or CR) gets a leading `'`
/// (OWASP "CSV injection"). Only for text cells: numbers stay as they are.
pub fn csv_cell(text: &str) -> std::borrow::Cow<'_, str> {
    let formula = text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = text.contains([',', '"', '\n', '\r']);
    if !formula && !quote {
        return std::borrow::Cow::Borrowed(text);
    }
    let cell = if formula {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if quote {
        std::borrow::Cow::Owned(format!("\"{}\"", cell.replace('"', "\"\"")))
    } else {
        std::borrow::Cow::Owned(cell)
    }
}

#[cfg(test)]
mod series_tests {
    use super::*;

    fn snap(seq: u64, ms: u64, opened: u64, f429: u64) -> Snapshot {
        let mut s = Snapshot {
            seq,
            elapsed_ms: ms,
            target: 10,
            open: opened,
            ..Default::default()
        };
        s.interval.opened = opened;
        if f429 > 0 {
            s.interval.failures.insert("http_429".into(), f429);
        }
        s
    }

    #[test]
    fn csv_has_one_row_per_tick_and_a_column_per_class() {
        let s = Series::from_snapshots(&[snap(1, 1000, 5, 0), snap(2, 2000, 3, 4)]);
        let csv = s.to_csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "t_s,target,open,opened_per_s,failed_http_429_per_s,sent_per_s,received_per_s"
        );
        assert_eq!(lines[1], "1,10,5,5,0,0,0");
        assert_eq!(lines[2], "2,10,3,3,4,0,0");
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn csv_quotes_header_cells_so_names_stay_in_their_column() {
        let mut a = snap(1, 1000, 5, 0);
        for name in ["a,=HYPERLINK(\"x\"),b", "i\n=2+3\nj", "plain"] {
            a.interval.failures.insert(name.into(), 1);
        }
        a.interval.closes.insert("=1+2".into(), 1);
        assert_eq!(
            Series::from_snapshots(&[a]).to_csv(),
            "t_s,target,open,opened_per_s,\"failed_a,=HYPERLINK(\"\"x\"\"),b_per_s\",\
             \"failed_i\n=2+3\nj_per_s\",failed_plain_per_s,\
             dropped_=1+2_per_s,sent_per_s,received_per_s\n1,10,5,5,1,1,1,1,0,0\n"
        );
    }

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(csv_cell("t_s"), "t_s");
        assert_eq!(csv_cell("=1+2"), "'=1+2");
        assert_eq!(csv_cell("+1"), "'+1");
        assert_eq!(csv_cell("-1"), "'-1");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("\tx"), "'\tx");
        assert_eq!(csv_cell("\r=x"), "\"'\r=x\"");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=a,b"), "\"'=a,b\"");
        assert_eq!(csv_cell("a\nb"), "\"a\nb\"");
    }

    #[test]
    fn columns_stay_aligned_and_rates_use_tick_length() {
        let mut a = snap(1, 500, 5, 0);
        a.latency.insert(
            metric::WS_CONNECTING.into(),
            LatencyStats {
                p50_us: 2000,
                p95_us: 3000,
                p99_us: 4000,
                ..Default::default()
            },
        );
        let snaps = [
            a,
            snap(2, 1000, 5, 2),
            snap(3, 2000, 0, 4),
            snap(4, 2010, 2, 0),
        ];
        let s = Series::from_snapshots(&snaps);
        assert_eq!(s.t, vec![0.5, 1.0, 2.0, 2.01]);
        assert_eq!(
            s.opened_rate,
            vec![10.0, 10.0, 0.0, 2.0],
            "the 10 ms sliver is rated over 1 s"
        );
        assert_eq!(s.failed_rate["http_429"], vec![0.0, 4.0, 4.0, 0.0]);
        let c = &s.latency_ms["ws_connecting"];
        assert_eq!(c["p50"], vec![Some(2.0), None, None, None]);
        assert!(s
            .latency_ms
            .values()
            .all(|q| q.values().all(|v| v.len() == 4)));
        let mut again = s.clone();
        again.push(&snaps[2]);
        assert_eq!(again, s, "an old tick is ignored");
    }
}
