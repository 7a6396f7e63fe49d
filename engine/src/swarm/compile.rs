//! The plan compiled for the VUs: the script's steps into `Op`s (repeat blocks
//! flattened), responders into `AutoReply`s, the target's raw resource (templates kept),
//! and the client identity dimensions the run counts by. Pure; `run_agent` calls it once
//! per agent before any VU starts.

use std::time::Duration;

use crate::conn::{AutoReply, CaptureRule, IdentitySource, Matcher, Op};
use crate::plan::{Plan, Step, Wait};
use crate::report::{DIM_SOURCE, DIM_TOKEN};
use crate::stats::Dimension;
use crate::template::Template;

pub(super) fn compile(steps: &[Step], ops: &mut Vec<Op>) -> Result<(), String> {
    for s in steps {
        match s {
            Step::Send(t) => ops.push(Op::Send {
                tpl: Template::parse(t)?,
                binary: false,
            }),
            Step::SendBinary(t) => ops.push(Op::Send {
                tpl: Template::parse(t)?,
                binary: true,
            }),
            Step::Expect(e) => ops.push(Op::Expect {
                matcher: Matcher::compile(&e.match_spec())?,
                timeout: e.timeout.0,
                captures: CaptureRule::compile(&e.capture)?,
            }),
            Step::Wait(Wait::Fixed(d)) => ops.push(Op::Wait {
                base: d.0,
                jitter: Duration::ZERO,
            }),
            Step::Wait(Wait::Jittered { duration, jitter }) => ops.push(Op::Wait {
                base: duration.0,
                jitter: jitter.0,
            }),
            Step::Ping(t) => ops.push(Op::Ping { timeout: t.0 }),
            Step::Close => ops.push(Op::Close),
            Step::Repeat(r) => {
                ops.push(Op::LoopStart {
                    every: r.every.0,
                    times: r.times,
                });
                compile(&r.steps, ops)?;
                ops.push(Op::LoopEnd);
            }
        }
    }
    Ok(())
}

/// The plan's responders, compiled (validated before: an error is a setup error).
pub(super) fn compile_responders(plan: &Plan) -> Result<Vec<AutoReply>, String> {
    plan.responders
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let at = |e: String| format!("responders[{i}]: {e}");
            Ok(AutoReply {
                matcher: Matcher::compile(&r.match_spec()).map_err(at)?,
                captures: CaptureRule::compile(&r.capture).map_err(at)?,
                reply: r
                    .reply
                    .as_deref()
                    .map(Template::parse)
                    .transpose()
                    .map_err(at)?,
            })
        })
        .collect()
}

/// The path-and-query of a target URL, templates intact: the one parser's reading
/// (`crate::plan_url`), so what is requested is what is shown.
pub(super) fn raw_resource(target: &str) -> Result<String, String> {
    crate::plan_url::PlanUrl::parse(target, &["ws", "wss"]).map(|u| u.resource())
}

/// The identity dimensions `plan` varies, so the diagnosis can tell a limit per client
/// identity from a global one: token slots (several tokens), source addresses (several),
/// and every header or query value that depends on the connection alone (`{{vu % 3}}`).
pub(super) fn identity_dimensions(plan: &Plan) -> (Vec<IdentitySource>, Vec<Dimension>) {
    let mut sources = Vec::new();
    let mut dims = Vec::new();
    let mut add = |src: IdentitySource, key: String, labels: Option<Vec<String>>, zero: bool| {
        sources.push(src);
        dims.push(Dimension {
            key,
            labels,
            zero_based: zero,
        });
    };
    if let Some(auth) = &plan.auth {
        if auth.slots(plan.peak_connections()).is_none_or(|n| n > 1) {
            add(IdentitySource::Token, DIM_TOKEN.into(), None, true);
        }
    }
    if plan.source_addrs.len() > 1 {
        let labels = plan.source_addrs.iter().map(|a| a.to_string()).collect();
        add(
            IdentitySource::Source,
            DIM_SOURCE.into(),
            Some(labels),
            false,
        );
    }
    for (name, value) in &plan.headers {
        if let Ok(t) = Template::parse(value) {
            if t.is_per_connection() {
                add(
                    IdentitySource::Rendered(t, Default::default()),
                    format!("header:{name}"),
                    None,
                    false,
                );
            }
        }
    }
    if let Ok(url) = crate::plan_url::PlanUrl::parse(&plan.target, &["ws", "wss"]) {
        for (name, value) in url.query_pairs() {
            if let Ok(t) = Template::parse(value) {
                if t.is_per_connection() && !name.is_empty() {
                    add(
                        IdentitySource::Rendered(t, Default::default()),
                        format!("query:{name}"),
                        None,
                        false,
                    );
                }
            }
        }
    }
    (sources, dims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_resource_keeps_templates() {
        assert_eq!(
            raw_resource("ws://h:1/a/{{vu}}?x={{uuid}}").unwrap(),
            "/a/{{vu}}?x={{uuid}}"
        );
        assert_eq!(raw_resource("ws://h:1").unwrap(), "/");
        assert_eq!(raw_resource("ws://h:1?x=1").unwrap(), "/?x=1");
        assert!(raw_resource("ws://h:1\\@g:2/x").is_err());
    }
}
