use super::*;

/// A series from per-second (opened, rejected 429, open) rows.
fn series(rows: &[(f64, f64, f64)]) -> Series {
    let mut s = Series::default();
    for (i, (opened, rej, open)) in rows.iter().enumerate() {
        s.t.push(i as f64 + 1.0);
        s.open.push(*open);
        s.target.push(*open);
        s.opened_rate.push(*opened);
        s.failed_rate
            .entry("http_429".into())
            .or_default()
            .push(*rej);
    }
    s
}

#[test]
fn counts_read_as_words() {
    assert_eq!(
        plural(1.0, "new connection", "new connections"),
        "1 new connection"
    );
    assert_eq!(
        plural(0.0, "new connection", "new connections"),
        "0 new connections"
    );
    assert_eq!(
        plural(14.6, "new connection", "new connections"),
        "15 new connections"
    );
}

#[test]
fn a_flat_plateau_with_rejections_is_a_cap() {
    // Ramp 50/s to 300 against a cap of 150.
    let s = series(&[
        (50.0, 0.0, 50.0),
        (50.0, 0.0, 100.0),
        (50.0, 0.0, 150.0),
        (0.0, 50.0, 150.0),
        (0.0, 50.0, 150.0),
        (0.0, 50.0, 150.0),
    ]);
    let d = diagnose(&s, None);
    assert_eq!(d.kind, LimitKind::ConcurrencyCap, "{d:?}");
    assert_eq!(d.level, Some(150.0));
    assert!(d.confidence > 0.8);
    assert_eq!(d.knee.first_rejection_s, Some(4.0));
    assert_eq!(d.knee.open_at_first_rejection, Some(150.0));
    assert_eq!(d.knee.pct50_s, Some(4.0));
    assert!(
            d.evidence.iter().any(|e| e
                == "Peak open 150; after the first refused second, 100 more attempts were turned away and only 0 new connections got in."),
            "{:?}",
            d.evidence
        );
}

#[test]
fn a_cap_with_drops_names_the_cap_and_also_the_drops() {
    // Cap of 150; from t = 5 the target drops sessions and reconnects refill the slots.
    let mut s = series(&[
        (50.0, 0.0, 50.0),
        (50.0, 0.0, 100.0),
        (50.0, 0.0, 150.0),
        (0.0, 50.0, 150.0),
        (30.0, 60.0, 150.0),
        (40.0, 70.0, 150.0),
        (30.0, 60.0, 150.0),
    ]);
    s.drop_rate.insert(
        "server_1001".into(),
        vec![0.0, 0.0, 0.0, 0.0, 30.0, 40.0, 30.0],
    );
    let d = diagnose(&s, None);
    assert_eq!(d.kind, LimitKind::ConcurrencyCap, "{d:?}");
    assert_eq!(d.level, Some(150.0));
    assert_eq!(d.also.len(), 1, "{d:?}");
    assert_eq!(d.also[0].kind, LimitKind::ServerDrops);
    assert!(
        d.also[0].headline.contains("server_1001"),
        "{:?}",
        d.also[0]
    );
    // A rate-limit reading of the same rejections is an alternative, not "also".
    assert!(d
        .also
        .iter()
        .all(|x| x.kind != LimitKind::HandshakeRateLimit));
}

#[test]
fn a_refusing_token_endpoint_is_token_exhaustion() {
    let mut s = series(&[(20.0, 0.0, 20.0), (20.0, 0.0, 40.0), (20.0, 0.0, 60.0)]);
    s.failed_rate
        .insert("token_http_429".into(), vec![0.0, 20.0, 20.0]);
    let summary = Summary {
        totals: crate::report::Totals {
            failures: [("token_http_429".to_string(), 40)].into_iter().collect(),
            ..Default::default()
        },
        ..Default::default()
    };
    let d = diagnose(&s, Some(&summary));
    assert_eq!(d.kind, LimitKind::TokenExhaustion, "{d:?}");
    assert_eq!(
            d.headline,
            "OAuth token exhaustion: the token endpoint refused 40 token requests from t = 2 s; those connections never reached the WebSocket service."
        );
    assert!(
        d.evidence[0].starts_with("40 attempts failed at the token endpoint (40 × token_http_429)"),
        "{d:?}"
    );
}

#[test]
fn a_rejection_in_the_draining_last_tick_still_reads_as_the_cap() {
    // 4 connections a second against a cap of 8; the last rejection falls in the tick
    // in which the run ended and closed everything (open 0 at its end).
    let s = series(&[
        (3.0, 0.0, 3.0),
        (4.0, 0.0, 7.0),
        (1.0, 3.0, 8.0),
        (0.0, 1.0, 0.0),
    ]);
    let d = diagnose(&s, None);
    assert_eq!(d.kind, LimitKind::ConcurrencyCap, "{d:?}");
    assert_eq!(d.level, Some(8.0));
}

#[test]
fn one_limit_alone_has_nothing_also() {
    let s = series(&[
        (50.0, 0.0, 50.0),
        (50.0, 0.0, 100.0),
        (0.0, 50.0, 100.0),
        (0.0, 50.0, 100.0),
    ]);
    let d = diagnose(&s, None);
    assert_eq!(d.kind, LimitKind::ConcurrencyCap, "{d:?}");
    assert!(d.also.is_empty(), "{d:?}");
}

#[test]
fn a_steady_accept_rate_with_climbing_open_is_a_rate_limit() {
    // 40 attempts/s against 20/s (burst 5).
    let s = series(&[
        (25.0, 15.0, 25.0),
        (20.0, 20.0, 45.0),
        (20.0, 20.0, 65.0),
        (20.0, 20.0, 85.0),
        (21.0, 19.0, 106.0),
    ]);
    let d = diagnose(&s, None);
    assert_eq!(d.kind, LimitKind::HandshakeRateLimit, "{d:?}");
    let level = d.level.unwrap();
    assert!((19.0..=21.0).contains(&level), "{level}");
    assert!(
        d.alternatives
            .iter()
            .any(|a| a.kind == LimitKind::ConcurrencyCap)
            || d.alternatives.is_empty()
    );
}

#[test]
fn clean_runs_say_none_up_to_the_peak() {
    let s = series(&[(50.0, 0.0, 50.0), (50.0, 0.0, 100.0), (0.0, 0.0, 100.0)]);
    let d = diagnose(&s, None);
    assert_eq!(d.kind, LimitKind::None);
    assert_eq!(d.level, Some(100.0));
    assert!(d.headline.contains("No limit found up to 100"));
}

#[test]
fn rejections_within_one_tick_are_called_ambiguous() {
    // 12 attempts within the first second against a cap (or a rate) of 8: one tick
    // cannot tell which.
    let s = series(&[(8.0, 4.0, 8.0), (0.0, 0.0, 8.0), (0.0, 0.0, 8.0)]);
    let d = diagnose(&s, None);
    assert_eq!(d.kind, LimitKind::None, "{d:?}");
    assert!(
        d.headline
            .starts_with("4 attempts were refused once 8 connections were open"),
        "{}",
        d.headline
    );
    assert!(d.evidence[0].contains("Ramp more slowly"));
}

#[test]
fn drops_and_client_limits_are_named() {
    let mut s = series(&[(10.0, 0.0, 10.0), (0.0, 0.0, 10.0), (0.0, 0.0, 0.0)]);
    s.drop_rate
        .insert("server_1001".into(), vec![0.0, 0.0, 10.0]);
    assert_eq!(diagnose(&s, None).kind, LimitKind::ServerDrops);
    let mut s = series(&[(10.0, 0.0, 10.0), (0.0, 0.0, 10.0)]);
    s.failed_rate.insert("client_limit".into(), vec![0.0, 5.0]);
    let d = diagnose(&s, None);
    assert_eq!(d.kind, LimitKind::ClientLimit);
    assert!(d.headline.contains("not to blame"));
}

#[test]
fn auth_failures_dominate() {
    let mut s = series(&[(0.0, 0.0, 0.0), (0.0, 0.0, 0.0)]);
    s.failed_rate.insert("http_401".into(), vec![10.0, 10.0]);
    let d = diagnose(&s, None);
    assert_eq!(d.kind, LimitKind::AuthFailure);
}

/// A richer tick for the cases real gateways showed (issue: "right about the limit on
/// gateways we did not write").
#[derive(Default, Clone)]
struct Tick {
    opened: u64,
    open: u64,
    fails: Vec<(&'static str, u64)>,
    drops: Vec<(&'static str, u64)>,
    at_once: u64,
    connecting: u64,
    p95_ms: Option<f64>,
    refused_p50_ms: Option<f64>,
    ids: Vec<(&'static str, &'static str, u64, u64)>,
}

fn run(ticks: &[Tick]) -> Series {
    use crate::report::{IdentityTotals, LatencyStats, Snapshot};
    let mut ids_total: std::collections::BTreeMap<(String, String), IdentityTotals> =
        Default::default();
    let snaps: Vec<Snapshot> = ticks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut s = Snapshot {
                seq: i as u64 + 1,
                elapsed_ms: (i as u64 + 1) * 1000,
                open: t.open,
                connecting: t.connecting,
                ..Default::default()
            };
            s.interval.opened = t.opened;
            s.interval.closed_at_once = t.at_once;
            for (k, n) in &t.fails {
                s.interval.failures.insert(k.to_string(), *n);
            }
            for (k, n) in &t.drops {
                s.interval.closes.insert(k.to_string(), *n);
            }
            if let Some(p) = t.p95_ms {
                s.latency.insert(
                    "ws_connecting".into(),
                    LatencyStats {
                        p95_us: (p * 1000.0) as u64,
                        ..Default::default()
                    },
                );
            }
            if let Some(p) = t.refused_p50_ms {
                s.latency.insert(
                    "ws_refused".into(),
                    LatencyStats {
                        p50_us: (p * 1000.0) as u64,
                        ..Default::default()
                    },
                );
            }
            for (dim, id, open, rejected) in &t.ids {
                let e = ids_total
                    .entry((dim.to_string(), id.to_string()))
                    .or_default();
                e.opened = *open;
                e.rejected += rejected;
            }
            for ((dim, id), v) in &ids_total {
                s.identities
                    .entry(dim.clone())
                    .or_default()
                    .insert(id.clone(), v.clone());
            }
            s
        })
        .collect();
    Series::from_snapshots(&snaps)
}

fn t(opened: u64, open: u64, fails: &[(&'static str, u64)]) -> Tick {
    Tick {
        opened,
        open,
        fails: fails.to_vec(),
        ..Default::default()
    }
}

#[test]
fn a_rate_limit_reads_its_level_from_saturated_seconds_only() {
    // 50 attempts/s for 4 s against 20/s burst 5; the last connection of the ramp starts
    // alone in the next second and is refused (issue case 1: read as 15.0/s).
    let s = run(&[
        t(25, 25, &[("http_429", 25)]),
        t(20, 45, &[("http_429", 30)]),
        t(20, 65, &[("http_429", 30)]),
        t(20, 85, &[("http_429", 30)]),
        t(0, 85, &[("http_429", 1)]),
        t(0, 85, &[]),
    ]);
    let d = diagnose(&s, None);
    assert_eq!(d.kind, LimitKind::HandshakeRateLimit, "{d:?}");
    assert_eq!(d.level, Some(20.0), "{d:?}");
    assert!(d.uncertainty.unwrap() <= 0.5, "{d:?}");
    assert!(d.confidence >= 0.9, "{d:?}");
    assert_eq!(d.enforcement.as_ref().unwrap().how, How::Rejected);
    assert_eq!(d.enforcement.as_ref().unwrap().status, Some(429));
}

#[test]
fn a_lockout_in_one_ramp_is_ambiguous_with_a_cap() {
    // 50 attempts/s against a limiter that counts refused attempts (issue case 2: read as
    // a cap of 20 at 95 %). A cap of 20 fits as well: say so.
    let s = run(&[
        t(20, 20, &[("http_429", 30)]),
        t(0, 20, &[("http_429", 50)]),
        t(0, 20, &[("http_429", 50)]),
        t(0, 20, &[("http_429", 50)]),
        t(0, 20, &[]),
    ]);
    let d = diagnose(&s, None);
    assert!(d.confidence < 0.6, "{d:?}");
    assert!(
        matches!(
            d.kind,
            LimitKind::ConcurrencyCap | LimitKind::LockoutRateLimit
        ),
        "{d:?}"
    );
    assert_eq!(d.level, Some(20.0));
    let other = if d.kind == LimitKind::ConcurrencyCap {
        LimitKind::LockoutRateLimit
    } else {
        LimitKind::ConcurrencyCap
    };
    assert!(
        d.alternatives
            .iter()
            .any(|a| a.kind == other && a.confidence >= 0.35),
        "{d:?}"
    );
    assert!(d.separate_by.as_deref().unwrap().contains("Pause"), "{d:?}");
}

#[test]
fn a_lockout_that_admits_again_after_a_pause_is_named() {
    // Bursts of 50 attempts/s (2 s each) with pauses; each burst gets 20 in, then nothing.
    let s = run(&[
        t(20, 20, &[("http_429", 30)]),
        t(0, 20, &[("http_429", 50)]),
        t(0, 20, &[]),
        t(0, 20, &[]),
        t(0, 20, &[]),
        t(20, 40, &[("http_429", 30)]),
        t(0, 40, &[("http_429", 50)]),
        t(0, 40, &[]),
    ]);
    let d = diagnose(&s, None);
    assert_eq!(d.kind, LimitKind::LockoutRateLimit, "{d:?}");
    assert_eq!(d.level, Some(20.0));
    assert!(d.confidence >= 0.8, "{d:?}");
}

#[test]
fn a_cap_reached_after_full_seconds_at_the_same_rate_is_not_a_lockout() {
    let s = run(&[
        t(30, 30, &[]),
        t(30, 60, &[]),
        t(0, 60, &[("http_429", 30)]),
        t(0, 60, &[("http_429", 30)]),
        t(0, 60, &[]),
    ]);
    let d = diagnose(&s, None);
    assert_eq!(d.kind, LimitKind::ConcurrencyCap, "{d:?}");
    assert!(d.confidence >= 0.8, "{d:?}");
    assert!(d.separate_by.is_none());
}

#[test]
fn a_cap_enforced_by_not_answering_is_a_stalled_cap() {
    // 30/s against a gateway that stops answering past 150 (issue case 3: "no clear
    // limit"). Attempts hang (connecting grows) and time out 3 s later.
    let mut ticks = vec![
        t(30, 30, &[]),
        t(30, 60, &[]),
        t(30, 90, &[]),
        t(30, 120, &[]),
        t(30, 150, &[]),
    ];
    for k in 0..6u64 {
        let mut x = t(0, 150, &[]);
        x.connecting = 30 * (k + 1).min(3);
        if k >= 3 {
            x.fails = vec![("timeout", 30)];
        }
        ticks.push(x);
    }
    let d = diagnose(&run(&ticks), None);
    assert_eq!(d.kind, LimitKind::ConcurrencyCap, "{d:?}");
    assert_eq!(d.level, Some(150.0));
    assert_eq!(d.enforcement.as_ref().unwrap().how, How::Stalled, "{d:?}");
    assert!(d.confidence >= 0.8, "{d:?}");
}

#[test]
fn queued_then_refused_and_accepted_then_closed_are_told_apart() {
    let mut ticks = vec![t(50, 50, &[]), t(50, 100, &[]), t(50, 150, &[])];
    for _ in 0..4 {
        let mut x = t(0, 150, &[("http_503", 50)]);
        x.refused_p50_ms = Some(2002.0);
        ticks.push(x);
    }
    let d = diagnose(&run(&ticks), None);
    assert_eq!(d.kind, LimitKind::ConcurrencyCap, "{d:?}");
    let e = d.enforcement.clone().unwrap();
    assert_eq!(
        (e.how, e.status, e.wait_ms),
        (How::Queued, Some(503), Some(2002.0))
    );
    assert!(d.headline.contains("queueing"), "{}", d.headline);

    let mut ticks = vec![t(50, 50, &[]), t(50, 100, &[])];
    for _ in 0..4 {
        let mut x = t(50, 100, &[]);
        x.drops = vec![("server_1013", 50)];
        x.at_once = 50;
        ticks.push(x);
    }
    let d = diagnose(&run(&ticks), None);
    assert_eq!(d.kind, LimitKind::ConcurrencyCap, "{d:?}");
    let e = d.enforcement.clone().unwrap();
    assert_eq!((e.how, e.close_code), (How::AcceptedThenClosed, Some(1013)));
    // Closed at once is the cap's refusal, not a separate "server drops" finding.
    assert!(d.also.is_empty(), "{d:?}");
}

/// Web messaging (issue 14): a session cap enforced after the upgrade by an error
/// response and a 1008 close at once is a cap, not tokens expiring; 1008 closes that
/// come late still read as auth ends.
#[test]
fn an_application_level_refusal_closed_1008_at_once_is_a_cap() {
    let t = |opened, open| Tick {
        opened,
        open,
        ..Default::default()
    };
    let mut ticks = vec![t(100, 100), t(100, 150)];
    for _ in 0..4 {
        let mut x = t(100, 150);
        x.drops = vec![("server_1008", 100)];
        x.at_once = 100;
        ticks.push(x);
    }
    let d = diagnose(&run(&ticks), None);
    assert_eq!(d.kind, LimitKind::ConcurrencyCap, "{d:?}");
    assert!((d.level.unwrap() - 150.0).abs() <= 7.5, "{d:?}");
    let e = d.enforcement.clone().unwrap();
    assert_eq!((e.how, e.close_code), (How::AcceptedThenClosed, Some(1008)));
    assert!(d.also.is_empty(), "{d:?}");

    // The same closes long after opening: tokens ending, as before.
    let mut ticks = vec![t(50, 50), t(0, 50), t(0, 50)];
    let mut x = t(0, 0);
    x.drops = vec![("server_1008", 50)];
    ticks.push(x);
    let d = diagnose(&run(&ticks), None);
    assert_eq!(d.kind, LimitKind::AuthFailure, "{d:?}");
}

#[test]
fn a_cap_per_source_address_is_ambiguous_in_one_run_and_sure_when_one_filled_first() {
    // Round-robin over three addresses: all three refused together at 50 (150 in all).
    let id = |a: &'static str, open, rej| ("source_addr", a, open, rej);
    let mut ticks = Vec::new();
    for k in 1..=3u64 {
        let mut x = t(50, 50 * k, &[]);
        x.ids = vec![
            id("127.0.0.2", (17 * k).min(50), 0),
            id("127.0.0.3", (17 * k).min(50), 0),
            id("127.0.0.4", 16 * k, 0),
        ];
        ticks.push(x);
    }
    for _ in 0..3 {
        let mut x = t(0, 150, &[("http_429", 50)]);
        x.ids = vec![
            id("127.0.0.2", 50, 17),
            id("127.0.0.3", 50, 17),
            id("127.0.0.4", 50, 16),
        ];
        ticks.push(x);
    }
    let d = diagnose(&run(&ticks), None);
    assert!(d.confidence < 0.6, "{d:?}");
    assert_eq!(d.kind, LimitKind::ConcurrencyCap);
    let per = d
        .alternatives
        .iter()
        .chain(std::iter::once(&Alternative {
            kind: d.kind,
            confidence: d.confidence,
            level: d.level,
            per: d.per.clone(),
        }))
        .find(|a| a.per.as_deref() == Some("source_addr"))
        .cloned()
        .expect("the per-address reading is named");
    assert_eq!(per.level, Some(50.0));
    assert!(
        d.separate_by
            .as_deref()
            .unwrap()
            .contains("single source address"),
        "{d:?}"
    );

    // Tokens given out in order: token 0 is refused at 5 while the run still grows.
    let tok = |a: &'static str, open, rej| ("token", a, open, rej);
    let mut a = t(5, 5, &[("http_429", 5)]);
    a.ids = vec![tok("0", 5, 5)];
    let mut b = t(5, 10, &[("http_429", 5)]);
    b.ids = vec![tok("0", 5, 5), tok("1", 5, 5)];
    let mut c = t(5, 15, &[("http_429", 5)]);
    c.ids = vec![tok("0", 5, 5), tok("1", 5, 5), tok("2", 5, 5)];
    let mut e = t(0, 15, &[]);
    e.ids = c.ids.clone();
    e.ids.iter_mut().for_each(|x| x.3 = 0);
    let d = diagnose(&run(&[a, b, c, e]), None);
    assert_eq!(d.kind, LimitKind::ConcurrencyCap, "{d:?}");
    assert_eq!(d.per.as_deref(), Some("token"), "{d:?}");
    assert_eq!(d.level, Some(5.0));
    assert_eq!(d.identities, Some(3));
    assert!(d.confidence >= 0.8, "{d:?}");
    assert!(
        d.level_words().unwrap().contains("per token (3 seen)"),
        "{:?}",
        d.level_words()
    );
}

#[test]
fn a_saturation_knee_without_refusals() {
    let mut ticks = Vec::new();
    for k in 1..=10u64 {
        let mut x = t(20, 20 * k, &[]);
        let open = 20 * k;
        x.p95_ms = Some(if open <= 100 {
            1.0
        } else {
            1.0 + 4.0 * (open - 100) as f64
        });
        ticks.push(x);
    }
    let d = diagnose(&run(&ticks), None);
    assert_eq!(d.kind, LimitKind::Saturation, "{d:?}");
    let l = d.level.unwrap();
    assert!((95.0..=115.0).contains(&l), "{d:?}");
    assert_eq!(d.enforcement.as_ref().unwrap().how, How::Slowed);
    // A noisy but healthy run is no knee.
    let mut ticks = Vec::new();
    for k in 1..=10u64 {
        let mut x = t(20, 20 * k, &[]);
        x.p95_ms = Some(if k % 3 == 0 { 9.0 } else { 0.8 });
        ticks.push(x);
    }
    assert_eq!(diagnose(&run(&ticks), None).kind, LimitKind::None);
}

#[test]
fn one_line_says_it_all() {
    let d = Diagnosis {
        kind: LimitKind::ConcurrencyCap,
        level: Some(50.0),
        uncertainty: Some(0.2),
        unit: "connections".into(),
        per: Some("source_addr".into()),
        identities: Some(3),
        enforcement: Some(Enforcement {
            how: How::Rejected,
            status: Some(429),
            close_code: None,
            wait_ms: None,
        }),
        confidence: 0.88,
        ..Default::default()
    };
    assert_eq!(
        d.meta_line(),
        "kind concurrency_cap · level 50 ±1 connections per source address (3 seen) · enforced: rejected with 429 · confidence 88 %"
    );
    let r = Diagnosis {
        kind: LimitKind::HandshakeRateLimit,
        level: Some(20.0),
        uncertainty: Some(0.2),
        unit: "handshakes_per_second".into(),
        ..Default::default()
    };
    assert_eq!(r.level_words().unwrap(), "20.0/s ±0.2");
}

#[test]
fn enforcement_keys_match_their_json() {
    for h in [
        How::Rejected,
        How::Queued,
        How::Stalled,
        How::Reset,
        How::AcceptedThenClosed,
        How::Slowed,
    ] {
        assert_eq!(serde_json::to_value(h).unwrap(), h.key());
    }
}

#[test]
fn a_verdict_in_a_few_words_carries_its_level_and_identity() {
    let cap = Diagnosis {
        kind: LimitKind::ConcurrencyCap,
        level: Some(150.0),
        unit: "connections".into(),
        ..Default::default()
    };
    assert_eq!(cap.short(), "concurrency cap ≈ 150");
    let per_token = Diagnosis {
        level: Some(40.0),
        per: Some(crate::report::DIM_TOKEN.into()),
        ..cap.clone()
    };
    assert_eq!(per_token.short(), "concurrency cap per token ≈ 40");
    let rate = Diagnosis {
        kind: LimitKind::HandshakeRateLimit,
        level: Some(19.6),
        unit: "handshakes_per_second".into(),
        ..Default::default()
    };
    assert_eq!(rate.short(), "handshake rate limit ≈ 19.6/s");
    let none = Diagnosis {
        level: Some(40.0),
        ..Default::default()
    };
    assert_eq!(none.short(), "no limit");
    // A probe names every limit it found; a run names the other limits it hit too.
    let probe = Diagnosis {
        verdicts: vec![cap.clone(), rate.clone()],
        ..cap.clone()
    };
    assert_eq!(
        probe.short(),
        "concurrency cap ≈ 150 + handshake rate limit ≈ 19.6/s"
    );
    let both = Diagnosis {
        also: vec![rate],
        ..cap
    };
    assert_eq!(
        both.short(),
        "concurrency cap ≈ 150 + handshake rate limit ≈ 19.6/s"
    );
}
