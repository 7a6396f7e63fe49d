//! The load shape as a pure function of elapsed time (vegeta's Pacer idea).
//!
//! `target_at(stages, t)` is how many connections should be open (started and not
//! retired) at `t`. Each stage ramps linearly from the previous level (0 at the start)
//! to its `connections` over its `duration`. After the last stage the run ends.

use std::time::Duration;

use crate::plan::Stage;
use crate::report::Phase;

/// Sum of all stage durations.
pub fn total_duration(stages: &[Stage]) -> Duration {
    stages.iter().map(|s| s.duration.0).sum()
}

/// Highest level any stage reaches.
pub fn peak(stages: &[Stage]) -> u32 {
    stages.iter().map(|s| s.connections).max().unwrap_or(0)
}

/// Target number of open connections at `elapsed` (rounded down while ramping).
pub fn target_at(stages: &[Stage], elapsed: Duration) -> u32 {
    let mut from = 0u32;
    let mut start = Duration::ZERO;
    for s in stages {
        let end = start + s.duration.0;
        if elapsed < end {
            let frac = (elapsed - start).as_secs_f64() / s.duration.0.as_secs_f64();
            let level = f64::from(from) + (f64::from(s.connections) - f64::from(from)) * frac;
            return level.floor().max(0.0) as u32;
        }
        from = s.connections;
        start = end;
    }
    from
}

/// Which phase the run is in at `elapsed`.
pub fn phase_at(stages: &[Stage], elapsed: Duration) -> Phase {
    let mut from = 0u32;
    let mut start = Duration::ZERO;
    for s in stages {
        let end = start + s.duration.0;
        if elapsed < end {
            return if s.connections > from {
                Phase::Ramping
            } else if s.connections < from {
                Phase::Draining
            } else {
                Phase::Holding
            };
        }
        from = s.connections;
        start = end;
    }
    Phase::Draining
}

/// Earliest time the `n`-th connection (0-based) may start under a connect-rate cap,
/// measured from the run's start: arrivals are paced by the clock (open model).
pub fn paced_start(n: u64, rate_per_sec: Option<f64>) -> Duration {
    match rate_per_sec {
        Some(r) if r > 0.0 => Duration::from_secs_f64(n as f64 / r),
        _ => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Dur;

    fn st(secs: u64, c: u32) -> Stage {
        Stage {
            duration: Dur::secs(secs),
            connections: c,
        }
    }

    #[test]
    fn ramps_linearly_then_holds() {
        let s = [st(2, 50), st(3, 50)];
        assert_eq!(target_at(&s, Duration::ZERO), 0);
        assert_eq!(target_at(&s, Duration::from_secs(1)), 25);
        assert_eq!(target_at(&s, Duration::from_millis(1999)), 49);
        assert_eq!(target_at(&s, Duration::from_secs(2)), 50);
        assert_eq!(target_at(&s, Duration::from_secs(4)), 50);
        assert_eq!(target_at(&s, Duration::from_secs(10)), 50);
        assert_eq!(total_duration(&s), Duration::from_secs(5));
        assert_eq!(peak(&s), 50);
        assert_eq!(phase_at(&s, Duration::from_secs(1)), Phase::Ramping);
        assert_eq!(phase_at(&s, Duration::from_secs(3)), Phase::Holding);
        assert_eq!(phase_at(&s, Duration::from_secs(6)), Phase::Draining);
    }

    #[test]
    fn ramps_down_and_jumps_on_zero_duration() {
        let s = [st(0, 10), st(10, 0)];
        assert_eq!(target_at(&s, Duration::ZERO), 10);
        assert_eq!(target_at(&s, Duration::from_secs(5)), 5);
        assert_eq!(phase_at(&s, Duration::from_secs(5)), Phase::Draining);
    }

    #[test]
    fn target_is_monotonic_within_a_rising_stage() {
        let s = [st(7, 1000)];
        let mut last = 0;
        for ms in (0..7000).step_by(13) {
            let v = target_at(&s, Duration::from_millis(ms));
            assert!(v >= last && v <= 1000);
            last = v;
        }
    }

    #[test]
    fn pacing_spreads_arrivals() {
        assert_eq!(paced_start(0, Some(20.0)), Duration::ZERO);
        assert_eq!(paced_start(20, Some(20.0)), Duration::from_secs(1));
        assert_eq!(paced_start(5, None), Duration::ZERO);
    }
}
