//! Which received message is which (issue 14): the compiled matcher shared by `expect`
//! steps and responders, captures into the session's variables, and the compiled
//! responders. Matching is a pure function of the message text and the session's
//! values; only the session loop (`session.rs`) records and sends.

use std::collections::BTreeMap;

use super::*;
use crate::capture::{capture_json, capture_regex, equals_text, read_json, JsonPath};
use crate::plan::{Capture, MatchSpec};

/// What a field must equal (`expect.equals`): a string is a template rendered with the
/// session's values; any other JSON value is compared as is.
pub(crate) enum Equals {
    Text(Template),
    Value(serde_json::Value),
}

/// A compiled message matcher.
pub(crate) enum Matcher {
    Any,
    Text(Template),
    Prefix(Template),
    Contains(Template),
    Regex(regex::Regex),
    Json {
        path: JsonPath,
        equals: Option<Equals>,
    },
}

impl Matcher {
    /// Compiles the matching fields of an `expect` or a responder (validated before, so
    /// an error here is a setup error).
    pub(crate) fn compile(m: &MatchSpec<'_>) -> Result<Matcher, String> {
        Ok(if let Some(t) = m.text {
            Matcher::Text(Template::parse(t)?)
        } else if let Some(t) = m.prefix {
            Matcher::Prefix(Template::parse(t)?)
        } else if let Some(t) = m.contains {
            Matcher::Contains(Template::parse(t)?)
        } else if let Some(r) = m.regex {
            Matcher::Regex(regex::Regex::new(r).map_err(|e| e.to_string())?)
        } else if let Some(f) = m.json_field {
            Matcher::Json {
                path: JsonPath::parse(f)?,
                equals: match m.equals {
                    None => None,
                    Some(serde_json::Value::String(s)) => Some(Equals::Text(Template::parse(s)?)),
                    Some(v) => Some(Equals::Value(v.clone())),
                },
            }
        } else {
            Matcher::Any
        })
    }
}

/// A compiled capture: where a variable's value comes from in a matching message.
pub(crate) enum CaptureRule {
    Json(String, JsonPath),
    Regex(String, regex::Regex, usize),
}

impl CaptureRule {
    pub(crate) fn compile(captures: &BTreeMap<String, Capture>) -> Result<Vec<Self>, String> {
        captures
            .iter()
            .map(|(name, c)| match (&c.json, &c.regex) {
                (Some(p), _) => Ok(CaptureRule::Json(name.clone(), JsonPath::parse(p)?)),
                (None, Some(r)) => Ok(CaptureRule::Regex(
                    name.clone(),
                    regex::Regex::new(r).map_err(|e| format!("capture.{name}: {e}"))?,
                    c.group.unwrap_or(1) as usize,
                )),
                (None, None) => Err(format!("capture.{name}: give json or regex")),
            })
            .collect()
    }
}

/// A compiled responder.
pub(crate) struct AutoReply {
    pub(crate) matcher: Matcher,
    pub(crate) captures: Vec<CaptureRule>,
    pub(crate) reply: Option<Template>,
}

/// The text of a data message (a binary one if it is UTF-8).
pub(super) fn text_of(msg: &Message) -> Option<&str> {
    match msg {
        Message::Text(t) => Some(t.as_str()),
        Message::Binary(b) => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

/// True when `msg` is a data message `m` accepts, with templates rendered for this
/// session.
pub(crate) fn matches(m: &Matcher, msg: &Message, vu: u64, attempt: u32, ctx: &Ctx) -> bool {
    if !(msg.is_text() || msg.is_binary()) {
        return false;
    }
    let Some(text) = text_of(msg) else {
        return matches!(m, Matcher::Any);
    };
    match m {
        Matcher::Any => true,
        Matcher::Text(t) => text == render(t, vu, attempt, ctx),
        Matcher::Prefix(t) => text.starts_with(&render(t, vu, attempt, ctx)),
        Matcher::Contains(t) => text.contains(&render(t, vu, attempt, ctx)),
        Matcher::Regex(r) => r.is_match(text),
        Matcher::Json { path, equals } => {
            let Some(v) = read_json(text) else {
                return false;
            };
            match (path.get(&v), equals) {
                (Some(_), None) => true,
                (Some(got), Some(Equals::Value(want))) => got == want,
                (Some(got), Some(Equals::Text(want))) => {
                    equals_text(got, &render(want, vu, attempt, ctx))
                }
                (None, _) => false,
            }
        }
    }
}

/// Applies `rules` to the matching message `text`: each value found replaces the
/// variable's; returns how many found nothing (counted as `capture_misses`).
pub(crate) fn apply_captures(rules: &[CaptureRule], text: &str, ctx: &mut Ctx) -> u32 {
    if rules.is_empty() {
        return 0;
    }
    let json = rules
        .iter()
        .any(|r| matches!(r, CaptureRule::Json(..)))
        .then(|| read_json(text))
        .flatten();
    let mut misses = 0;
    for rule in rules {
        let (name, value) = match rule {
            CaptureRule::Json(name, path) => {
                (name, json.as_ref().and_then(|j| capture_json(j, path)))
            }
            CaptureRule::Regex(name, re, group) => (name, capture_regex(text, re, *group)),
        };
        match value {
            Some(v) => ctx.set(name, v),
            None => misses += 1,
        }
    }
    misses
}

/// Offers a received message to the responders in order: the first that matches
/// captures what it says and queues its reply in `ctx` (the session sends it next).
/// Returns whether one matched.
pub(crate) fn respond(
    responders: &[AutoReply],
    msg: &Message,
    vu: u64,
    attempt: u32,
    ctx: &mut Ctx,
    rec: &mut Recorder,
) -> bool {
    let Some(r) = responders
        .iter()
        .find(|r| matches(&r.matcher, msg, vu, attempt, ctx))
    else {
        return false;
    };
    rec.auto_matched();
    if let Some(text) = text_of(msg) {
        rec.capture_misses(apply_captures(&r.captures, text, ctx));
    }
    if let Some(t) = &r.reply {
        ctx.reply = Some((render(t, vu, attempt, ctx), Instant::now()));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_json(path: &str, equals: Option<&serde_json::Value>) -> Matcher {
        Matcher::compile(&MatchSpec {
            json_field: Some(path),
            equals,
            ..MatchSpec::default()
        })
        .unwrap()
    }

    fn ctx_with(vars: &[(&str, &str)]) -> Ctx {
        let mut c = Ctx::default();
        for (k, v) in vars {
            c.set(k, (*v).to_string());
        }
        c
    }

    #[test]
    fn every_matcher_kind() {
        let ctx = ctx_with(&[("guest", "g-1")]);
        let m = |spec: MatchSpec<'_>, text: &str| {
            matches(
                &Matcher::compile(&spec).unwrap(),
                &Message::text(text),
                3,
                1,
                &ctx,
            )
        };
        let text = |t| MatchSpec {
            text: Some(t),
            ..MatchSpec::default()
        };
        assert!(m(text("2"), "2"));
        assert!(!m(text("2"), "22"));
        let prefix = |t| MatchSpec {
            prefix: Some(t),
            ..MatchSpec::default()
        };
        assert!(m(prefix("43"), "431[{}]"));
        assert!(!m(prefix("43"), "42[]"));
        assert!(m(prefix("hi {{var.guest}}"), "hi g-1 there"));
        let contains = |t| MatchSpec {
            contains: Some(t),
            ..MatchSpec::default()
        };
        assert!(m(contains("hi {{vu}}"), "say hi 3!"));
        assert!(!m(contains("hi {{vu}}"), "say hi 4!"));
        let regex = |t| MatchSpec {
            regex: Some(t),
            ..MatchSpec::default()
        };
        assert!(m(regex("^a+$"), "aaa"));
        assert!(m(MatchSpec::default(), "anything"));
        // Binary messages that are not UTF-8 only match `Any`.
        let bin = Message::binary(vec![0xff, 0xfe]);
        assert!(matches(&Matcher::Any, &bin, 0, 1, &ctx));
        assert!(!matches(
            &Matcher::compile(&text("x")).unwrap(),
            &bin,
            0,
            1,
            &ctx
        ));
        assert!(!matches(
            &Matcher::Any,
            &Message::Ping(Vec::new().into()),
            0,
            1,
            &ctx
        ));
    }

    #[test]
    fn json_fields_correlate_with_the_session_s_values() {
        let ctx = ctx_with(&[("guest", "g-1"), ("n", "5")]);
        let is = |m: &Matcher, t: &str| matches(m, &Message::text(t), 0, 1, &ctx);
        let mine = spec_json("[1].from", Some(&serde_json::json!("{{var.guest}}")));
        assert!(is(&mine, r#"42["chat",{"from":"g-1"}]"#));
        assert!(
            !is(&mine, r#"42["chat",{"from":"g-2"}]"#),
            "another guest's push"
        );
        assert!(!is(&mine, r#"431[{"from":"g-1"}]"#), "path not there");
        assert!(!is(&mine, "2"));
        let num = spec_json("$.n", Some(&serde_json::json!("{{var.n}}")));
        assert!(
            is(&num, r#"{"n":5}"#),
            "a captured number matches the number"
        );
        let exact = spec_json("type", Some(&serde_json::json!("pong")));
        assert!(is(&exact, r#"{"type":"pong"}"#));
        assert!(!is(&exact, r#"{"type":"ping"}"#));
        let typed = spec_json("ok", Some(&serde_json::json!(true)));
        assert!(is(&typed, r#"{"ok":true}"#));
        assert!(
            !is(&typed, r#"{"ok":"true"}"#),
            "a non-string equals compares as JSON"
        );
        let present = spec_json("body.id", None);
        assert!(is(&present, r#"{"body":{"id":null}}"#));
        assert!(!is(&present, r#"{"body":{}}"#));
    }

    #[test]
    fn captures_replace_values_and_count_misses() {
        let mut rules_spec = BTreeMap::new();
        rules_spec.insert(
            "id".to_string(),
            Capture {
                json: Some("$.body.id".into()),
                ..Capture::default()
            },
        );
        rules_spec.insert(
            "n".to_string(),
            Capture {
                regex: Some(r"n=(\d+)".into()),
                ..Capture::default()
            },
        );
        rules_spec.insert(
            "missing".to_string(),
            Capture {
                json: Some("nope".into()),
                ..Capture::default()
            },
        );
        let rules = CaptureRule::compile(&rules_spec).unwrap();
        let mut ctx = ctx_with(&[("id", "old")]);
        let misses = apply_captures(&rules, r#"{"body":{"id":"c-9"},"t":"n=42"}"#, &mut ctx);
        assert_eq!(misses, 1);
        assert_eq!(ctx.get("id"), Some("c-9"));
        assert_eq!(ctx.get("n"), Some("42"));
        assert_eq!(ctx.vars.len(), 2, "replaced, not appended");
        // Not JSON: the JSON captures miss, the regex one still reads the text.
        assert_eq!(apply_captures(&rules, "n=7", &mut ctx), 2);
        assert_eq!(ctx.get("n"), Some("7"));
        assert_eq!(ctx.get("id"), Some("c-9"), "a miss keeps the old value");
    }
}
