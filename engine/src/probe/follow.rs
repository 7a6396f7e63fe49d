//! Following a probe while it runs (issue 16): which experiment is running, what the
//! finished ones showed, and the run's counters across experiments. `swarm::start_plan`
//! feeds it each phase as it starts and each tick as it passes; everything it computes
//! is a function of the plan, the phases begun and the run's series, and it leaves the
//! engine only as data (`Snapshot::probe`, `Summary::probe`).
//!
//! Experiments are what a user can tell apart: the concurrency ramp, each step of the
//! rate phase, the pause-retry bursts and each single-identity ramp. A rate step is over
//! once its planned time has passed; any other experiment when its phase ends.
//!
//! Invariant: `results[i]` is what `experiments[i]` showed; results are computed once,
//! in order, and never change afterwards.

use crate::diagnose::probe::{burst_admissions, rate_readings, slice};
use crate::diagnose::{diagnose, fmt_n, LimitKind};
use crate::plan::{Plan, Segment};
use crate::report::{
    Experiment, ExperimentResult, PhaseSpan, ProbeProgress, Series, UNIT_CONNECTIONS,
    UNIT_CONNECTS_PER_SECOND,
};
#[cfg(feature = "runtime")]
use crate::report::{Snapshot, Summary};

/// One experiment as planned, with what its reading needs.
#[derive(Debug, Clone)]
struct Planned {
    exp: Experiment,
    /// Rate steps: the offered connects per second.
    rate: Option<f64>,
    /// Connections it aims for (ramps: the top; bursts: one burst).
    target: u32,
}

/// A probe being followed: the experiments begun so far and the readings of the
/// finished ones. Owned by the task that stitches the probe's phases together.
#[derive(Debug, Clone)]
pub struct Follow {
    /// The probe's plan (with its bounds).
    base: Plan,
    /// Every experiment begun so far, in order.
    planned: Vec<Planned>,
    /// What the finished ones showed (a prefix of `planned`).
    results: Vec<ExperimentResult>,
}

/// Seconds in words: "5 s", "2.5 s".
fn secs_words(ms: u64) -> String {
    format!("{} s", fmt_n((ms as f64 / 100.0).round() / 10.0))
}

/// The experiments of one phase starting at `start_ms`, unnumbered.
fn experiments_of(seg: &Segment, start_ms: u64) -> Vec<Planned> {
    let stage_ms: Vec<u64> = seg
        .plan
        .stages
        .iter()
        .map(|s| s.duration.0.as_millis() as u64)
        .collect();
    let total_ms: u64 = stage_ms.iter().sum();
    let one = |what: String, target: u32| Planned {
        exp: Experiment {
            index: 0,
            phase: seg.name.clone(),
            what,
            start_ms,
            end_ms: start_ms + total_ms,
        },
        rate: None,
        target,
    };
    match seg.name.as_str() {
        "rate" => seg
            .steps
            .iter()
            .map(|&(off, len, rate)| Planned {
                exp: Experiment {
                    index: 0,
                    phase: seg.name.clone(),
                    what: format!(
                        "{} connects/s for {} (short-lived connections)",
                        fmt_n(rate),
                        secs_words(len)
                    ),
                    start_ms: start_ms + off,
                    end_ms: start_ms + off + len,
                },
                rate: Some(rate),
                target: 0,
            })
            .collect(),
        "pause_retry" => {
            let burst = seg.plan.stages.get(1).map_or(0, |s| s.connections);
            vec![one(
                format!("a burst of {burst} connects, a pause keeping them, then {burst} more"),
                burst,
            )]
        }
        name => {
            let top = seg.plan.stages.first().map_or(0, |s| s.connections);
            let ramp_ms = stage_ms.first().copied().unwrap_or(0).max(1);
            let rate = f64::from(top) * 1000.0 / ramp_ms as f64;
            let hold = stage_ms.get(1).copied().unwrap_or(0);
            let with = match name.strip_prefix("one_") {
                Some(dim) => format!(" with a single {}", dim.replace(':', " ")),
                None => String::new(),
            };
            vec![one(
                format!(
                    "ramp to {top} connections at {}/s{with}, then hold {}",
                    fmt_n((rate * 10.0).round() / 10.0),
                    secs_words(hold)
                ),
                top,
            )]
        }
    }
}

/// Attempts failed between two elapsed times (ms), from the series' failure rates.
fn failures_between(s: &Series, from_ms: u64, to_ms: u64) -> u64 {
    let (a, b) = (from_ms as f64 / 1000.0, to_ms as f64 / 1000.0 + 0.001);
    let mut n = 0.0;
    for i in 0..s.t.len() {
        if s.t[i] <= a || s.t[i] > b {
            continue;
        }
        let dt = if i == 0 { s.t[0] } else { s.t[i] - s.t[i - 1] };
        n += s
            .failed_rate
            .values()
            .map(|v| v.get(i).copied().unwrap_or(0.0) * dt)
            .sum::<f64>();
    }
    n.round() as u64
}

/// What a finished experiment showed. `span` is its phase as it ran (for a rate step:
/// the phase so far); `cap` the plateau the concurrency ramp found, if any.
fn reading(p: &Planned, s: &Series, span: &PhaseSpan, cap: Option<f64>) -> ExperimentResult {
    let e = &p.exp;
    let mut r = ExperimentResult {
        experiment: e.clone(),
        unit: UNIT_CONNECTIONS.into(),
        ..Default::default()
    };
    if let Some(rate) = p.rate {
        let step = PhaseSpan {
            name: span.name.clone(),
            start_ms: e.start_ms,
            end_ms: e.end_ms,
            steps: vec![(0, e.end_ms - e.start_ms, rate)],
        };
        let reading = rate_readings(s, &step).into_iter().next();
        let part = slice(s, e.start_ms, e.end_ms);
        let mean_opened =
            part.opened_rate.iter().sum::<f64>() / part.opened_rate.len().max(1) as f64;
        let accepted = reading.as_ref().map_or(mean_opened, |r| r.accepted_rate());
        let refused = reading.as_ref().is_some_and(|r| r.rejected > 0.0);
        r.unit = UNIT_CONNECTS_PER_SECOND.into();
        r.offered = rate;
        r.accepted = (accepted * 10.0).round() / 10.0;
        r.failures = failures_between(s, e.start_ms, e.end_ms);
        r.verdict = if accepted >= rate * 0.9 && (!refused || r.failures == 0) {
            "all admitted".into()
        } else if accepted < rate * 0.2 {
            "admissions collapsed (a lockout?)".into()
        } else {
            r.found = Some(r.accepted);
            format!("rate limited at ≈ {}/s", fmt_n(r.accepted))
        };
        return r;
    }
    let part = slice(s, span.start_ms, span.end_ms);
    r.failures = failures_between(s, span.start_ms, span.end_ms);
    r.offered = f64::from(p.target);
    if e.phase == "pause_retry" {
        // Read as `diagnose::probe::verdicts` does, against the ramp's plateau (`cap`).
        let (x1, x2) = burst_admissions(s, span).unwrap_or((0.0, 0.0));
        r.offered = 2.0 * f64::from(p.target);
        r.accepted = x1 + x2;
        let past_cap = cap.is_none_or(|l| x1 + x2 > l * 1.05 + 1.0);
        let reached_cap = cap.is_none_or(|l| x1 >= l * 0.95 - 1.0);
        let got = format!("first burst {} in, second {}", fmt_n(x1), fmt_n(x2));
        r.verdict = if x2 <= (0.05 * x1).max(1.0) && reached_cap {
            format!("{got}: nothing released, nothing admitted (a cap)")
        } else if x2 >= 0.5 * x1 && x2 >= 1.0 && past_cap {
            format!("{got}: admitted again past the plateau (a rate limiter, not a cap)")
        } else if let Some(l) = cap.filter(|l| (x1 + x2 - l).abs() <= l * 0.05 + 1.0) {
            format!(
                "{got}: {} open together, the plateau again (the cap)",
                fmt_n(l)
            )
        } else {
            format!("{got}: inconclusive")
        };
        return r;
    }
    r.accepted = part.open.iter().copied().fold(0.0, f64::max);
    let d = diagnose(&part, None);
    let plateau = d.level.map(|l| l * d.identities.map_or(1.0, f64::from));
    r.verdict = match (d.kind, plateau) {
        (LimitKind::None, _) => format!("no limit up to {}", fmt_n(r.accepted)),
        // A ramp alone cannot tell a lockout from a cap (`burst_size` treats them
        // alike): it found a plateau of open connections; the bursts tell which.
        (LimitKind::LockoutRateLimit, Some(l)) => format!(
            "plateau at {} open: a cap or a lockout (the pause-retry bursts tell)",
            fmt_n(l)
        ),
        _ => d.one_short(),
    };
    if matches!(
        d.kind,
        LimitKind::ConcurrencyCap | LimitKind::LockoutRateLimit
    ) {
        r.found = plateau;
    }
    r
}

impl Follow {
    pub fn new(base: &Plan) -> Follow {
        Follow {
            base: base.clone(),
            planned: Vec::new(),
            results: Vec::new(),
        }
    }

    /// A phase starts at `start_ms` (elapsed of the run).
    pub fn begin(&mut self, seg: &Segment, start_ms: u64) {
        for mut p in experiments_of(seg, start_ms) {
            p.exp.index = self.planned.len() as u32 + 1;
            self.planned.push(p);
        }
    }

    /// How many experiments the probe runs, as far as is known after `done`.
    fn planned_count(&self, done: &[PhaseSpan]) -> u32 {
        let Some(probe) = self.base.probe.as_ref() else {
            return self.planned.len() as u32;
        };
        let dims = super::single_identity_plans(&self.base).len();
        let (_, rate, _) = super::shares(dims);
        let tpl = super::template(&self.base);
        let steps = super::rate_steps(&tpl, probe, probe.max_duration.0.as_secs_f64() * rate)
            .steps
            .len();
        let began = |n: &str| self.planned.iter().any(|p| p.exp.phase == n);
        let rate_over = done.iter().any(|d| d.name == "rate");
        // Pause-retry runs only when something was refused: counted until known.
        let pause = usize::from(!rate_over || began("pause_retry"));
        let total = 1 + steps + pause + dims;
        total.max(self.planned.len()) as u32
    }

    /// Reads every experiment that is over by `now_ms`, given the phases ended so far
    /// (`done`) and the series of the run.
    fn read_finished(&mut self, s: &Series, done: &[PhaseSpan], now_ms: u64) {
        while let Some(p) = self.planned.get(self.results.len()) {
            let span = match done.iter().find(|d| d.name == p.exp.phase) {
                Some(d) => d.clone(),
                None if p.rate.is_some() && now_ms >= p.exp.end_ms => PhaseSpan {
                    name: p.exp.phase.clone(),
                    start_ms: p.exp.start_ms,
                    end_ms: now_ms,
                    steps: Vec::new(),
                },
                None => break,
            };
            let cap = self
                .results
                .iter()
                .find(|r| r.experiment.phase == "concurrency")
                .and_then(|r| r.found);
            let r = reading(p, s, &span, cap);
            self.results.push(r);
        }
    }

    /// Where the probe stands at `now_ms`.
    pub fn progress(&mut self, s: &Series, done: &[PhaseSpan], now_ms: u64) -> ProbeProgress {
        self.read_finished(s, done, now_ms);
        let current = self
            .planned
            .iter()
            .skip(self.results.len())
            .find(|p| p.rate.is_none() || now_ms < p.exp.end_ms)
            .map(|p| p.exp.clone());
        ProbeProgress {
            current,
            planned: self.planned_count(done),
            done: self.results.clone(),
        }
    }

    /// The probe once over: every experiment read, nothing running.
    pub fn finish(&mut self, s: &Series, done: &[PhaseSpan]) -> ProbeProgress {
        let end = done.last().map_or(0, |d| d.end_ms);
        // Experiments begun but never run (a phase that could not start) are dropped.
        let ran = |p: &Planned| done.iter().any(|d| d.name == p.exp.phase);
        self.planned.retain(ran);
        self.results.truncate(self.planned.len());
        let mut out = self.progress(s, done, end);
        out.current = None;
        out.planned = out.done.len() as u32;
        out
    }
}

/// A probe's tick as the run's: counters, peak and histograms continue from the phases
/// before (`earlier`, their summaries added up) instead of restarting with each phase,
/// so the tiles and `/metrics` read the whole probe. `open`, `target`, `interval` and
/// `latency` stay the tick's own.
#[cfg(feature = "runtime")]
pub fn stitch(s: &mut Snapshot, earlier: Option<&Summary>) {
    let Some(e) = earlier else {
        return;
    };
    let mut totals = e.totals.clone();
    totals.merge(&s.totals);
    s.totals = totals;
    s.peak_open = s.peak_open.max(e.peak_open);
    let mut hist = crate::stats::Merged::new();
    hist.add_histograms(&e.histograms);
    hist.add_histograms(&s.histograms);
    s.histograms = hist.encoded_histograms();
}
