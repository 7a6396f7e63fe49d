//! The plan an agent in another process is sent: what that agent needs to make its
//! share, and nothing more. Another process (a pod, a pool member on another machine)
//! is sent only its own part of the secrets, and never reads its own environment:
//! - `{{env.NAME}}` and `{"env": "NAME"}` are read here, on the coordinator, whose
//!   operator allowed them (`--allow-env`), and sent as values; an agent refuses a plan
//!   that still reads the environment, so no coordinator can make it send its own
//!   variables (its token among them) to a target;
//! - of a static token list, only the tokens its connections use (the others are
//!   sent empty, so every index stays where it was);
//! - what only the coordinator reads stays behind: thresholds, steering history, the
//!   `public` list.

use crate::plan::{Plan, Secret, TokenSource};
use crate::schedule::Share;

/// Replaces every `{{env.NAME}}` in `text` with `read(NAME)` (empty when unset, as a
/// template renders it). A value holding `{{` or `}}` cannot be sent as text inside a
/// template: an error names it.
fn resolve_env_in(text: &str, read: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open + 2..].find("}}") else {
            break;
        };
        let inner = rest[open + 2..open + 2 + close].trim();
        out.push_str(&rest[..open]);
        match inner.strip_prefix("env.") {
            Some(name) => {
                let v = read(name).unwrap_or_default();
                if v.contains("{{") || v.contains("}}") {
                    return Err(format!(
                        "environment variable `{name}` holds `{{{{` or `}}}}`, which a template cannot carry as text"
                    ));
                }
                out.push_str(&v);
            }
            None => out.push_str(&rest[open..open + 2 + close + 2]),
        }
        rest = &rest[open + 2 + close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn resolve_json(
    v: &mut serde_json::Value,
    read: &dyn Fn(&str) -> Option<String>,
) -> Result<(), String> {
    use serde_json::Value as V;
    match v {
        V::String(s) if s.contains("{{") => *s = resolve_env_in(s, read)?,
        V::Array(a) => {
            for x in a {
                resolve_json(x, read)?;
            }
        }
        V::Object(o) => {
            for x in o.values_mut() {
                resolve_json(x, read)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The token indexes connections of `share` use from a static list of `len`.
fn tokens_used(plan: &Plan, share: Share, len: usize) -> Vec<bool> {
    let mut used = vec![false; len];
    let Some(auth) = &plan.auth else {
        return used;
    };
    // Closed model: the share's slots; open model: guests keep arriving (every index
    // its turn can reach, bounded).
    let steps: u64 = if plan.sessions.is_some() {
        (len as u64 * u64::from(share.of.max(1))).clamp(1, 1_000_000)
    } else {
        u64::from(share.target(plan.peak_connections()))
    };
    for k in 0..steps {
        let vu = share.slot(k);
        let slot = crate::tokens::plain_slot(&auth.policy, vu);
        used[(slot % len.max(1) as u64) as usize] = true;
        if used.iter().all(|u| *u) {
            break;
        }
    }
    used
}

/// What agent `share` of a run is sent for `plan` (see the module doc). Errors are
/// setup errors.
pub fn plan_for_agent(plan: &Plan, share: Share) -> Result<Plan, String> {
    plan_for_agent_with(plan, share, &|name| std::env::var(name).ok())
}

fn plan_for_agent_with(
    plan: &Plan,
    share: Share,
    read: &dyn Fn(&str) -> Option<String>,
) -> Result<Plan, String> {
    let mut p = plan.clone();
    p.thresholds.clear();
    p.abort_on_fail = false;
    p.steering.clear();
    p.public.clear();
    if let Some(auth) = p.auth.as_mut() {
        let resolve = |s: &mut Secret| {
            if let Secret::Env { env } = s {
                *s = Secret::Value(read(env).unwrap_or_default());
            }
        };
        match &mut auth.source {
            TokenSource::Static { tokens } => {
                tokens.iter_mut().for_each(resolve);
            }
            TokenSource::Oauth2 { client_secret, .. } => resolve(client_secret),
        }
    }
    let mut v = serde_json::to_value(&p).map_err(|e| format!("the plan: {e}"))?;
    resolve_json(&mut v, read)?;
    let mut p: Plan = serde_json::from_value(v).map_err(|e| format!("the plan: {e}"))?;
    let len = match p.auth.as_ref().map(|a| &a.source) {
        Some(TokenSource::Static { tokens }) => tokens.len(),
        _ => 0,
    };
    if len > 0 {
        let used = tokens_used(&p, share, len);
        if let Some(TokenSource::Static { tokens }) = p.auth.as_mut().map(|a| &mut a.source) {
            for (t, used) in tokens.iter_mut().zip(used) {
                if !used {
                    *t = Secret::Value(String::new());
                }
            }
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(v: serde_json::Value) -> Plan {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn an_agent_gets_its_own_tokens_and_no_environment() {
        let p = plan(serde_json::json!({
            "target": "ws://127.0.0.1:1/x?k={{env.SS_FA_K}}&v={{vu}}",
            "stages": [{"duration": "1s", "connections": 5}],
            "headers": {"X-K": "{{ env.SS_FA_K }}-{{vu}}"},
            "thresholds": {"drops": "== 0"},
            "auth": {"source": {"type": "static", "tokens": ["t0", "t1", "t2", {"env": "SS_FA_T"}]},
                "policy": {"mode": "per_connection"}}
        }));
        let read = |n: &str| match n {
            "SS_FA_K" => Some("kay".to_string()),
            "SS_FA_T" => Some("tee".to_string()),
            _ => None,
        };
        for (index, mine) in [(0, ["t0", "", "t2", ""]), (1, ["", "t1", "", "tee"])] {
            let a = plan_for_agent_with(&p, Share { index, of: 2 }, &read).unwrap();
            assert!(a.env_names().is_empty(), "{:?}", a.env_names());
            assert_eq!(a.target, "ws://127.0.0.1:1/x?k=kay&v={{vu}}");
            assert_eq!(a.headers["X-K"], "kay-{{vu}}");
            assert!(a.thresholds.is_empty());
            let Some(TokenSource::Static { tokens }) = a.auth.as_ref().map(|a| &a.source) else {
                panic!("{a:?}")
            };
            let got: Vec<String> = tokens.iter().map(|t| t.resolve().unwrap()).collect();
            assert_eq!(got, mine, "agent {index}");
        }
        // A shared token goes to everyone.
        let shared = plan(serde_json::json!({
            "target": "ws://127.0.0.1:1/x", "stages": [{"duration": "1s", "connections": 5}],
            "auth": {"source": {"type": "static", "tokens": ["only", "other"]}}
        }));
        let a = plan_for_agent_with(&shared, Share { index: 1, of: 3 }, &read).unwrap();
        let Some(TokenSource::Static { tokens }) = a.auth.as_ref().map(|a| &a.source) else {
            panic!()
        };
        assert_eq!(tokens[0].resolve().as_deref(), Some("only"));
        assert_eq!(tokens[1].resolve().as_deref(), Some(""));
        let bad = plan(serde_json::json!({
            "target": "ws://127.0.0.1:1/x?k={{env.SS_FA_K}}", "stages": [{"duration": "1s", "connections": 5}]
        }));
        let e = plan_for_agent_with(&bad, Share::ALL, &|_| Some("a{{vu}}".into())).unwrap_err();
        assert!(e.contains("SS_FA_K"), "{e}");
    }
}
