//! The aggregator task: the one place where results become snapshots.
//!
//! It `select!`s over the partials channel and a ticker. Each tick it turns what arrived
//! into a `Snapshot` (cumulative totals, this tick's interval and percentiles) and sends
//! it on as `Update::Tick`. When the partials channel closes (every VU finished) it
//! sends a last tick and `Update::Finished(Summary)`, then ends.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::plan::Stage;
use crate::report::{EndReason, Snapshot, Summary};
use crate::schedule::phase_at;
use crate::stats::{Dimension, Partial, RunStats};

/// What the engine emits for one run.
#[derive(Debug, Clone)]
pub enum Update {
    /// About once per tick while the run is live.
    Tick(Snapshot),
    /// Exactly once, last.
    Finished(Summary),
}

/// Values the controller publishes for the aggregator.
#[derive(Debug, Default)]
pub(crate) struct Gauges {
    /// Connections the schedule wants open now.
    pub(crate) target: AtomicU32,
    /// Set when the run was cancelled rather than completed.
    pub(crate) cancelled: AtomicBool,
    /// Attempts in flight (VUs between starting an attempt and its outcome).
    pub(crate) connecting: AtomicU64,
}

/// `abort_on_fail`: the thresholds, when to start judging, and the token to cancel.
pub(crate) struct AbortOnFail {
    pub(crate) thresholds: std::collections::BTreeMap<String, String>,
    pub(crate) grace: Duration,
    pub(crate) cancel: tokio_util::sync::CancellationToken,
}

/// What the aggregator knows of the run it aggregates.
pub(crate) struct Setup {
    /// The plan's stages (for the phase of each snapshot).
    pub(crate) stages: Vec<Stage>,
    /// When the run started (elapsed times count from here).
    pub(crate) started: Instant,
    /// Snapshot period.
    pub(crate) tick: Duration,
    /// With `abort_on_fail`: the thresholds judged each tick.
    pub(crate) abort: Option<AbortOnFail>,
    /// How identities are named (the plan's identity dimensions, in order).
    pub(crate) dims: Vec<Dimension>,
}

pub(crate) async fn run(
    mut rx: mpsc::Receiver<Partial>,
    out: mpsc::Sender<Update>,
    gauges: Arc<Gauges>,
    setup: Setup,
) {
    let Setup {
        stages,
        started,
        tick,
        abort,
        dims,
    } = setup;
    let mut aborted_by: Option<String> = None;
    let mut whole = RunStats::new();
    let mut interval = RunStats::new();
    let mut peak_open = 0u64;
    let mut seq = 0u64;
    let mut ticker = tokio::time::interval_at((started + tick).into(), tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let snapshot = |seq: u64, whole: &RunStats, interval: &RunStats, peak_open: u64| {
        let elapsed = started.elapsed();
        Snapshot {
            seq,
            elapsed_ms: elapsed.as_millis() as u64,
            phase: phase_at(&stages, elapsed),
            target: gauges.target.load(Ordering::Relaxed),
            open: whole.totals.open(),
            peak_open,
            connecting: gauges.connecting.load(Ordering::Relaxed),
            totals: whole.totals.clone(),
            interval: interval.totals.clone(),
            latency: interval.latency(),
            identities: whole.identities(&dims),
            tokens: Default::default(),
        }
    };
    loop {
        tokio::select! {
            p = rx.recv() => match p {
                Some(p) => {
                    interval.merge(&p);
                    // Open count as of the data merged so far.
                    let open = (whole.totals.opened + interval.totals.opened).saturating_sub(whole.totals.closed + interval.totals.closed);
                    peak_open = peak_open.max(open);
                }
                None => break,
            },
            _ = ticker.tick() => {
                whole.absorb(&interval);
                seq += 1;
                let snap = snapshot(seq, &whole, &interval, peak_open);
                interval = RunStats::new();
                if let (Some(a), None) = (&abort, &aborted_by) {
                    if started.elapsed() >= a.grace {
                        // Judge the run so far, with whole-run percentiles.
                        let so_far = Summary { totals: whole.totals.clone(), peak_open, latency: whole.latency(), ..Summary::default() };
                        if let Some(r) = crate::thresholds::evaluate(&a.thresholds, &so_far).into_iter().find(|r| r.actual.is_some() && !r.passed) {
                            aborted_by = Some(format!("{} {}", r.metric, r.expression));
                            a.cancel.cancel();
                        }
                    }
                }
                if out.send(Update::Tick(snap)).await.is_err() {
                    return;
                }
            }
        }
    }
    whole.absorb(&interval);
    seq += 1;
    gauges.target.store(0, Ordering::Relaxed);
    let last = snapshot(seq, &whole, &interval, peak_open);
    let _ = out.send(Update::Tick(last)).await;
    let summary = Summary {
        duration_ms: started.elapsed().as_millis() as u64,
        end_reason: Some(if aborted_by.is_some() {
            EndReason::ThresholdFailed
        } else if gauges.cancelled.load(Ordering::Relaxed) {
            EndReason::Cancelled
        } else {
            EndReason::Completed
        }),
        aborted_by,
        peak_open,
        totals: whole.totals.clone(),
        latency: whole.latency(),
        evidence: whole.evidence.clone(),
        identities: whole.identities(&dims),
        tokens: Default::default(),
        phases: Vec::new(),
        histograms: whole.encoded_histograms(),
    };
    let _ = out.send(Update::Finished(summary)).await;
}
