//! The coordinator task: the agents' ticks in, the run's updates out. It owns the
//! `Merger` and the `TickGuard` every tick passes first (an agent whose tick says more
//! than its share can do is refused and named, never merged), judges thresholds on
//! merged data only (`abort_on_fail` cancels every
//! agent), gives up on an agent that stopped ticking (a lost agent ends the run, with
//! the reason in the summary), and ends the run once every agent sent its last tick.
//!
//! Agents reach it as `AgentMsg`s on one channel: in this process straight from their
//! aggregators, from other processes through the server's agent endpoint (the server
//! bridges their WebSocket to the same channel). One path either way.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::merge::guard::TickGuard;
use crate::merge::Merger;
use crate::plan::Plan;
use crate::report::{AgentTick, EndReason, LostAgent, Snapshot, Summary};

/// What the engine emits for one run.
#[derive(Debug, Clone)]
pub enum Update {
    /// About once per tick while the run is live.
    Tick(Snapshot),
    /// Exactly once, last.
    Finished(Summary),
}

/// What reaches the coordinator from (or about) an agent.
#[derive(Debug, Clone)]
pub enum AgentMsg {
    Tick(Box<AgentTick>),
    /// The agent is gone (its process exited, its connection broke for good).
    Lost {
        agent: u32,
        reason: String,
    },
}

/// What the coordinator needs to know of the run.
pub struct Coordination {
    pub agents: usize,
    pub plan: Plan,
    /// Tick period (to tell a late agent from a lost one).
    pub tick: Duration,
    /// An agent silent this long is lost.
    pub silence: Duration,
    /// When the run started.
    pub started: Instant,
    /// A steered run's newest course: the phase a snapshot reports follows it.
    pub steer: Option<tokio::sync::watch::Receiver<crate::steer::Course>>,
}

/// Spawns the coordinator on `rt`; `cancel` is the run's (cancelling it ends every
/// agent, which then send their last ticks).
pub fn coordinate(
    mut rx: mpsc::Receiver<AgentMsg>,
    mut c: Coordination,
    cancel: CancellationToken,
    rt: &tokio::runtime::Handle,
) -> mpsc::Receiver<Update> {
    let (out, updates) = mpsc::channel(64);
    rt.spawn(async move {
        let mut merger = Merger::new(c.agents, c.plan.stages.clone());
        let mut guard = TickGuard::new(
            c.agents,
            c.plan.peak_connections(),
            c.plan.sessions.is_some(),
            c.tick,
        );
        // Agents whose ticks said more than their share can do: nothing more of theirs
        // is merged.
        let mut refused = vec![false; c.agents.max(1)];
        // What agents send back is scrubbed here too: an agent in another process
        // could echo a secret it was sent into its evidence.
        let secrets = crate::secrets::Secrets::of_plan(&c.plan);
        let mut aborted_by: Option<String> = None;
        let mut lost: Vec<LostAgent> = Vec::new();
        let mut heard = vec![Instant::now(); c.agents];
        let mut watch = tokio::time::interval(c.tick.max(Duration::from_millis(100)));
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !merger.finished() {
            let snaps = tokio::select! {
                m = rx.recv() => match m {
                    Some(AgentMsg::Tick(mut t)) => {
                        secrets.scrub_evidence(&mut t.evidence);
                        let a = t.agent as usize;
                        if refused.get(a).copied().unwrap_or(true) {
                            Vec::new()
                        } else if let Err(why) = guard.check(&t, c.started.elapsed()) {
                            // Refused and named: the run ends; this tick is not merged.
                            refused[a] = true;
                            lost.push(LostAgent { agent: t.agent, reason: format!("agent {a} was refused and nothing more of it merged: {why}") });
                            cancel.cancel();
                            merger.lose(a)
                        } else {
                            if let Some(h) = heard.get_mut(a) {
                                *h = Instant::now();
                            }
                            merger.add(*t)
                        }
                    }
                    Some(AgentMsg::Lost { agent, reason }) => {
                        lost.push(LostAgent { agent, reason });
                        cancel.cancel();
                        merger.lose(agent as usize)
                    }
                    // Every agent's channel closed: those without a last tick are gone.
                    None => {
                        let mut s = Vec::new();
                        for a in 0..c.agents {
                            if !merger.lost().contains(&a) && !merger.done(a) {
                                lost.push(LostAgent { agent: a as u32, reason: "it stopped without its last tick".into() });
                                s.extend(merger.lose(a));
                            }
                        }
                        s
                    }
                },
                _ = watch.tick() => {
                    // A snapshot waits at most a few ticks for a late agent; an agent
                    // silent for `silence` is lost.
                    let mut s = Vec::new();
                    let behind = c.started.elapsed().as_millis() as u64 / c.tick.as_millis().max(1) as u64;
                    s.extend(merger.expire(behind.saturating_sub(3)));
                    for (a, at) in heard.iter().enumerate() {
                        if at.elapsed() > c.silence && !merger.lost().contains(&a) && !merger.done(a) {
                            lost.push(LostAgent { agent: a as u32, reason: format!("no tick for {} s", c.silence.as_secs()) });
                            cancel.cancel();
                            s.extend(merger.lose(a));
                        }
                    }
                    s
                }
            };
            if let Some(steer) = c.steer.as_mut().filter(|s| s.has_changed().unwrap_or(false)) {
                let stages = steer.borrow_and_update().stages.clone();
                guard.raise_peak(crate::schedule::peak(&stages));
                merger.set_stages(stages);
            }
            for snap in snaps {
                if c.plan.abort_on_fail && aborted_by.is_none() && c.started.elapsed() >= c.plan.abort_grace.0 {
                    // Judged on merged data, with whole-run percentiles.
                    let so_far = merger.so_far();
                    if let Some(r) = crate::thresholds::evaluate(&c.plan.thresholds, &so_far)
                        .into_iter()
                        .find(|r| r.actual.is_some() && !r.passed)
                    {
                        aborted_by = Some(format!("{} {}", r.metric, r.expression));
                        cancel.cancel();
                    }
                }
                if out.send(Update::Tick(snap)).await.is_err() {
                    cancel.cancel();
                    return;
                }
            }
        }
        let end = if !lost.is_empty() {
            EndReason::AgentLost
        } else if aborted_by.is_some() {
            EndReason::ThresholdFailed
        } else if cancel.is_cancelled() {
            EndReason::Cancelled
        } else {
            EndReason::Completed
        };
        let mut summary = merger.summary(c.started.elapsed().as_millis() as u64, end, aborted_by);
        summary.lost_agents = lost;
        let _ = out.send(Update::Finished(summary)).await;
    });
    updates
}
