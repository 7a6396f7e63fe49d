//! What changed in behaviour from one run to another, in words (`behaviour`): the
//! verdict, refusals, drops and the like, for the comparison's sentences. Pure.

use super::RunFacts;
use crate::diagnose::{first_nonzero, fmt_n, Diagnosis, LimitKind};

/// What changed in behaviour from run `a` to run `b`, in words.
pub(super) fn behaviour(a: &RunFacts<'_>, b: &RunFacts<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let (da, db) = (a.diagnosis, b.diagnosis);
    // A verdict in words, with the identity it counts: "concurrency cap per token".
    let name = |d: &Diagnosis| match (d.kind, &d.per) {
        (LimitKind::None, _) => "no limit".to_string(),
        (k, Some(p)) => format!("{} per {}", k.words(), crate::diagnose::per_words(p)),
        (k, None) => k.words().to_string(),
    };
    // A level in words: "150 connections", or per identity "50 connections per token,
    // 150 open in all" (a per-identity level alone hides the total the target held).
    let level = |d: &Diagnosis, f: &RunFacts<'_>, l: f64| {
        let unit = d.unit.replace('_', " ");
        match &d.per {
            Some(p) if d.kind == LimitKind::ConcurrencyCap => format!(
                "{} {unit} per {}, {} open in all",
                fmt_n(l),
                crate::diagnose::per_words(p),
                f.summary.peak_open
            ),
            Some(p) => format!("{} {unit} per {}", fmt_n(l), crate::diagnose::per_words(p)),
            None => format!("{} {unit}", fmt_n(l)),
        }
    };
    let with_level = |d: &Diagnosis, f: &RunFacts<'_>| match (d.kind, d.level) {
        (LimitKind::None, _) | (_, None) => name(d),
        (_, Some(l)) => format!("{} ({})", name(d), level(d, f, l)),
    };
    if name(da) != name(db) {
        out.push(format!(
            "verdict: {} → {}",
            with_level(da, a),
            with_level(db, b)
        ));
    } else if da.kind != LimitKind::None {
        if let (Some(x), Some(y)) = (da.level, db.level) {
            if (x - y).abs() > f64::max(1.0, 0.02 * x) {
                out.push(format!(
                    "{} level {} → {}",
                    name(da),
                    level(da, a, x),
                    level(db, b, y)
                ));
            }
        }
    }
    let ka = &da.knee;
    let kb = &db.knee;
    let first_kind = |d: &Diagnosis| {
        d.failures
            .iter()
            .filter(|(k, _)| {
                matches!(
                    crate::outcome::FailKind::parse(k),
                    Some(crate::outcome::FailKind::Status(_))
                )
            })
            .max_by_key(|(_, v)| **v)
            .map(|(k, _)| k.trim_start_matches("http_").to_string())
            .unwrap_or_else(|| "rejection".into())
    };
    match (ka.open_at_first_rejection, kb.open_at_first_rejection) {
        (Some(x), Some(y)) if (x - y).abs() >= 1.0 => out.push(format!(
            "first {} at {} open connections → {}",
            first_kind(db),
            fmt_n(x),
            fmt_n(y)
        )),
        (Some(x), None) => out.push(format!(
            "rejections gone (first {} was at {} open connections)",
            first_kind(da),
            fmt_n(x)
        )),
        (None, Some(y)) => out.push(format!(
            "rejections appeared: first {} at {} open connections{}",
            first_kind(db),
            fmt_n(y),
            kb.first_rejection_s
                .map(|s| format!(", after {} s", fmt_n(s)))
                .unwrap_or_default()
        )),
        _ => {}
    }
    // Drops by close kind: appeared, vanished, or moved a lot.
    let (ca, cb) = (&a.summary.totals.closes, &b.summary.totals.closes);
    let is_drop = |k: &str| crate::outcome::CloseKind::parse(k).is_some_and(|c| c.is_drop());
    for (k, vb) in cb {
        if !is_drop(k) {
            continue;
        }
        let va = ca.get(k).copied().unwrap_or(0);
        if va == 0 && *vb > 0 {
            let when = first_nonzero(&b.series.t, b.series.drop_rate.get(k))
                .map(|s| format!(" after {} s", fmt_n(s)))
                .unwrap_or_default();
            out.push(format!("drops with {k} appeared{when} ({vb})"));
        } else if va > 0 && *vb == 0 {
            out.push(format!("drops with {k} gone (were {va})"));
        }
    }
    for (k, va) in ca {
        if is_drop(k) && *va > 0 && !cb.contains_key(k) {
            out.push(format!("drops with {k} gone (were {va})"));
        }
    }
    // Failure classes that appeared or vanished.
    let fa = &a.summary.totals.failures;
    let fb = &b.summary.totals.failures;
    for (k, vb) in fb {
        if *vb > 0 && fa.get(k).copied().unwrap_or(0) == 0 {
            out.push(format!("{k} failures appeared ({vb})"));
        }
    }
    for (k, va) in fa {
        if *va > 0 && fb.get(k).copied().unwrap_or(0) == 0 {
            out.push(format!("{k} failures gone (were {va})"));
        }
    }
    if a.summary.peak_open != b.summary.peak_open {
        out.push(format!(
            "peak open connections {} → {}",
            a.summary.peak_open, b.summary.peak_open
        ));
    }
    out.dedup();
    out
}
