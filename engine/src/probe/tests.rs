use super::*;
use crate::diagnose::probe::verdicts;
use crate::plan::Limits;
use crate::report::Snapshot;

fn base() -> Plan {
    serde_json::from_str(r#"{"target":"ws://h/x","stages":[],"probe":{"max_connections":80,"max_connect_rate":40,"max_duration":"20s"}}"#).unwrap()
}

fn span(name: &str, start_ms: u64, end_ms: u64, steps: Vec<(u64, u64, f64)>) -> PhaseSpan {
    PhaseSpan {
        name: name.into(),
        start_ms,
        end_ms,
        steps,
    }
}

/// A series from per-second (opened, refused with 429, open) rows, from t = 1 s.
fn series(rows: &[(u64, u64, u64)]) -> Series {
    let snaps: Vec<Snapshot> = rows
        .iter()
        .enumerate()
        .map(|(i, (opened, refused, open))| {
            let mut s = Snapshot {
                seq: i as u64 + 1,
                elapsed_ms: (i as u64 + 1) * 1000,
                open: *open,
                ..Default::default()
            };
            s.interval.opened = *opened;
            if *refused > 0 {
                s.interval.failures.insert("http_429".into(), *refused);
            }
            s
        })
        .collect();
    Series::from_snapshots(&snaps)
}

#[test]
fn experiments_follow_each_other_within_bounds() {
    let p = base();
    let empty = Series::default();
    let first = next_phase(&p, &[], &empty).unwrap();
    assert_eq!(first.name, "concurrency");
    // A slow ramp: at most half the rate bound, and a hold for hanging upgrades.
    let ramp = first.plan.stages[0].duration.0.as_secs_f64();
    assert!(f64::from(first.plan.stages[0].connections) / ramp <= 20.0 + 1e-9);
    assert!(first.plan.connect_timeout.0 <= std::time::Duration::from_secs(3));
    assert!(first.plan.validate(&Limits::default()).is_ok());
    let done = [span("concurrency", 0, 8000, vec![])];
    let rate = next_phase(&p, &done, &empty).unwrap();
    assert_eq!(rate.name, "rate");
    // 20 s x 30 % = 6 s for rates: the top two steps.
    let offered: Vec<f64> = rate.steps.iter().map(|s| s.2).collect();
    assert_eq!(offered, vec![20.0, 40.0]);
    // Nothing was refused: no pause-retry, no identities, done.
    let done = [done[0].clone(), span("rate", 8000, 14000, rate.steps)];
    assert_eq!(next_phase(&p, &done, &series(&[(1, 0, 1); 14])), None);
}

#[test]
fn a_plateau_asks_for_pause_retry_and_identities_for_their_own_phase() {
    let mut p = base();
    p.source_addrs = vec!["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()];
    p.headers.insert("X-Api-Key".into(), "k-{{vu % 4}}".into());
    // A cap of 20 in the concurrency phase.
    let s = series(&[
        (10, 0, 10),
        (10, 0, 20),
        (0, 10, 20),
        (0, 10, 20),
        (0, 10, 20),
        (0, 0, 20),
    ]);
    let done = [
        span("concurrency", 0, 6000, vec![]),
        span("rate", 6000, 6000, vec![]),
    ];
    let pr = next_phase(&p, &done, &s).unwrap();
    assert_eq!(pr.name, "pause_retry");
    assert_eq!(pr.plan.stages[0].connections, 0, "quiet first");
    assert_eq!(pr.plan.stages[1].connections, 30, "1.5 x the plateau");
    assert_eq!(pr.plan.stages[3].connections, 60);
    let mut done = done.to_vec();
    done.push(span("pause_retry", 6000, 6000, pr.steps));
    let one = next_phase(&p, &done, &s).unwrap();
    assert_eq!(one.name, "one_source_addr");
    assert_eq!(one.plan.source_addrs.len(), 1);
    done.push(span("one_source_addr", 6000, 6000, vec![]));
    let key = next_phase(&p, &done, &s).unwrap();
    assert_eq!(key.name, "one_header:X-Api-Key");
    assert_eq!(key.plan.headers["X-Api-Key"], "k-0");
}

#[test]
fn pause_retry_tells_a_cap_from_a_lockout() {
    // Burst 1 (0-1 s) admits 20 of 30, pause to 4 s, burst 2 (4-5 s).
    let steps = vec![(0, 1000, 30.0), (4000, 1000, 30.0)];
    let cap = series(&[
        (20, 10, 20),
        (0, 0, 20),
        (0, 0, 20),
        (0, 0, 20),
        (0, 30, 20),
        (0, 0, 20),
    ]);
    let d = verdicts(&cap, &[span("pause_retry", 0, 6000, steps.clone())]);
    assert_eq!(d.kind, LimitKind::ConcurrencyCap, "{d:?}");
    assert_eq!(d.level, Some(20.0));
    let lockout = series(&[
        (20, 10, 20),
        (0, 0, 20),
        (0, 0, 20),
        (0, 0, 20),
        (20, 10, 40),
        (0, 0, 40),
    ]);
    let d = verdicts(&lockout, &[span("pause_retry", 0, 6000, steps)]);
    assert_eq!(d.kind, LimitKind::LockoutRateLimit, "{d:?}");
    assert_eq!(d.level, Some(20.0));
    assert!(
        d.headline.contains("lockout rate limit ≈ 20"),
        "{}",
        d.headline
    );
}

/// Issue 16: a probe a user can follow — numbered experiments in words, each read once
/// it is over (a rate step at its planned end, a phase when it ends).
#[test]
fn following_a_probe_numbers_experiments_and_reads_each_once_over() {
    use super::follow::Follow;
    let p = base();
    let s = series(&[
        (10, 0, 10),
        (10, 0, 20),
        (0, 10, 20),
        (0, 10, 20),
        (0, 10, 20),
        (0, 10, 20),
        (0, 0, 20),
        (0, 0, 20),
        (20, 0, 4),
        (20, 0, 4),
        (20, 0, 4),
        (20, 20, 4),
        (20, 20, 4),
        (20, 20, 4),
    ]);
    let mut f = Follow::new(&p);
    let conc = next_phase(&p, &[], &Series::default()).unwrap();
    f.begin(&conc, 0);
    let now = f.progress(&s, &[], 3000);
    let cur = now.current.as_ref().unwrap();
    assert_eq!((cur.index, cur.phase.as_str()), (1, "concurrency"));
    assert!(cur.what.starts_with("ramp to "), "{}", cur.what);
    // Ramp, two rate steps, pause-retry (until known), no identities.
    assert_eq!(now.planned, 4);
    assert!(now.done.is_empty());

    let mut done = vec![span("concurrency", 0, 8000, vec![])];
    let rate = next_phase(&p, &done, &s).unwrap();
    f.begin(&rate, 8000);
    let now = f.progress(&s, &done, 9000);
    assert_eq!(now.done.len(), 1);
    let cap = &now.done[0];
    assert!(cap.verdict.contains("concurrency cap"), "{cap:?}");
    assert_eq!(cap.found, Some(20.0));
    assert_eq!(cap.accepted, 20.0);
    assert!(cap.failures >= 40, "{cap:?}");
    let cur = now.current.unwrap();
    assert_eq!(cur.index, 2);
    assert_eq!(cur.what, "20 connects/s for 3 s (short-lived connections)");

    // The first rate step is over at 11 s; the second still runs.
    let now = f.progress(&s, &done, 11_500);
    assert_eq!(now.done.len(), 2);
    assert_eq!(now.done[1].verdict, "all admitted");
    assert_eq!(now.done[1].offered, 20.0);
    assert_eq!(now.current.unwrap().index, 3);

    done.push(span("rate", 8000, 14_000, rate.steps.clone()));
    let end = f.finish(&s, &done);
    assert!(end.current.is_none());
    assert_eq!(end.done.len(), 3);
    let limited = &end.done[2];
    assert_eq!((limited.offered, limited.accepted), (40.0, 20.0));
    assert_eq!(limited.found, Some(20.0));
    assert!(limited.verdict.contains("rate limited"), "{limited:?}");
    // Readings do not change once made.
    assert_eq!(end.done[..2], f.progress(&s, &done, 14_000).done[..2]);
}

/// Issue 16: the tiles reset with each experiment ("4 / 49 · peak 5"): counters and
/// peak continue from the phases before.
#[test]
fn a_probe_tick_counts_from_the_start_of_the_probe() {
    let mut earlier = crate::report::Summary {
        peak_open: 49,
        ..Default::default()
    };
    earlier.totals.attempted = 80;
    earlier.totals.opened = 60;
    let mut tick = Snapshot {
        open: 4,
        target: 49,
        peak_open: 5,
        ..Default::default()
    };
    tick.totals.attempted = 9;
    tick.totals.opened = 5;
    tick.interval.attempted = 2;
    super::follow::stitch(&mut tick, Some(&earlier));
    assert_eq!((tick.totals.attempted, tick.totals.opened), (89, 65));
    assert_eq!(
        (tick.open, tick.peak_open, tick.interval.attempted),
        (4, 49, 2)
    );
}

/// The pause-retry bursts read against the ramp's plateau, as `verdicts` reads them:
/// nothing admitted after the pause is a cap; a new batch past the plateau is not.
#[test]
fn a_followed_pause_retry_is_read_against_the_plateau() {
    use super::follow::Follow;
    let mut p = base();
    p.probe = Some(Probe {
        max_duration: Dur::secs(20),
        ..p.probe.clone().unwrap()
    });
    // Ramp: a plateau at 20 (0-6 s); pause-retry from 6 s, bursts at 8 s and 12 s.
    let ramp = [
        (10, 0, 10),
        (10, 0, 20),
        (0, 10, 20),
        (0, 10, 20),
        (0, 10, 20),
        (0, 0, 20),
    ];
    let read = |tail: &[(u64, u64, u64)]| {
        let rows: Vec<(u64, u64, u64)> = ramp.iter().chain(tail).copied().collect();
        let s = series(&rows);
        let mut f = Follow::new(&p);
        f.begin(&next_phase(&p, &[], &Series::default()).unwrap(), 0);
        let mut done = vec![span("concurrency", 0, 6000, vec![])];
        let burst = Segment {
            name: "pause_retry".into(),
            plan: {
                let mut b = p.clone();
                b.stages = vec![
                    Stage {
                        duration: Dur::secs(2),
                        connections: 0,
                    },
                    Stage {
                        duration: Dur::secs(1),
                        connections: 30,
                    },
                ];
                b
            },
            steps: vec![(2000, 1000, 30.0), (6000, 1000, 30.0)],
        };
        f.begin(&burst, 6000);
        done.push(span("pause_retry", 6000, 14_000, burst.steps.clone()));
        f.finish(&s, &done).done[1].clone()
    };
    // Nothing released: connections from the ramp closed, the first burst fills the
    // cap, the second gets nothing.
    let cap = read(&[
        (0, 0, 0),
        (0, 0, 0),
        (20, 10, 20),
        (0, 0, 20),
        (0, 0, 20),
        (0, 0, 20),
        (0, 30, 20),
        (0, 0, 20),
    ]);
    assert_eq!((cap.offered, cap.accepted), (60.0, 20.0), "{cap:?}");
    assert!(
        cap.verdict
            .ends_with("nothing released, nothing admitted (a cap)"),
        "{cap:?}"
    );
    let lockout = read(&[
        (0, 0, 0),
        (0, 0, 0),
        (20, 10, 20),
        (0, 0, 20),
        (0, 0, 20),
        (0, 0, 20),
        (20, 10, 40),
        (0, 0, 40),
    ]);
    assert_eq!(lockout.accepted, 40.0, "{lockout:?}");
    assert!(
        lockout.verdict.contains("a rate limiter, not a cap"),
        "{lockout:?}"
    );
}
