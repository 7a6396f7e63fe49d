//! How a run's ticks are stored, and the one way back: [`StoredTick`] keeps what changed
//! during a tick (its counters, the identities whose counts moved) and the gauges of its
//! end, never running totals; [`TickEncoder`] makes one from each `Snapshot` in order and
//! [`TickReplay`] turns stored ticks (this format, or the whole `Snapshot`s stored before
//! it) back into `Snapshot`s in order, so `Series` and every other reader see what was
//! live. Re-exported from [`crate::report`].
//!
//! Why: a tick stored with running totals costs as much as the run has outcome kinds,
//! identities and agents, every second (56.6 KB a tick, ~200 MB an hour, against a
//! target that closed each connection with a code of its own). Counters that stayed at
//! zero are left out, so a series is stored where it has points (sparse).
//!
//! Invariant: replaying what the encoder made gives back the same `Snapshot`s (totals,
//! interval, identities, gauges, latency, agents, probe), tested below. Where a tick's
//! running totals are not the sum of the intervals so far (late data merged into a
//! summary, an import that says otherwise), the tick also keeps its totals, so the
//! replay is exact either way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};

use super::{
    AgentStatus, Identities, IdentityTotals, LatencyStats, Phase, ProbeProgress, Snapshot, Totals,
};

/// The stored tick formats (the `tick_format` column): 1 = a whole `Snapshot`, as
/// stored before this module; 2 = a [`StoredTick`].
pub const TICK_FORMAT_SNAPSHOT: i64 = 1;
pub const TICK_FORMAT_DELTA: i64 = 2;

fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Zero counters and empty maps left out, at every depth (they read back as zeros).
fn strip_zeros(v: &mut serde_json::Value) {
    if let Some(m) = v.as_object_mut() {
        for x in m.values_mut() {
            strip_zeros(x);
        }
        m.retain(|_, x| match x {
            serde_json::Value::Number(n) => n.as_u64() != Some(0),
            serde_json::Value::Object(o) => !o.is_empty(),
            _ => true,
        });
    }
}

/// Counters as a JSON object of the non-zero ones.
fn sparse<T: Serialize, S: Serializer>(t: &T, s: S) -> Result<S::Ok, S::Error> {
    let mut v = serde_json::to_value(t).map_err(serde::ser::Error::custom)?;
    strip_zeros(&mut v);
    v.serialize(s)
}

fn sparse_opt<S: Serializer>(t: &Option<Totals>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => sparse(t, s),
        None => s.serialize_none(),
    }
}

/// One stored tick: its gauges, what happened during it, and what it adds to the
/// per-identity counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct StoredTick {
    pub seq: u64,
    pub elapsed_ms: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub phase: Phase,
    #[serde(skip_serializing_if = "is_zero")]
    pub target: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub open: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub peak_open: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub connecting: u64,
    /// What happened during the tick (zeros left out).
    #[serde(serialize_with = "sparse", skip_serializing_if = "is_zero")]
    pub interval: Totals,
    /// The run's totals, only where they are not the sum of the intervals so far.
    #[serde(serialize_with = "sparse_opt", skip_serializing_if = "Option::is_none")]
    pub totals: Option<Totals>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub latency: BTreeMap<String, LatencyStats>,
    /// What each identity's counts grew by during the tick (unchanged ones left out).
    #[serde(serialize_with = "sparse", skip_serializing_if = "BTreeMap::is_empty")]
    pub identities: Identities,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<AgentStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeProgress>,
}

/// `b - a`, field by field (never below zero).
fn identity_growth(a: &IdentityTotals, b: &IdentityTotals) -> IdentityTotals {
    IdentityTotals {
        attempted: b.attempted.saturating_sub(a.attempted),
        opened: b.opened.saturating_sub(a.opened),
        rejected: b.rejected.saturating_sub(a.rejected),
        auth_failed: b.auth_failed.saturating_sub(a.auth_failed),
        other_failed: b.other_failed.saturating_sub(a.other_failed),
        closed: b.closed.saturating_sub(a.closed),
    }
}

/// Adds identity growth into running identity counts (no bound: the counts being
/// rebuilt were bounded when they were made).
fn add_identities(into: &mut Identities, growth: &Identities) {
    for (dim, ids) in growth {
        let mine = into.entry(dim.clone()).or_default();
        for (id, t) in ids {
            mine.entry(id.clone()).or_default().merge(t);
        }
    }
}

/// Makes the stored form of a run's `Snapshot`s, given in order. A tick that could not
/// be stored must not count: keep a clone from before `encode` and put it back.
#[derive(Debug, Default, Clone)]
pub struct TickEncoder {
    /// The sum of the intervals so far, and the identities of the last tick.
    totals: Totals,
    identities: Identities,
}

impl TickEncoder {
    pub fn new() -> TickEncoder {
        TickEncoder::default()
    }

    /// The stored form of `s`, the run's next tick.
    pub fn encode(&mut self, s: &Snapshot) -> StoredTick {
        self.totals.merge(&s.interval);
        let totals = (self.totals != s.totals).then(|| {
            self.totals = s.totals.clone();
            s.totals.clone()
        });
        let now = s.identities();
        let mut growth = Identities::new();
        for (dim, ids) in now.iter() {
            let before = self.identities.get(dim);
            for (id, t) in ids {
                let g = match before.and_then(|b| b.get(id)) {
                    Some(b) => identity_growth(b, t),
                    None => t.clone(),
                };
                if g != IdentityTotals::default() {
                    growth.entry(dim.clone()).or_default().insert(id.clone(), g);
                }
            }
        }
        self.identities = now.into_owned();
        StoredTick {
            seq: s.seq,
            elapsed_ms: s.elapsed_ms,
            phase: s.phase,
            target: s.target,
            open: s.open,
            peak_open: s.peak_open,
            connecting: s.connecting,
            interval: s.interval.clone(),
            totals,
            latency: s.latency.clone(),
            identities: growth,
            agents: s.agents.clone(),
            probe: s.probe.clone(),
        }
    }
}

/// Turns stored ticks, in seq order, back into `Snapshot`s.
#[derive(Debug, Default, Clone)]
pub struct TickReplay {
    totals: Totals,
    identities: Identities,
}

impl TickReplay {
    pub fn new() -> TickReplay {
        TickReplay::default()
    }

    /// Carries on from a tick the caller already has (a live reader catching up).
    pub fn after(s: &Snapshot) -> TickReplay {
        TickReplay {
            totals: s.totals.clone(),
            identities: s.identities().into_owned(),
        }
    }

    /// The next tick, from a stored row of format `format`; `None` when it does not
    /// parse (skipped, as before).
    pub fn row(&mut self, format: i64, json: &str) -> Option<Snapshot> {
        if format == TICK_FORMAT_DELTA {
            Some(self.tick(serde_json::from_str(json).ok()?))
        } else {
            let s: Snapshot = serde_json::from_str(json).ok()?;
            self.totals = s.totals.clone();
            self.identities = s.identities().into_owned();
            Some(s)
        }
    }

    /// The next tick, as it was live.
    pub fn tick(&mut self, t: StoredTick) -> Snapshot {
        match t.totals {
            Some(totals) => self.totals = totals,
            None => self.totals.merge(&t.interval),
        }
        add_identities(&mut self.identities, &t.identities);
        Snapshot {
            seq: t.seq,
            elapsed_ms: t.elapsed_ms,
            phase: t.phase,
            target: t.target,
            open: t.open,
            peak_open: t.peak_open,
            connecting: t.connecting,
            totals: self.totals.clone(),
            interval: t.interval,
            latency: t.latency,
            identities: self.identities.clone(),
            tokens: BTreeMap::new(),
            agents: t.agents,
            histograms: BTreeMap::new(),
            probe: t.probe,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticks() -> Vec<Snapshot> {
        let mut out = Vec::new();
        let mut totals = Totals::default();
        let mut ids = Identities::new();
        for seq in 1..=6u64 {
            let mut interval = Totals {
                attempted: seq,
                opened: seq - 1,
                failed: 1,
                ..Default::default()
            };
            interval
                .failures
                .insert(if seq % 2 == 0 { "http_429" } else { "timeout" }.into(), 1);
            totals.merge(&interval);
            let slot = ids.entry("token".into()).or_default();
            slot.entry((seq % 2).to_string()).or_default().attempted += seq;
            let mut s = Snapshot {
                seq,
                elapsed_ms: seq * 1000,
                target: 10,
                open: seq,
                peak_open: seq,
                interval,
                totals: totals.clone(),
                identities: ids.clone(),
                ..Default::default()
            };
            s.latency.insert(
                "ws_connecting".into(),
                LatencyStats {
                    count: 1,
                    p50_us: 10 * seq,
                    ..Default::default()
                },
            );
            out.push(s);
        }
        out
    }

    fn round_trip(snaps: &[Snapshot]) -> Vec<Snapshot> {
        let mut enc = TickEncoder::new();
        let mut replay = TickReplay::new();
        snaps
            .iter()
            .map(|s| {
                let json = serde_json::to_string(&enc.encode(s)).unwrap();
                replay.row(TICK_FORMAT_DELTA, &json).unwrap()
            })
            .collect()
    }

    #[test]
    fn what_is_stored_replays_as_it_was_live() {
        let snaps = ticks();
        assert_eq!(round_trip(&snaps), snaps);
    }

    #[test]
    fn a_stored_tick_keeps_no_running_totals_and_no_zeros() {
        let snaps = ticks();
        let mut enc = TickEncoder::new();
        let stored: Vec<String> = snaps
            .iter()
            .map(|s| serde_json::to_string(&enc.encode(s)).unwrap())
            .collect();
        let last = &stored[5];
        assert!(!last.contains("\"totals\""), "{last}");
        assert!(!last.contains("\"closed\""), "zeros left out: {last}");
        assert!(last.contains("\"http_429\":1"), "{last}");
        // Only the identity that moved, by how much.
        assert!(
            last.contains(r#""identities":{"token":{"0":{"attempted":6}}}"#),
            "{last}"
        );
    }

    #[test]
    fn totals_that_are_not_the_sum_of_intervals_are_kept() {
        let mut snaps = ticks();
        // Late data: the fourth tick's totals hold more than its intervals.
        for s in snaps.iter_mut().skip(3) {
            s.totals.attempted += 100;
        }
        // And an import whose ticks carry no totals at all.
        snaps[1].totals = Totals::default();
        assert_eq!(round_trip(&snaps), snaps);
    }

    #[test]
    fn old_rows_and_new_rows_replay_in_one_run() {
        let snaps = ticks();
        let mut replay = TickReplay::new();
        let mut enc = TickEncoder::new();
        let mut got = Vec::new();
        for (i, s) in snaps.iter().enumerate() {
            // The first three stored whole, as before; then deltas.
            let row = if i < 3 {
                enc.encode(s);
                (TICK_FORMAT_SNAPSHOT, serde_json::to_string(s).unwrap())
            } else {
                (
                    TICK_FORMAT_DELTA,
                    serde_json::to_string(&enc.encode(s)).unwrap(),
                )
            };
            got.push(replay.row(row.0, &row.1).unwrap());
        }
        assert_eq!(got, snaps);
        assert!(replay.row(TICK_FORMAT_DELTA, "not json").is_none());
        let mut from_third = TickReplay::after(&snaps[2]);
        let mut enc = TickEncoder::new();
        for s in &snaps[..3] {
            enc.encode(s);
        }
        let fourth = from_third.tick(enc.encode(&snaps[3]));
        assert_eq!(fourth, snaps[3]);
    }
}
