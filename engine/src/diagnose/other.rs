//! The symptoms other than refusals: auth and token trouble, sessions dropped by the
//! target, our own client limits — and where the run turned (`Knee`), and what to say
//! when nothing fits.

use super::facts::Facts;
use super::{first_nonzero, plural, Diagnosis, Finding, Knee, LimitKind};
use crate::outcome::{CloseKind, FailClass, FailKind};

pub(super) fn knee(f: &Facts<'_>) -> Knee {
    let mut k = Knee::default();
    for i in 0..f.n {
        let rej = f.refused[i] + f.auth[i];
        if rej > 0.0 && k.first_rejection_s.is_none() {
            k.first_rejection_s = Some(f.t(i));
            k.open_at_first_rejection = Some(f.open_during(i));
            k.attempt_rate_at_first_rejection = Some(f.attempts[i]);
        }
        let share = if f.attempts[i] > 0.0 {
            rej / f.attempts[i]
        } else {
            0.0
        };
        if share >= 0.01 && k.pct1_s.is_none() {
            k.pct1_s = Some(f.t(i));
            k.open_at_pct1 = Some(f.open_during(i));
        }
        if share >= 0.5 && k.pct50_s.is_none() {
            k.pct50_s = Some(f.t(i));
            k.open_at_pct50 = Some(f.open_during(i));
        }
    }
    k
}

pub(super) fn detect_client_limit(f: &Facts<'_>) -> Option<Finding> {
    let n = f.total(&f.client_limit);
    if n < 1.0 {
        return None;
    }
    let first = f.client_limit.iter().position(|v| *v > 0.0)?;
    let open = f.s.open[first];
    Some(Finding {
        kind: LimitKind::ClientLimit,
        level: Some(open),
        unit: "connections",
        confidence: 0.95,
        headline: format!("Client-side limit: this machine ran out of ephemeral ports or file descriptors at about {open:.0} open connections; the target is not to blame."),
        evidence: vec![
            format!("{} with `client_limit` (EADDRNOTAVAIL / EMFILE) from t = {:.0} s.", plural(n, "attempt failed", "attempts failed"), f.t(first)),
            "Fix: add source_addrs (127.0.0.2, 127.0.0.3 …) or split the load over several processes.".into(),
        ],
        ..Default::default()
    })
}

pub(super) fn detect_auth(f: &Facts<'_>) -> Option<Finding> {
    let auth = f.total(&f.auth);
    let failed = f.total(&f.failed);
    if auth < 1.0 || auth < 0.5 * failed {
        return None;
    }
    let kinds: Vec<(FailKind, u64)> = f
        .totals
        .iter()
        .filter_map(|(k, v)| Some((FailKind::parse(k)?, *v)))
        .collect();
    let statuses: Vec<String> = kinds
        .iter()
        .filter(|(k, _)| k.is_auth())
        .map(|(k, v)| format!("{v} × {}", k.key()))
        .collect();
    let confidence = (auth / failed.max(1.0)).min(1.0) * 0.9;
    // The token endpoint saying "not now" (rate limit or quota): exhaustion, not bad
    // credentials. Those attempts never reached the WebSocket service.
    let refused_kinds: Vec<&(FailKind, u64)> = kinds
        .iter()
        .filter(|(k, _)| matches!(k.class(), FailClass::TokenRefused(_)))
        .collect();
    let refused: f64 = refused_kinds.iter().map(|(_, v)| *v as f64).sum();
    if refused >= 0.5 * auth {
        let first = refused_kinds
            .iter()
            .filter_map(|(k, _)| first_nonzero(&f.s.t, f.s.failed_rate.get(&k.key())))
            .reduce(f64::min);
        let statuses: Vec<String> = refused_kinds
            .iter()
            .map(|(k, v)| format!("{v} × {}", k.key()))
            .collect();
        let mut evidence = vec![format!(
            "{} at the token endpoint ({}), before any WebSocket handshake.",
            plural(refused, "attempt failed", "attempts failed"),
            statuses.join(", ")
        )];
        if auth > refused {
            evidence.push(format!(
                "{} with other auth or token failures.",
                plural(
                    auth - refused,
                    "more attempt failed",
                    "more attempts failed"
                )
            ));
        }
        evidence.push("Fetch fewer tokens (a shared or pooled token policy), or ask for a higher token quota: the WebSocket service itself was not the limit.".into());
        return Some(Finding {
            kind: LimitKind::TokenExhaustion,
            confidence,
            headline: format!(
                "OAuth token exhaustion: the token endpoint refused {}{}; those connections never reached the WebSocket service.",
                plural(refused, "token request", "token requests"),
                first.map(|t| format!(" from t = {t:.0} s")).unwrap_or_default()
            ),
            evidence,
            ..Default::default()
        });
    }
    Some(Finding {
        kind: LimitKind::AuthFailure,
        confidence,
        headline: format!(
            "Authentication failures: {} (handshakes refused or no token to be had).",
            statuses.join(", ")
        ),
        evidence: vec![format!(
            "{auth:.0} of {failed:.0} failed attempts were 401/403 or token endpoint failures."
        )],
        ..Default::default()
    })
}

pub(super) fn detect_drops(f: &Facts<'_>) -> Option<Finding> {
    let n = f.total(&f.drops);
    if n < 1.0 {
        return None;
    }
    let first = f.drops.iter().position(|v| *v > 0.0)?;
    let open = if first > 0 {
        f.s.open[first - 1]
    } else {
        f.s.open[first]
    };
    let ends: Vec<(CloseKind, u64)> = f
        .totals
        .iter()
        .filter_map(|(k, v)| Some((CloseKind::parse(k)?, *v)))
        .filter(|(k, _)| k.is_drop())
        .collect();
    let kinds: Vec<String> = ends
        .iter()
        .map(|(k, v)| format!("{v} × {}", k.key()))
        .collect();
    // Close codes that mean "your credentials ended": token expiry, not capacity. But
    // 1008 (policy violation) is also how application-level refusals close: a service
    // that caps sessions after the upgrade (web messaging's "too many concurrent
    // sessions", issue 14) answers with an error and closes 1008 at once. Sessions
    // closed within a second of opening are read as refusals (the cap's detectors see
    // them), so when most drops came at once a 1008 is not taken as a token's end.
    let at_once = f.total(&f.refusals.iter().map(|r| r.at_once).collect::<Vec<_>>());
    let refusals_at_once = at_once >= 0.5 * n;
    let auth_codes: f64 = ends
        .iter()
        .filter(|(k, _)| k.is_auth_end() && !(refusals_at_once && *k == CloseKind::Server(1008)))
        .map(|(_, v)| *v as f64)
        .sum();
    if auth_codes >= 0.5 * n {
        return Some(Finding {
            kind: LimitKind::AuthFailure,
            confidence: 0.85,
            headline: format!(
                "Tokens expired mid-connection: the target closed sessions with {} (first at t = {:.0} s); refresh tokens earlier or reconnect with a fresh one.",
                kinds.join(", "),
                f.t(first)
            ),
            evidence: vec![format!("{auth_codes:.0} of {n:.0} sessions ended by the target carried an auth close code (4401/4403/1008).")],
            ..Default::default()
        });
    }
    Some(Finding {
        kind: LimitKind::ServerDrops,
        level: Some(open),
        unit: "connections",
        // Mostly closed at once: refusals after the upgrade, which a cap reading (if the
        // open count sat at a plateau) explains better; otherwise still named.
        confidence: if refusals_at_once { 0.6 } else { 0.85 },
        headline: format!("Server-side drops: established connections were closed by the target ({}), first at t = {:.0} s with {open:.0} open.", kinds.join(", "), f.t(first)),
        evidence: vec![format!("{} by the target or the network, not by us.", plural(n, "session ended", "sessions ended"))],
        ..Default::default()
    })
}

/// No finding sure enough: say what was seen.
pub(super) fn no_clear_limit(f: &Facts<'_>, knee: &Knee) -> Diagnosis {
    let failed = f.total(&f.failed);
    let refused = f.total(&f.refused);
    let pressed = f.pressed().len();
    let (headline, evidence) = if failed < 1.0 {
        (
            format!("No limit found up to {:.0} open connections.", f.peak_open),
            Vec::new(),
        )
    } else if refused >= 1.0 && pressed == 1 {
        // All refusals fell in one tick: a cap and a rate limit look the same.
        let open = knee.open_at_first_rejection.unwrap_or(f.peak_open);
        (
            format!("{} once {open:.0} connections were open, all within one second: too little to tell a concurrency cap from a handshake rate limit.", plural(refused, "attempt was refused", "attempts were refused")),
            vec![
                "Ramp more slowly, or hold the load longer with reconnect on, so the refusals span several seconds.".into(),
            ],
        )
    } else {
        (
            format!("No clear limit up to {:.0} open connections; {failed:.0} attempts failed without a pattern.", f.peak_open),
            Vec::new(),
        )
    };
    Diagnosis {
        kind: LimitKind::None,
        level: Some(f.peak_open),
        unit: "connections".into(),
        // "Nothing was refused" is a fact; "no pattern" is not a clean bill of health.
        confidence: if failed < 1.0 { 0.9 } else { 0.5 },
        headline,
        evidence,
        ..Default::default()
    }
}
