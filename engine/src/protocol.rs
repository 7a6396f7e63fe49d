//! The coordinator–agent protocol: JSON text frames over one `wss://` WebSocket that the
//! agent dials out to the coordinator's agent listener (`/api/agents/join`): the agent
//! authenticates with the run's secret, the coordinator with the certificate the agent
//! has pinned. What an agent is sent is `swarm::plan_for_agent` (its share's secrets,
//! no environment to read).
//!
//! A run's life, per agent: `hello` (who it is) → `assign` (its share of one phase of
//! the plan) → `ready` (set up, waiting at the barrier) → `start` (everyone at once) →
//! `tick`s (deltas, also the heartbeat) → `done` (its cumulative totals, checked against
//! the sum of its ticks). `cancel` can come at any time. A probe run repeats
//! assign..done per phase. Ticks are idempotent by `(agent, phase, seq)`: after a
//! reconnect the agent says `hello` again with its index and resends every tick not yet
//! `ack`ed; the coordinator takes each once and merges late ones into the next
//! snapshot. An agent that cannot reach its coordinator again within a grace period
//! stops its load.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::plan::Plan;
use crate::report::{AgentTick, Totals};
use crate::schedule::Share;

/// Bumped on any incompatible change; both ends refuse a different one. 2: the plan an
/// agent is sent reads no environment (the coordinator sends values) and holds only
/// its own share of static tokens; the channel is `wss://` with the coordinator pinned.
pub const PROTOCOL: u32 = 2;

/// What an agent sends. Externally tagged (`{"tick": {...}}`): an internally tagged
/// enum buffers its content, and buffered maps with number keys (evidence bodies by
/// status) do not read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FromAgent {
    /// First frame on every connection.
    Hello {
        /// Its index, when it has one (local agents, a Job's completion index, a
        /// reconnect); `None` lets the coordinator give it one.
        index: Option<u32>,
        protocol: u32,
        /// `socketswarm <version>`.
        version: String,
        /// Where it runs and what it can hold.
        host: String,
        nofile: u64,
        source_addrs: Vec<IpAddr>,
    },
    /// Set up for `phase`, waiting at the barrier.
    Ready {
        phase: u32,
    },
    /// `phase` could not be set up (a setup error: the run cannot start).
    Failed {
        phase: u32,
        message: String,
    },
    Tick {
        phase: u32,
        tick: Box<AgentTick>,
    },
    /// Its share of `phase` is over: cumulative totals and how many ticks carried them.
    Done {
        phase: u32,
        totals: Totals,
        ticks: u64,
    },
}

/// What the coordinator sends (externally tagged, as `FromAgent`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToAgent {
    /// The agent's index (answer to a `hello` without one).
    Welcome { index: u32 },
    /// Its share of one phase.
    Assign {
        phase: u32,
        plan: Box<Plan>,
        share: Share,
        tick_ms: u64,
        /// The server's target allowlist, enforced by the agent on what it connects to.
        allow_targets: Vec<String>,
    },
    /// Every agent is ready: start in `in_ms`.
    Start { phase: u32, in_ms: u64 },
    /// Stop the load now.
    Cancel,
    /// Ticks of `phase` up to `seq` are merged: no need to resend them.
    Ack { phase: u32, seq: u64 },
    /// The run is over.
    Bye,
    /// To an agent waiting in a server's pool: join the run at `path` (on the server
    /// it reached the pool through) with the run's `secret`, as agent `index`.
    Invite {
        path: String,
        secret: String,
        index: u32,
    },
}

impl FromAgent {
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl ToAgent {
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let plan: Plan = serde_json::from_str(
            r#"{"target":"ws://127.0.0.1:9/x","stages":[{"duration":"1s","connections":3}]}"#,
        )
        .unwrap();
        let frames = vec![
            ToAgent::Assign {
                phase: 0,
                plan: Box::new(plan),
                share: Share { index: 1, of: 3 },
                tick_ms: 1000,
                allow_targets: vec!["127.0.0.0/8".into()],
            },
            ToAgent::Start {
                phase: 0,
                in_ms: 250,
            },
            ToAgent::Cancel,
        ];
        for f in frames {
            let back: ToAgent = serde_json::from_str(&f.to_text()).unwrap();
            assert_eq!(back, f);
        }
        let mut tick = AgentTick {
            agent: 1,
            seq: 7,
            ..Default::default()
        };
        tick.interval.failures.insert("http_429".into(), 3);
        // Evidence keeps bodies by status: a map with number keys must read back.
        tick.evidence.bodies.insert(429, vec!["busy".into()]);
        let t = FromAgent::Tick {
            phase: 2,
            tick: Box::new(tick),
        };
        let text = t.to_text();
        assert!(text.starts_with(r#"{"tick":"#), "{text}");
        assert_eq!(serde_json::from_str::<FromAgent>(&text).unwrap(), t);
    }
}
