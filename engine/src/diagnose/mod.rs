//! Which limit did we hit? A pure reading of a run's per-tick `Series` (and, when
//! finished, its `Summary`), so it runs the same on the server (`GET /api/runs/{id}`'s
//! `diagnosis`), in the CLI and live in the browser.
//!
//! A verdict names the `kind` of limit, its `level` with an `uncertainty`, `per` which
//! client identity it counts (`null` for a global limit; `token`, `source_addr`,
//! `header:NAME`, `query:NAME`), its `enforcement` (how the target said no: a status,
//! a queue then a status, no answer, a TCP reset, accept-then-close, or slowing down),
//! and a `confidence` that is honest about ambiguity: when the evidence fits two kinds
//! the verdict stays below 0.6, lists the `alternatives` and names the experiment that
//! separates them (`separate_by`). `docs/diagnosis.md` describes each signature and
//! scores the verdicts against labelled runs (the corpus test in `engine/tests`).
//!
//! Layout: `facts` (per-tick facts and robust levels, every outcome key read through
//! `crate::outcome`), `refusals` (cap, rate limit, lockout, per identity, saturation
//! knee — readings of the same refusals), `enforcement` (how the refusals were made:
//! status, silence, queueing, closes), `other` (auth and tokens, drops, our own
//! limits, the knee, "no clear limit"), [`probe`] (a probe run's verdicts, phase by
//! phase), this file (the model, and [`diagnose`] choosing the verdict).
//!
//! # Adding a limit kind (a newcomer's checklist)
//!
//! 1. **The variant** on [`LimitKind`]. Its JSON name comes from serde
//!    (`rename_all = "snake_case"`); `LimitKind::key()` must return the same string.
//!    *Compiler-enforced*: `key()`, `words()` (the name in sentences: the verdict,
//!    alternatives, and compare's "verdict: … → …" in `compare/behaviour.rs`'s `behaviour`) and
//!    `symptom()` (which kinds compete for the same evidence, which add up as `also`)
//!    are exhaustive `match`es. *Not enforced*: that `key()` equals the serde name (no
//!    test compares them, unlike `How::key`'s `enforcement_keys_match_their_json`).
//! 2. **Its reading**: a detector `fn(&Facts) -> Option<Finding>` (or `Vec`) beside its
//!    kin — `refusals.rs` (`detect_cap`, `detect_rate`, `detect_lockout`,
//!    `detect_per_identity`, `detect_saturation`, gathered by `refusals::detect`) or
//!    `other.rs` (`detect_client_limit`, `detect_auth`, `detect_drops`); a new per-tick
//!    fact goes on `facts::Facts`. The `Finding` sets `unit` (`"connections"` or
//!    `"handshakes_per_second"`), an honest `confidence`, and `separate_by` when a rival
//!    reading fits the same evidence. *Not enforced*: the detector must be called from
//!    [`diagnose`]'s list of candidates (a detector nobody calls still builds, with
//!    only a `dead_code` warning).
//! 3. **The places that name kinds with a `_` arm** (*not enforced*, decide each):
//!    `Diagnosis::alternatives_line` (which kinds are per second), `app/src/charts.rs`
//!    (the dashed level line on the open and connect-rate charts), and the probe (next).
//! 4. **The probe**, if an experiment tells the new kind apart: `crate::probe`'s
//!    `next_phase` plans phases by name (`concurrency`, `rate`, `pause_retry`,
//!    `one_<dimension>`; `burst_size` reads the first verdicts), and
//!    [`probe::verdicts`] reads each phase by that name and words the summary line
//!    (`match (d.kind, d.level)` falling back to the headline). *Not enforced*.
//! 5. **Tests** (*not enforced*): a hand-made series in `diagnose/tests.rs`; a sandbox
//!    profile that shows the limit (see `crate::target`'s checklist) and a test in
//!    `server/tests/diagnosis.rs`; a real gateway in `server/tests/gateways.rs` if one
//!    can do it. Record each as a labelled fixture
//!    (`SOCKETSWARM_RECORD_FIXTURES=engine/tests/fixtures/diagnosis`, through
//!    `record_fixture` in `server/tests/common`) for the corpus in
//!    `engine/tests/corpus.rs`, which fails on a confident wrong verdict, a level off by
//!    more than 5 %, or a stale `docs/diagnosis.md` table (regenerate with
//!    `UPDATE_DIAGNOSIS_DOC=1 cargo test -p engine --test corpus`).
//! 6. **The export schema**: `LimitKind` is part of `docs/export.schema.json`;
//!    `server/src/export.rs`'s test `the_committed_schema_is_current_and_the_export_follows_it`
//!    fails until you run `socketswarm plan export-schema > docs/export.schema.json`.
//! 7. **Docs** (*not enforced*): the signature in `docs/diagnosis.md` (the `kind` list
//!    and its section), and the kinds table in the README's *Which limit did we hit?*.

mod enforcement;
mod facts;
mod other;
pub mod probe;
mod refusals;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::report::{Series, Summary};
use facts::Facts;
pub(crate) use facts::{level_of as robust_level, median as median_of};

/// The kinds of limit we can name.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// At most N open at once (globally, or per identity: see `per`). Runs stored before
    /// `per` existed called a per-token cap `per_token_limit`.
    #[serde(alias = "per_token_limit")]
    ConcurrencyCap,
    /// Handshakes admitted at a steady R per second (a token bucket or leaky bucket).
    HandshakeRateLimit,
    /// A rate limiter that counts refused attempts too: past R per window every attempt
    /// is refused until they slow down; after a pause it admits again.
    LockoutRateLimit,
    /// Nothing refused, but handshakes slow down sharply past a load: a saturation knee.
    Saturation,
    TokenExhaustion,
    AuthFailure,
    ServerDrops,
    ClientLimit,
    #[default]
    None,
}

impl LimitKind {
    /// Every kind, in the order a list offers them.
    pub const ALL: [LimitKind; 9] = [
        LimitKind::ConcurrencyCap,
        LimitKind::HandshakeRateLimit,
        LimitKind::LockoutRateLimit,
        LimitKind::Saturation,
        LimitKind::TokenExhaustion,
        LimitKind::AuthFailure,
        LimitKind::ServerDrops,
        LimitKind::ClientLimit,
        LimitKind::None,
    ];

    /// The JSON name (`concurrency_cap`, ...).
    pub fn key(&self) -> &'static str {
        match self {
            LimitKind::ConcurrencyCap => "concurrency_cap",
            LimitKind::HandshakeRateLimit => "handshake_rate_limit",
            LimitKind::LockoutRateLimit => "lockout_rate_limit",
            LimitKind::Saturation => "saturation",
            LimitKind::TokenExhaustion => "token_exhaustion",
            LimitKind::AuthFailure => "auth_failure",
            LimitKind::ServerDrops => "server_drops",
            LimitKind::ClientLimit => "client_limit",
            LimitKind::None => "none",
        }
    }

    /// For people: "concurrency cap", "lockout rate limit", ...
    pub fn words(&self) -> &'static str {
        match self {
            LimitKind::ConcurrencyCap => "concurrency cap",
            LimitKind::HandshakeRateLimit => "handshake rate limit",
            LimitKind::LockoutRateLimit => "lockout rate limit",
            LimitKind::Saturation => "saturation knee",
            LimitKind::TokenExhaustion => "token exhaustion",
            LimitKind::AuthFailure => "auth failure",
            LimitKind::ServerDrops => "server drops",
            LimitKind::ClientLimit => "client limit",
            LimitKind::None => "no limit",
        }
    }

    /// The symptom a kind explains. Kinds of one symptom compete (cap, rate and lockout
    /// are readings of the same refusals: the best fit is the explanation); kinds of
    /// different symptoms add up (a run can hit a cap *and* see drops).
    fn symptom(self) -> u8 {
        match self {
            LimitKind::ConcurrencyCap
            | LimitKind::HandshakeRateLimit
            | LimitKind::LockoutRateLimit => 0,
            LimitKind::Saturation => 5,
            LimitKind::AuthFailure | LimitKind::TokenExhaustion => 1,
            LimitKind::ServerDrops => 2,
            LimitKind::ClientLimit => 3,
            LimitKind::None => 4,
        }
    }
}

/// How the target enforced the limit.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum How {
    /// Refused at once with an HTTP status (`status`).
    Rejected,
    /// Held the upgrade (`wait_ms`), then refused with `status`.
    Queued,
    /// Did not answer: the upgrade hung until `connect_timeout`.
    Stalled,
    /// TCP connection refused or reset.
    Reset,
    /// Accepted the upgrade, then closed at once (`close_code`).
    AcceptedThenClosed,
    /// Admitted everything, but slower and slower (`wait_ms`: p95 at the knee).
    Slowed,
}

impl How {
    /// The JSON name (`rejected`, `queued`, ...).
    pub fn key(&self) -> &'static str {
        match self {
            How::Rejected => "rejected",
            How::Queued => "queued",
            How::Stalled => "stalled",
            How::Reset => "reset",
            How::AcceptedThenClosed => "accepted_then_closed",
            How::Slowed => "slowed",
        }
    }
}

/// How a limit shows itself on the wire.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enforcement {
    pub how: How,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_code: Option<u16>,
    /// Queued: the typical wait before the refusal; slowed: ws_connecting p95 past the
    /// knee (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<f64>,
}

impl Enforcement {
    /// "429", "queueing ~2.0 s then 503", "no answer", ...
    pub fn words(&self) -> String {
        let status = self.status.map(|s| s.to_string()).unwrap_or_default();
        match self.how {
            How::Rejected => format!("rejected with {status}"),
            How::Queued => format!(
                "queued ~{:.1} s, then {status}",
                self.wait_ms.unwrap_or(0.0) / 1000.0
            ),
            How::Stalled => "no answer (the upgrade hangs until connect_timeout)".into(),
            How::Reset => "TCP refused or reset".into(),
            How::AcceptedThenClosed => format!(
                "accepted, then closed at once{}",
                self.close_code
                    .map(|c| format!(" with {c}"))
                    .unwrap_or_default()
            ),
            How::Slowed => format!(
                "slowed down (ws_connecting p95 {:.0} ms)",
                self.wait_ms.unwrap_or(0.0)
            ),
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

/// Another reading of the same evidence, weaker than the verdict.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Alternative {
    pub kind: LimitKind,
    pub confidence: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per: Option<String>,
}

/// The verdict, with what it rests on.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Diagnosis {
    pub kind: LimitKind,
    /// Connections (cap, per identity when `per` is set), handshakes per second (rate
    /// limits), or the open count at the knee or the first drop.
    pub level: Option<f64>,
    /// ± on `level` (the standard error of the median of the readings it rests on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertainty: Option<f64>,
    /// `connections` or `handshakes_per_second`.
    pub unit: String,
    /// The client identity the limit counts: `token`, `source_addr`, `header:NAME`,
    /// `query:NAME`; absent for a global limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per: Option<String>,
    /// With `per`: how many identities the run used along it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identities: Option<u32>,
    /// How the target said no.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<Enforcement>,
    /// 0..1; below 0.6 when the evidence also fits an alternative.
    pub confidence: f64,
    /// One sentence for people.
    pub headline: String,
    /// The facts behind it, as sentences (also shown on the report).
    pub evidence: Vec<String>,
    pub knee: Knee,
    /// Rejections by status and failures by kind over the run.
    pub failures: BTreeMap<String, u64>,
    /// Other readings that scored, weaker than the verdict.
    pub alternatives: Vec<Alternative>,
    /// When an alternative is close: the experiment that tells them apart, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub separate_by: Option<String>,
    /// Probe runs: one verdict per limit found (this struct then sums them up).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<Diagnosis>,
    /// Other limits hit in the same run, each explaining a different symptom than the
    /// verdict (e.g. a concurrency cap *and* server-side drops), strongest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<Diagnosis>,
}

impl Diagnosis {
    /// The verdict in a few words, level included: "concurrency cap ≈ 150",
    /// "concurrency cap per token ≈ 40", "handshake rate limit ≈ 20/s", "no limit"; a
    /// probe's verdicts and the other limits hit in the run joined with " + "
    /// ("concurrency cap ≈ 40 + handshake rate limit ≈ 19.5/s").
    pub fn short(&self) -> String {
        let parts: Vec<String> = if self.verdicts.is_empty() {
            std::iter::once(self.one_short())
                .chain(self.also.iter().map(Diagnosis::one_short))
                .collect()
        } else {
            self.verdicts.iter().map(Diagnosis::one_short).collect()
        };
        parts.join(" + ")
    }

    /// This verdict alone in a few words (without `verdicts` and `also`).
    pub(crate) fn one_short(&self) -> String {
        let mut out = self.kind.words().to_string();
        if let Some(p) = &self.per {
            out.push_str(" per ");
            out.push_str(&per_words(p));
        }
        if let (Some(l), false) = (self.level, self.kind == LimitKind::None) {
            let n = fmt_n(l);
            let unit = if self.unit == "handshakes_per_second" {
                "/s"
            } else {
                ""
            };
            out.push_str(&format!(" ≈ {n}{unit}"));
        }
        out
    }
}

/// A level or count for a sentence: whole from 100 up or when whole, else one decimal.
pub(crate) fn fmt_n(v: f64) -> String {
    if v.fract() == 0.0 || v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// "source address", "token", "X-Api-Key header value", "tenant query value".
pub fn per_words(per: &str) -> String {
    match per {
        crate::report::DIM_TOKEN => "token".into(),
        crate::report::DIM_SOURCE => "source address".into(),
        p => match p.split_once(':') {
            Some(("header", n)) => format!("{n} header value"),
            Some(("query", n)) => format!("{n} query value"),
            _ => p.into(),
        },
    }
}

fn fmt_level(l: f64, unit: &str) -> String {
    if unit == "handshakes_per_second" {
        format!("{l:.1}/s")
    } else {
        format!("{l:.0}")
    }
}

impl Diagnosis {
    /// The level in words: "150 ±1 connections per source address (3 seen)", "20.0/s ±0.2".
    pub fn level_words(&self) -> Option<String> {
        let l = self.level?;
        let mut out = fmt_level(l, &self.unit);
        if let Some(u) = self.uncertainty {
            if self.unit == "handshakes_per_second" {
                out.push_str(&format!(" ±{u:.1}"));
            } else {
                out.push_str(&format!(" ±{}", (u.max(0.5)).round().max(1.0)));
            }
        }
        if self.unit == "connections" {
            out.push_str(" connections");
        }
        if let Some(per) = &self.per {
            out.push_str(&format!(" per {}", per_words(per)));
            if let Some(n) = self.identities {
                out.push_str(&format!(" ({n} seen)"));
            }
        }
        Some(out)
    }

    /// One line with everything but the headline, shared by the run page, the HTML
    /// report and the CLI: "kind concurrency_cap · level 150 ±1 connections · enforced:
    /// rejected with 429 · confidence 95 %".
    pub fn meta_line(&self) -> String {
        let mut parts = vec![format!("kind {}", self.kind.key())];
        if let Some(l) = self.level_words().filter(|_| self.kind != LimitKind::None) {
            parts.push(format!("level {l}"));
        }
        if let Some(e) = &self.enforcement {
            parts.push(format!("enforced: {}", e.words()));
        }
        parts.push(format!("confidence {:.0} %", self.confidence * 100.0));
        parts.join(" · ")
    }

    /// The alternatives in words, when there are any worth naming (≥ 20 %).
    pub fn alternatives_line(&self) -> Option<String> {
        let alts: Vec<String> = self
            .alternatives
            .iter()
            .filter(|a| a.confidence >= 0.2)
            .map(|a| {
                let mut s = a.kind.words().to_string();
                if let Some(l) = a.level {
                    let unit = if a.kind == LimitKind::HandshakeRateLimit
                        || a.kind == LimitKind::LockoutRateLimit
                    {
                        "handshakes_per_second"
                    } else {
                        "connections"
                    };
                    s.push_str(&format!(" ≈ {}", fmt_level(l, unit)));
                }
                if let Some(p) = &a.per {
                    s.push_str(&format!(" per {}", per_words(p)));
                }
                format!("{s} ({:.0} %)", a.confidence * 100.0)
            })
            .collect();
        (!alts.is_empty()).then(|| alts.join("; "))
    }
}

/// A detector's reading, before it becomes a `Diagnosis`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Finding {
    pub(crate) kind: LimitKind,
    pub(crate) level: Option<f64>,
    pub(crate) uncertainty: Option<f64>,
    pub(crate) unit: &'static str,
    pub(crate) per: Option<String>,
    pub(crate) identities: Option<u32>,
    pub(crate) enforcement: Option<Enforcement>,
    pub(crate) confidence: f64,
    pub(crate) headline: String,
    pub(crate) evidence: Vec<String>,
    /// The experiment that tells this reading from its nearest rival.
    pub(crate) separate_by: Option<String>,
}

/// Findings this sure are reported; weaker ones only as alternatives.
const REPORTED: f64 = 0.3;
/// Another symptom's finding this sure is reported beside the verdict ("also found").
const ALSO: f64 = 0.5;
/// A verdict whose best rival (same symptom) is at least this sure is ambiguous, and
/// its confidence stays below `AMBIGUOUS_MAX`.
const RIVAL: f64 = 0.35;
const AMBIGUOUS_MAX: f64 = 0.59;

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Finding {
    fn into_diagnosis(self, knee: Knee, failures: BTreeMap<String, u64>) -> Diagnosis {
        let digits = if self.unit == "handshakes_per_second" {
            10.0
        } else {
            1.0
        };
        Diagnosis {
            kind: self.kind,
            level: self.level.map(|l| (l * 10.0).round() / 10.0),
            uncertainty: self.uncertainty.map(|u| (u * digits).ceil() / digits),
            unit: self.unit.into(),
            per: self.per,
            identities: self.identities,
            enforcement: self.enforcement,
            confidence: round2(self.confidence),
            headline: self.headline,
            evidence: self.evidence,
            knee,
            failures,
            alternatives: Vec::new(),
            separate_by: self.separate_by,
            verdicts: Vec::new(),
            also: Vec::new(),
        }
    }

    fn alternative(&self) -> Alternative {
        Alternative {
            kind: self.kind,
            confidence: round2(self.confidence),
            level: self.level.map(|l| (l * 10.0).round() / 10.0),
            per: self.per.clone(),
        }
    }
}

/// How the target turned attempts away in `s` (the dominant way over the seconds it
/// did), whatever the verdict: the probe asks this of each experiment.
pub fn enforcement_of(s: &Series) -> Option<Enforcement> {
    let f = Facts::new(s, None);
    enforcement::enforcement_over(&f, &f.pressed())
}

/// The verdict for a run: probe runs get one verdict per limit found (`probe::verdicts`, here),
/// other runs `diagnose`.
pub fn for_run(s: &Series, summary: Option<&Summary>) -> Diagnosis {
    match summary {
        Some(sum) if !sum.phases.is_empty() => probe::verdicts(s, &sum.phases),
        _ => diagnose(s, summary),
    }
}

/// The verdict for a run so far (`summary` once finished).
pub fn diagnose(s: &Series, summary: Option<&Summary>) -> Diagnosis {
    let f = Facts::new(s, summary);
    let knee = other::knee(&f);
    let mut findings: Vec<Finding> = Vec::new();
    findings.extend(other::detect_client_limit(&f));
    findings.extend(other::detect_auth(&f));
    findings.extend(refusals::detect(&f));
    findings.extend(other::detect_drops(&f));
    findings.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    let mut findings = findings.into_iter();
    match findings.next() {
        Some(best) if best.confidence >= REPORTED => {
            let rest: Vec<Finding> = findings.collect();
            let alternatives: Vec<Alternative> = rest.iter().map(Finding::alternative).collect();
            // The strongest finding of each other symptom, if sure enough.
            let mut seen = vec![best.kind.symptom()];
            // Sessions closed at once are how a cap enforced by accept-then-close says
            // no: not drops of their own, unless later ones happened too.
            let closes_are_the_cap = best
                .enforcement
                .as_ref()
                .is_some_and(|e| e.how == How::AcceptedThenClosed)
                && f.total(&f.late_drops) < 1.0;
            if closes_are_the_cap {
                seen.push(LimitKind::ServerDrops.symptom());
            }
            let mut also = Vec::new();
            for x in &rest {
                if x.confidence >= ALSO && !seen.contains(&x.kind.symptom()) {
                    seen.push(x.kind.symptom());
                    also.push(x.clone().into_diagnosis(Knee::default(), BTreeMap::new()));
                }
            }
            let rival = rest
                .iter()
                .find(|x| x.kind.symptom() == best.kind.symptom())
                .filter(|x| x.confidence >= RIVAL)
                .cloned();
            let mut d = best.into_diagnosis(knee, f.totals);
            if let Some(r) = rival {
                // Evidence that fits two readings is never stated with confidence.
                d.confidence = d.confidence.min(AMBIGUOUS_MAX);
                if d.separate_by.is_none() {
                    d.separate_by = r.separate_by;
                }
            } else if d.confidence >= 0.6 {
                d.separate_by = None;
            }
            d.alternatives = alternatives;
            d.also = also;
            d
        }
        first => {
            let alternatives: Vec<Alternative> = first
                .iter()
                .chain(findings.as_slice())
                .map(Finding::alternative)
                .collect();
            let mut d = other::no_clear_limit(&f, &knee);
            d.alternatives = alternatives;
            d.knee = knee;
            d.failures = f.totals;
            d
        }
    }
}

/// Elapsed seconds of the first tick where `v` is non-zero.
pub(crate) fn first_nonzero(t: &[f64], v: Option<&Vec<f64>>) -> Option<f64> {
    t.iter().zip(v?).find(|(_, x)| **x > 0.0).map(|(t, _)| *t)
}

/// `n` followed by the singular or plural phrase, e.g. "1 new connection", "0 new connections".
pub(crate) fn plural(n: f64, one: &str, many: &str) -> String {
    let n = n.round();
    if n == 1.0 {
        format!("1 {one}")
    } else {
        format!("{n:.0} {many}")
    }
}

#[cfg(test)]
mod tests;
