//! Unit tests of the comparison statistics and sentences.
use super::*;
use crate::diagnose::LimitKind;
use std::collections::BTreeMap;

fn hist(values: &[(u64, u64)]) -> Vec<(u64, u64)> {
    values.to_vec()
}

#[test]
fn mann_whitney_matches_a_textbook_example() {
    // a = 1..=5, b = 6..=10: complete separation, U_b = 25, z = 12.5 / √(275/12) = 2.611,
    // p = 0.00903 (normal approximation, no continuity correction).
    let a = hist(&[(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)]);
    let b = hist(&[(6, 1), (7, 1), (8, 1), (9, 1), (10, 1)]);
    let s = mann_whitney(&a, &b).unwrap();
    assert!((s.prob_slower - 1.0).abs() < 1e-9);
    assert!((s.p_value - 0.00903).abs() < 0.0001, "{}", s.p_value);
    // Same distribution: p = 1, P(slower) = 0.5.
    let s = mann_whitney(&a, &a).unwrap();
    assert!((s.prob_slower - 0.5).abs() < 1e-9);
    assert!(s.p_value > 0.99);
    assert!(mann_whitney(&a, &[]).is_none());
}

#[test]
fn histogram_view_buckets_in_fine_log_steps() {
    // 0.15 ms, 0.9 ms ×2, 1 ms, 7 ms (values in µs).
    let v = histogram_view("x", &[(150, 1), (900, 2), (1000, 1), (7000, 1)]);
    assert_eq!(
        v.le_ms,
        vec![0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 7.0, 10.0]
    );
    assert_eq!(v.counts, vec![0, 1, 0, 0, 0, 0, 3, 0, 0, 0, 0, 1, 0]);
    assert_eq!(histogram_view("x", &[]).counts, vec![0, 0]);
}

#[test]
fn ties_are_handled_by_bucket() {
    // All samples equal: no evidence of any shift.
    let s = mann_whitney(&[(5, 1000)], &[(5, 800)]).unwrap();
    assert_eq!(s.p_value, 1.0);
    assert!((s.prob_slower - 0.5).abs() < 1e-9);
}

#[test]
fn quantile_interval_brackets_the_quantile() {
    let h: Vec<(u64, u64)> = (1..=1000).map(|v| (v, 1)).collect();
    let (lo, hi) = quantile_ci(&h, 0.95).unwrap();
    assert!(lo < 950 && hi > 950, "{lo}..{hi}");
    assert!(hi - lo < 30, "{lo}..{hi}");
    assert!(quantile_ci(&[(1, 3)], 0.5).is_none());
    // p95 needs 5 samples above it: 100 in all.
    assert!(quantile_ci(&h[..99], 0.95).is_none());
    assert!(quantile_ci(&h[..100], 0.95).is_some());
}

#[test]
fn small_samples_make_no_claim() {
    let (sa, sb) = (summary(100, 0), summary(300, 0));
    // 12 samples each: enough for a p50 interval, not for p95 or p99.
    let small = |c: u64| BTreeMap::from([("ws_connecting".to_string(), spread(c)[..12].to_vec())]);
    let (ha, hb) = (small(50), small(80));
    let (d, series) = (Diagnosis::default(), Series::default());
    let c = compare(&[
        RunFacts {
            name: "a",
            summary: &sa,
            diagnosis: &d,
            histograms: &ha,
            series: &series,
        },
        RunFacts {
            name: "b",
            summary: &sb,
            diagnosis: &d,
            histograms: &hb,
            series: &series,
        },
    ]);
    let p95 = c
        .metrics
        .iter()
        .find(|m| m.key == "ws_connecting.p95")
        .unwrap();
    let ch = p95.changes[1].as_ref().unwrap();
    assert_eq!(ch.verdict, "same");
    assert!(ch
        .significance
        .as_ref()
        .unwrap()
        .method
        .starts_with("too few samples"));
    assert!(
        !c.headlines.iter().any(|h| h.contains("p95")),
        "no headline claims anything about p95: {:?}",
        c.headlines
    );
}

fn summary(p95_ms: u64, failed: u64) -> Summary {
    let mut s = Summary {
        duration_ms: 10_000,
        peak_open: 100,
        ..Default::default()
    };
    s.totals.attempted = 100 + failed;
    s.totals.opened = 100;
    s.totals.failed = failed;
    s.latency.insert(
        "ws_connecting".into(),
        crate::report::LatencyStats {
            count: 1000,
            p50_us: p95_ms * 500,
            p95_us: p95_ms * 1000,
            p99_us: p95_ms * 1100,
            ..Default::default()
        },
    );
    s
}

fn spread(center_ms: u64) -> Vec<(u64, u64)> {
    (0..1000).map(|i| (center_ms * 1000 + i * 10, 1)).collect()
}

#[test]
fn slower_connects_are_called_significant_and_same_ones_are_not() {
    let (sa, sb, sc) = (summary(100, 0), summary(138, 50), summary(101, 0));
    let (ha, hb, hc) = (
        BTreeMap::from([("ws_connecting".to_string(), spread(50))]),
        BTreeMap::from([("ws_connecting".to_string(), spread(80))]),
        BTreeMap::from([("ws_connecting".to_string(), spread(50))]),
    );
    let d = Diagnosis::default();
    let mut db = Diagnosis {
        kind: LimitKind::ConcurrencyCap,
        ..Default::default()
    };
    db.knee.open_at_first_rejection = Some(150.0);
    db.failures.insert("http_429".into(), 50);
    let series = Series::default();
    let facts = |name, summary, histograms, diagnosis| RunFacts {
        name,
        summary,
        histograms,
        diagnosis,
        series: &series,
    };
    let c = compare(&[
        facts("a", &sa, &ha, &d),
        facts("b", &sb, &hb, &db),
        facts("c", &sc, &hc, &d),
    ]);
    let p95 = c
        .metrics
        .iter()
        .find(|m| m.key == "ws_connecting.p95")
        .unwrap();
    let b = p95.changes[1].as_ref().unwrap();
    assert!((b.rel.unwrap() - 0.38).abs() < 1e-9);
    assert!(b.significance.as_ref().unwrap().significant);
    assert_eq!(b.verdict, "worse");
    let cc = p95.changes[2].as_ref().unwrap();
    assert!(!cc.significance.as_ref().unwrap().significant);
    assert!(
        c.headlines
            .iter()
            .any(|h| h == "p95 ws_connecting +38 %, significant (b)"),
        "{:?}",
        c.headlines
    );
    assert!(c.shifts.iter().any(|s| s.run == 1 && s.p_value < 0.001));
    // b is 38 % slower at p95: its connect distribution shifted up; c's did not.
    let shift = |run| {
        c.shifts
            .iter()
            .find(|s| s.run == run && s.metric == "ws_connecting")
    };
    assert_eq!(shift(1).map(|s| s.verdict.as_str()), Some("slower"));
    assert_eq!(shift(2).map(|s| s.verdict.as_str()), Some("same"));
    assert!(
        c.behaviour
            .iter()
            .any(|s| s == "b: rejections appeared: first 429 at 150 open connections"),
        "{:?}",
        c.behaviour
    );
    assert!(c
        .behaviour
        .iter()
        .any(|s| s == "b: verdict: no limit → concurrency cap"));
    let fr = c.metrics.iter().find(|m| m.key == "failure_rate").unwrap();
    assert_eq!(fr.changes[1].as_ref().unwrap().verdict, "worse");
    assert_eq!(fr.changes[1].as_ref().unwrap().rel, None);
}

#[test]
fn knee_moves_are_described() {
    let s = summary(100, 10);
    let h = BTreeMap::new();
    let series = Series::default();
    let mut a = Diagnosis {
        kind: LimitKind::ConcurrencyCap,
        level: Some(150.0),
        unit: "connections".into(),
        ..Default::default()
    };
    a.knee.open_at_first_rejection = Some(150.0);
    a.failures.insert("http_429".into(), 10);
    let mut b = a.clone();
    b.level = Some(310.0);
    b.knee.open_at_first_rejection = Some(310.0);
    let c = compare(&[
        RunFacts {
            name: "a",
            summary: &s,
            diagnosis: &a,
            histograms: &h,
            series: &series,
        },
        RunFacts {
            name: "b",
            summary: &s,
            diagnosis: &b,
            histograms: &h,
            series: &series,
        },
    ]);
    assert!(c
        .behaviour
        .contains(&"first 429 at 150 open connections → 310".to_string()));
    assert!(c
        .behaviour
        .contains(&"concurrency cap level 150 connections → 310 connections".to_string()));
}

#[test]
fn per_identity_levels_are_spelled_out_with_the_total() {
    let (mut sa, mut sb) = (summary(100, 10), summary(100, 10));
    sa.peak_open = 150;
    sb.peak_open = 120;
    let h = BTreeMap::new();
    let series = Series::default();
    let cap = Diagnosis {
        kind: LimitKind::ConcurrencyCap,
        level: Some(150.0),
        unit: "connections".into(),
        ..Default::default()
    };
    let per_token = Diagnosis {
        level: Some(40.0),
        per: Some(crate::report::DIM_TOKEN.into()),
        ..cap.clone()
    };
    let facts = |name, summary, diagnosis| RunFacts {
        name,
        summary,
        diagnosis,
        histograms: &h,
        series: &series,
    };
    let c = compare(&[facts("a", &sa, &cap), facts("b", &sb, &per_token)]);
    assert_eq!(
        c.behaviour.first().map(String::as_str),
        Some("verdict: concurrency cap (150 connections) → concurrency cap per token (40 connections per token, 120 open in all)"),
        "{:?}",
        c.behaviour
    );
}

#[test]
fn latency_headlines_only_for_shifts_that_matter() {
    // 0.5 ms → 0.9 ms at p95 (+80 %, significant on these samples) is under 1 ms: the
    // table shows it, no headline claims it; 50 → 80 ms does get one.
    let fine = |us: u64| -> Vec<(u64, u64)> { (0..1000).map(|i| (us + i / 10, 1)).collect() };
    let (mut sa, mut sb) = (summary(0, 0), summary(0, 0));
    for (s, p95) in [(&mut sa, 500), (&mut sb, 900)] {
        let l = s.latency.get_mut("ws_connecting").unwrap();
        l.p50_us = p95 / 2;
        l.p95_us = p95;
        l.p99_us = p95 + 50;
    }
    let (ha, hb) = (
        BTreeMap::from([("ws_connecting".to_string(), fine(400))]),
        BTreeMap::from([("ws_connecting".to_string(), fine(800))]),
    );
    let d = Diagnosis::default();
    let series = Series::default();
    let c = compare(&[
        RunFacts {
            name: "a",
            summary: &sa,
            diagnosis: &d,
            histograms: &ha,
            series: &series,
        },
        RunFacts {
            name: "b",
            summary: &sb,
            diagnosis: &d,
            histograms: &hb,
            series: &series,
        },
    ]);
    let p95 = c
        .metrics
        .iter()
        .find(|m| m.key == "ws_connecting.p95")
        .unwrap();
    let ch = p95.changes[1].as_ref().unwrap();
    assert!(ch.significance.as_ref().unwrap().significant, "{ch:?}");
    assert!(ch.abs < 1.0, "{ch:?}");
    assert!(c.headlines.is_empty(), "{:?}", c.headlines);
}

#[test]
fn drops_that_appear_say_when() {
    let a = summary(100, 0);
    let mut b = summary(100, 0);
    b.totals.closes.insert("abnormal_1006".into(), 40);
    let mut sb = Series {
        t: vec![1.0, 2.0, 60.0, 61.0],
        ..Default::default()
    };
    sb.drop_rate
        .insert("abnormal_1006".into(), vec![0.0, 0.0, 30.0, 10.0]);
    let (h, d, sa) = (BTreeMap::new(), Diagnosis::default(), Series::default());
    let c = compare(&[
        RunFacts {
            name: "a",
            summary: &a,
            diagnosis: &d,
            histograms: &h,
            series: &sa,
        },
        RunFacts {
            name: "b",
            summary: &b,
            diagnosis: &d,
            histograms: &h,
            series: &sb,
        },
    ]);
    assert!(
        c.behaviour
            .contains(&"drops with abnormal_1006 appeared after 60 s (40)".to_string()),
        "{:?}",
        c.behaviour
    );
}
