//! "Find my limit": a probe run is a sequence of experiments derived from one plan and
//! the user's bounds, run back to back as one run. Each experiment is chosen after the
//! previous ones (`next_phase`, a pure function of what they showed), then the whole
//! run is read phase by phase (`verdicts`):
//!
//! 1. `concurrency` — a slow ramp towards `max_connections`, connections held: a
//!    plateau with refusals (or attempts left hanging) is a cap.
//! 2. `rate` — short-lived connections (open, 200 ms, close) arriving at 1/8, 1/4, 1/2
//!    and all of `max_connect_rate`: an admitted rate that stays at R while the offer
//!    grows is a rate limit; admissions that collapse once the offer passes R are a
//!    lockout rate limiter. Concurrency stays low, so a cap cannot interfere.
//! 3. `pause_retry` — only when 1 or 2 found something: a burst of attempts, a pause
//!    with every connection kept, then a second burst. A cap admits nothing the second
//!    time (nothing was released); a lockout or a rate limiter admits a new batch.
//! 4. `one_<dimension>` — for every client identity the plan varies (tokens, source
//!    addresses, per-connection header or query values): the ramp again with a single
//!    identity. A lower plateau than in 1 is a cap per that identity.
//!
//! Everything here is pure: `next_phase` builds the plans (as `plan::Segment`s, what
//! the swarm runs), `diagnose::probe::verdicts` reads the series. The user's bounds are
//! the plan's (`plan::Probe`).

use crate::diagnose::probe::{rate_readings, slice};
use crate::diagnose::{diagnose, LimitKind};
use crate::plan::Segment;
use crate::plan::{Dur, Plan, Probe, Reconnect, Stage, Step, TokenPolicy, Wait};
use crate::report::{PhaseSpan, Series, DIM_SOURCE, DIM_TOKEN};
use crate::template::{Template, Vars};

fn secs(s: f64) -> Dur {
    Dur(std::time::Duration::from_millis(
        (s * 1000.0).round().max(0.0) as u64,
    ))
}

/// The identity dimensions `plan` varies (as the engine counts them), each with the
/// plan that uses a single identity along it.
fn single_identity_plans(plan: &Plan) -> Vec<(String, Plan)> {
    let mut out = Vec::new();
    let peak = plan
        .probe
        .as_ref()
        .map_or(plan.peak_connections(), |p| p.max_connections);
    if let Some(auth) = &plan.auth {
        if auth.slots(peak).is_none_or(|n| n > 1) {
            let mut p = plan.clone();
            if let Some(a) = p.auth.as_mut() {
                a.policy = TokenPolicy::Shared;
            }
            out.push((DIM_TOKEN.to_string(), p));
        }
    }
    if plan.source_addrs.len() > 1 {
        let mut p = plan.clone();
        p.source_addrs.truncate(1);
        out.push((DIM_SOURCE.to_string(), p));
    }
    let first = |t: &Template| {
        let uuid = String::new;
        t.render(&Vars {
            vu: 0,
            attempt: 1,
            uuid: &uuid,
            now_ms: 0,
            token: "",
            vars: &[],
        })
    };
    for (name, value) in &plan.headers {
        if let Ok(t) = Template::parse(value) {
            if t.is_per_connection() {
                let mut p = plan.clone();
                p.headers.insert(name.clone(), first(&t));
                out.push((format!("header:{name}"), p));
            }
        }
    }
    if let Some((base, query)) = plan.target.split_once('?') {
        let pairs: Vec<&str> = query.split('&').collect();
        for (k, pair) in pairs.iter().enumerate() {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let Ok(t) = Template::parse(value) else {
                continue;
            };
            if name.is_empty() || !t.is_per_connection() {
                continue;
            }
            let mut fixed: Vec<String> = pairs.iter().map(|s| s.to_string()).collect();
            fixed[k] = format!("{name}={}", first(&t));
            let mut p = plan.clone();
            p.target = format!("{base}?{}", fixed.join("&"));
            out.push((format!("query:{name}"), p));
        }
    }
    out
}

/// The plan every experiment starts from: no probe, no reconnects, no pacing of its
/// own, and a connect timeout short enough that a target which stops answering shows
/// within the phase.
fn template(base: &Plan) -> Plan {
    let mut t = base.clone();
    t.probe = None;
    t.reconnect = Reconnect::Never;
    t.max_connect_rate = None;
    t.connect_timeout = Dur(t.connect_timeout.0.min(std::time::Duration::from_secs(3)));
    t.script = Vec::new();
    t.thresholds = Default::default();
    t.abort_on_fail = false;
    t
}

/// A slow ramp to (at most) `n` within `budget` seconds, then a hold long enough for
/// hanging upgrades to time out.
fn ramp(plan: &Plan, probe: &Probe, budget: f64) -> Plan {
    let mut p = plan.clone();
    let hold = (p.connect_timeout.0.as_secs_f64() + 1.0).min(budget * 0.4);
    let room = (budget - hold).max(1.0);
    let n = f64::from(probe.max_connections);
    // Slow enough to stay under most rate limits, fast enough to reach n in the budget.
    let rate = (n / room).clamp(0.5, (probe.max_connect_rate / 2.0).max(0.5));
    let reach = (rate * room).min(n).max(1.0);
    p.stages = vec![
        Stage {
            duration: secs(reach / rate),
            connections: reach.round() as u32,
        },
        Stage {
            duration: secs(hold.max(1.0)),
            connections: reach.round() as u32,
        },
    ];
    p
}

/// Short-lived connections at 1/8, 1/4, 1/2 and all of the rate bound (the top steps
/// only, when the budget is short: each step lasts at least 3 s).
fn rate_steps(plan: &Plan, probe: &Probe, budget: f64) -> Segment {
    let n_steps = ((budget / 3.0).floor() as usize).clamp(1, 4);
    let step = (budget / n_steps as f64).max(1.0);
    let fracs = &[0.125, 0.25, 0.5, 1.0][4 - n_steps..];
    let mut p = plan.clone();
    p.script = vec![Step::Wait(Wait::Fixed(Dur::millis(200))), Step::Close];
    let mut cumulative = 0.0;
    let mut steps = Vec::new();
    for (k, frac) in fracs.iter().enumerate() {
        let r = (probe.max_connect_rate * frac).max(1.0);
        cumulative += r * step;
        p.stages.push(Stage {
            duration: secs(step),
            connections: cumulative.round() as u32,
        });
        steps.push(((k as f64 * step * 1000.0) as u64, (step * 1000.0) as u64, r));
    }
    Segment {
        name: "rate".into(),
        plan: p,
        steps,
    }
}

/// After 2 quiet seconds (so a rate window left full by the phase before empties), a
/// burst of `burst` attempts at `rate`, a 3 s pause with every connection kept, and a
/// second burst of as many. The bursts are the phase's `steps`.
fn pause_retry(plan: &Plan, burst: u32, rate: f64) -> Segment {
    let mut p = plan.clone();
    let b = f64::from(burst);
    let len = (b / rate).max(0.2);
    let (quiet, pause) = (2.0, 3.0);
    p.stages = vec![
        Stage {
            duration: secs(quiet),
            connections: 0,
        },
        Stage {
            duration: secs(len),
            connections: burst,
        },
        Stage {
            duration: secs(pause),
            connections: burst,
        },
        Stage {
            duration: secs(len),
            connections: burst * 2,
        },
        Stage {
            duration: secs(2.0),
            connections: burst * 2,
        },
    ];
    let ms = |s: f64| (s * 1000.0).round() as u64;
    Segment {
        name: "pause_retry".into(),
        plan: p,
        steps: vec![
            (ms(quiet), ms(len), rate),
            (ms(quiet + len + pause), ms(len), rate),
        ],
    }
}

/// Shares of the time bound: (concurrency, rate, identities); the pause-retry bursts
/// take what is left (their length follows from the plateau found).
fn shares(dims: usize) -> (f64, f64, f64) {
    if dims == 0 {
        (0.4, 0.3, 0.0)
    } else {
        (0.3, 0.25, 0.25)
    }
}

/// The next experiment after `done` (what ran so far, with `s` its series), or `None`
/// when the probe is over.
pub fn next_phase(base: &Plan, done: &[PhaseSpan], s: &Series) -> Option<Segment> {
    let probe = base.probe.as_ref()?;
    let total = probe.max_duration.0.as_secs_f64();
    let tpl = template(base);
    let dims = single_identity_plans(base);
    let (conc, rate, ids) = shares(dims.len());
    let ran = |name: &str| done.iter().any(|d| d.name == name);
    if !ran("concurrency") {
        return Some(Segment {
            name: "concurrency".into(),
            plan: ramp(&tpl, probe, total * conc),
            steps: Vec::new(),
        });
    }
    if !ran("rate") {
        return Some(rate_steps(&tpl, probe, total * rate));
    }
    if !ran("pause_retry") {
        if let Some(burst) = burst_size(s, done, probe) {
            return Some(pause_retry(&tpl, burst, probe.max_connect_rate));
        }
    }
    let budget = total * ids / dims.len().max(1) as f64;
    for (dim, plan) in dims {
        let name = format!("one_{dim}");
        if !ran(&name) {
            return Some(Segment {
                name,
                plan: ramp(&template(&plan), probe, budget),
                steps: Vec::new(),
            });
        }
    }
    None
}

/// How big the pause-retry bursts must be to test what phases 1 and 2 found: past the
/// plateau (×1.5), or twice the first offered rate that was refused; `None` when
/// nothing was refused.
fn burst_size(s: &Series, done: &[PhaseSpan], probe: &Probe) -> Option<u32> {
    let max = probe.max_connections / 2;
    let mut want = None;
    if let Some(span) = done.iter().find(|d| d.name == "concurrency") {
        let d = diagnose(&slice(s, span.start_ms, span.end_ms), None);
        if matches!(
            d.kind,
            LimitKind::ConcurrencyCap | LimitKind::LockoutRateLimit
        ) {
            let l = d.level.unwrap_or(0.0) * d.identities.map_or(1.0, f64::from);
            want = Some((l * 1.5).ceil());
        }
    }
    if want.is_none() {
        if let Some(span) = done.iter().find(|d| d.name == "rate") {
            let refused_at = rate_readings(s, span)
                .into_iter()
                .find(|r| r.rejected > 0.0)
                .map(|r| r.offered);
            want = refused_at.map(|r| (2.0 * r).ceil());
        }
    }
    want.map(|w| (w as u32).clamp(4, max.max(4)))
}

pub mod follow;

#[cfg(test)]
mod tests;
