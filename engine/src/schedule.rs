//! The load shape as a pure function of elapsed time (vegeta's Pacer idea).
//!
//! `target_at(stages, t)` is how many connections should be open (started and not
//! retired) at `t`. Each stage ramps linearly from the previous level (0 at the start)
//! to its `connections` over its `duration`. After the last stage the run ends.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::Dur;
use crate::report::Phase;

/// One stage of a plan: ramp linearly from the previous level (0 at the start) to
/// `connections` over `duration`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub duration: Dur,
    pub connections: u32,
}

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

/// Which part of a run an agent makes: agent `index` of `of`. Agent i holds the global
/// connection slots j with j mod N = i (so the shares sum to the target exactly, never
/// shrink while it grows, and differ by at most one), takes the arrivals n ≡ i (mod N)
/// of the connect-rate schedule, and numbers its connections with their global slot,
/// so `{{vu}}` stays unique across agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Share {
    pub index: u32,
    pub of: u32,
}

impl Share {
    /// The whole run in one agent.
    pub const ALL: Share = Share { index: 0, of: 1 };

    /// This agent's part of a global target.
    pub fn target(&self, global: u32) -> u32 {
        if global > self.index {
            (global - 1 - self.index) / self.of.max(1) + 1
        } else {
            0
        }
    }

    /// The global slot of this agent's `k`-th connection (its `{{vu}}`).
    pub fn slot(&self, k: u64) -> u64 {
        u64::from(self.index) + k * u64::from(self.of.max(1))
    }

    /// Which of this agent's connections global slot `slot` is (`slot`'s inverse).
    pub fn ordinal(&self, slot: u64) -> u64 {
        slot.saturating_sub(u64::from(self.index)) / u64::from(self.of.max(1))
    }
}

/// Paces new connections along the clock at `rate` per second (open model): the n-th
/// start (0-based, counted from the pacer's origin) is due at n / rate. The swarm's
/// controller asks it on every wake-up how many starts are due now; it never lets more
/// through than the clock allows, and never more than `slack` worth of starts pile up
/// while nothing was asked for (so a pause in demand is not a burst later).
///
/// Pure (elapsed times in, counts out), so it is tested with any clock; the controller in
/// `swarm.rs` is its only production caller (vegeta's attacker calls `Pacer.Pace`).
#[derive(Debug, Clone)]
pub struct Pacer {
    /// Starts per second (of the whole run).
    rate: f64,
    /// This agent's share of the arrivals.
    share: Share,
    /// Starts let through so far (on the clock's scale: may be advanced past idle time).
    taken: u64,
    /// How much unused allowance may accumulate, as time.
    slack: Duration,
}

impl Pacer {
    /// A pacer at `rate` per second (must be > 0) whose allowance never exceeds `slack`.
    pub fn new(rate: f64, slack: Duration) -> Pacer {
        Pacer::sharded(rate, slack, Share::ALL)
    }

    /// The pacer of one agent: the arrivals n ≡ i (mod N) of a run paced at `rate`.
    pub fn sharded(rate: f64, slack: Duration, share: Share) -> Pacer {
        Pacer {
            rate,
            share,
            taken: 0,
            slack,
        }
    }

    /// This agent's arrival k is the run's arrival i + kN.
    fn at(&self, k: u64) -> Duration {
        Duration::from_secs_f64(self.share.slot(k) as f64 / self.rate)
    }

    /// This agent's starts due by `elapsed` since the origin, in all.
    fn due(&self, elapsed: Duration) -> u64 {
        let global = (elapsed.as_secs_f64() * self.rate).floor() as u64 + 1;
        u64::from(self.share.target(u32::try_from(global).unwrap_or(u32::MAX)))
    }

    /// Lets through up to `want` starts due by `elapsed`; returns the scheduled offsets
    /// (from the origin) of those let through, oldest first. Scheduled offsets are the
    /// clock's, not the caller's wake-up time, so latency measured from them is free of
    /// coordinated omission.
    pub fn take(&mut self, elapsed: Duration, want: u64) -> Vec<Duration> {
        let due = self.due(elapsed);
        // Allowance unused for longer than `slack` is forfeit.
        let per_agent = self.rate / f64::from(self.share.of.max(1));
        let cap = ((self.slack.as_secs_f64() * per_agent).ceil() as u64).max(1);
        if due > self.taken + cap {
            self.taken = due - cap;
        }
        let n = (due - self.taken.min(due)).min(want);
        let out = (self.taken..self.taken + n).map(|k| self.at(k)).collect();
        self.taken += n;
        out
    }

    /// When the next start is due, as an offset from the origin.
    pub fn next_due(&self) -> Duration {
        self.at(self.taken)
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
    fn an_agents_ordinal_inverts_its_slots() {
        for of in 1..=7u32 {
            for index in 0..of {
                let share = Share { index, of };
                for k in 0..50u64 {
                    assert_eq!(share.ordinal(share.slot(k)), k);
                }
            }
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
        let mut p = Pacer::new(20.0, Duration::from_millis(10));
        assert_eq!(p.take(Duration::ZERO, 100), vec![Duration::ZERO]);
        assert!(p.take(Duration::from_millis(10), 100).is_empty());
        assert_eq!(
            p.take(Duration::from_millis(50), 100),
            vec![Duration::from_millis(50)]
        );
        assert_eq!(p.next_due(), Duration::from_millis(100));
        // Nothing asked for a while: no burst afterwards.
        let late = p.take(Duration::from_secs(10), 1000);
        assert_eq!(late.len(), 1, "{late:?}");
    }

    #[test]
    fn shares_add_up_to_the_target_and_differ_by_at_most_one() {
        for of in 1..=7u32 {
            let mut last = vec![0u32; of as usize];
            for global in 0..200u32 {
                let parts: Vec<u32> = (0..of)
                    .map(|index| Share { index, of }.target(global))
                    .collect();
                assert_eq!(parts.iter().sum::<u32>(), global, "{of} agents at {global}");
                let (lo, hi) = (parts.iter().min().unwrap(), parts.iter().max().unwrap());
                assert!(hi - lo <= 1);
                assert!(parts.iter().zip(&last).all(|(p, l)| p >= l), "never shrink");
                last = parts;
            }
            // Slots are globally unique and cover 0..n.
            let mut slots: Vec<u64> = (0..of)
                .flat_map(|index| (0..5).map(move |k| Share { index, of }.slot(k)))
                .collect();
            slots.sort_unstable();
            assert_eq!(slots, (0..u64::from(of) * 5).collect::<Vec<_>>());
        }
    }

    #[test]
    fn sharded_pacers_take_their_arrivals_of_one_schedule() {
        let rate = 1000.0;
        let mut all: Vec<Duration> = Vec::new();
        for index in 0..3 {
            let mut p = Pacer::sharded(rate, Duration::from_millis(5), Share { index, of: 3 });
            let mut now = Duration::ZERO;
            while now < Duration::from_secs(1) {
                all.extend(p.take(now, u64::MAX));
                now += Duration::from_millis(1);
            }
        }
        all.sort();
        let one: Vec<Duration> = (0..all.len() as u64)
            .map(|n| Duration::from_secs_f64(n as f64 / rate))
            .collect();
        assert_eq!(all, one, "three agents together = one pacer");
    }

    /// The controller's loop on a simulated clock: woken every `tick` (or sooner, when the
    /// next start is due), it asks for everything; over 10 s the pacer must hold the rate
    /// within 1 % from 1/s to 50,000/s.
    #[test]
    fn the_pacer_holds_the_asked_rate_from_1_to_50000_per_second() {
        for rate in [
            1.0, 7.0, 20.0, 400.0, 401.0, 1000.0, 2000.0, 5000.0, 10_000.0, 33_333.0, 50_000.0,
        ] {
            for tick_ms in [1u64, 5, 20] {
                let tick = Duration::from_millis(tick_ms);
                let mut p = Pacer::new(rate, tick * 2);
                let end = Duration::from_secs(10);
                let (mut now, mut started) = (Duration::ZERO, 0u64);
                let mut last = Duration::ZERO;
                while now < end {
                    for at in p.take(now, u64::MAX) {
                        assert!(at >= last && at <= now, "scheduled {at:?} at {now:?}");
                        last = at;
                        started += 1;
                    }
                    now = (now + tick).min(p.next_due().max(now + Duration::from_micros(1)));
                }
                let want = rate * end.as_secs_f64();
                let err = (started as f64 - want).abs() / want;
                assert!(
                    err <= 0.01 || (started as f64 - want).abs() <= 1.0,
                    "{rate}/s at {tick_ms} ms ticks: {started} starts for {want}"
                );
            }
        }
    }
}
