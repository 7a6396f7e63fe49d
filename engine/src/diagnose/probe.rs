//! A probe run's verdicts: the run read phase by phase (`crate::probe` plans the
//! phases; this reads what they showed). One verdict per limit found.

use super::{diagnose, per_words, Diagnosis, LimitKind};
use crate::report::{PhaseSpan, Series};

/// The part of a series between two elapsed times (seconds), re-based to start at 0.
pub(crate) fn slice(s: &Series, from_ms: u64, to_ms: u64) -> Series {
    let (a, b) = (from_ms as f64 / 1000.0, to_ms as f64 / 1000.0);
    let idx: Vec<usize> = (0..s.t.len())
        .filter(|&i| s.t[i] > a && s.t[i] <= b + 0.001)
        .collect();
    let pick = |v: &Vec<f64>| {
        idx.iter()
            .filter_map(|&i| v.get(i).copied())
            .collect::<Vec<f64>>()
    };
    let pick_map = |m: &std::collections::BTreeMap<String, Vec<f64>>| {
        m.iter().map(|(k, v)| (k.clone(), pick(v))).collect()
    };
    let pick_dims = |m: &std::collections::BTreeMap<
        String,
        std::collections::BTreeMap<String, Vec<f64>>,
    >| { m.iter().map(|(k, v)| (k.clone(), pick_map(v))).collect() };
    // Cumulative per-identity rejections restart at the phase.
    let mut identity_rejected: std::collections::BTreeMap<
        String,
        std::collections::BTreeMap<String, Vec<f64>>,
    > = pick_dims(&s.identity_rejected);
    let before = idx.first().and_then(|i| i.checked_sub(1));
    for (dim, ids) in identity_rejected.iter_mut() {
        for (id, col) in ids.iter_mut() {
            let base = before
                .and_then(|b| s.identity_rejected.get(dim)?.get(id)?.get(b).copied())
                .unwrap_or(0.0);
            col.iter_mut().for_each(|v| *v = (*v - base).max(0.0));
        }
    }
    Series {
        last_seq: s.last_seq,
        t: idx.iter().map(|&i| s.t[i] - a).collect(),
        target: pick(&s.target),
        open: pick(&s.open),
        opened_rate: pick(&s.opened_rate),
        failed_rate: pick_map(&s.failed_rate),
        drop_rate: pick_map(&s.drop_rate),
        sent_rate: pick(&s.sent_rate),
        received_rate: pick(&s.received_rate),
        latency_ms: s
            .latency_ms
            .iter()
            .map(|(m, qs)| {
                let qs = qs
                    .iter()
                    .map(|(q, v)| {
                        (
                            q.clone(),
                            idx.iter().map(|&i| v.get(i).copied().flatten()).collect(),
                        )
                    })
                    .collect();
                (m.clone(), qs)
            })
            .collect(),
        connecting: pick(&s.connecting),
        closed_at_once_rate: pick(&s.closed_at_once_rate),
        identity_open: pick_dims(&s.identity_open),
        identity_rejected,
    }
}

/// What one offered-rate step of the rate phase got.
pub(crate) struct RateReading {
    pub(crate) offered: f64,
    /// Admitted per second over the step's later part, tick by tick.
    accepted: Vec<f64>,
    pub(crate) rejected: f64,
}

impl RateReading {
    /// The admitted rate: the median of its ticks.
    pub(crate) fn accepted_rate(&self) -> f64 {
        super::median_of(&self.accepted).unwrap_or(0.0)
    }
}

pub(crate) fn rate_readings(s: &Series, span: &PhaseSpan) -> Vec<RateReading> {
    let mut out = Vec::new();
    for (off, len, offered) in &span.steps {
        // Skip the first 30 % of each step (a burst allowance drains there), then take
        // the ticks that lie wholly inside the rest.
        let from = (span.start_ms + off + len * 3 / 10) as f64 / 1000.0;
        let to = (span.start_ms + off + len) as f64 / 1000.0 + 0.001;
        let mut r = RateReading {
            offered: *offered,
            accepted: Vec::new(),
            rejected: 0.0,
        };
        for i in 1..s.t.len() {
            let (a, b) = (s.t[i - 1], s.t[i]);
            if a + 0.001 < from || b > to {
                continue;
            }
            let dt = b - a;
            r.accepted.push(s.opened_rate[i]);
            r.rejected += s
                .failed_rate
                .iter()
                .filter(|(k, _)| crate::outcome::FailKind::parse(k).is_some_and(|f| f.is_refusal()))
                .map(|(_, v)| v.get(i).copied().unwrap_or(0.0) * dt)
                .sum::<f64>();
        }
        if !r.accepted.is_empty() {
            out.push(r);
        }
    }
    out
}

/// Rate phase: a steady admitted rate under a growing offer is a rate limit; admissions
/// that collapse once the offer passes a rate are a lockout (its level comes from the
/// pause-retry bursts).
fn rate_verdict(s: &Series, span: &PhaseSpan) -> (Option<Diagnosis>, bool, Vec<String>) {
    let readings = rate_readings(s, span);
    let mut lines = Vec::new();
    let mut saturated = Vec::new();
    let mut collapsed = false;
    for r in &readings {
        let accepted = super::median_of(&r.accepted).unwrap_or(0.0);
        lines.push(format!(
            "offered {:.1}/s → admitted {accepted:.1}/s, {:.0} refused",
            r.offered, r.rejected
        ));
        if r.rejected > 0.0 && accepted < r.offered * 0.9 {
            if accepted < 0.2 * r.offered {
                collapsed = true;
            } else {
                saturated.extend(r.accepted.iter().copied());
            }
        }
    }
    if collapsed || saturated.is_empty() {
        return (None, collapsed, lines);
    }
    let (level, u) = super::robust_level(&saturated, 1.0).unwrap_or((0.0, 0.0));
    let d = Diagnosis {
        kind: LimitKind::HandshakeRateLimit,
        level: Some((level * 10.0).round() / 10.0),
        uncertainty: Some((u * 10.0).ceil() / 10.0),
        unit: "handshakes_per_second".into(),
        confidence: if saturated.len() >= 2 { 0.9 } else { 0.7 },
        headline: format!("Handshake rate limit ≈ {level:.1}/s"),
        evidence: vec![format!("Short-lived connections offered faster than {level:.1}/s were admitted at {level:.1}/s (the median of {} saturated seconds).", saturated.len())],
        ..Default::default()
    };
    (Some(d), false, lines)
}

/// Pause-retry: what each burst admitted (the open count's rise over it).
pub(crate) fn burst_admissions(s: &Series, span: &PhaseSpan) -> Option<(f64, f64)> {
    let open_at = |t_ms: u64| -> f64 {
        let t = t_ms as f64 / 1000.0;
        s.t.iter()
            .zip(&s.open)
            .rfind(|(x, _)| **x <= t + 0.001)
            .map_or(0.0, |(_, o)| *o)
    };
    let peak_in = |from_ms: u64, to_ms: u64| -> f64 {
        let (a, b) = (from_ms as f64 / 1000.0, to_ms as f64 / 1000.0);
        s.t.iter()
            .zip(&s.open)
            .filter(|(x, _)| **x > a && **x <= b + 0.001)
            .map(|(_, o)| *o)
            .fold(0.0, f64::max)
    };
    let first_at = span.start_ms + span.steps.first()?.0;
    let second_at = span.start_ms + span.steps.get(1)?.0;
    let x1 = peak_in(first_at, second_at) - open_at(first_at);
    let x2 = peak_in(second_at, span.end_ms) - open_at(second_at);
    Some((x1.max(0.0), x2.max(0.0)))
}

/// One verdict per limit found, and a combined headline.
pub fn verdicts(s: &Series, phases: &[PhaseSpan]) -> Diagnosis {
    let mut found: Vec<Diagnosis> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let part = |span: &PhaseSpan| slice(s, span.start_ms, span.end_ms);
    let mut pooled: Option<Diagnosis> = None;
    let mut collapsed = false;
    for span in phases {
        match span.name.as_str() {
            "concurrency" => {
                let d = diagnose(&part(span), None);
                if !matches!(d.kind, LimitKind::None | LimitKind::HandshakeRateLimit) {
                    if d.kind == LimitKind::ConcurrencyCap || d.kind == LimitKind::LockoutRateLimit
                    {
                        pooled = Some(d.clone());
                    }
                    found.push(d);
                }
            }
            "rate" => {
                let (mut rate, lockout, lines) = rate_verdict(s, span);
                if let Some(r) = rate.as_mut() {
                    r.enforcement = super::enforcement_of(&part(span));
                }
                collapsed = lockout;
                notes.extend(lines.iter().map(|l| format!("Rate steps: {l}.")));
                found.extend(rate);
            }
            "pause_retry" => {
                let Some((x1, x2)) = burst_admissions(s, span) else {
                    continue;
                };
                notes.push(format!("Pause and retry: the first burst got {x1:.0} in; after a 3 s pause with every connection kept, the second got {x2:.0} more."));
                // The plateau phase 1 found (in all), if any.
                let cap = pooled
                    .as_ref()
                    .filter(|p| p.kind == LimitKind::ConcurrencyCap)
                    .and_then(|p| {
                        p.level.map(|l| {
                            l * p
                                .identities
                                .filter(|_| p.per.is_some())
                                .map_or(1.0, f64::from)
                        })
                    });
                let past_cap = cap.is_none_or(|l| x1 + x2 > l * 1.05 + 1.0);
                let reached_cap = cap.is_none_or(|l| x1 >= l * 0.95 - 1.0);
                if x2 <= (0.05 * x1).max(1.0) && reached_cap {
                    // Nothing released, nothing admitted: a cap. Confirm the one found.
                    let level = cap.unwrap_or(x1);
                    found.retain(|d| {
                        !matches!(
                            d.kind,
                            LimitKind::ConcurrencyCap | LimitKind::LockoutRateLimit
                        ) || d.per.is_some()
                    });
                    found.insert(0, Diagnosis {
                        kind: LimitKind::ConcurrencyCap,
                        level: Some(level.round()),
                        uncertainty: pooled.as_ref().and_then(|p| p.uncertainty).or(Some(1.0)),
                        unit: "connections".into(),
                        enforcement: super::enforcement_of(&part(span)).or_else(|| pooled.as_ref().and_then(|p| p.enforcement.clone())),
                        confidence: if cap.is_some() { 0.92 } else { 0.7 },
                        headline: format!("cap ≈ {level:.0} concurrent"),
                        evidence: vec![format!("After a pause with nothing released, a second burst got {x2:.0} in: the limit counts open connections, not attempts.")],
                        ..Default::default()
                    });
                } else if x2 >= 0.5 * x1 && x2 >= 1.0 && past_cap {
                    // Admitted again with nothing released: not a cap.
                    found.retain(|d| d.kind != LimitKind::ConcurrencyCap || d.per.is_some());
                    if collapsed
                        || !found
                            .iter()
                            .any(|d| d.kind == LimitKind::HandshakeRateLimit)
                    {
                        let (level, u) = super::robust_level(&[x1, x2], 1.0).unwrap_or((x2, 1.0));
                        found.retain(|d| d.kind != LimitKind::LockoutRateLimit);
                        found.insert(0, Diagnosis {
                            kind: LimitKind::LockoutRateLimit,
                            level: Some(level.round()),
                            uncertainty: Some(u.max(0.5).ceil()),
                            unit: "handshakes_per_second".into(),
                            enforcement: super::enforcement_of(&part(span)),
                            confidence: if collapsed { 0.9 } else { 0.7 },
                            headline: format!("lockout rate limit ≈ {level:.0} handshakes/s"),
                            evidence: vec![format!("Each burst got ~{level:.0} in, the second one after a pause with nothing released; {}", if collapsed { "under a steady offer above it, admissions collapsed to ~0 (refused attempts count too)." } else { "the rate steps did not show a steady admitted rate." })],
                            ..Default::default()
                        });
                    }
                }
            }
            name if name.starts_with("one_") => {
                let dim = &name[4..];
                let d = diagnose(&part(span), None);
                let one = match (d.kind, d.level, d.per.as_deref()) {
                    (LimitKind::ConcurrencyCap, Some(l), None) => l,
                    _ => continue,
                };
                let all = pooled.as_ref().and_then(|p| {
                    p.level.map(|l| {
                        l * p
                            .identities
                            .filter(|_| p.per.is_some())
                            .map_or(1.0, f64::from)
                    })
                });
                let words = per_words(dim);
                let seen = phases
                    .iter()
                    .find(|p| p.name == "concurrency")
                    .and_then(|p| part(p).identity_open.get(dim).map(|ids| ids.len() as u32));
                if all.is_none_or(|all| one < all * 0.8) {
                    found.retain(|f| {
                        !(f.kind == LimitKind::ConcurrencyCap
                            && (f.per.is_none() || f.per.as_deref() == Some(dim)))
                    });
                    found.insert(0, Diagnosis {
                        kind: LimitKind::ConcurrencyCap,
                        level: Some(one),
                        uncertainty: d.uncertainty,
                        unit: "connections".into(),
                        per: Some(dim.to_string()),
                        identities: seen,
                        enforcement: d.enforcement.clone(),
                        confidence: 0.88,
                        headline: format!("cap ≈ {one:.0} concurrent per {words}"),
                        evidence: vec![format!(
                            "With one {words} the plateau was {one:.0}; spread over several it was {}.",
                            all.map_or("higher (no cap found)".to_string(), |p| format!("{p:.0}"))
                        )],
                        ..Default::default()
                    });
                } else {
                    notes.push(format!("With a single {words} the plateau was the same ({one:.0}): the cap is not per {words}."));
                }
            }
            _ => {}
        }
    }
    let parts: Vec<String> = found
        .iter()
        .map(|d| match (d.kind, d.level) {
            (LimitKind::ConcurrencyCap, Some(l)) => match &d.per {
                Some(p) => format!("cap ≈ {l:.0} concurrent per {}", per_words(p)),
                None => format!("cap ≈ {l:.0} concurrent"),
            },
            (LimitKind::HandshakeRateLimit, Some(l)) => format!("handshake limit ≈ {l:.1}/s"),
            (LimitKind::LockoutRateLimit, Some(l)) => {
                format!("lockout rate limit ≈ {l:.0} handshakes/s")
            }
            _ => d.headline.clone(),
        })
        .map(|p| p.trim_end_matches('.').to_string())
        .collect();
    let max = s.open.iter().copied().fold(0.0, f64::max);
    let asked = phases
        .iter()
        .find(|p| p.name == "concurrency")
        .and_then(|p| part(p).target.iter().copied().reduce(f64::max))
        .unwrap_or(max);
    match found.first().cloned() {
        None => {
            Diagnosis {
                kind: LimitKind::None,
                level: Some(max),
                unit: "connections".into(),
                confidence: 0.8,
                headline: if max + 0.5 < asked {
                    format!("Probe: no limit found within the bounds (up to {max:.0} open connections of the {asked:.0} the ramp asked for).")
                } else {
                    format!("Probe: no limit found within the bounds (up to {max:.0} open connections).")
                },
                evidence: notes,
                ..Default::default()
            }
        }
        Some(first) => {
            let mut evidence = first.evidence.clone();
            evidence.extend(notes);
            Diagnosis {
                headline: format!("Probe: {}.", parts.join("; ")),
                evidence,
                // Each limit found is a verdict of its own, not a rival reading.
                alternatives: Vec::new(),
                verdicts: found,
                ..first
            }
        }
    }
}
