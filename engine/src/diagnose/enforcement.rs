//! How a limit turned attempts away, read from the pressed ticks: the dominant way of
//! refusing (`enforcement_over`: a status, not answering, queueing, accept-then-close
//! with its close code), the words for headlines (`enforced`) and the evidence lines
//! (`enforcement_evidence`). Used by the refusal detectors and by `diagnose` itself.

use super::facts::{median, Facts};
use super::{plural, Enforcement, How};

/// Upgrades refused after this long were queued first.
const QUEUED_MS: f64 = 250.0;

/// How the refusals were made, over the pressed ticks: the dominant way wins.
pub(super) fn enforcement_over(f: &Facts<'_>, idx: &[usize]) -> Option<Enforcement> {
    if idx.is_empty() {
        return None;
    }
    let mut by_status = std::collections::BTreeMap::<u16, f64>::new();
    let (mut stalled, mut reset, mut at_once) = (0.0, 0.0, 0.0);
    for &i in idx {
        let r = &f.refusals[i];
        for (s, v) in &r.status {
            *by_status.entry(*s).or_default() += v * f.dt[i];
        }
        stalled += r.stalled * f.dt[i];
        reset += r.reset * f.dt[i];
        at_once += r.at_once * f.dt[i];
    }
    // Attempts still hanging count as stalled (they may never time out within the run).
    let hanging = idx
        .iter()
        .filter(|&&i| f.stalling(i))
        .map(|&i| f.connecting[i])
        .fold(0.0, f64::max);
    stalled += hanging;
    let (status, by) = by_status
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(s, v)| (Some(*s), *v))
        .unwrap_or((None, 0.0));
    let top = by.max(stalled).max(reset).max(at_once);
    if top <= 0.0 {
        return None;
    }
    Some(if top == by {
        let waits: Vec<f64> = idx.iter().filter_map(|&i| f.refused_wait_p50[i]).collect();
        match median(&waits) {
            Some(w) if w >= QUEUED_MS => Enforcement {
                how: How::Queued,
                status,
                close_code: None,
                wait_ms: Some(w.round()),
            },
            _ => Enforcement {
                how: How::Rejected,
                status,
                close_code: None,
                wait_ms: None,
            },
        }
    } else if top == stalled {
        Enforcement {
            how: How::Stalled,
            status: None,
            close_code: None,
            wait_ms: None,
        }
    } else if top == at_once {
        Enforcement {
            how: How::AcceptedThenClosed,
            status: None,
            close_code: dominant_close_code(f, idx),
            wait_ms: None,
        }
    } else {
        Enforcement {
            how: How::Reset,
            status: None,
            close_code: None,
            wait_ms: None,
        }
    })
}

fn dominant_close_code(f: &Facts<'_>, idx: &[usize]) -> Option<u16> {
    f.s.drop_rate
        .iter()
        .filter_map(|(k, v)| {
            let code = crate::outcome::CloseKind::parse(k)?.code()?;
            Some((
                code,
                idx.iter()
                    .map(|&i| v.get(i).copied().unwrap_or(0.0))
                    .sum::<f64>(),
            ))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(c, _)| c)
}

/// "enforced by a 429", "enforced by not answering", ... for headlines.
pub(super) fn enforced(e: &Option<Enforcement>) -> String {
    match e {
        Some(e) => match e.how {
            How::Rejected => format!(", enforced with {}", e.status.unwrap_or(0)),
            How::Queued => format!(
                ", enforced by queueing the upgrade (~{:.1} s) then {}",
                e.wait_ms.unwrap_or(0.0) / 1000.0,
                e.status.unwrap_or(0)
            ),
            How::Stalled => {
                ", enforced by not answering (upgrades hang until connect_timeout)".into()
            }
            How::Reset => ", enforced by refusing or resetting TCP connections".into(),
            How::AcceptedThenClosed => format!(
                ", enforced by accepting, then closing at once{}",
                e.close_code.map(|c| format!(" ({c})")).unwrap_or_default()
            ),
            How::Slowed => String::new(),
        },
        None => String::new(),
    }
}

pub(super) fn enforcement_evidence(
    f: &Facts<'_>,
    pressed: &[usize],
    e: &Option<Enforcement>,
) -> Vec<String> {
    let Some(e) = e else { return Vec::new() };
    match e.how {
        How::Stalled => {
            let timeouts = f.count(
                &f.refusals.iter().map(|r| r.stalled).collect::<Vec<_>>(),
                pressed,
            );
            let hanging = pressed
                .iter()
                .map(|&i| f.connecting[i])
                .fold(0.0, f64::max);
            vec![format!("No answer: {} (no status at all), up to {hanging:.0} upgrades hanging at once.", plural(timeouts, "attempt timed out", "attempts timed out"))]
        }
        How::Queued => vec![format!(
            "Refusals ({}) came ~{:.1} s after the upgrade was sent (ws_refused p50): the target queued them first.",
            e.status.unwrap_or(0),
            e.wait_ms.unwrap_or(0.0) / 1000.0
        )],
        How::AcceptedThenClosed => vec![format!(
            "{} accepted and closed by the target within a second{}.",
            plural(f.total(&f.refusals.iter().map(|r| r.at_once).collect::<Vec<_>>()), "session was", "sessions were"),
            e.close_code.map(|c| format!(" (close code {c})")).unwrap_or_default()
        )],
        _ => Vec::new(),
    }
}
