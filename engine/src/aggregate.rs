//! An agent's aggregator task: its VUs' partial results become one `AgentTick` per tick.
//!
//! It `select!`s over the partials channel and a ticker. Each tick it sends what arrived
//! during the tick as deltas (counters, identities, evidence, this tick's histograms),
//! with the agent's gauges (its share of the target, open, in flight); the coordinator
//! (`merge.rs`) turns tick k of every agent into the run's snapshot k. When the partials
//! channel closes (every VU finished) it sends a last tick marked `last`, then ends.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::report::AgentTick;
use crate::stats::{Dimension, Partial, RunStats};

/// Values the controller publishes for the aggregator.
#[derive(Debug, Default)]
pub(crate) struct Gauges {
    /// Connections the schedule wants open now.
    pub(crate) target: AtomicU32,
    /// Attempts in flight (VUs between starting an attempt and its outcome).
    pub(crate) connecting: AtomicU64,
}

/// What the aggregator knows of the agent it aggregates.
pub(crate) struct Setup {
    /// Which agent this is (its ticks carry it).
    pub(crate) agent: u32,
    /// When the agent started (elapsed times count from here).
    pub(crate) started: Instant,
    /// Tick period.
    pub(crate) tick: Duration,
    /// How identities are named (the plan's identity dimensions, in order).
    pub(crate) dims: Vec<Dimension>,
}

pub(crate) async fn run(
    mut rx: mpsc::Receiver<Partial>,
    out: mpsc::Sender<AgentTick>,
    gauges: Arc<Gauges>,
    setup: Setup,
) {
    let Setup {
        agent,
        started,
        tick,
        dims,
    } = setup;
    let mut interval = RunStats::new();
    // The outcome keys this agent has kept (the run's bound, so ticks stay small).
    let mut keys = crate::report::OutcomeKeys::new();
    // Opened and closed before this tick, for the open count.
    let (mut opened, mut closed) = (0u64, 0u64);
    let mut peak_in_tick = 0u64;
    let mut seq = 0u64;
    let mut ticker = tokio::time::interval_at((started + tick).into(), tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let open_now = |opened: u64, closed: u64, i: &RunStats| {
        (opened + i.totals.opened).saturating_sub(closed + i.totals.closed)
    };
    let mut emit = |interval: &RunStats, opened: u64, closed: u64, peak: u64, last: bool| {
        seq += 1;
        AgentTick {
            agent,
            seq,
            elapsed_ms: started.elapsed().as_millis() as u64,
            target: if last {
                0
            } else {
                gauges.target.load(Ordering::Relaxed)
            },
            open: open_now(opened, closed, interval),
            peak_in_tick: peak,
            connecting: gauges.connecting.load(Ordering::Relaxed),
            last,
            process: process_stats(),
            ..interval.tick(&dims)
        }
    };
    loop {
        tokio::select! {
            p = rx.recv() => match p {
                Some(p) => {
                    interval.merge(&p);
                    peak_in_tick = peak_in_tick.max(open_now(opened, closed, &interval));
                }
                None => break,
            },
            _ = ticker.tick() => {
                keys.bound(&mut interval.totals);
                let t = emit(&interval, opened, closed, peak_in_tick, false);
                opened += interval.totals.opened;
                closed += interval.totals.closed;
                peak_in_tick = t.open;
                interval = RunStats::new();
                if out.send(t).await.is_err() {
                    return;
                }
            }
        }
    }
    gauges.target.store(0, Ordering::Relaxed);
    keys.bound(&mut interval.totals);
    let _ = out
        .send(emit(&interval, opened, closed, peak_in_tick, true))
        .await;
}

/// This process's id, CPU time and open files, from `/proc` (zeros where there is none).
fn process_stats() -> crate::report::ProcessStats {
    let cpu_ms = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the command (which may hold spaces) are space-separated:
            // utime and stime are the 14th and 15th fields, in clock ticks (100/s).
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some(ticks * 10)
        })
        .unwrap_or(0);
    let open_files = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    crate::report::ProcessStats {
        pid: std::process::id(),
        cpu_ms,
        open_files,
    }
}
