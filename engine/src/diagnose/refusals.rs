//! Readings of one symptom — attempts turned away (or slowed down) — as a concurrency
//! cap, a handshake rate limit, a lockout rate limiter, a cap per client identity, or a
//! saturation knee. Each detector says how well the run fits it; where two fit the same
//! evidence, both stay below 0.6 and name the experiment that tells them apart.
//!
//! Signatures (docs/diagnosis.md has them with the scored corpus):
//! - cap: while refused, the open count stays flat at L whatever the attempt rate;
//!   admissions only replace releases. Sure when released slots were filled again, or
//!   when full seconds at the same attempt rate were admitted before L (which rules out
//!   rate limiters); otherwise ambiguous with a lockout.
//! - rate limit: admitted per second steady at R over consecutive saturated seconds
//!   while attempts exceed R, and the open count climbs.
//! - lockout: while attempts continue above R, admissions fall to ~0 (refused attempts
//!   count too); after a pause it admits again, past the earlier plateau.
//! - per identity: identities (tokens, source addresses, header/query values) are each
//!   refused at the same L; sure when one was refused while the run as a whole still
//!   grew, ambiguous when all were refused together at a global plateau of n x L.
//! - saturation: nothing refused, but ws_connecting p95 grows ×10 (and by ≥ 50 ms).

use super::enforcement::{enforced, enforcement_evidence, enforcement_over};
use super::facts::{level_of, median, Facts};
use super::{per_words, plural, Enforcement, Finding, How, LimitKind};

pub(super) fn detect(f: &Facts<'_>) -> Vec<Finding> {
    let pressed = f.pressed();
    let enforcement = enforcement_over(f, &pressed);
    let clean = clean_seconds(f, &pressed);
    let mut cap = detect_cap(f, &pressed, clean, enforcement.clone());
    let mut rate = detect_rate(f, &pressed, enforcement.clone());
    let mut lockout = detect_lockout(f, &pressed, clean, enforcement.clone());
    let (per, consistent) = detect_per_identity(f, &pressed, &enforcement);
    if consistent {
        // Several identities each stopped at the same open count while the run grew: a
        // global rate limiter refuses whoever comes next, not whoever is at L.
        for x in rate.iter_mut().chain(lockout.iter_mut()) {
            x.confidence = x.confidence.min(0.3);
        }
    }
    if let Some(c) = cap.as_mut() {
        for p in &per {
            if p.confidence >= 0.8 {
                // One identity was refused while the run as a whole still grew: the
                // plateau is the sum of per-identity caps, not a global one.
                c.confidence = c.confidence.min(0.3);
            } else if p.confidence >= 0.35 {
                c.confidence = c.confidence.min(0.55);
                c.separate_by = p.separate_by.clone();
            }
        }
    }
    let mut out: Vec<Finding> = cap.into_iter().chain(rate).chain(lockout).collect();
    out.extend(per);
    out.extend(detect_saturation(f));
    out
}

/// Seconds before the first refusal, at (about) the attempt rate of that first refusal,
/// with everything admitted (the longest unbroken stretch). One second is enough to rule
/// out a lockout or rate limiter with a window of a second: it would have refused them.
fn clean_seconds(f: &Facts<'_>, pressed: &[usize]) -> f64 {
    let Some(&p0) = pressed.first() else {
        return 0.0;
    };
    let a0 = f.demand[p0];
    let (mut best, mut run) = (0.0f64, 0.0);
    for i in 0..p0 {
        let clean = f.full(i)
            && f.refused[i] * f.dt[i] < 0.5
            && !f.stalling(i)
            && f.attempts[i] >= (0.7 * a0).max(1.0 / f.dt[i]);
        run = if clean { run + f.dt[i] } else { 0.0 };
        best = best.max(run);
    }
    best
}

/// The pressed ticks that carry the load: stragglers (a late refusal after the load
/// stopped) would drag a level down.
fn steady(f: &Facts<'_>, pressed: &[usize], full_only: bool) -> Vec<usize> {
    let dem: Vec<f64> = pressed.iter().map(|&i| f.demand[i]).collect();
    let Some(dm) = median(&dem) else {
        return Vec::new();
    };
    let keep: Vec<usize> = pressed
        .iter()
        .copied()
        .filter(|&i| (f.demand[i] >= 0.3 * dm || f.stalling(i)) && (!full_only || f.full(i)))
        .collect();
    if keep.is_empty() {
        pressed.to_vec()
    } else {
        keep
    }
}

const PAUSE_TEST: &str = "Pause the attempts for a few seconds without closing any connection, then try again: a concurrency cap still refuses (the open count stays put), a lockout rate limiter admits a new batch. The probe runs this experiment.";

fn detect_cap(
    f: &Facts<'_>,
    pressed: &[usize],
    clean: f64,
    enforcement: Option<Enforcement>,
) -> Option<Finding> {
    if pressed.len() < 2 {
        return None;
    }
    let steady = steady(f, pressed, false);
    let opens: Vec<f64> = steady.iter().map(|&i| f.open_during(i)).collect();
    let (level, u) = level_of(&opens, 1.0)?;
    if level < 1.0 {
        return None;
    }
    // Flat: open stays within 5 % of the level while refused.
    let flat = opens
        .iter()
        .filter(|o| (*o - level).abs() <= 0.05 * level + 1.0)
        .count() as f64
        / opens.len() as f64;
    // Plateau: nothing got past it.
    let plateau = if f.peak_open <= level * 1.05 + 1.0 {
        1.0
    } else {
        0.3
    };
    // After the first refused second only replacements for released slots get in.
    let after = &steady[1.min(steady.len() - 1)..];
    // Sessions accepted and closed at once are refusals, not admissions or releases.
    let at_once = f.count(
        &f.refusals.iter().map(|r| r.at_once).collect::<Vec<_>>(),
        after,
    );
    let admitted = (f.count(&f.opened, after) - at_once).max(0.0);
    let refused = f.count(&f.refused, after);
    let released = f.count(&f.late_drops, after) + f.count(&f.own_closes, after);
    let starved = if admitted <= released + 0.2 * (admitted + refused) + 1.0 {
        1.0
    } else {
        0.4
    };
    let readmitted =
        admitted >= 2.0 && released >= 2.0 && (admitted - released).abs() <= 0.3 * released + 2.0;
    let sureness = if readmitted {
        0.95
    } else if clean >= 1.95 {
        0.88
    } else if clean >= 0.95 {
        0.8
    } else {
        0.55
    };
    let confidence = (flat * plateau * starved * sureness).clamp(0.0, 1.0);
    let secs: f64 = steady.iter().map(|&i| f.dt[i]).sum();
    let mut evidence = vec![
        format!(
            "While refused ({}), open connections stayed at {level:.0} ({:.0} % of those seconds within 5 %).",
            plural(secs, "second", "seconds"),
            flat * 100.0
        ),
        format!(
            "Peak open {:.0}; after the first refused second, {} and only {} got in.",
            f.peak_open,
            plural(refused, "more attempt was turned away", "more attempts were turned away"),
            plural(admitted, "new connection", "new connections"),
        ),
    ];
    let a0 = f.demand[pressed[0]];
    if readmitted {
        evidence.push(format!("Slots freed by {} were filled again ({admitted:.0} admitted) and the open count came back to {level:.0}: a cap, not a quota or a rate limit.", plural(released, "close", "closes")));
    } else if clean >= 0.95 {
        evidence.push(format!("Before that, {} at the same attempt rate (~{a0:.0}/s) were admitted in full: a rate limiter would have refused them too.", plural(clean, "second", "seconds")));
    } else {
        evidence.push(format!("The open count reached {level:.0} within the first second of attempts at ~{a0:.0}/s: a lockout rate limiter of about {level:.0} per second would look the same."));
    }
    evidence.extend(enforcement_evidence(f, pressed, &enforcement));
    if f.has_retry_after {
        evidence.push("The target sent Retry-After with its refusals.".into());
    }
    Some(Finding {
        kind: LimitKind::ConcurrencyCap,
        level: Some(level),
        uncertainty: Some(u),
        unit: "connections",
        per: None,
        identities: None,
        headline: format!(
            "Concurrency cap ≈ {level:.0} open connections{}: beyond that, attempts are refused whatever the connect rate.",
            enforced(&enforcement)
        ),
        enforcement,
        confidence,
        evidence,
        separate_by: (sureness < 0.6).then(|| PAUSE_TEST.to_string()),
    })
}

const BUCKET_VS_LOCKOUT: &str = "Keep attempts above the limit for several seconds: a token bucket keeps admitting R per second, a lockout rate limiter admits nothing until the attempts slow down.";

fn detect_rate(
    f: &Facts<'_>,
    pressed: &[usize],
    enforcement: Option<Enforcement>,
) -> Option<Finding> {
    if pressed.len() < 2 {
        return None;
    }
    // Refused with an answer (a stall is no rate limiter's way).
    let answered: Vec<usize> = pressed
        .iter()
        .copied()
        .filter(|&i| (f.refused[i] - f.refusals[i].stalled) * f.dt[i] >= 0.5)
        .collect();
    let mut sat = steady(f, &answered, true);
    // The run's last tick is its drain.
    sat.retain(|&i| i + 1 < f.n || f.n < 3);
    // The first saturated second mixes a burst allowance with the steady rate.
    if sat.len() > 2 {
        sat.remove(0);
    }
    if sat.is_empty() {
        return None;
    }
    let rates: Vec<f64> = sat.iter().map(|&i| f.opened[i]).collect();
    let (rate, u) = level_of(&rates, 1.0 / f.tick)?;
    if rate < 0.5 {
        return None;
    }
    let secs: f64 = sat.iter().map(|&i| f.dt[i]).sum();
    let attempts = f.count(&f.attempts, &sat) / secs;
    let spread = rates.iter().map(|r| (r - rate).abs()).sum::<f64>() / rates.len() as f64 / rate;
    let steadiness = (1.0 - spread).clamp(0.0, 1.0);
    let first = f.s.open[sat[0]];
    let last = f.s.open[*sat.last()?];
    let climbing = if last > first + 0.5 * rate * secs.min(1.0) || sat.len() == 1 {
        1.0
    } else {
        0.2
    };
    let above = if attempts > rate * 1.2 { 1.0 } else { 0.5 };
    // Steady admission shows over consecutive saturated seconds; isolated bursts fit a
    // lockout as well.
    let consecutive = sat.windows(2).filter(|w| w[1] == w[0] + 1).count();
    let sureness = match (sat.len(), consecutive) {
        (_, 0) => 0.5,
        (n, _) if n >= 3 => 0.95,
        _ => 0.8,
    };
    let confidence = (steadiness * climbing * above * sureness).clamp(0.0, 1.0);
    let mut evidence = vec![
        format!("While refused ({}), {rate:.1} handshakes/s got through (spread {:.0} %) out of {attempts:.1} attempts/s.", plural(secs, "saturated second", "saturated seconds"), spread * 100.0),
        format!("Open connections kept climbing ({first:.0} → {last:.0}), so concurrency is not what is limited."),
    ];
    if f.has_retry_after {
        evidence.push("The target sent Retry-After with its refusals.".into());
    }
    Some(Finding {
        kind: LimitKind::HandshakeRateLimit,
        level: Some(rate),
        uncertainty: Some(u),
        unit: "handshakes_per_second",
        per: None,
        identities: None,
        headline: format!(
            "Handshake rate limit ≈ {rate:.1}/s{}: attempts above that rate are refused while open connections keep growing.",
            enforced(&enforcement)
        ),
        enforcement,
        confidence,
        evidence,
        separate_by: (consecutive == 0).then(|| BUCKET_VS_LOCKOUT.to_string()),
    })
}

fn detect_lockout(
    f: &Facts<'_>,
    pressed: &[usize],
    clean: f64,
    enforcement: Option<Enforcement>,
) -> Option<Finding> {
    if pressed.len() < 2 {
        return None;
    }
    let status = |i: usize| f.refusals[i].status.values().sum::<f64>();
    // Attempts go on, answered with a status, and (almost) nothing gets in.
    let collapse: Vec<usize> = pressed
        .iter()
        .copied()
        .filter(|&i| {
            f.full(i)
                && f.attempts[i] * f.dt[i] >= 2.0
                && status(i) > 0.0
                && f.opened[i] <= 0.1 * f.attempts[i]
        })
        .collect();
    if collapse.is_empty() {
        return None;
    }
    // Episodes: attempts after a quiet second (or the run's first attempts).
    let quiet = |i: usize| f.attempts[i] * f.dt[i] < 0.5 && !f.stalling(i);
    let mut starts = Vec::new();
    let mut was_quiet = true;
    for i in 0..f.n {
        if !quiet(i) && was_quiet {
            starts.push(i);
        }
        was_quiet = quiet(i);
    }
    let mut batches = Vec::new();
    let mut again = false;
    for (e, &s) in starts.iter().enumerate() {
        let end = starts.get(e + 1).copied().unwrap_or(f.n);
        let Some(&c) = collapse.iter().find(|&&c| c >= s && c < end) else {
            continue;
        };
        let idx: Vec<usize> = (s..c).collect();
        let batch = f.count(&f.opened, &idx);
        if e > 0 && batch >= 1.0 {
            // Admitted again after a pause, with no slots freed in between: past the
            // earlier plateau.
            let gap: Vec<usize> = (starts[e - 1]..s).collect();
            let released = f.count(&f.drops, &gap) + f.count(&f.own_closes, &gap);
            if released < 0.5 * batch {
                again = true;
            }
        }
        batches.push(batch);
    }
    let (level, u) = level_of(&batches, 1.0)?;
    if level < 1.0 {
        return None;
    }
    let confidence = if again {
        0.88
    } else if clean >= 0.95 {
        // Full seconds at that rate were admitted first: only a long-window quota fits.
        0.15
    } else {
        0.45
    };
    let mut evidence = vec![format!(
        "In {} attempts went on and (almost) none got in: refused attempts seem to count too.",
        plural(collapse.len() as f64, "second", "seconds")
    )];
    evidence.push(format!(
        "Each burst of attempts got ~{level:.0} in before the refusals started{}.",
        if again {
            ", again after a pause, with no connection released in between"
        } else {
            ""
        }
    ));
    Some(Finding {
        kind: LimitKind::LockoutRateLimit,
        level: Some(level),
        uncertainty: Some(u),
        unit: "handshakes_per_second",
        per: None,
        identities: None,
        headline: format!(
            "Lockout rate limit ≈ {level:.0} handshakes per second{}: once attempts outrun it every attempt is refused (refused ones count too) until they slow down.",
            enforced(&enforcement)
        ),
        enforcement,
        confidence,
        evidence,
        separate_by: (!again).then(|| PAUSE_TEST.to_string()),
    })
}

/// A cap per client identity, along each dimension the plan varies. Also says whether
/// several identities were each refused at the same level while the run still grew (a
/// reading no global limiter explains).
fn detect_per_identity(
    f: &Facts<'_>,
    pressed: &[usize],
    enforcement: &Option<Enforcement>,
) -> (Vec<Finding>, bool) {
    let s = f.s;
    let mut out = Vec::new();
    let mut consistent = false;
    for (dim, opens) in &s.identity_open {
        if opens.len() < 2 {
            continue;
        }
        let Some(rejected) = s.identity_rejected.get(dim) else {
            continue;
        };
        let mut levels = Vec::new();
        let mut early = false;
        let mut refused_ids = 0usize;
        for (id, open) in opens {
            let Some(rej) = rejected.get(id) else {
                continue;
            };
            let Some(first) = rej.iter().position(|r| *r > 0.0) else {
                continue;
            };
            if first >= f.n {
                continue;
            }
            refused_ids += 1;
            // Under a per-identity cap an identity never holds more than L.
            levels.push(open.iter().copied().fold(0.0, f64::max));
            // Refused while the run as a whole was well below its peak and went on
            // growing: other identities still had room.
            let at = f.open_during(first);
            let later = s.open[first..f.n].iter().copied().fold(0.0, f64::max);
            if at < 0.9 * f.peak_open && later > at * 1.1 + 1.0 {
                early = true;
            }
        }
        if refused_ids == 0 {
            continue;
        }
        let Some((level, u)) = level_of(&levels, 1.0) else {
            continue;
        };
        if level < 1.0 {
            continue;
        }
        let agree = levels
            .iter()
            .filter(|l| (*l - level).abs() <= 0.1 * level + 1.0)
            .count() as f64
            / levels.len() as f64;
        let n = opens.len();
        let total = f.peak_open;
        // All identities refused together at a plateau of n × L: a global cap of n × L
        // fits as well.
        let symmetric = refused_ids == n && (level * n as f64 - total).abs() <= 0.1 * total + 1.0;
        let sureness = if early {
            0.9
        } else if symmetric {
            0.45
        } else if refused_ids >= 2 {
            0.6
        } else {
            0.4
        };
        let confidence = agree * sureness;
        if confidence < 0.2 || pressed.is_empty() && refused_ids < 2 {
            continue;
        }
        if early && refused_ids >= 2 && agree >= 0.9 {
            consistent = true;
        }
        let words = per_words(dim);
        let mut evidence = vec![format!(
            "{refused_ids} of {n} {words}s were refused; {:.0} % of them at {level:.0} open (±10 %).",
            agree * 100.0
        )];
        if early {
            evidence.push(format!("One {words} was refused while the run as a whole was below its peak and still growing ({total:.0} open in all): the limit counts per {words}."));
        } else {
            evidence.push(format!("The run as a whole reached {total:.0} open: a global cap of {total:.0} would look the same when every {words} is refused at once."));
        }
        out.push(Finding {
            kind: LimitKind::ConcurrencyCap,
            level: Some(level),
            uncertainty: Some(u),
            unit: "connections",
            per: Some(dim.clone()),
            identities: Some(n as u32),
            headline: format!(
                "Concurrency cap ≈ {level:.0} open connections per {words} ({n} seen, {total:.0} in all){}.",
                enforced(enforcement)
            ),
            enforcement: enforcement.clone(),
            confidence,
            evidence,
            separate_by: (!early).then(|| format!("Run with a single {words} (or put more of the load on one): a global cap admits {total:.0} from it, a cap per {words} only {level:.0}. The probe runs this experiment.")),
        });
    }
    (out, consistent)
}

/// Nothing (or next to nothing) refused, but handshakes slowed down ×10 past a load.
fn detect_saturation(f: &Facts<'_>) -> Option<Finding> {
    let attempts = f.total(&f.attempts);
    let refused = f.total(&f.refused);
    if attempts < 10.0 || refused > 0.01 * attempts + 0.5 {
        return None;
    }
    let p95: Vec<(usize, f64)> = (0..f.n)
        .filter_map(|i| f.connecting_p95[i].map(|v| (i, v)))
        .collect();
    if p95.len() < 4 {
        return None;
    }
    let base = median(&p95[..3].iter().map(|x| x.1).collect::<Vec<_>>())?.max(0.05);
    let high = (10.0 * base).max(base + 50.0);
    let sustained = p95
        .windows(2)
        .position(|w| w[0].1 >= high && w[1].1 >= high)?;
    // The knee: extrapolate the first two clearly raised seconds back to the baseline
    // (latency past a knee grows about linearly with the load), within the second the
    // rise began in.
    let raised = base + 0.1 * (high - base);
    let r = (0..=sustained)
        .rev()
        .take_while(|&j| p95[j].1 >= raised)
        .last()
        .unwrap_or(sustained);
    let i = p95[r].0;
    let start = if i == 0 { 0.0 } else { f.s.open[i - 1] };
    let end = f.s.open[i];
    let level = match p95.get(r + 1) {
        Some(&(j, next)) if next > p95[r].1 && f.s.open[j] > end => {
            let per_conn = (next - p95[r].1) / (f.s.open[j] - end);
            (end - (p95[r].1 - base) / per_conn).clamp(start, end)
        }
        _ => start,
    };
    let u = ((end - start) / 4.0).max(0.5);
    let peak = p95[sustained..].iter().map(|x| x.1).fold(0.0, f64::max);
    Some(Finding {
        kind: LimitKind::Saturation,
        level: Some(level),
        uncertainty: Some(u),
        unit: "connections",
        per: None,
        identities: None,
        enforcement: Some(Enforcement {
            how: How::Slowed,
            status: None,
            close_code: None,
            wait_ms: Some(peak.round()),
        }),
        confidence: 0.75,
        headline: format!("Saturation knee at ≈ {level:.0} open connections: nothing was refused, but handshakes slowed down (ws_connecting p95 {base:.1} ms → {peak:.0} ms) past it."),
        evidence: vec![
            format!("ws_connecting p95 was {base:.1} ms for the first seconds, rose from t = {:.0} s ({start:.0} → {end:.0} open, {:.0} attempts/s) and stayed above {high:.0} ms.", f.t(i), f.attempts[i]),
            "Past the knee the target admits everything, slower and slower: add capacity before it becomes refusals.".into(),
        ],
        separate_by: None,
    })
}
