//! Unit tests of the run-level wire types (`Totals`).

use super::*;

#[test]
fn totals_merge_adds_maps_and_counts() {
    let mut a = Totals {
        attempted: 2,
        opened: 1,
        failed: 1,
        ..Default::default()
    };
    a.failures.insert("http_429".into(), 1);
    let mut b = Totals {
        attempted: 3,
        opened: 3,
        closed: 1,
        ..Default::default()
    };
    b.failures.insert("http_429".into(), 2);
    b.closes.insert("client".into(), 1);
    a.merge(&b);
    assert_eq!((a.attempted, a.opened, a.failed, a.closed), (5, 4, 1, 1));
    assert_eq!(a.failures["http_429"], 3);
    assert_eq!(a.open(), 3);
}

/// One phase's summary as the coordinator builds it: `attempts` connects, each with a
/// `ws_connecting` sample of `us` µs.
fn phase_summary(attempts: u32, us: u32) -> Summary {
    use crate::stats::{Metric, Partial, RunStats};
    let mut stats = RunStats::new();
    stats.merge(&Partial {
        attempted: attempts,
        opened: attempts,
        samples: (0..attempts).map(|_| (Metric::Connecting, us)).collect(),
        ..Default::default()
    });
    let mut m = crate::merge::Merger::new(1, Vec::new());
    m.add(AgentTick {
        seq: 1,
        elapsed_ms: 1000,
        last: true,
        ..stats.tick(&[])
    });
    m.summary(1000, EndReason::Completed, None)
}

/// Issue 16: a probe's latency table covered its first experiment only (80 of 289).
#[test]
fn a_probe_summary_has_latency_and_histograms_over_every_phase() {
    let mut whole = phase_summary(80, 1_000);
    whole.absorb_phase(&phase_summary(150, 2_000));
    whole.absorb_phase(&phase_summary(59, 40_000));
    assert_eq!(whole.totals.attempted, 289);
    let lat = &whole.latency[metric::WS_CONNECTING];
    assert_eq!(lat.count, 289);
    assert!(
        lat.max_us >= 39_000,
        "the last phase's samples count: {lat:?}"
    );
    let counts = crate::stats::histogram_counts(&whole.histograms[metric::WS_CONNECTING])
        .expect("the merged histogram decodes");
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), 289);
}

#[test]
fn identities_from_anywhere_keep_the_dimension_bound() {
    let mut into = Identities::new();
    for d in 0..100 {
        let mut from = Identities::new();
        from.entry(format!("header:x{d}"))
            .or_default()
            .insert("#1".into(), IdentityTotals::default());
        merge_identities(&mut into, &from);
    }
    assert_eq!(into.len(), MAX_DIMENSIONS);
    // A kept dimension keeps counting.
    let mut from = Identities::new();
    from.entry("header:x0".into()).or_default().insert(
        "#1".into(),
        IdentityTotals {
            attempted: 3,
            ..Default::default()
        },
    );
    merge_identities(&mut into, &from);
    assert_eq!(into["header:x0"]["#1"].attempted, 3);
}
