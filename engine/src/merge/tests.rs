use super::*;
use crate::outcome::FailKind;
use crate::stats::{Metric, Partial, RunStats};
use proptest::prelude::*;

/// A tick of `agent` at `seq` carrying `opened` opens, `failed` 429s and these
/// ws_connecting samples (µs).
fn tick(agent: u32, seq: u64, opened: u32, failed: u32, samples: &[u32], last: bool) -> AgentTick {
    let mut stats = RunStats::new();
    let mut p = Partial {
        attempted: opened + failed,
        opened,
        ..Default::default()
    };
    if failed > 0 {
        p.failures.push((FailKind::Status(429), failed));
    }
    p.samples = samples.iter().map(|us| (Metric::Connecting, *us)).collect();
    stats.merge(&p);
    AgentTick {
        agent,
        seq,
        elapsed_ms: seq * 1000,
        open: u64::from(opened),
        peak_in_tick: u64::from(opened),
        last,
        ..stats.tick(&[])
    }
}

#[test]
fn a_snapshot_waits_for_every_agent_then_adds_them_up() {
    let mut m = Merger::new(2, Vec::new());
    assert!(
        m.add(tick(0, 1, 5, 1, &[100], false)).is_empty(),
        "agent 1 owes tick 1"
    );
    let s = m.add(tick(1, 1, 7, 2, &[300], false));
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].seq, 1);
    assert_eq!((s[0].interval.opened, s[0].interval.failed), (12, 3));
    assert_eq!(s[0].interval.failures["http_429"], 3);
    assert_eq!(s[0].latency["ws_connecting"].count, 2);
    // A resent tick is taken once.
    assert!(m.add(tick(1, 1, 7, 2, &[300], false)).is_empty());
    assert_eq!(m.so_far().totals.opened, 12);
}

#[test]
fn late_ticks_land_in_the_next_snapshot_and_lost_agents_are_not_waited_for() {
    let mut m = Merger::new(2, Vec::new());
    m.add(tick(0, 1, 5, 0, &[], false));
    // Agent 1 is late: tick 1 goes out without it.
    let s = m.expire(1);
    assert_eq!(s[0].interval.opened, 5);
    // Its tick 1 arrives after all: counted in snapshot 2.
    assert!(m.add(tick(1, 1, 3, 0, &[], false)).is_empty());
    m.add(tick(0, 2, 1, 0, &[], true));
    let s = m.add(tick(1, 2, 1, 0, &[], false));
    assert_eq!(s[0].seq, 2);
    assert_eq!(
        s[0].interval.opened,
        1 + 1 + 3,
        "late data merged, not dropped"
    );
    assert_eq!(s[0].totals.opened, 10);
    // Agent 1 is lost: tick 3 of agent 0 does not exist (it ended at 2); nothing owed.
    assert!(!m.finished());
    m.lose(1);
    assert!(m.finished());
    assert_eq!(m.lost(), vec![1]);
    let sum = m.summary(3000, EndReason::Completed, None);
    assert_eq!(sum.totals.opened, 10);
}

#[test]
fn agents_that_end_early_are_not_waited_for_afterwards() {
    let mut m = Merger::new(2, Vec::new());
    m.add(tick(0, 1, 1, 0, &[], true));
    assert_eq!(m.add(tick(1, 1, 1, 0, &[], false)).len(), 1);
    assert_eq!(
        m.add(tick(1, 2, 1, 0, &[], false)).len(),
        1,
        "agent 0 ended at 1"
    );
    assert_eq!(m.add(tick(1, 3, 1, 0, &[], true)).len(), 1);
    assert!(m.finished());
}

proptest! {
    /// Samples split over N agents and merged give the percentiles, counts and whole-run
    /// histogram of one process recording them all.
    #[test]
    fn merged_percentiles_equal_one_process(
        samples in proptest::collection::vec(1u32..5_000_000, 1..400),
        agents in 1usize..6,
        ticks in 1u64..4,
    ) {
        let mut one = RunStats::new();
        let mut m = Merger::new(agents, Vec::new());
        let mut out = Vec::new();
        for seq in 1..=ticks {
            for a in 0..agents {
                let mine: Vec<u32> = samples
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| (i % agents == a) && (*i as u64 % ticks) + 1 == seq)
                    .map(|(_, s)| *s)
                    .collect();
                let t = tick(a as u32, seq, mine.len() as u32, 0, &mine, seq == ticks);
                let p = Partial {
                    attempted: mine.len() as u32,
                    opened: mine.len() as u32,
                    samples: mine.iter().map(|us| (Metric::Connecting, *us)).collect(),
                    ..Default::default()
                };
                one.merge(&p);
                out.extend(m.add(t));
            }
        }
        prop_assert!(m.finished());
        prop_assert_eq!(out.len() as u64, ticks);
        let sum = m.summary(1, EndReason::Completed, None);
        prop_assert_eq!(&sum.latency, &one.latency());
        prop_assert_eq!(&sum.histograms, &one.encoded_histograms());
        prop_assert_eq!(sum.totals.opened, samples.len() as u64);
    }
}

/// An agent (of another version, or a rogue one) whose ticks name thousands of outcome
/// keys: the run keeps a few per family and counts the rest in `…_other`, and its
/// totals still add up.
#[test]
fn agent_ticks_cannot_grow_the_runs_outcome_keys() {
    let mut m = Merger::new(2, Vec::new());
    let mut out = Vec::new();
    for seq in 1..=3u64 {
        for agent in 0..2u32 {
            let mut t = tick(agent, seq, 0, 0, &[], seq == 3);
            for c in 0..2000u64 {
                let code = 3000 + (c + seq * 7 + u64::from(agent) * 13) % 1900;
                *t.interval
                    .closes
                    .entry(format!("server_{code}"))
                    .or_default() += 1;
                *t.interval
                    .failures
                    .entry(format!("step_http_{}", 100 + c % 800))
                    .or_default() += 1;
                *t.interval
                    .failures
                    .entry(format!("made_up_{c}"))
                    .or_default() += 1;
                t.interval.closed += 1;
                t.interval.failed += 2;
            }
            out.extend(m.add(t));
        }
    }
    let last = out.last().expect("three snapshots");
    let keys = last.totals.failures.len() + last.totals.closes.len();
    assert!(keys <= 40, "{keys} keys: {:?}", last.totals.closes.keys());
    assert_eq!(last.totals.closed, 3 * 2 * 2000);
    assert_eq!(last.totals.closes.values().sum::<u64>(), last.totals.closed);
    assert_eq!(
        last.totals.failures.values().sum::<u64>(),
        last.totals.failed
    );
    for s in &out {
        for k in s.interval.closes.keys() {
            assert!(
                last.totals.closes.contains_key(k),
                "{k} in a tick, not in the run"
            );
        }
    }
}
