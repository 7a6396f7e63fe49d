//! What a plan says about one session's state and chatter (issue 14): per-session
//! `vars`, `capture`s from matching messages, and auto-`responders`; plus the one
//! message-matcher view (`MatchSpec`) that `expect` steps and responders share, and the
//! validation of all of it. Pure.
//!
//! Where variables come from, in the order a session sees them: `vars` (rendered once
//! when a connection attempt starts, after its token), `http_steps[].capture` (before
//! the handshake), then `expect.capture` and responders' `capture` (from messages). A
//! later value replaces an earlier one of the same name; a variable not set yet renders
//! as empty text.

use super::*;
use crate::capture::{valid_var_name, JsonPath};

/// Most entries in `vars`.
pub const MAX_VARS: usize = 64;
/// Longest `vars` template, in bytes.
pub const MAX_VAR_TEMPLATE_BYTES: usize = 1024;
/// Most captures on one `expect` or responder.
pub const MAX_CAPTURES: usize = 16;
/// Most responders in a plan.
pub const MAX_RESPONDERS: usize = 16;

/// What to keep from a matching message: `{ json = "$.body.id" }` (a JSON path, read as
/// `json_field` reads it) or `{ regex = "id=(\\d+)", group = 1 }` (a group of the first
/// match; `group` 0 is the whole match, 1 the default).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Capture {
    /// A JSON path: `$.body.id`, `body.items[0].id`, `[1].from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<String>,
    /// A regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Which group of `regex` to keep (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<u32>,
}

/// A rule that runs alongside the script for the whole session: when a received message
/// matches (one of `text`, `prefix`, `contains`, `regex`, `json_field`), capture what it
/// says and send `reply` (e.g. Engine.IO's ping `2` -> pong `3`, an ack). Every received
/// message is offered to the responders in order; the first that matches takes it.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Responder {
    /// The message is exactly this text (templated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The message starts with this text (templated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The message contains this text (templated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    /// The message matches this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// The message is JSON (or framed JSON) with a value at this path ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_field: Option<String>,
    /// ... equal to this (a string is a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<serde_json::Value>,
    /// Variables to keep from the matching message (usable in `reply` and later steps).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capture: BTreeMap<String, Capture>,
    /// The reply (templated). Without one, matching messages are only counted (and are
    /// not `msgs_skipped` by a waiting `expect`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
}

/// The matching fields of an `expect` step or a responder (one model of "which message").
#[derive(Debug, Clone, Copy, Default)]
pub struct MatchSpec<'a> {
    pub text: Option<&'a str>,
    pub prefix: Option<&'a str>,
    pub contains: Option<&'a str>,
    pub regex: Option<&'a str>,
    pub json_field: Option<&'a str>,
    pub equals: Option<&'a serde_json::Value>,
}

impl<'a> MatchSpec<'a> {
    /// How many of the alternative matchers are set (at most one may be).
    fn kinds(&self) -> usize {
        [
            self.text.is_some(),
            self.prefix.is_some(),
            self.contains.is_some(),
            self.regex.is_some(),
            self.json_field.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count()
    }

    /// The templated texts of the matcher, with their field suffix.
    pub(super) fn templates(&self) -> Vec<(&'static str, &'a str)> {
        let mut out = Vec::new();
        for (name, t) in [
            ("text", self.text),
            ("prefix", self.prefix),
            ("contains", self.contains),
        ] {
            if let Some(t) = t {
                out.push((name, t));
            }
        }
        if let Some(serde_json::Value::String(s)) = self.equals {
            out.push(("equals", s.as_str()));
        }
        out
    }
}

impl Expect {
    pub fn match_spec(&self) -> MatchSpec<'_> {
        MatchSpec {
            text: self.text.as_deref(),
            prefix: self.prefix.as_deref(),
            contains: self.contains.as_deref(),
            regex: self.regex.as_deref(),
            json_field: self.json_field.as_deref(),
            equals: self.equals.as_ref(),
        }
    }
}

impl Responder {
    pub fn match_spec(&self) -> MatchSpec<'_> {
        MatchSpec {
            text: self.text.as_deref(),
            prefix: self.prefix.as_deref(),
            contains: self.contains.as_deref(),
            regex: self.regex.as_deref(),
            json_field: self.json_field.as_deref(),
            equals: self.equals.as_ref(),
        }
    }
}

fn push(errs: &mut Vec<FieldError>, field: String, message: String) {
    errs.push(FieldError { field, message });
}

/// Checks one matcher; `at` is its field (`script[2].expect`, `responders[0]`).
pub(super) fn validate_match(
    m: &MatchSpec<'_>,
    at: &str,
    required: bool,
    errs: &mut Vec<FieldError>,
) {
    let n = m.kinds();
    if n > 1 {
        push(
            errs,
            at.into(),
            "use one of text, prefix, contains, regex or json_field".into(),
        );
    } else if n == 0 && required {
        push(
            errs,
            at.into(),
            "needs a matcher: one of text, prefix, contains, regex or json_field".into(),
        );
    }
    if m.equals.is_some() && m.json_field.is_none() {
        push(errs, format!("{at}.equals"), "needs json_field".into());
    }
    for (name, t) in m.templates() {
        if let Err(e) = Template::parse(t) {
            push(errs, format!("{at}.{name}"), e);
        }
    }
    if let Some(p) = m.json_field {
        if let Err(e) = JsonPath::parse(p) {
            push(errs, format!("{at}.json_field"), e);
        }
    }
    #[cfg(feature = "runtime")]
    if let Some(r) = m.regex {
        if let Err(e) = regex::Regex::new(r) {
            push(
                errs,
                format!("{at}.regex"),
                format!("is not a valid regular expression: {e}"),
            );
        }
    }
}

/// Checks the captures of one `expect` or responder; `at` is its field.
pub(super) fn validate_captures(
    captures: &BTreeMap<String, Capture>,
    at: &str,
    errs: &mut Vec<FieldError>,
) {
    if captures.len() > MAX_CAPTURES {
        push(
            errs,
            format!("{at}.capture"),
            format!(
                "has {} captures; the limit is {MAX_CAPTURES}",
                captures.len()
            ),
        );
    }
    for (name, c) in captures {
        let field = format!("{at}.capture.{name}");
        if !valid_var_name(name) {
            push(
                errs,
                field.clone(),
                "variable names are 1 to 64 letters, digits, '_' or '-'".into(),
            );
        }
        match (&c.json, &c.regex) {
            (Some(_), Some(_)) | (None, None) => push(
                errs,
                field.clone(),
                "give one of json (a JSON path) or regex".into(),
            ),
            (Some(p), None) => {
                if let Err(e) = JsonPath::parse(p) {
                    push(errs, format!("{field}.json"), e);
                }
                if c.group.is_some() {
                    push(errs, format!("{field}.group"), "needs regex".into());
                }
            }
            (None, Some(_r)) =>
            {
                #[cfg(feature = "runtime")]
                match regex::Regex::new(_r) {
                    Err(e) => push(
                        errs,
                        format!("{field}.regex"),
                        format!("is not a valid regular expression: {e}"),
                    ),
                    Ok(re) => {
                        let group = c.group.unwrap_or(1) as usize;
                        let groups = re.captures_len() - 1;
                        if group > groups {
                            push(
                                errs,
                                format!("{field}.group"),
                                format!(
                                    "{group} is past the regex's {groups} group(s); the limit is {groups} (0 is the whole match)"
                                ),
                            );
                        }
                    }
                }
            }
        }
    }
}

impl Plan {
    /// Checks `vars`, `responders`, and that every `{{var.NAME}}` is defined somewhere
    /// (before the handshake: by `vars` or an HTTP step; in the script and responders:
    /// also by a capture from messages).
    pub(super) fn validate_session(&self, limits: &Limits, errs: &mut Vec<FieldError>) {
        if self.vars.len() > MAX_VARS {
            push(
                errs,
                "vars".into(),
                format!("has {} variables; the limit is {MAX_VARS}", self.vars.len()),
            );
        }
        for (name, text) in &self.vars {
            let field = format!("vars.{name}");
            if !valid_var_name(name) {
                push(
                    errs,
                    field.clone(),
                    "variable names are 1 to 64 letters, digits, '_' or '-'".into(),
                );
            }
            if text.len() > MAX_VAR_TEMPLATE_BYTES {
                push(
                    errs,
                    field.clone(),
                    format!(
                        "is {} bytes long; the limit is {MAX_VAR_TEMPLATE_BYTES}",
                        text.len()
                    ),
                );
            }
            match Template::parse(text) {
                Err(e) => push(errs, field, e),
                Ok(t) if t.var_names().next().is_some() => push(
                    errs,
                    field,
                    "a variable cannot use `{{var.…}}`: vars are rendered together, from {{vu}}, {{uuid}}, {{token}}, {{now_ms}}, {{attempt}} and {{env.NAME}}".into(),
                ),
                Ok(_) => {}
            }
        }
        if self.responders.len() > MAX_RESPONDERS {
            push(
                errs,
                "responders".into(),
                format!(
                    "has {} responders; the limit is {MAX_RESPONDERS}",
                    self.responders.len()
                ),
            );
        }
        for (i, r) in self.responders.iter().enumerate() {
            let at = format!("responders[{i}]");
            validate_match(&r.match_spec(), &at, true, errs);
            validate_captures(&r.capture, &at, errs);
            if let Some(reply) = &r.reply {
                if reply.len() > limits.max_message_bytes {
                    push(
                        errs,
                        format!("{at}.reply"),
                        format!(
                            "is {} bytes; the limit is {}",
                            reply.len(),
                            limits.max_message_bytes
                        ),
                    );
                }
                if let Err(e) = Template::parse(reply) {
                    push(errs, format!("{at}.reply"), e);
                }
            }
        }
        self.validate_var_uses(errs);
    }

    /// Every `{{var.NAME}}` must name a variable something defines.
    fn validate_var_uses(&self, errs: &mut Vec<FieldError>) {
        let before: Vec<&str> = self
            .vars
            .keys()
            .chain(self.http_steps.iter().flat_map(|h| h.capture.keys()))
            .map(String::as_str)
            .collect();
        let mut any = before.clone();
        any.extend(self.message_capture_names());
        for (field, text) in self.templated_texts() {
            // Before the handshake only `vars` and HTTP steps have run (the target and
            // headers are checked by `validate_http_steps` with its own message).
            let pre = field == "target"
                || field.starts_with("headers.")
                || field == "auth.value"
                || field.starts_with("vars.");
            if pre {
                continue;
            }
            let Ok(t) = Template::parse(text) else {
                continue;
            };
            let known = if field.starts_with("http_steps") {
                &before
            } else {
                &any
            };
            for name in t.var_names() {
                if !known.contains(&name) {
                    push(
                        errs,
                        field.clone(),
                        format!(
                            "`{{{{var.{name}}}}}` is not defined: add it to `vars`, an http_steps[].capture{}",
                            if field.starts_with("http_steps") {
                                ""
                            } else {
                                ", an expect's capture or a responder's capture"
                            }
                        ),
                    );
                }
            }
        }
    }

    /// Names captured from messages (expect steps at any depth, responders).
    fn message_capture_names(&self) -> Vec<&str> {
        fn walk<'a>(steps: &'a [Step], out: &mut Vec<&'a str>) {
            for s in steps {
                match s {
                    Step::Expect(e) => out.extend(e.capture.keys().map(String::as_str)),
                    Step::Repeat(r) => walk(&r.steps, out),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.script, &mut out);
        out.extend(
            self.responders
                .iter()
                .flat_map(|r| r.capture.keys().map(String::as_str)),
        );
        if let Some(e) = self
            .auth
            .as_ref()
            .and_then(|a| a.rotation.as_ref()?.expect())
        {
            out.extend(e.capture.keys().map(String::as_str));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(extra: &str) -> Plan {
        serde_json::from_str(&format!(
            r#"{{"target":"ws://127.0.0.1:9/x","stages":[{{"duration":"1s","connections":1}}]{extra}}}"#
        ))
        .unwrap()
    }

    fn errors(p: &Plan) -> Vec<String> {
        match p.validate(&Limits::default()) {
            Ok(()) => Vec::new(),
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn vars_captures_and_responders_validate_and_round_trip() {
        let mut p = plan(
            r#","vars":{"guest":"g-{{uuid}}","n":"{{vu}}"},
               "script":[{"send":"hi {{var.guest}}"},
                 {"expect":{"json_field":"$.body.to","equals":"{{var.guest}}",
                   "capture":{"conv":{"json":"body.items[0].id"},"n2":{"regex":"n=(\\d+)","group":1}}}},
                 {"send":"{{var.conv}} {{var.ack}}"}],
               "responders":[{"text":"2","reply":"3"},
                 {"prefix":"43","capture":{"ack":{"regex":"^43(\\d+)"}},"reply":"ok {{var.ack}}"},
                 {"json_field":"[0]","equals":"ping"}]"#,
        );
        p.target = "ws://127.0.0.1:9/x?g={{var.guest}}".into();
        assert_eq!(errors(&p), Vec::<String>::new());
        let again: Plan = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(p, again);
        let toml_text = toml::to_string(&p).unwrap();
        assert_eq!(toml::from_str::<Plan>(&toml_text).unwrap(), p);
    }

    #[test]
    fn every_bad_value_names_its_field_and_limit() {
        let p = plan(
            r#","vars":{"bad name":"x","self":"{{var.other}}","broken":"{{nope}}"},
               "script":[{"send":"{{var.never}}"},
                 {"expect":{"text":"a","prefix":"b"}},
                 {"expect":{"json_field":"a..b","capture":{"x":{"json":"a","regex":"b"},
                   "y":{"regex":"(a)","group":2},"z":{"json":"[q]"},"w":{"json":"a","group":1},"v":{}}}},
                 {"expect":{"equals":1}}],
               "responders":[{"reply":"3"},{"regex":"(","reply":"{{var.guest}}"}]"#,
        );
        let e = errors(&p);
        let has = |start: &str, says: &str| {
            assert!(
                e.iter().any(|t| t.starts_with(start) && t.contains(says)),
                "{start} / {says}: {e:#?}"
            )
        };
        has("vars.bad name", "letters, digits");
        has("vars.self", "cannot use `{{var.");
        has("vars.broken", "unknown template variable");
        has("script[0]", "`{{var.never}}` is not defined");
        has("script[1].expect", "use one of text, prefix");
        has("script[2].expect.json_field", "empty field name");
        has("script[2].expect.capture.x", "one of json");
        has("script[2].expect.capture.y.group", "the limit is 1");
        has("script[2].expect.capture.z.json", "array index");
        has("script[2].expect.capture.w.group", "needs regex");
        has("script[2].expect.capture.v", "one of json");
        has("script[3].expect.equals", "needs json_field");
        has("responders[0]", "needs a matcher");
        has("responders[1].regex", "not a valid regular expression");
        has("responders[1].reply", "`{{var.guest}}` is not defined");
    }

    #[test]
    fn counts_and_sizes_have_limits() {
        let vars: BTreeMap<String, String> = (0..=MAX_VARS)
            .map(|i| (format!("v{i}"), "x".into()))
            .collect();
        let mut p = plan("");
        p.vars = vars;
        p.vars
            .insert("long".into(), "x".repeat(MAX_VAR_TEMPLATE_BYTES + 1));
        p.responders = vec![
            Responder {
                text: Some("2".into()),
                reply: Some("x".repeat(Limits::default().max_message_bytes + 1)),
                capture: (0..=MAX_CAPTURES)
                    .map(|i| (
                        format!("c{i}"),
                        Capture {
                            json: Some("a".into()),
                            ..Capture::default()
                        }
                    ))
                    .collect(),
                ..Responder::default()
            };
            MAX_RESPONDERS + 1
        ];
        let e = errors(&p);
        for (start, says) in [
            ("vars:", "the limit is 64"),
            ("vars.long", "the limit is 1024"),
            ("responders:", "the limit is 16"),
            ("responders[0].reply", "the limit is 1048576"),
            ("responders[0].capture", "the limit is 16"),
        ] {
            assert!(
                e.iter().any(|t| t.starts_with(start) && t.contains(says)),
                "{start} / {says}: {e:#?}"
            );
        }
    }

    #[test]
    fn the_template_s_commented_examples_work_when_uncommented() {
        let text = TEMPLATE.replace(
            "# [[responders]]\n# text = \"2\"\n# reply = \"3\"",
            "[[responders]]\ntext = \"2\"\nreply = \"3\"",
        );
        assert_ne!(text, TEMPLATE, "the template shows a responder");
        let p: Plan = toml::from_str(&text).unwrap();
        assert_eq!(p.responders[0].reply.as_deref(), Some("3"));
        assert!(p.vars.contains_key("guest"));
        assert_eq!(p.validate(&Limits::default()), Ok(()));
        // The capture example in its comment, as written there.
        let line = TEMPLATE
            .lines()
            .find_map(|l| l.split_once("capture = "))
            .map(|(_, c)| c.trim_end_matches('.'))
            .unwrap();
        let e: Expect = toml::from_str(&format!("capture = {line}")).unwrap();
        assert_eq!(e.capture["n"].regex.as_deref(), Some(r"n=(\d+)"));
        let mut errs = Vec::new();
        validate_captures(&e.capture, "x", &mut errs);
        assert_eq!(errs, Vec::new());
    }

    #[test]
    fn the_target_and_headers_may_use_vars_but_not_message_captures() {
        let ok = plan(r#","vars":{"g":"{{uuid}}"},"headers":{"X-G":"{{var.g}}"}"#);
        assert_eq!(errors(&ok), Vec::<String>::new());
        let late = plan(
            r#","headers":{"X-G":"{{var.c}}"},
               "script":[{"expect":{"capture":{"c":{"json":"a"}}}}]"#,
        );
        assert!(
            errors(&late)
                .iter()
                .any(|t| t.starts_with("headers.X-G") && t.contains("var.c")),
            "{:?}",
            errors(&late)
        );
    }
}
