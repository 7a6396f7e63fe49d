//! Steering a live run (issue 16, "what Locust users expect"): change the target level
//! or the connect rate, extend the hold or end it now. Pure: [`apply`] re-plans the rest
//! of a run's schedule from the moment of the change and returns the new [`Course`]
//! with the [`SteerEvent`] that records it.
//!
//! How a change reaches the load: the server keeps a `watch::Sender<Course>` per live
//! run; the swarm's controller (`swarm.rs`) reads the newest `Course` on every wake-up
//! and follows its stages and rate cap from then on (the coordinator reads it too, for
//! the phase it reports). Steering is data on a channel, never HTTP in the engine.
//!
//! What is stored (the design choice): the run's stored plan is rewritten with every
//! change, so its `stages` and `max_connect_rate` are the schedule that actually ran
//! (the part before the change is kept as it ran, cut at the change), and its
//! `steering` list records each change (when, what, from → to). "Run again" therefore
//! reproduces the steered run; the list is there for people (the run page's timeline
//! and chart markers), the engine does not read it.
//!
//! Rules, measured from the change at elapsed `t`:
//! - **level L**: the run ramps from where it is to L at the connect rate (the plan's
//!   `max_connect_rate`, else the slope of its first rising stage, else at once), then
//!   holds L until the planned ramp-down (the last stage, when it goes down) or the end.
//!   Later steps of a multi-stage plan give way to L; the run's end stays where it was.
//! - **rate R**: the connect-rate cap becomes R; a ramp in progress is re-planned to
//!   reach its level at R (the stage's end stays; it holds once there).
//! - **extend S**: the hold before the ramp-down (or the end) lasts S longer.
//! - **end hold**: the hold ends now; the planned ramp-down (if any) follows, then the
//!   run ends as a normal finish (`completed`, not cancelled).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::Dur;
use crate::plan::FieldError;
use crate::schedule::{target_at, total_duration, Stage};

/// Most changes one run may take (each is stored with the plan).
pub const MAX_STEERS: usize = 200;

/// One change asked of a live run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Steer {
    /// Hold this many connections.
    Level(u32),
    /// Open at most this many connections per second (> 0).
    Rate(f64),
    /// Hold this much longer.
    Extend(Duration),
    /// End the hold now (the ramp-down, if planned, follows).
    EndHold,
}

/// What the swarm follows: the whole schedule (from the run's start) and the
/// connect-rate cap. Sent over a `watch` channel to a live run's controller.
#[derive(Debug, Clone, PartialEq)]
pub struct Course {
    pub stages: Vec<Stage>,
    pub max_connect_rate: Option<f64>,
}

/// Which knob a change turned.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SteerKind {
    /// Target connections (`from`/`to`: connections).
    Level,
    /// Connect-rate cap (`from`/`to`: per second; `from` absent = no cap).
    Rate,
    /// The hold was extended (`from`/`to`: the planned duration in seconds).
    Extend,
    /// The hold was ended now (`from`/`to`: the planned duration in seconds).
    EndHold,
}

/// One recorded change of a live run: when (elapsed since the start), what, from → to.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SteerEvent {
    /// Milliseconds since the run started.
    pub at_ms: u64,
    pub kind: SteerKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<f64>,
}

impl SteerEvent {
    /// In words: "level 50 → 100", "connect rate 20/s → 50/s", "hold extended: ends at
    /// 40 s → 70 s", "hold ended: ends at 70 s → 25.5 s".
    pub fn describe(&self) -> String {
        let (from, to) = (num(self.from), num(self.to));
        match self.kind {
            SteerKind::Level => format!("level {from} → {to}"),
            SteerKind::Rate => match self.from {
                Some(_) => format!("connect rate {from}/s → {to}/s"),
                None => format!("connect rate uncapped → {to}/s"),
            },
            SteerKind::Extend => format!("hold extended: ends at {from} s → {to} s"),
            SteerKind::EndHold => format!("hold ended: ends at {from} s → {to} s"),
        }
    }

    /// A chart marker's label: "level → 100", "rate → 50/s", "hold +30 s", "end hold".
    pub fn short(&self) -> String {
        match self.kind {
            SteerKind::Level => format!("level → {}", num(self.to)),
            SteerKind::Rate => format!("rate → {}/s", num(self.to)),
            SteerKind::Extend => match (self.from, self.to) {
                (Some(a), Some(b)) => format!("hold +{} s", num(Some(b - a))),
                _ => "hold extended".into(),
            },
            SteerKind::EndHold => "end hold".into(),
        }
    }
}

/// A number as people write it: at most one decimal, none when whole.
fn num(v: Option<f64>) -> String {
    match v {
        None => "none".into(),
        Some(v) => {
            let r = (v * 10.0).round() / 10.0;
            if r.fract() == 0.0 {
                format!("{r:.0}")
            } else {
                format!("{r:.1}")
            }
        }
    }
}

/// Why a change cannot be made.
#[derive(Debug, Clone, PartialEq)]
pub enum SteerError {
    /// A value is out of range (names the field and the limit).
    Invalid(FieldError),
    /// The run is in no state for it (its schedule is over, it is ramping down).
    Conflict(String),
}

fn invalid(field: &str, message: String) -> SteerError {
    SteerError::Invalid(FieldError {
        field: field.into(),
        message,
    })
}

/// `stages` cut at `t`: the part that ran (the stage in progress ends at `t`, at the
/// level it reached), the level at `t`, and the rest (the stage in progress from `t`).
fn split(stages: &[Stage], t: Duration) -> (Vec<Stage>, u32, Vec<Stage>) {
    let now = target_at(stages, t);
    let (mut done, mut rest) = (Vec::new(), Vec::new());
    let mut start = Duration::ZERO;
    for s in stages {
        let end = start + s.duration.0;
        if end <= t {
            done.push(s.clone());
        } else if start >= t {
            rest.push(s.clone());
        } else {
            done.push(Stage {
                duration: Dur(t - start),
                connections: now,
            });
            rest.push(Stage {
                duration: Dur(end - t),
                connections: s.connections,
            });
        }
        start = end;
    }
    (done, now, rest)
}

/// Splits `rest` (starting at level `now`) into the part before the planned ramp-down
/// and the ramp-down: the last stage, when it ends lower than it starts.
fn tail_of(rest: &[Stage], now: u32) -> (Vec<Stage>, Option<Stage>) {
    let Some((last, before)) = rest.split_last() else {
        return (Vec::new(), None);
    };
    let from = before.last().map_or(now, |s| s.connections);
    if last.connections < from {
        (before.to_vec(), Some(last.clone()))
    } else {
        (rest.to_vec(), None)
    }
}

/// How long ramping from `from` to `to` takes at `rate` per second.
fn ramp_time(from: u32, to: u32, rate: Option<f64>) -> Duration {
    match rate {
        Some(r) if r > 0.0 && r.is_finite() => {
            Duration::from_secs_f64(f64::from(from.abs_diff(to)) / r)
        }
        _ => Duration::ZERO,
    }
}

/// The ramp speed a level change uses: the cap, else the plan's first rising stage's
/// slope (connections per second), else none (at once).
fn ramp_rate(stages: &[Stage], cap: Option<f64>) -> Option<f64> {
    cap.or_else(|| {
        let mut from = 0u32;
        for s in stages {
            if s.connections > from && !s.duration.0.is_zero() {
                return Some(f64::from(s.connections - from) / s.duration.0.as_secs_f64());
            }
            from = s.connections;
        }
        None
    })
}

/// Stage list without zero-length holds that change nothing.
fn push(out: &mut Vec<Stage>, s: Stage) {
    let level = out.last().map_or(0, |l| l.connections);
    if s.duration.0.is_zero() && s.connections == level {
        return;
    }
    out.push(s);
}

/// Applies `steer` at elapsed `t` to the run following `course` (already steered
/// `count` times): the new course and the event that records it. `t` is clamped to the
/// schedule; a change after the schedule ended, or during the planned ramp-down, is a
/// conflict.
pub fn apply(
    course: &Course,
    t: Duration,
    steer: Steer,
    count: usize,
) -> Result<(Course, SteerEvent), SteerError> {
    if count >= MAX_STEERS {
        return Err(invalid(
            "steering",
            format!("a run takes at most {MAX_STEERS} changes; this one has had {count}"),
        ));
    }
    let total = total_duration(&course.stages);
    if t >= total {
        return Err(SteerError::Conflict(
            "the run's schedule is over; it is finishing".into(),
        ));
    }
    let (done, now, rest) = split(&course.stages, t);
    let (body, tail) = tail_of(&rest, now);
    if body.is_empty() && !matches!(steer, Steer::Rate(_)) {
        return Err(SteerError::Conflict(
            "the run is ramping down already (its hold is over)".into(),
        ));
    }
    let at_ms = t.as_millis() as u64;
    let secs = |stages: &[Stage]| total_duration(stages).as_secs_f64();
    let mut stages = done;
    let mut rate = course.max_connect_rate;
    let event = match steer {
        Steer::Level(level) => {
            let heading = body.first().map_or(now, |s| s.connections);
            let left: Duration = body.iter().map(|s| s.duration.0).sum();
            let ramp = ramp_time(now, level, ramp_rate(&course.stages, rate)).min(left);
            push(
                &mut stages,
                Stage {
                    duration: Dur(ramp),
                    connections: level,
                },
            );
            push(
                &mut stages,
                Stage {
                    duration: Dur(left - ramp),
                    connections: level,
                },
            );
            stages.extend(tail);
            SteerEvent {
                at_ms,
                kind: SteerKind::Level,
                from: Some(f64::from(heading)),
                to: Some(f64::from(level)),
            }
        }
        Steer::Rate(r) => {
            if !(r.is_finite() && r > 0.0) {
                return Err(invalid(
                    "rate",
                    format!("must be above 0 per second, not {r}"),
                ));
            }
            rate = Some(r);
            let mut body = body.into_iter();
            match body.next() {
                // A ramp in progress reaches its level at the new rate, then holds.
                Some(s) if s.connections > now => {
                    let ramp = ramp_time(now, s.connections, Some(r)).min(s.duration.0);
                    push(
                        &mut stages,
                        Stage {
                            duration: Dur(ramp),
                            connections: s.connections,
                        },
                    );
                    push(
                        &mut stages,
                        Stage {
                            duration: Dur(s.duration.0 - ramp),
                            connections: s.connections,
                        },
                    );
                }
                Some(s) => stages.push(s),
                None => {}
            }
            stages.extend(body);
            stages.extend(tail);
            SteerEvent {
                at_ms,
                kind: SteerKind::Rate,
                from: course.max_connect_rate,
                to: Some(r),
            }
        }
        Steer::Extend(by) => {
            if by.is_zero() {
                return Err(invalid("extend_s", "must be above 0 seconds".into()));
            }
            let mut body = body;
            let before = body
                .len()
                .checked_sub(2)
                .map_or(now, |i| body[i].connections);
            if let Some(last) = body.last_mut() {
                if last.connections == before {
                    last.duration = Dur(last.duration.0 + by);
                } else {
                    let level = last.connections;
                    body.push(Stage {
                        duration: Dur(by),
                        connections: level,
                    });
                }
            }
            stages.extend(body);
            stages.extend(tail);
            SteerEvent {
                at_ms,
                kind: SteerKind::Extend,
                from: Some(secs(&course.stages)),
                to: Some(secs(&stages)),
            }
        }
        Steer::EndHold => {
            stages.extend(tail);
            if stages.is_empty() {
                // Ended at its very start: a run of 1 ms at no connections.
                stages.push(Stage {
                    duration: Dur(Duration::from_millis(1)),
                    connections: 0,
                });
            }
            SteerEvent {
                at_ms,
                kind: SteerKind::EndHold,
                from: Some(secs(&course.stages)),
                to: Some(secs(&stages)),
            }
        }
    };
    Ok((
        Course {
            stages,
            max_connect_rate: rate,
        },
        event,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(ms: u64, c: u32) -> Stage {
        Stage {
            duration: Dur(Duration::from_millis(ms)),
            connections: c,
        }
    }
    fn course(stages: Vec<Stage>, rate: Option<f64>) -> Course {
        Course {
            stages,
            max_connect_rate: rate,
        }
    }
    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn raising_the_level_in_the_hold_ramps_at_the_cap_and_keeps_the_end_and_ramp_down() {
        // 0→50 in 5 s, hold 50 for 20 s, down to 0 in 5 s; 10/s cap.
        let c = course(vec![st(5000, 50), st(20_000, 50), st(5000, 0)], Some(10.0));
        let (n, e) = apply(&c, s(10), Steer::Level(100), 0).unwrap();
        assert_eq!(
            n.stages,
            vec![
                st(5000, 50),
                st(5000, 50),
                st(5000, 100),
                st(10_000, 100),
                st(5000, 0)
            ]
        );
        assert_eq!(total_duration(&n.stages), s(30));
        assert_eq!(target_at(&n.stages, s(10)), 50, "continuous at the change");
        assert_eq!(target_at(&n.stages, Duration::from_millis(12_500)), 75);
        assert_eq!(target_at(&n.stages, s(16)), 100);
        assert_eq!(
            target_at(&n.stages, Duration::from_millis(27_500)),
            50,
            "the ramp-down goes from the new level"
        );
        assert_eq!(
            (e.at_ms, e.kind, e.from, e.to),
            (10_000, SteerKind::Level, Some(50.0), Some(100.0))
        );
        assert_eq!(e.describe(), "level 50 → 100");
    }

    #[test]
    fn a_level_change_mid_ramp_starts_from_where_the_ramp_is_and_uses_its_slope() {
        // No cap: the plan's ramp (10/s) is the speed.
        let c = course(vec![st(10_000, 100), st(10_000, 100)], None);
        let (n, e) = apply(&c, s(4), Steer::Level(20), 0).unwrap();
        assert_eq!(target_at(&n.stages, s(4)), 40);
        assert_eq!(target_at(&n.stages, s(5)), 30, "down at 10/s");
        assert_eq!(target_at(&n.stages, s(6)), 20);
        assert_eq!(
            target_at(&n.stages, s(19)),
            20,
            "holds the new level to the end"
        );
        assert_eq!(total_duration(&n.stages), s(20));
        assert_eq!(e.from, Some(100.0), "from: where the schedule was heading");
    }

    #[test]
    fn a_level_jump_without_any_ramp_speed_is_immediate() {
        let c = course(vec![st(0, 10), st(10_000, 10)], None);
        let (n, _) = apply(&c, s(3), Steer::Level(30), 0).unwrap();
        assert_eq!(target_at(&n.stages, s(3)), 30);
        assert_eq!(target_at(&n.stages, s(9)), 30);
    }

    #[test]
    fn a_new_rate_replans_the_ramp_in_progress_only() {
        let c = course(vec![st(10_000, 100), st(10_000, 200), st(5000, 0)], None);
        let (n, e) = apply(&c, s(2), Steer::Rate(40.0), 0).unwrap();
        assert_eq!(n.max_connect_rate, Some(40.0));
        assert_eq!(target_at(&n.stages, s(2)), 20);
        assert_eq!(
            target_at(&n.stages, s(4)),
            100,
            "80 more at 40/s: there at 4 s"
        );
        assert_eq!(target_at(&n.stages, s(9)), 100);
        assert_eq!(
            target_at(&n.stages, s(15)),
            150,
            "the next stage is untouched"
        );
        assert_eq!(total_duration(&n.stages), s(25));
        assert_eq!((e.from, e.to), (None, Some(40.0)));
        assert_eq!(e.describe(), "connect rate uncapped → 40/s");
        let odd = SteerEvent {
            at_ms: 0,
            kind: SteerKind::EndHold,
            from: Some(63.0),
            to: Some(12.109_290_389),
        };
        assert_eq!(odd.describe(), "hold ended: ends at 63 s → 12.1 s");
        assert!(
            matches!(apply(&c, s(2), Steer::Rate(0.0), 0), Err(SteerError::Invalid(f)) if f.field == "rate")
        );
        assert!(matches!(
            apply(&c, s(2), Steer::Rate(f64::NAN), 0),
            Err(SteerError::Invalid(_))
        ));
    }

    #[test]
    fn extending_lengthens_the_hold_before_the_ramp_down() {
        let c = course(vec![st(5000, 50), st(20_000, 50), st(5000, 0)], None);
        let (n, e) = apply(&c, s(10), Steer::Extend(s(30)), 0).unwrap();
        assert_eq!(
            n.stages,
            vec![st(5000, 50), st(5000, 50), st(45_000, 50), st(5000, 0)]
        );
        assert_eq!((e.from, e.to), (Some(30.0), Some(60.0)));
        assert_eq!(e.short(), "hold +30 s");
        // Extending during a ramp (no hold planned) adds a hold at the ramp's level.
        let ramp = course(vec![st(10_000, 100)], None);
        let (n, _) = apply(&ramp, s(5), Steer::Extend(s(5)), 0).unwrap();
        assert_eq!(n.stages, vec![st(5000, 50), st(5000, 100), st(5000, 100)]);
        assert!(
            matches!(apply(&ramp, s(5), Steer::Extend(Duration::ZERO), 0), Err(SteerError::Invalid(f)) if f.field == "extend_s")
        );
    }

    #[test]
    fn ending_the_hold_goes_to_the_ramp_down_now_or_ends() {
        let c = course(vec![st(5000, 50), st(20_000, 50), st(5000, 0)], None);
        let (n, e) = apply(&c, s(10), Steer::EndHold, 0).unwrap();
        assert_eq!(n.stages, vec![st(5000, 50), st(5000, 50), st(5000, 0)]);
        assert_eq!((e.from, e.to), (Some(30.0), Some(15.0)));
        assert_eq!(e.describe(), "hold ended: ends at 30 s → 15 s");
        assert_eq!(e.short(), "end hold");
        let hold_only = course(vec![st(0, 20), st(20_000, 20)], None);
        let (n, _) = apply(&hold_only, s(7), Steer::EndHold, 0).unwrap();
        assert_eq!(total_duration(&n.stages), s(7), "the run ends now");
    }

    #[test]
    fn changes_after_the_hold_or_past_the_limit_are_refused() {
        let c = course(vec![st(5000, 50), st(5000, 50), st(5000, 0)], None);
        assert!(matches!(
            apply(&c, s(12), Steer::Level(10), 0),
            Err(SteerError::Conflict(_))
        ));
        assert!(matches!(
            apply(&c, s(12), Steer::EndHold, 0),
            Err(SteerError::Conflict(_))
        ));
        assert!(matches!(
            apply(&c, s(16), Steer::Rate(5.0), 0),
            Err(SteerError::Conflict(_))
        ));
        assert!(
            apply(&c, s(12), Steer::Rate(5.0), 0).is_ok(),
            "the rate may still change"
        );
        assert!(
            matches!(apply(&c, s(1), Steer::Level(10), MAX_STEERS), Err(SteerError::Invalid(f)) if f.field == "steering")
        );
    }

    #[test]
    fn steering_twice_composes() {
        let c = course(vec![st(0, 10), st(30_000, 10)], Some(10.0));
        let (a, _) = apply(&c, s(5), Steer::Level(30), 0).unwrap();
        let (b, _) = apply(&a, s(6), Steer::Level(15), 1).unwrap();
        assert_eq!(target_at(&b.stages, s(6)), 20, "mid-ramp 10→30");
        assert_eq!(target_at(&b.stages, Duration::from_millis(6_500)), 15);
        assert_eq!(total_duration(&b.stages), s(30));
    }
}
