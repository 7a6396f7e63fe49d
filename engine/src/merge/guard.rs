//! Ticks checked against the agent's share before they are merged: an agent in another
//! process (another machine, a pod, a pool member) is believed only as far as what it
//! says is possible. Seen: a rogue agent holding the pool token stored a 5-connection
//! run as *opened 4,000,000*. A tick that says more than its agent's share can do
//! refuses the agent: the coordinator names it and why, merges nothing more from it, and
//! ends the run (`agent_lost`, the reason in `lost_agents`).
//!
//! What is checked, per agent (its `slots` = its share of the run's peak connections):
//! - gauges (`open`, `peak_in_tick`, `connecting`, `target`) and opened − closed so far
//!   within its slots (plus a tenth and 8 for connections closing while others open;
//!   twice that for the open model, whose peak is an estimate);
//! - counts that follow from each other: opened and failed each at most attempted,
//!   dropped and closed-at-once at most closed;
//! - rates that are physically possible since the phase began (on the coordinator's
//!   clock, not the agent's): attempts at most [`ATTEMPTS_PER_SLOT_PER_S`] per slot and
//!   [`ATTEMPTS_PER_PROCESS_PER_S`] per process (about 9× the fastest rate one run
//!   reached on this machine, 22,042/s: `docs/agents.md`), bytes at most
//!   [`BYTES_PER_S`], messages at most [`MESSAGES_PER_S`] — ceilings meant to hold on
//!   much faster machines, not measurements;
//! - its clock: `seq` at most one per tick period and `elapsed_ms` not ahead of the
//!   phase, with slack for a reconnect's resent ticks.
//!
//! Pure: the coordinator passes the time since the phase began.

use std::time::Duration;

use crate::report::{AgentTick, Totals};
use crate::schedule::Share;

/// Connection attempts one slot can make per second: a ceiling (one attempt every
/// 0.1 ms, a TCP connect and an upgrade round trip, even on loopback).
pub const ATTEMPTS_PER_SLOT_PER_S: u64 = 10_000;
/// Connection attempts one agent process can make per second: a ceiling (22,042/s is
/// the most measured here, with 50,000/s asked).
pub const ATTEMPTS_PER_PROCESS_PER_S: u64 = 200_000;
/// Bytes one agent can move per second, each way (10 GiB/s).
pub const BYTES_PER_S: u64 = 10 << 30;
/// WebSocket messages one agent can send or receive per second.
pub const MESSAGES_PER_S: u64 = 20_000_000;
/// Seconds of slack on every rate and clock check (start barrier, clock skew).
const SLACK_S: f64 = 2.0;
/// Ticks an agent may be ahead of the coordinator's clock (resends after a reconnect
/// carry old seqs; this bounds new ones).
const SEQ_SLACK: u64 = 20;

/// The checks of one phase's ticks.
#[derive(Debug, Clone)]
pub struct TickGuard {
    /// Each agent's connection slots.
    slots: Vec<u64>,
    /// The open model's peak is an estimate: more room.
    open_model: bool,
    tick: Duration,
    /// What each agent reported so far (ticks taken).
    so_far: Vec<Totals>,
    /// The seqs taken from each agent: a tick resent after a reconnect is not counted
    /// twice (the merger takes it once too).
    seen: Vec<std::collections::BTreeSet<u64>>,
}

impl TickGuard {
    /// The guard of `agents` agents sharing a phase whose peak is `peak` connections
    /// (`open_model`: guests arriving at a rate), ticking every `tick`.
    pub fn new(agents: usize, peak: u32, open_model: bool, tick: Duration) -> TickGuard {
        let agents = agents.max(1);
        TickGuard {
            slots: Self::shares(agents, peak),
            open_model,
            tick,
            so_far: vec![Totals::default(); agents],
            seen: vec![std::collections::BTreeSet::new(); agents],
        }
    }

    fn shares(agents: usize, peak: u32) -> Vec<u64> {
        (0..agents)
            .map(|i| {
                u64::from(
                    Share {
                        index: i as u32,
                        of: agents as u32,
                    }
                    .target(peak),
                )
            })
            .collect()
    }

    /// A steered run's new peak: slots grow with it (and never shrink: connections of
    /// the old level may still be closing).
    pub fn raise_peak(&mut self, peak: u32) {
        let shares = Self::shares(self.slots.len(), peak);
        for (mine, new) in self.slots.iter_mut().zip(shares) {
            *mine = (*mine).max(new);
        }
    }

    /// Checks `t` (its `agent` set by the coordinator's side) `since` the phase began;
    /// on success it counts as taken. The error says what the agent claimed and what its
    /// share allows.
    pub fn check(&mut self, t: &AgentTick, since: Duration) -> Result<(), String> {
        let a = t.agent as usize;
        let Some(&slots) = self.slots.get(a) else {
            return Err(format!("agent {a} is not one of this run's agents"));
        };
        if self.seen[a].contains(&t.seq) {
            // A resend: the merger ignores it, and so does the count.
            return Ok(());
        }
        let room = if self.open_model {
            slots * 2 + 16
        } else {
            slots + slots / 10 + 8
        };
        let seq = t.seq;
        let share = |what: String| {
            format!("its tick {seq} says {what}; its share is {slots} connection slots")
        };
        for (what, v) in [
            ("open", t.open),
            ("open at once within the tick", t.peak_in_tick),
            ("connecting", t.connecting),
            ("targeted", u64::from(t.target)),
        ] {
            if v > room {
                return Err(share(format!("{v} connections {what}")));
            }
        }
        let mut total = self.so_far[a].clone();
        total.merge(&t.interval);
        let secs = since.as_secs_f64() + SLACK_S;
        let per_s = (slots.max(1) * ATTEMPTS_PER_SLOT_PER_S).min(ATTEMPTS_PER_PROCESS_PER_S);
        let most = |rate: u64| (rate as f64 * secs) as u64;
        let since_text = format!("{:.1} s", since.as_secs_f64());
        if total.opened.saturating_sub(total.closed) > room {
            return Err(share(format!(
                "{} connections opened and {} closed so far ({} open at once)",
                total.opened,
                total.closed,
                total.opened - total.closed
            )));
        }
        if total.attempted > most(per_s) + room {
            return Err(format!(
                "its tick {seq} says {} connection attempts in {since_text}; its {slots} connection slots can make at most {}",
                total.attempted,
                most(per_s) + room
            ));
        }
        for (what, n, of, whole) in [
            ("opened", total.opened, total.attempted, "attempted"),
            ("failed", total.failed, total.attempted, "attempted"),
            ("dropped", total.dropped, total.closed, "closed"),
            (
                "closed at once",
                total.closed_at_once,
                total.closed,
                "closed",
            ),
        ] {
            if n > of {
                return Err(format!(
                    "its tick {seq} says {n} connections {what} but only {of} {whole}"
                ));
            }
        }
        for (what, n, rate) in [
            ("bytes sent", total.bytes_sent, BYTES_PER_S),
            ("bytes received", total.bytes_received, BYTES_PER_S),
            ("messages sent", total.msgs_sent, MESSAGES_PER_S),
            ("messages received", total.msgs_received, MESSAGES_PER_S),
        ] {
            if n > most(rate) {
                return Err(format!(
                    "its tick {seq} says {n} {what} in {since_text}; one agent can move at most {}",
                    most(rate)
                ));
            }
        }
        let ticks = (secs * 1000.0 / self.tick.as_millis().max(1) as f64) as u64;
        if seq > ticks + SEQ_SLACK {
            return Err(format!(
                "its tick {seq} came {since_text} into the phase, when at most {} ticks can have passed",
                ticks + SEQ_SLACK
            ));
        }
        if t.elapsed_ms as f64 > (secs + 60.0) * 1000.0 {
            return Err(format!(
                "its tick {seq} says {} ms elapsed, {since_text} into the phase",
                t.elapsed_ms
            ));
        }
        self.so_far[a] = total;
        self.seen[a].insert(seq);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(agent: u32, seq: u64, opened: u64, attempted: u64) -> AgentTick {
        AgentTick {
            agent,
            seq,
            elapsed_ms: seq * 250,
            open: opened.min(3),
            interval: Totals {
                attempted,
                opened,
                ..Totals::default()
            },
            ..AgentTick::default()
        }
    }

    #[test]
    fn honest_ticks_pass_and_a_boast_is_refused_with_its_numbers() {
        let mut g = TickGuard::new(2, 5, false, Duration::from_millis(250));
        // Agent 0 holds 3 of 5, agent 1 holds 2.
        assert!(g
            .check(&tick(0, 1, 3, 3), Duration::from_millis(260))
            .is_ok());
        assert!(g
            .check(&tick(1, 1, 2, 2), Duration::from_millis(260))
            .is_ok());
        let mut boast = tick(0, 2, 4_000_000, 4_000_000);
        boast.open = 4_000_000;
        let e = g.check(&boast, Duration::from_millis(510)).unwrap_err();
        assert!(
            e.contains("4000000") && e.contains("3 connection slots"),
            "{e}"
        );
        // Counters alone, gauges honest: opened − closed gives it away.
        let e = g
            .check(&tick(1, 2, 1_000, 1_000), Duration::from_millis(510))
            .unwrap_err();
        assert!(e.contains("opened"), "{e}");
    }

    #[test]
    fn churn_is_possible_and_counts_must_follow_from_each_other() {
        let mut g = TickGuard::new(1, 10, false, Duration::from_millis(1000));
        // 10 slots reconnecting fast: 40,000 attempts and 39,995 closed in 4 s is possible.
        let mut t = tick(0, 4, 40_000, 40_000);
        t.interval.closed = 39_995;
        t.open = 5;
        assert!(
            g.check(&t, Duration::from_secs(4)).is_ok(),
            "{:?}",
            g.check(&t, Duration::from_secs(4))
        );
        let mut t = tick(0, 5, 10, 5);
        t.interval.closed = 10;
        let e = g.check(&t, Duration::from_secs(5)).unwrap_err();
        assert!(e.contains("opened but only"), "{e}");
        // A million attempts in 5 s are not, nor a terabyte received.
        let e = g
            .check(&tick(0, 5, 0, 1_000_000), Duration::from_secs(5))
            .unwrap_err();
        assert!(e.contains("can make at most"), "{e}");
        let mut t = tick(0, 5, 0, 0);
        t.interval.bytes_received = 1 << 40;
        let e = g.check(&t, Duration::from_secs(5)).unwrap_err();
        assert!(e.contains("bytes received"), "{e}");
        // Failed or dropped more than possible.
        let mut t = tick(0, 5, 0, 0);
        t.interval.failed = 100_000;
        assert!(g.check(&t, Duration::from_secs(5)).is_err());
        let mut t = tick(0, 5, 0, 0);
        t.interval.dropped = 1;
        t.interval.closed = 0;
        let mut fresh = TickGuard::new(1, 10, false, Duration::from_millis(1000));
        assert!(fresh.check(&t, Duration::from_secs(5)).is_err());
    }

    #[test]
    fn an_agent_clock_cannot_run_ahead() {
        let mut g = TickGuard::new(1, 10, false, Duration::from_millis(250));
        let e = g
            .check(&tick(0, 1_000_000, 0, 0), Duration::from_secs(1))
            .unwrap_err();
        assert!(e.contains("at most"), "{e}");
        let mut t = tick(0, 1, 0, 0);
        t.elapsed_ms = 3_600_000;
        assert!(g.check(&t, Duration::from_secs(1)).is_err());
        assert!(g.check(&tick(9, 1, 0, 0), Duration::from_secs(1)).is_err());
    }

    #[test]
    fn a_resent_tick_is_not_counted_twice() {
        let mut g = TickGuard::new(1, 10, false, Duration::from_millis(250));
        let mut t = tick(0, 1, 10, 10);
        t.open = 10;
        for _ in 0..5 {
            assert!(g.check(&t, Duration::from_secs(1)).is_ok());
        }
    }

    #[test]
    fn steering_up_makes_room() {
        let mut g = TickGuard::new(1, 10, false, Duration::from_millis(250));
        let mut t = tick(0, 1, 100, 100);
        t.open = 100;
        assert!(g.check(&t, Duration::from_secs(1)).is_err());
        g.raise_peak(100);
        assert!(g.check(&t, Duration::from_secs(1)).is_ok());
    }
}
