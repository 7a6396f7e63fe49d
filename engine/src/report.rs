//! What leaves the engine: per-tick `Snapshot`s and one final `Summary`. Pure serde types,
//! also compiled into the browser build. Metric names follow k6 (`ws_connecting`,
//! `ws_msgs_sent`, ...). Every counter is cumulative in `Totals` and per-tick in
//! `Interval`, so charts and the stored series need no client-side differencing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where the run is along its stages (goose's AttackPhase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Ramping,
    Holding,
    Draining,
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// All stages ran to the end.
    Completed,
    /// A user (or server shutdown) cancelled it.
    Cancelled,
}

/// Cumulative counters of a run (or of one interval, in `Interval`).
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
    pub msgs_sent: u64,
    pub msgs_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// `expect` steps that timed out.
    pub expect_timeouts: u64,
    /// `ping` steps that got no pong in time.
    pub ping_timeouts: u64,
}

impl Totals {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Totals) {
        self.attempted += other.attempted;
        self.opened += other.opened;
        self.failed += other.failed;
        self.closed += other.closed;
        self.dropped += other.dropped;
        self.msgs_sent += other.msgs_sent;
        self.msgs_received += other.msgs_received;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.expect_timeouts += other.expect_timeouts;
        self.ping_timeouts += other.ping_timeouts;
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
    pub totals: Totals,
    /// What happened during this tick only.
    pub interval: Totals,
    /// Latency percentiles of this tick, by metric (`ws_connecting`, `ws_rtt`, ...).
    pub latency: BTreeMap<String, LatencyStats>,
}

/// Evidence kept from failed handshakes: what the target said.
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

/// The result of a finished run.
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
    /// Whole-run HDR histograms (V2 deflate, base64) by metric, so runs can be merged
    /// and compared later.
    pub histograms: BTreeMap<String, String>,
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
    pub const ALL: [&str; 7] = [
        WS_CONNECTING,
        TCP_CONNECT,
        WS_UPGRADE,
        WS_RTT,
        WS_PING,
        WS_FIRST_MSG,
        WS_SESSION,
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
