//! "Find my limit": a probe run is a sequence of experiments derived from one plan and
//! the user's bounds, run back to back as one run, then read phase by phase:
//!
//! 1. `concurrency` — a slow ramp to `max_connections`, connections held: a plateau
//!    with rejections is a concurrency cap (or a per-token cap).
//! 2. `rate` — short-lived connections (open, 200 ms, close) arriving at 1/8, 1/4, 1/2
//!    and all of `max_connect_rate`: an accepted rate that stops following the offered
//!    rate is a handshake rate limit. Concurrency stays low, so a cap cannot interfere.
//! 3. `one_token` — only when the plan spreads connections over several tokens: the
//!    ramp again with a single shared token; a lower plateau than in phase 1 is a
//!    per-token cap.
//!
//! Everything here is pure: `phases` builds the plans, `verdicts` reads the series.

use serde::{Deserialize, Serialize};

use crate::diagnose::{diagnose, Diagnosis, LimitKind};
use crate::plan::{Dur, FieldError, Limits, Plan, Reconnect, Stage, Step, TokenPolicy, Wait};
use crate::report::{PhaseSpan, Series};

/// The user's bounds for a probe.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    pub max_connections: u32,
    /// New connections per second, at most.
    pub max_connect_rate: f64,
    /// The whole probe, all phases.
    #[serde(default = "default_probe_duration")]
    pub max_duration: Dur,
}

fn default_probe_duration() -> Dur {
    Dur::secs(60)
}

/// One experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub name: &'static str,
    pub plan: Plan,
    /// Rate steps as (offset from phase start in ms, length in ms, offered per second).
    pub steps: Vec<(u64, u64, f64)>,
}

impl Probe {
    pub fn validate(&self, limits: &Limits) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let mut err = |f: &str, m: String| {
            errs.push(FieldError {
                field: format!("probe.{f}"),
                message: m,
            })
        };
        if self.max_connections == 0 || self.max_connections > limits.max_connections {
            err(
                "max_connections",
                format!(
                    "{} must be between 1 and {}",
                    self.max_connections, limits.max_connections
                ),
            );
        }
        if !(self.max_connect_rate.is_finite()
            && self.max_connect_rate >= 1.0
            && self.max_connect_rate <= limits.max_connect_rate)
        {
            err(
                "max_connect_rate",
                format!(
                    "{} must be between 1 and {} per second",
                    self.max_connect_rate, limits.max_connect_rate
                ),
            );
        }
        if self.max_duration.0 < std::time::Duration::from_secs(8)
            || self.max_duration.0 > limits.max_duration.0
        {
            err(
                "max_duration",
                format!(
                    "{} must be between 8s and {}",
                    self.max_duration, limits.max_duration
                ),
            );
        }
        errs
    }
}

/// True when the plan's connections use more than one token.
fn multi_token(plan: &Plan) -> bool {
    plan.auth.as_ref().is_some_and(|a| {
        a.slots(plan.probe.as_ref().map_or(1, |p| p.max_connections))
            .is_none_or(|n| n > 1)
    })
}

fn secs(s: f64) -> Dur {
    Dur(std::time::Duration::from_millis(
        (s * 1000.0).round().max(0.0) as u64,
    ))
}

/// The experiments for `base` (which carries `probe`).
pub fn phases(base: &Plan) -> Vec<Phase> {
    let Some(probe) = &base.probe else {
        return Vec::new();
    };
    let total = probe.max_duration.0.as_secs_f64();
    let token_phase = multi_token(base);
    let (conc, rate) = if token_phase {
        (0.4, 0.3)
    } else {
        (0.55, 0.45)
    };
    let n = probe.max_connections;
    let mut template = base.clone();
    template.probe = None;
    template.reconnect = Reconnect::Never;
    template.max_connect_rate = None;

    let ramp_plan = |budget: f64, policy: Option<TokenPolicy>| {
        let mut p = template.clone();
        let ramp = budget * 0.8;
        // Slow enough to stay under the rate bound (and well under most rate limits).
        let rate = (f64::from(n) / ramp)
            .min(probe.max_connect_rate / 4.0)
            .max(0.5);
        let ramp = f64::from(n) / rate;
        p.stages = vec![
            Stage {
                duration: secs(ramp),
                connections: n,
            },
            Stage {
                duration: secs((budget - ramp).max(1.0)),
                connections: n,
            },
        ];
        p.script = Vec::new();
        if let (Some(policy), Some(auth)) = (policy, p.auth.as_mut()) {
            auth.policy = policy;
        }
        p
    };

    let mut out = vec![Phase {
        name: "concurrency",
        plan: ramp_plan(total * conc, None),
        steps: Vec::new(),
    }];

    // Rate steps: arrivals at r/8, r/4, r/2, r; each connection lives 200 ms. Each step
    // lasts at least 3 s so it spans several ticks; a short budget keeps the top steps.
    let budget = total * rate;
    let n_steps = ((budget / 3.0).floor() as usize).clamp(1, 4);
    let step = (budget / n_steps as f64).max(1.0);
    let fracs = &[0.125, 0.25, 0.5, 1.0][4 - n_steps..];
    let mut p = template.clone();
    p.script = vec![Step::Wait(Wait::Fixed(Dur::millis(200))), Step::Close];
    let mut cumulative = 0.0;
    let mut steps = Vec::new();
    p.stages = Vec::new();
    for (k, frac) in fracs.iter().enumerate() {
        let r = (probe.max_connect_rate * frac).max(1.0);
        cumulative += r * step;
        p.stages.push(Stage {
            duration: secs(step),
            connections: cumulative.round() as u32,
        });
        steps.push(((k as f64 * step * 1000.0) as u64, (step * 1000.0) as u64, r));
    }
    out.push(Phase {
        name: "rate",
        plan: p,
        steps,
    });

    if token_phase {
        out.push(Phase {
            name: "one_token",
            plan: ramp_plan(total * (1.0 - conc - rate), Some(TokenPolicy::Shared)),
            steps: Vec::new(),
        });
    }
    out
}

/// The part of a series between two elapsed times (seconds), re-based to start at 0.
fn slice(s: &Series, from_ms: u64, to_ms: u64) -> Series {
    let (a, b) = (from_ms as f64 / 1000.0, to_ms as f64 / 1000.0);
    let idx: Vec<usize> = (0..s.t.len())
        .filter(|&i| s.t[i] > a && s.t[i] <= b + 0.001)
        .collect();
    let pick = |v: &Vec<f64>| idx.iter().map(|&i| v[i]).collect::<Vec<f64>>();
    let pick_map = |m: &std::collections::BTreeMap<String, Vec<f64>>| {
        m.iter().map(|(k, v)| (k.clone(), pick(v))).collect()
    };
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
        latency_ms: Default::default(),
        token_open: pick_map(&s.token_open),
        token_rejected: pick_map(&s.token_rejected),
    }
}

/// Rate phase: the accepted rate at each offered step; saturated steps (rejections and
/// accepted clearly below offered) give the limit.
fn rate_verdict(s: &Series, span: &PhaseSpan) -> Option<Diagnosis> {
    let mut saturated = Vec::new();
    let mut lines = Vec::new();
    for (off, len, offered) in &span.steps {
        // Skip the first 30 % of each step (the burst allowance drains there), then add
        // up the ticks that lie wholly inside the rest: their rates cover their own length.
        let from = (span.start_ms + off + len * 3 / 10) as f64 / 1000.0;
        let to = (span.start_ms + off + len) as f64 / 1000.0 + 0.001;
        let (mut opened, mut rejected, mut secs) = (0.0, 0.0, 0.0);
        for i in 1..s.t.len() {
            let (a, b) = (s.t[i - 1], s.t[i]);
            if a + 0.001 < from || b > to {
                continue;
            }
            let dt = b - a;
            opened += s.opened_rate[i] * dt;
            rejected += s
                .failed_rate
                .iter()
                .filter(|(k, _)| k.as_str() == "http_429" || k.as_str() == "http_503")
                .map(|(_, v)| v[i] * dt)
                .sum::<f64>();
            secs += dt;
        }
        if secs <= 0.0 {
            continue;
        }
        let accepted = opened / secs;
        lines.push(format!(
            "offered {offered:.1}/s → accepted {accepted:.1}/s, {rejected:.0} rejected"
        ));
        if rejected > 0.0 && accepted < offered * 0.9 {
            saturated.push(accepted);
        }
    }
    if saturated.is_empty() {
        return None;
    }
    saturated.sort_by(|a, b| a.total_cmp(b));
    let level = saturated[saturated.len() / 2];
    Some(Diagnosis {
        kind: LimitKind::HandshakeRateLimit,
        level: Some((level * 10.0).round() / 10.0),
        unit: "handshakes_per_second".into(),
        confidence: if saturated.len() >= 2 { 0.9 } else { 0.7 },
        headline: format!("Handshake rate limit ≈ {level:.1}/s"),
        evidence: lines,
        ..Default::default()
    })
}

/// One verdict per limit found, and a combined headline.
pub fn verdicts(s: &Series, phases: &[PhaseSpan]) -> Diagnosis {
    let mut found: Vec<Diagnosis> = Vec::new();
    let mut pooled_cap = None;
    for span in phases {
        let part = slice(s, span.start_ms, span.end_ms);
        match span.name.as_str() {
            "concurrency" => {
                let d = diagnose(&part, None);
                if matches!(
                    d.kind,
                    LimitKind::ConcurrencyCap
                        | LimitKind::PerTokenLimit
                        | LimitKind::AuthFailure
                        | LimitKind::TokenExhaustion
                        | LimitKind::ServerDrops
                        | LimitKind::ClientLimit
                ) {
                    if d.kind == LimitKind::ConcurrencyCap {
                        pooled_cap = d.level;
                    }
                    found.push(d);
                }
            }
            "rate" => found.extend(rate_verdict(s, span)),
            "one_token" => {
                let d = diagnose(&part, None);
                let already = found.iter().any(|f| f.kind == LimitKind::PerTokenLimit);
                if let (LimitKind::ConcurrencyCap, Some(one), false) = (d.kind, d.level, already) {
                    if pooled_cap.is_none_or(|pooled| one < pooled * 0.8) {
                        found.retain(|f| f.kind != LimitKind::ConcurrencyCap);
                        found.push(Diagnosis {
                            kind: LimitKind::PerTokenLimit,
                            level: Some(one),
                            unit: "connections".into(),
                            confidence: 0.85,
                            headline: format!("cap ≈ {one:.0} concurrent per token"),
                            evidence: vec![format!(
                                "With one token the plateau was {one:.0}; spread over tokens it was {}.",
                                pooled_cap.map_or("higher (no cap found)".to_string(), |p| format!("{p:.0}"))
                            )],
                            ..Default::default()
                        });
                    }
                }
            }
            _ => {}
        }
    }
    let parts: Vec<String> = found
        .iter()
        .map(|d| match (d.kind, d.level) {
            (LimitKind::ConcurrencyCap, Some(l)) => format!("cap ≈ {l:.0} concurrent"),
            (LimitKind::PerTokenLimit, Some(l)) => format!("cap ≈ {l:.0} concurrent per token"),
            (LimitKind::HandshakeRateLimit, Some(l)) => format!("handshake limit ≈ {l:.1}/s"),
            _ => d.headline.clone(),
        })
        .collect();
    let max = phases
        .first()
        .map(|_| s.open.iter().copied().fold(0.0, f64::max))
        .unwrap_or(0.0);
    match found.first().cloned() {
        None => Diagnosis {
            kind: LimitKind::None,
            level: Some(max),
            unit: "connections".into(),
            confidence: 0.8,
            headline: format!(
                "Probe: no limit found within the bounds (up to {max:.0} open connections)."
            ),
            ..Default::default()
        },
        Some(first) => Diagnosis {
            headline: format!("Probe: {}.", parts.join("; ")),
            verdicts: found,
            ..first
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Plan {
        serde_json::from_str(r#"{"target":"ws://h/x","stages":[],"probe":{"max_connections":80,"max_connect_rate":40,"max_duration":"20s"}}"#).unwrap()
    }

    #[test]
    fn phases_stay_within_bounds() {
        let ph = phases(&base());
        assert_eq!(
            ph.iter().map(|p| p.name).collect::<Vec<_>>(),
            vec!["concurrency", "rate"]
        );
        let total: f64 = ph.iter().map(|p| p.plan.duration().as_secs_f64()).sum();
        assert!(total <= 21.0, "{total}");
        assert_eq!(ph[0].plan.peak_connections(), 80);
        // Slow ramp: at most a quarter of the rate bound.
        let ramp = ph[0].plan.stages[0].duration.0.as_secs_f64();
        assert!(80.0 / ramp <= 10.0 + 1e-9, "{ramp}");
        // 20 s x 45 % = 9 s for rates: three 3 s steps, the top three.
        let offered: Vec<f64> = ph[1].steps.iter().map(|s| s.2).collect();
        assert_eq!(offered, vec![10.0, 20.0, 40.0]);
        assert!(ph
            .iter()
            .all(|p| p.plan.probe.is_none() && p.plan.validate(&Limits::default()).is_ok()));
    }

    #[test]
    fn a_token_phase_only_with_several_tokens() {
        let mut p = base();
        p.auth = Some(serde_json::from_str(r#"{"source":{"type":"static","tokens":["a","b"]},"policy":{"mode":"pool","size":2}}"#).unwrap());
        let ph = phases(&p);
        assert_eq!(ph.last().unwrap().name, "one_token");
        assert_eq!(
            ph.last().unwrap().plan.auth.as_ref().unwrap().policy,
            TokenPolicy::Shared
        );
    }
}
