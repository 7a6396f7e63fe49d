//! The coordinator's side of a run: tick k of every agent becomes the run's snapshot k,
//! and all of them together its summary — the one place where results of several
//! agents (processes, machines, pods) meet. A run in one process is "a coordinator and
//! one agent": the same path.
//!
//! Invariants: ticks carry deltas, so merging is addition: counters add up, HDR
//! histograms merge exactly (the merged percentiles are those one process recording
//! every sample would give), evidence and identities merge within their bounds. A tick
//! is taken once per `(agent, seq)` (a resend after a reconnect is ignored); a tick
//! that arrives after its snapshot went out (a slow or reconnecting agent) is added to
//! the next snapshot: late data is merged, never dropped. Snapshot k goes out once every
//! agent still running has delivered its tick k, or when the caller gives up waiting
//! (`expire`, `lose`). Before a tick is merged, [`guard::TickGuard`] checks it against
//! its agent's share: a tick past what the share can do refuses the agent.

use std::collections::{BTreeMap, BTreeSet};

use crate::plan::Stage;
use crate::report::{AgentStatus, AgentTick, EndReason, Snapshot, Summary};
use crate::schedule::phase_at;
use crate::stats::Merged;

/// What the coordinator knows of one agent.
#[derive(Debug, Default, Clone)]
struct AgentState {
    /// What it reported, for the run page.
    status: AgentStatus,
    /// When its newest tick arrived.
    heard: Option<std::time::Instant>,
    /// Its CPU time and elapsed at the tick before, for the CPU share.
    cpu_at: (u64, u64),
    /// Ticks taken (for resends).
    seen: BTreeSet<u64>,
    /// As of its newest tick.
    target: u32,
    open: u64,
    connecting: u64,
    /// Its last tick arrived (it will send no more).
    done: Option<u64>,
    /// Given up on (no more waiting for it).
    lost: bool,
}

impl AgentState {
    /// Still expected to deliver tick `seq`.
    fn owes(&self, seq: u64) -> bool {
        !self.lost && self.done.is_none_or(|last| seq <= last) && !self.seen.contains(&seq)
    }
}

/// Merges the ticks of `agents` agents into snapshots and a summary.
pub struct Merger {
    stages: Vec<Stage>,
    agents: Vec<AgentState>,
    /// Everything merged so far (whole run).
    whole: Merged,
    /// Ticks received and not yet out, by seq.
    pending: BTreeMap<u64, Vec<AgentTick>>,
    /// Data for seqs already out, to add to the next snapshot.
    late: Option<Merged>,
    /// The newest seq out.
    emitted: u64,
    peak_open: u64,
    /// The outcome keys the run keeps (every tick's keys are bounded on arrival, so an
    /// agent, rogue or not, cannot grow the run's keys past the bound).
    keys: crate::report::OutcomeKeys,
}

impl Merger {
    pub fn new(agents: usize, stages: Vec<Stage>) -> Merger {
        Merger {
            stages,
            agents: vec![AgentState::default(); agents.max(1)],
            whole: Merged::new(),
            pending: BTreeMap::new(),
            late: None,
            emitted: 0,
            peak_open: 0,
            keys: crate::report::OutcomeKeys::new(),
        }
    }

    /// The schedule the phases are read from, after a steering change (`steer.rs`).
    pub fn set_stages(&mut self, stages: Vec<Stage>) {
        self.stages = stages;
    }

    /// Takes one tick; returns the snapshots it completed (oldest first).
    pub fn add(&mut self, mut t: AgentTick) -> Vec<Snapshot> {
        let Some(a) = self.agents.get_mut(t.agent as usize) else {
            return Vec::new();
        };
        if !a.seen.insert(t.seq) {
            return Vec::new();
        }
        self.keys.bound(&mut t.interval);
        a.status.totals.merge(&t.interval);
        if a.done.is_none_or(|last| t.seq >= last) && t.seq >= a.status.last_seq {
            a.target = t.target;
            a.open = t.open;
            a.connecting = t.connecting;
            let (cpu0, ms0) = a.cpu_at;
            let dt = t.elapsed_ms.saturating_sub(ms0).max(1);
            a.status.cpu_pct =
                (t.process.cpu_ms.saturating_sub(cpu0) as f64 * 100.0 / dt as f64 * 10.0).round()
                    / 10.0;
            a.cpu_at = (t.process.cpu_ms, t.elapsed_ms);
            a.status.open = t.open;
            a.status.target = t.target;
            a.status.open_files = t.process.open_files;
            a.status.pid = t.process.pid;
            a.status.last_seq = t.seq;
            a.heard = Some(std::time::Instant::now());
        }
        if t.last {
            a.done = Some(t.seq);
            a.status.done = true;
        }
        if t.seq <= self.emitted {
            self.late.get_or_insert_with(Merged::new).add(&t);
        } else {
            self.pending.entry(t.seq).or_default().push(t);
        }
        self.ready()
    }

    /// Stops waiting for `agent` (lost); returns the snapshots that completes.
    pub fn lose(&mut self, agent: usize) -> Vec<Snapshot> {
        if let Some(a) = self.agents.get_mut(agent) {
            a.lost = true;
            a.status.lost = true;
        }
        self.ready()
    }

    /// Sends out every pending seq up to `seq`, complete or not (an agent is late).
    pub fn expire(&mut self, seq: u64) -> Vec<Snapshot> {
        let mut out = Vec::new();
        while let Some((&k, _)) = self.pending.first_key_value() {
            if k > seq {
                break;
            }
            out.extend(self.emit(k));
        }
        out
    }

    /// True once every agent has sent its last tick (or was lost) and all is out.
    pub fn finished(&self) -> bool {
        self.pending.is_empty() && self.agents.iter().all(|a| a.lost || a.done.is_some())
    }

    /// Has `agent` sent its last tick?
    pub fn done(&self, agent: usize) -> bool {
        self.agents.get(agent).is_some_and(|a| a.done.is_some())
    }

    /// Agents given up on.
    pub fn lost(&self) -> Vec<usize> {
        (0..self.agents.len())
            .filter(|&i| self.agents[i].lost)
            .collect()
    }

    /// The newest seq out.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// The run so far, for thresholds judged while it goes on.
    pub fn so_far(&self) -> Summary {
        Summary {
            totals: self.whole.totals.clone(),
            peak_open: self.peak_open,
            latency: self.whole.latency(),
            ..Summary::default()
        }
    }

    fn ready(&mut self) -> Vec<Snapshot> {
        let mut out = Vec::new();
        while let Some((&k, _)) = self.pending.first_key_value() {
            if self.agents.iter().any(|a| a.owes(k)) {
                break;
            }
            out.extend(self.emit(k));
        }
        out
    }

    /// Snapshot `k` from its pending ticks (and late data).
    fn emit(&mut self, k: u64) -> Option<Snapshot> {
        let ticks = self.pending.remove(&k)?;
        let mut interval = self.late.take().unwrap_or_else(Merged::new);
        for t in &ticks {
            interval.add(t);
        }
        self.whole.absorb(&interval);
        let solo = self.agents.len() == 1;
        let open = self.whole.totals.open();
        // One agent knows its peak within the tick; several can only be summed at the
        // tick's end (their peaks need not coincide).
        let peak = if solo {
            ticks.iter().map(|t| t.peak_in_tick).max().unwrap_or(0)
        } else {
            open
        };
        self.peak_open = self.peak_open.max(peak).max(open);
        self.emitted = self.emitted.max(k);
        let elapsed_ms = ticks.iter().map(|t| t.elapsed_ms).max().unwrap_or(0);
        Some(Snapshot {
            seq: k,
            elapsed_ms,
            phase: phase_at(&self.stages, std::time::Duration::from_millis(elapsed_ms)),
            target: self.agents.iter().map(|a| a.target).sum(),
            open,
            peak_open: self.peak_open,
            connecting: self.agents.iter().map(|a| a.connecting).sum(),
            totals: self.whole.totals.clone(),
            interval: interval.totals.clone(),
            latency: interval.latency(),
            identities: self.whole.identities.clone(),
            tokens: Default::default(),
            agents: self.statuses(),
            histograms: self.whole.encoded_histograms(),
            probe: None,
        })
    }

    /// Each agent as last heard from (nothing for a run in one process).
    pub fn statuses(&self) -> Vec<AgentStatus> {
        if self.agents.len() < 2 {
            return Vec::new();
        }
        self.agents
            .iter()
            .enumerate()
            .map(|(i, a)| AgentStatus {
                agent: i as u32,
                last_tick_age_ms: a.heard.map_or(0, |h| h.elapsed().as_millis() as u64),
                ..a.status.clone()
            })
            .collect()
    }

    /// The summary of the whole run (call once `finished`, or after giving up).
    pub fn summary(
        &mut self,
        duration_ms: u64,
        end_reason: EndReason,
        aborted_by: Option<String>,
    ) -> Summary {
        if let Some(late) = self.late.take() {
            self.whole.absorb(&late);
        }
        Summary {
            duration_ms,
            end_reason: Some(end_reason),
            aborted_by,
            peak_open: self.peak_open,
            totals: self.whole.totals.clone(),
            latency: self.whole.latency(),
            evidence: self.whole.evidence.clone(),
            identities: self.whole.identities.clone(),
            tokens: Default::default(),
            histograms: self.whole.encoded_histograms(),
            phases: Vec::new(),
            probe: None,
            lost_agents: Vec::new(),
            agents: self.statuses(),
        }
    }
}

pub mod guard;
#[cfg(test)]
mod tests;
