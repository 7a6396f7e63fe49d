//! Which limit did we hit? A pure reading of a run's per-tick `Series` (and, when
//! finished, its `Summary`), so it runs the same on the server (`GET /api/runs/{id}`'s
//! `diagnosis`) and live in the browser.
//!
//! Signatures (issue: "which limit did we hit"):
//! - `concurrency_cap`: rejections start at a stable open count whatever the connect
//!   rate; accepted connections plateau there (open stays flat while rejecting).
//! - `handshake_rate_limit`: rejections track attempts above a rate R; the open count
//!   still climbs at about R per second.
//! - `token_exhaustion`: the OAuth token endpoint refuses token requests (429/503), so
//!   connections fail before any handshake.
//! - `auth_failure`: 401/403 or other token-endpoint failures dominate the failures.
//! - `server_drops`: established sessions are closed by the target (close frames or
//!   abrupt ends), not by us.
//! - `client_limit`: our side ran out of ports or file descriptors: never the target.
//! - `none`: no limit up to the peak reached.
//!
//! To add a kind: 1. add it to `LimitKind`, 2. write `fn detect_x(&Facts) -> Option<Finding>`,
//! 3. add it to `diagnose`'s candidates, 4. test it on a hand-made series here and against
//! the sandbox profile in `server/tests/diagnosis.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::report::{Series, Summary};

/// The kinds of limit we can name.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    ConcurrencyCap,
    HandshakeRateLimit,
    PerTokenLimit,
    TokenExhaustion,
    AuthFailure,
    ServerDrops,
    ClientLimit,
    #[default]
    None,
}

impl LimitKind {
    /// The JSON name (`concurrency_cap`, ...).
    pub fn key(&self) -> &'static str {
        match self {
            LimitKind::ConcurrencyCap => "concurrency_cap",
            LimitKind::HandshakeRateLimit => "handshake_rate_limit",
            LimitKind::PerTokenLimit => "per_token_limit",
            LimitKind::TokenExhaustion => "token_exhaustion",
            LimitKind::AuthFailure => "auth_failure",
            LimitKind::ServerDrops => "server_drops",
            LimitKind::ClientLimit => "client_limit",
            LimitKind::None => "none",
        }
    }
}

/// Where the run turned: the first rejection and the rejection-rate thresholds.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Knee {
    /// Elapsed seconds, open connections and attempts per second at the first rejection.
    pub first_rejection_s: Option<f64>,
    pub open_at_first_rejection: Option<f64>,
    pub attempt_rate_at_first_rejection: Option<f64>,
    /// Elapsed seconds and open connections when the per-second rejection share first
    /// crossed 1 % and 50 %.
    pub pct1_s: Option<f64>,
    pub open_at_pct1: Option<f64>,
    pub pct50_s: Option<f64>,
    pub open_at_pct50: Option<f64>,
}

/// The verdict, with what it rests on.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Diagnosis {
    pub kind: LimitKind,
    /// Connections (cap), handshakes per second (rate), or open count at the first drop.
    pub level: Option<f64>,
    /// `connections` or `handshakes_per_second`.
    pub unit: String,
    /// 0..1.
    pub confidence: f64,
    /// One sentence for people.
    pub headline: String,
    /// The facts behind it, as sentences (also shown on the report).
    pub evidence: Vec<String>,
    pub knee: Knee,
    /// Rejections by status and failures by kind over the run.
    pub failures: BTreeMap<String, u64>,
    /// Other candidates that scored, weaker than the verdict.
    pub alternatives: Vec<(LimitKind, f64)>,
    /// Probe runs: one verdict per limit found (this struct then sums them up).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<Diagnosis>,
    /// Other limits hit in the same run, each explaining a different symptom than the
    /// verdict (e.g. a concurrency cap *and* server-side drops), strongest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<Diagnosis>,
}

/// Rejections: HTTP statuses that mean "not now" (not auth).
fn is_rejection(key: &str) -> bool {
    matches!(key, "http_429" | "http_503")
}

/// Auth trouble: the handshake refused the token, or no token could be had.
fn is_auth(key: &str) -> bool {
    matches!(key, "http_401" | "http_403") || key.starts_with("token_")
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Per-tick facts derived once from the series.
struct Facts<'a> {
    s: &'a Series,
    /// Tick lengths in seconds.
    dt: Vec<f64>,
    /// Rejections (429/503) per second.
    rejected: Vec<f64>,
    auth: Vec<f64>,
    client_limit: Vec<f64>,
    /// All failures per second.
    failed: Vec<f64>,
    /// Attempts per second (opened + failed).
    attempts: Vec<f64>,
    drops: Vec<f64>,
    totals: BTreeMap<String, u64>,
    peak_open: f64,
    has_retry_after: bool,
}

impl<'a> Facts<'a> {
    fn new(s: &'a Series, summary: Option<&Summary>) -> Facts<'a> {
        let n = s.t.len();
        let dt: Vec<f64> = (0..n)
            .map(|i| if i == 0 { s.t[0] } else { s.t[i] - s.t[i - 1] }.max(0.001))
            .collect();
        let sum_where =
            |map: &BTreeMap<String, Vec<f64>>, keep: &dyn Fn(&str) -> bool| -> Vec<f64> {
                (0..n)
                    .map(|i| {
                        map.iter()
                            .filter(|(k, _)| keep(k))
                            .map(|(_, v)| v.get(i).copied().unwrap_or(0.0))
                            .sum()
                    })
                    .collect()
            };
        let rejected = sum_where(&s.failed_rate, &is_rejection);
        let auth = sum_where(&s.failed_rate, &is_auth);
        let client_limit = sum_where(&s.failed_rate, &|k| k == "client_limit");
        let failed = sum_where(&s.failed_rate, &|k| k != "aborted");
        let drops = sum_where(&s.drop_rate, &|_| true);
        let attempts = (0..n)
            .map(|i| s.opened_rate.get(i).copied().unwrap_or(0.0) + failed[i])
            .collect();
        let mut totals = BTreeMap::new();
        for (k, v) in s.failed_rate.iter().chain(s.drop_rate.iter()) {
            let total: f64 = v.iter().zip(&dt).map(|(r, d)| r * d).sum();
            if total.round() > 0.0 {
                totals.insert(k.clone(), total.round() as u64);
            }
        }
        if let Some(sum) = summary {
            // Exact counts when the run has finished.
            totals = sum
                .totals
                .failures
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            totals.extend(
                sum.totals
                    .closes
                    .iter()
                    .filter(|(k, _)| k.as_str() != "client")
                    .map(|(k, v)| (k.clone(), *v)),
            );
        }
        let peak_open = summary
            .map(|x| x.peak_open as f64)
            .unwrap_or_else(|| s.open.iter().copied().fold(0.0, f64::max));
        let has_retry_after = summary.is_some_and(|x| !x.evidence.retry_after.is_empty());
        Facts {
            s,
            dt,
            rejected,
            auth,
            client_limit,
            failed,
            attempts,
            drops,
            totals,
            peak_open,
            has_retry_after,
        }
    }

    fn total(v: &[f64], dt: &[f64]) -> f64 {
        v.iter().zip(dt).map(|(r, d)| r * d).sum()
    }

    /// Open connections during tick `i`: the higher of its two ends. The end alone can be
    /// low when connections closed within the tick (drops, or the run's end draining them).
    fn open_during(&self, i: usize) -> f64 {
        match i.checked_sub(1) {
            Some(prev) => self.s.open[prev].max(self.s.open[i]),
            None => self.s.open[i],
        }
    }

    fn knee(&self) -> Knee {
        let mut k = Knee::default();
        let s = self.s;
        for i in 0..s.t.len() {
            let rej = self.rejected[i] + self.auth[i];
            if rej > 0.0 && k.first_rejection_s.is_none() {
                k.first_rejection_s = Some(s.t[i]);
                k.open_at_first_rejection = Some(self.open_during(i));
                k.attempt_rate_at_first_rejection = Some(self.attempts[i]);
            }
            let share = if self.attempts[i] > 0.0 {
                rej / self.attempts[i]
            } else {
                0.0
            };
            if share >= 0.01 && k.pct1_s.is_none() {
                k.pct1_s = Some(s.t[i]);
                k.open_at_pct1 = Some(self.open_during(i));
            }
            if share >= 0.5 && k.pct50_s.is_none() {
                k.pct50_s = Some(s.t[i]);
                k.open_at_pct50 = Some(self.open_during(i));
            }
        }
        k
    }
}

struct Finding {
    kind: LimitKind,
    level: Option<f64>,
    unit: &'static str,
    confidence: f64,
    headline: String,
    evidence: Vec<String>,
}

impl LimitKind {
    /// The symptom a kind explains. Kinds of one symptom compete (cap, rate and per-token
    /// limit are readings of the same rejections: the best fit is the explanation); kinds
    /// of different symptoms add up (a run can hit a cap *and* see drops).
    fn symptom(self) -> u8 {
        match self {
            LimitKind::ConcurrencyCap
            | LimitKind::HandshakeRateLimit
            | LimitKind::PerTokenLimit => 0,
            LimitKind::AuthFailure | LimitKind::TokenExhaustion => 1,
            LimitKind::ServerDrops => 2,
            LimitKind::ClientLimit => 3,
            LimitKind::None => 4,
        }
    }
}

/// Findings this sure are reported; weaker ones only as alternatives.
const REPORTED: f64 = 0.3;
/// Another symptom's finding this sure is reported beside the verdict ("also found").
const ALSO: f64 = 0.5;

impl Finding {
    fn into_diagnosis(self, knee: Knee, failures: BTreeMap<String, u64>) -> Diagnosis {
        Diagnosis {
            kind: self.kind,
            level: self.level.map(|l| (l * 10.0).round() / 10.0),
            unit: self.unit.into(),
            confidence: (self.confidence * 100.0).round() / 100.0,
            headline: self.headline,
            evidence: self.evidence,
            knee,
            failures,
            alternatives: Vec::new(),
            verdicts: Vec::new(),
            also: Vec::new(),
        }
    }
}

fn detect_client_limit(f: &Facts<'_>) -> Option<Finding> {
    let n = Facts::total(&f.client_limit, &f.dt);
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
            format!("{} with `client_limit` (EADDRNOTAVAIL / EMFILE) from t = {:.0} s.", plural(n, "attempt failed", "attempts failed"), f.s.t[first]),
            "Fix: add source_addrs (127.0.0.2, 127.0.0.3 …) or split the load over several processes.".into(),
        ],
    })
}

fn detect_auth(f: &Facts<'_>) -> Option<Finding> {
    let auth = Facts::total(&f.auth, &f.dt);
    let failed = Facts::total(&f.failed, &f.dt);
    if auth < 1.0 || auth < 0.5 * failed {
        return None;
    }
    let statuses: Vec<String> = f
        .totals
        .iter()
        .filter(|(k, _)| is_auth(k))
        .map(|(k, v)| format!("{v} × {k}"))
        .collect();
    let confidence = (auth / failed.max(1.0)).min(1.0) * 0.9;
    // The token endpoint saying "not now" (rate limit or quota): exhaustion, not bad
    // credentials. Those attempts never reached the WebSocket service.
    let refused_keys = ["token_http_429", "token_http_503"];
    let refused: f64 = refused_keys
        .iter()
        .filter_map(|k| f.totals.get(*k))
        .map(|v| *v as f64)
        .sum();
    if refused >= 0.5 * auth {
        let first = refused_keys
            .iter()
            .filter_map(|k| first_nonzero(&f.s.t, f.s.failed_rate.get(*k)))
            .reduce(f64::min);
        let statuses: Vec<String> = refused_keys
            .iter()
            .filter_map(|k| f.totals.get(*k).map(|v| format!("{v} × {k}")))
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
            level: None,
            unit: "",
            confidence,
            headline: format!(
                "OAuth token exhaustion: the token endpoint refused {}{}; those connections never reached the WebSocket service.",
                plural(refused, "token request", "token requests"),
                first.map(|t| format!(" from t = {t:.0} s")).unwrap_or_default()
            ),
            evidence,
        });
    }
    Some(Finding {
        kind: LimitKind::AuthFailure,
        level: None,
        unit: "",
        confidence,
        headline: format!(
            "Authentication failures: {} (handshakes refused or no token to be had).",
            statuses.join(", ")
        ),
        evidence: vec![format!(
            "{auth:.0} of {failed:.0} failed attempts were 401/403 or token endpoint failures."
        )],
    })
}

/// Ticks (indices) where rejections happened, skipping a first partial tick.
fn rejecting(f: &Facts<'_>) -> Vec<usize> {
    (0..f.s.t.len())
        .filter(|&i| f.rejected[i] > 0.0 && f.attempts[i] > 0.0)
        .collect()
}

fn detect_cap(f: &Facts<'_>) -> Option<Finding> {
    let idx = rejecting(f);
    if idx.is_empty() {
        return None;
    }
    let opens: Vec<f64> = idx.iter().map(|&i| f.open_during(i)).collect();
    let level = median(opens.clone())?;
    if level < 1.0 {
        return None;
    }
    // Flat: open stays within 5 % of the level while rejecting.
    let flat = opens
        .iter()
        .filter(|o| (*o - level).abs() <= 0.05 * level + 1.0)
        .count() as f64
        / opens.len() as f64;
    // Plateau: the peak is (about) the level: nothing got past it.
    let plateau = if f.peak_open <= level * 1.05 + 1.0 {
        1.0
    } else {
        0.3
    };
    // Accepted rate during rejection ticks, relative to rejections: near zero under a cap
    // (only replacements for closed sessions get in). The first rejecting tick is mixed
    // (connections got in before the cap was reached), so it is left out when possible.
    let steady = if idx.len() > 1 { &idx[1..] } else { &idx[..] };
    let opened: f64 = steady.iter().map(|&i| f.s.opened_rate[i] * f.dt[i]).sum();
    let rejected: f64 = steady.iter().map(|&i| f.rejected[i] * f.dt[i]).sum();
    let drops: f64 = steady.iter().map(|&i| f.drops[i] * f.dt[i]).sum();
    let starved = if opened <= drops + 0.2 * (opened + rejected) + 1.0 {
        1.0
    } else {
        0.4
    };
    let confidence =
        (flat * plateau * starved).clamp(0.0, 1.0) * if idx.len() >= 2 { 0.95 } else { 0.7 };
    let mut evidence = vec![
        format!("While rejecting ({}), open connections stayed at {level:.0} ({:.0} % of those seconds within 5 %).", plural(idx.iter().map(|&i| f.dt[i]).sum(), "second", "seconds"), flat * 100.0),
        format!(
            "Peak open {:.0}; after the first rejecting second, {} and only {} got in.",
            f.peak_open,
            plural(rejected, "more handshake was rejected", "more handshakes were rejected"),
            plural(opened, "new connection", "new connections"),
        ),
    ];
    if f.has_retry_after {
        evidence.push("The target sent Retry-After with its 429s.".into());
    }
    Some(Finding {
        kind: LimitKind::ConcurrencyCap,
        level: Some(level),
        unit: "connections",
        confidence,
        headline: format!("Concurrency cap ≈ {level:.0} open connections: beyond that, handshakes are rejected whatever the connect rate."),
        evidence,
    })
}

fn detect_rate(f: &Facts<'_>) -> Option<Finding> {
    let idx = rejecting(f);
    // Skip the first rejecting tick (it mixes a burst allowance with the steady rate).
    let steady: &[usize] = if idx.len() > 2 { &idx[1..] } else { &idx };
    if steady.is_empty() {
        return None;
    }
    let opened: f64 = steady.iter().map(|&i| f.s.opened_rate[i] * f.dt[i]).sum();
    let secs: f64 = steady.iter().map(|&i| f.dt[i]).sum();
    let rate = opened / secs;
    if rate <= 0.0 {
        return None;
    }
    let attempts = steady.iter().map(|&i| f.attempts[i] * f.dt[i]).sum::<f64>() / secs;
    // Constant accepted rate across ticks (low spread) while attempts exceed it.
    let rates: Vec<f64> = steady.iter().map(|&i| f.s.opened_rate[i]).collect();
    let spread = rates.iter().map(|r| (r - rate).abs()).sum::<f64>() / rates.len() as f64 / rate;
    let steadiness = (1.0 - spread).clamp(0.0, 1.0);
    // Open count climbs while rejecting.
    let first = f.s.open[*steady.first()?];
    let last = f.s.open[*steady.last()?];
    let climbing = if last > first + 0.5 * rate * secs.min(1.0) {
        1.0
    } else {
        0.2
    };
    let above = if attempts > rate * 1.2 { 1.0 } else { 0.5 };
    let confidence = (steadiness * climbing * above).clamp(0.0, 1.0)
        * if steady.len() >= 2 { 0.95 } else { 0.6 };
    let mut evidence = vec![
        format!("While rejecting, {rate:.1} handshakes/s got through (spread {:.0} %) out of {attempts:.1} attempts/s.", spread * 100.0),
        format!("Open connections kept climbing ({first:.0} → {last:.0}), so concurrency is not what is limited."),
    ];
    if f.has_retry_after {
        evidence.push("The target sent Retry-After with its 429s.".into());
    }
    Some(Finding {
        kind: LimitKind::HandshakeRateLimit,
        level: Some(rate),
        unit: "handshakes_per_second",
        confidence,
        headline: format!("Handshake rate limit ≈ {rate:.1}/s: attempts above that rate are rejected while open connections keep growing."),
        evidence,
    })
}

/// Per-token limit: rejections start when *a token* reaches the same open count L,
/// while the run as a whole holds more than L (other tokens still had room).
fn detect_per_token(f: &Facts<'_>) -> Option<Finding> {
    let s = f.s;
    let mut levels = Vec::new();
    let mut totals_at = Vec::new();
    let mut rejecting_tokens = 0usize;
    for (slot, rej) in &s.token_rejected {
        let Some(first) = rej.iter().position(|r| *r > 0.0) else {
            continue;
        };
        rejecting_tokens += 1;
        let open = s.token_open.get(slot)?;
        // Under a per-token cap a token never holds more than L: its peak is the level
        // (robust to ticks where the refusal was reported before the last open).
        let level = open.iter().copied().fold(0.0, f64::max);
        levels.push(level);
        totals_at.push(s.open[..=first].iter().copied().fold(0.0, f64::max));
    }
    if levels.is_empty() || s.token_open.len() < 2 {
        return None;
    }
    let level = median(levels.clone())?;
    if level < 1.0 {
        return None;
    }
    let agree = levels
        .iter()
        .filter(|l| (*l - level).abs() <= 0.1 * level + 1.0)
        .count() as f64
        / levels.len() as f64;
    let total = totals_at
        .iter()
        .copied()
        .fold(0.0, f64::max)
        .max(f.peak_open);
    // The run held clearly more than one token's worth: not a global cap.
    let beyond = if total > level * 1.5 { 1.0 } else { 0.2 };
    let confidence =
        (agree * beyond * if rejecting_tokens >= 2 { 0.95 } else { 0.75 }).clamp(0.0, 1.0);
    Some(Finding {
        kind: LimitKind::PerTokenLimit,
        level: Some(level),
        unit: "connections",
        confidence,
        headline: format!("Per-token limit ≈ {level:.0} concurrent connections per token: each token is refused at that level while the run holds {total:.0} in all."),
        evidence: vec![
            format!("{rejecting_tokens} of {} tokens were refused; {:.0} % of them at {level:.0} open (±10 %).", s.token_open.len(), agree * 100.0),
            format!("The run as a whole reached {total:.0} open connections, so the limit is not global."),
        ],
    })
}

fn detect_drops(f: &Facts<'_>) -> Option<Finding> {
    let n = Facts::total(&f.drops, &f.dt);
    if n < 1.0 {
        return None;
    }
    let first = f.drops.iter().position(|v| *v > 0.0)?;
    let open = if first > 0 {
        f.s.open[first - 1]
    } else {
        f.s.open[first]
    };
    let kinds: Vec<String> = f
        .totals
        .iter()
        .filter(|(k, _)| {
            k.starts_with("server_")
                || k.starts_with("abnormal")
                || matches!(k.as_str(), "protocol" | "too_large")
        })
        .map(|(k, v)| format!("{v} × {k}"))
        .collect();
    // Close codes that mean "your credentials ended": token expiry, not capacity.
    let auth_codes: f64 = f
        .totals
        .iter()
        .filter(|(k, _)| matches!(k.as_str(), "server_4401" | "server_4403" | "server_1008"))
        .map(|(_, v)| *v as f64)
        .sum();
    if auth_codes >= 0.5 * n {
        return Some(Finding {
            kind: LimitKind::AuthFailure,
            level: None,
            unit: "",
            confidence: 0.85,
            headline: format!(
                "Tokens expired mid-connection: the target closed sessions with {} (first at t = {:.0} s); refresh tokens earlier or reconnect with a fresh one.",
                kinds.join(", "),
                f.s.t[first]
            ),
            evidence: vec![format!("{auth_codes:.0} of {n:.0} sessions ended by the target carried an auth close code (4401/4403/1008).")],
        });
    }
    Some(Finding {
        kind: LimitKind::ServerDrops,
        level: Some(open),
        unit: "connections",
        confidence: 0.85,
        headline: format!("Server-side drops: established connections were closed by the target ({}), first at t = {:.0} s with {open:.0} open.", kinds.join(", "), f.s.t[first]),
        evidence: vec![format!("{} by the target or the network, not by us.", plural(n, "session ended", "sessions ended"))],
    })
}

/// The verdict for a run: probe runs get one verdict per limit found (`probe::verdicts`),
/// other runs `diagnose`.
pub fn for_run(s: &Series, summary: Option<&Summary>) -> Diagnosis {
    match summary {
        Some(sum) if !sum.phases.is_empty() => crate::probe::verdicts(s, &sum.phases),
        _ => diagnose(s, summary),
    }
}

/// The verdict for a run so far (`summary` once finished).
pub fn diagnose(s: &Series, summary: Option<&Summary>) -> Diagnosis {
    let f = Facts::new(s, summary);
    let knee = f.knee();
    let mut findings: Vec<Finding> = Vec::new();
    if let Some(x) = detect_client_limit(&f) {
        findings.push(x);
    }
    if let Some(x) = detect_auth(&f) {
        findings.push(x);
    }
    // Cap versus rate: both read the same rejecting ticks; the better fit wins.
    match (detect_cap(&f), detect_rate(&f)) {
        (Some(c), Some(r)) => {
            findings.push(c);
            findings.push(r);
        }
        (Some(c), None) => findings.push(c),
        (None, Some(r)) => findings.push(r),
        (None, None) => {}
    }
    if let Some(x) = detect_drops(&f) {
        findings.push(x);
    }
    if let Some(x) = detect_per_token(&f) {
        findings.push(x);
    }
    findings.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    let alternatives: Vec<(LimitKind, f64)> = findings
        .iter()
        .skip(1)
        .map(|x| (x.kind, (x.confidence * 100.0).round() / 100.0))
        .collect();
    let mut findings = findings.into_iter();
    match findings.next() {
        Some(best) if best.confidence >= REPORTED => {
            // The strongest finding of each other symptom, if sure enough.
            let mut seen = vec![best.kind.symptom()];
            let mut also = Vec::new();
            for x in findings {
                if x.confidence >= ALSO && !seen.contains(&x.kind.symptom()) {
                    seen.push(x.kind.symptom());
                    also.push(x.into_diagnosis(Knee::default(), BTreeMap::new()));
                }
            }
            let mut d = best.into_diagnosis(knee, f.totals);
            d.alternatives = alternatives;
            d.also = also;
            d
        }
        _ => {
            let failed = Facts::total(&f.failed, &f.dt);
            let rejected = Facts::total(&f.rejected, &f.dt);
            let rejecting_ticks = rejecting(&f).len();
            let (headline, evidence) = if failed < 1.0 {
                (
                    format!("No limit found up to {:.0} open connections.", f.peak_open),
                    Vec::new(),
                )
            } else if rejected >= 1.0 && rejecting_ticks == 1 {
                // All rejections fell in one tick: a cap and a rate limit look the same.
                let open = knee.open_at_first_rejection.unwrap_or(f.peak_open);
                (
                    format!("{} once {open:.0} connections were open, all within one second: too little to tell a concurrency cap from a handshake rate limit.", plural(rejected, "handshake was rejected", "handshakes were rejected")),
                    vec![
                        "Ramp more slowly, or hold the load longer with reconnect on, so the rejections span several seconds.".into(),
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
                confidence: if failed < 1.0 { 0.9 } else { 0.5 },
                headline,
                evidence,
                knee,
                failures: f.totals,
                alternatives,
                verdicts: Vec::new(),
                also: Vec::new(),
            }
        }
    }
}

/// Elapsed seconds of the first tick where `v` is non-zero.
pub(crate) fn first_nonzero(t: &[f64], v: Option<&Vec<f64>>) -> Option<f64> {
    t.iter().zip(v?).find(|(_, x)| **x > 0.0).map(|(t, _)| *t)
}

/// `n` followed by the singular or plural phrase, e.g. "1 new connection", "0 new connections".
fn plural(n: f64, one: &str, many: &str) -> String {
    let n = n.round();
    if n == 1.0 {
        format!("1 {one}")
    } else {
        format!("{n:.0} {many}")
    }
}

#[cfg(test)]
mod tests {
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
                == "Peak open 150; after the first rejecting second, 100 more handshakes were rejected and only 0 new connections got in."),
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
            d.evidence[0]
                .starts_with("40 attempts failed at the token endpoint (40 × token_http_429)"),
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
                .any(|(k, _)| *k == LimitKind::ConcurrencyCap)
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
                .starts_with("4 handshakes were rejected once 8 connections were open"),
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
}
