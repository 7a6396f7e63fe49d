//! Reading values out of received messages (issue 14): a small JSON path
//! (`$.body.id`, `body.items[0].id`, `[1].from`), JSON read leniently from framed text
//! (Socket.IO's `42["chat",{…}]`), and the text a capture stores. Pure; parsed once
//! when a plan is validated or a run starts, evaluated per message.
//!
//! The same path model reads `http_steps[].capture` replies, `expect.json_field`,
//! `expect.capture` and responders' `json_field` (one model per concept).

use serde_json::Value;

/// Longest path a plan may write, in bytes.
pub const MAX_PATH_BYTES: usize = 256;
/// Most segments in one path.
pub const MAX_PATH_DEPTH: usize = 32;
/// Longest value a capture keeps, in bytes: a longer one is a miss (a session's
/// variables stay small however big the messages are).
pub const MAX_CAPTURE_BYTES: usize = 8 * 1024;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// An object's field.
    Key(String),
    /// An array's element (from 0).
    Index(usize),
}

/// A parsed JSON path: `$` (the whole value), `$.a.b`, `a.b`, `items[0].id`, `[1]`,
/// `$[1].from`. Keys are written bare (no quotes); a key holding `.`, `[` or `]` cannot be
/// named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath(Vec<Segment>);

impl JsonPath {
    /// Parses `text`; the error says what is wrong and shows the accepted forms.
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let hint = "write e.g. `$.body.id`, `body.items[0].id` or `[1].from`";
        if text.len() > MAX_PATH_BYTES {
            return Err(format!(
                "is {} bytes long; the limit is {MAX_PATH_BYTES}",
                text.len()
            ));
        }
        let t = text.trim();
        let mut rest = t.strip_prefix('$').unwrap_or(t);
        if t.is_empty() {
            return Err(format!("is empty; {hint}"));
        }
        let mut segs = Vec::new();
        let mut first = t.as_bytes()[0] != b'$';
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('[') {
                let close = after
                    .find(']')
                    .ok_or_else(|| format!("`{text}`: unclosed `[`; {hint}"))?;
                let index = after[..close].trim().parse::<usize>().map_err(|_| {
                    format!(
                        "`{text}`: `[{}]` is not an array index (a whole number from 0); {hint}",
                        &after[..close]
                    )
                })?;
                segs.push(Segment::Index(index));
                rest = &after[close + 1..];
            } else {
                let body = if first {
                    rest
                } else {
                    rest.strip_prefix('.').ok_or_else(|| {
                        format!("`{text}`: expected `.` or `[` at `{rest}`; {hint}")
                    })?
                };
                let end = body.find(['.', '[', ']']).unwrap_or(body.len());
                let key = &body[..end];
                if key.is_empty() {
                    return Err(format!("`{text}` has an empty field name; {hint}"));
                }
                segs.push(Segment::Key(key.to_string()));
                rest = &body[end..];
                if rest.starts_with(']') {
                    return Err(format!("`{text}`: unexpected `]`; {hint}"));
                }
            }
            first = false;
            if segs.len() > MAX_PATH_DEPTH {
                return Err(format!(
                    "`{text}` has more than {MAX_PATH_DEPTH} steps; the limit is {MAX_PATH_DEPTH}"
                ));
            }
        }
        Ok(JsonPath(segs))
    }

    /// The value at this path, if there is one.
    pub fn get<'v>(&self, v: &'v Value) -> Option<&'v Value> {
        self.0.iter().try_fold(v, |v, seg| match seg {
            Segment::Key(k) => v.get(k),
            Segment::Index(i) => v.get(i),
        })
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }
}

/// The JSON of a message: the whole text if it is JSON, else the text from its first
/// `{` or `[` on (framed JSON: Socket.IO's `42["chat",{…}]`, Engine.IO's `0{"sid":…}`).
pub fn read_json(text: &str) -> Option<Value> {
    if let Ok(v) = serde_json::from_str(text) {
        return Some(v);
    }
    let start = text.find(['{', '['])?;
    if start == 0 {
        return None;
    }
    serde_json::from_str(&text[start..]).ok()
}

/// A value as a variable holds it: strings as themselves, anything else as its JSON.
pub fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// True when a field's value `got` equals `want`, a rendered template: a string field
/// with that text, or a number, boolean or null written that way (so a value captured
/// from a number matches the number).
pub fn equals_text(got: &Value, want: &str) -> bool {
    match got {
        Value::String(s) => s == want,
        Value::Number(_) | Value::Bool(_) | Value::Null => {
            serde_json::from_str::<Value>(want).is_ok_and(|w| w == *got)
        }
        Value::Array(_) | Value::Object(_) => false,
    }
}

/// What a JSON capture keeps from `json`: the text at `path`, unless it is missing or
/// longer than `MAX_CAPTURE_BYTES`.
pub fn capture_json(json: &Value, path: &JsonPath) -> Option<String> {
    path.get(json)
        .map(as_text)
        .filter(|t| t.len() <= MAX_CAPTURE_BYTES)
}

/// What a regex capture keeps from `text`: group `group` of the first match (0 = the
/// whole match), unless it did not take part or is longer than `MAX_CAPTURE_BYTES`.
#[cfg(feature = "runtime")]
pub fn capture_regex(text: &str, re: &regex::Regex, group: usize) -> Option<String> {
    re.captures(text)?
        .get(group)
        .map(|m| m.as_str().to_string())
        .filter(|t| t.len() <= MAX_CAPTURE_BYTES)
}

/// True when `name` can be a variable (`{{var.NAME}}`): 1..=64 letters, digits, `_`
/// or `-`.
pub fn valid_var_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(t: &str) -> JsonPath {
        JsonPath::parse(t).unwrap()
    }

    #[test]
    fn paths_parse_in_every_written_form() {
        let k = |s: &str| Segment::Key(s.into());
        assert_eq!(path("$").segments(), &[]);
        assert_eq!(path("$.body.id").segments(), &[k("body"), k("id")]);
        assert_eq!(path("body.id").segments(), &[k("body"), k("id")]);
        assert_eq!(
            path("body.items[0].id").segments(),
            &[k("body"), k("items"), Segment::Index(0), k("id")]
        );
        assert_eq!(path("[1].from").segments(), &[Segment::Index(1), k("from")]);
        assert_eq!(path("$[1]").segments(), &[Segment::Index(1)]);
        assert_eq!(path("a[0][2]").segments().len(), 3);
        assert_eq!(path("type"), JsonPath(vec![k("type")]));
    }

    #[test]
    fn bad_paths_say_why() {
        for (bad, says) in [
            ("", "empty"),
            ("a..b", "empty field name"),
            ("a.", "empty field name"),
            ("a[x]", "array index"),
            ("a[-1]", "array index"),
            ("a[0", "unclosed"),
            ("a]", "unexpected `]`"),
            ("$x", "expected `.`"),
        ] {
            let e = JsonPath::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let deep = vec!["a"; MAX_PATH_DEPTH + 1].join(".");
        assert!(JsonPath::parse(&deep).unwrap_err().contains("limit is 32"));
        let long = "a".repeat(MAX_PATH_BYTES + 1);
        assert!(JsonPath::parse(&long).unwrap_err().contains("limit is 256"));
    }

    #[test]
    fn paths_find_values() {
        let v = json!({"body": {"id": 7, "items": [{"id": "x"}, {"id": "y"}]}});
        assert_eq!(path("$.body.id").get(&v), Some(&json!(7)));
        assert_eq!(path("body.items[1].id").get(&v), Some(&json!("y")));
        assert_eq!(path("body.items[2].id").get(&v), None);
        assert_eq!(path("body.id.deeper").get(&v), None);
        assert_eq!(path("$").get(&v), Some(&v));
    }

    #[test]
    fn framed_json_is_read_from_its_first_bracket() {
        assert_eq!(read_json(r#"{"a":1}"#), Some(json!({"a": 1})));
        assert_eq!(
            read_json(r#"42["chat",{"from":"g1"}]"#),
            Some(json!(["chat", {"from": "g1"}]))
        );
        assert_eq!(
            read_json(r#"431[{"ok":true}]"#),
            Some(json!([{"ok": true}]))
        );
        assert_eq!(read_json(r#"0{"sid":"s"}"#), Some(json!({"sid": "s"})));
        assert_eq!(read_json("2"), Some(json!(2)));
        assert_eq!(read_json("hello"), None);
        assert_eq!(read_json("x{broken"), None);
    }

    #[test]
    fn captured_text_and_loose_equality() {
        let v = json!({"s": "a", "n": 5, "b": true, "o": {"k": 1}, "big": "x".repeat(MAX_CAPTURE_BYTES + 1)});
        assert_eq!(capture_json(&v, &path("s")).as_deref(), Some("a"));
        assert_eq!(capture_json(&v, &path("n")).as_deref(), Some("5"));
        assert_eq!(capture_json(&v, &path("o")).as_deref(), Some(r#"{"k":1}"#));
        assert_eq!(capture_json(&v, &path("missing")), None);
        assert_eq!(capture_json(&v, &path("big")), None, "too long is a miss");
        assert!(equals_text(&json!("a"), "a"));
        assert!(equals_text(&json!(5), "5"));
        assert!(equals_text(&json!(true), "true"));
        assert!(!equals_text(&json!("5 "), "5"));
        assert!(!equals_text(&json!({"k": 1}), r#"{"k":1}"#));
    }

    #[cfg(feature = "runtime")]
    #[test]
    fn regex_captures_a_group() {
        let re = regex::Regex::new(r"id=(\d+)(x)?").unwrap();
        assert_eq!(capture_regex("a id=42 b", &re, 1).as_deref(), Some("42"));
        assert_eq!(capture_regex("a id=42 b", &re, 0).as_deref(), Some("id=42"));
        assert_eq!(
            capture_regex("a id=42 b", &re, 2),
            None,
            "group did not take part"
        );
        assert_eq!(capture_regex("nothing", &re, 1), None);
    }

    #[test]
    fn variable_names() {
        assert!(valid_var_name("guest"));
        assert!(valid_var_name("conv_id-2"));
        assert!(!valid_var_name(""));
        assert!(!valid_var_name("a.b"));
        assert!(!valid_var_name("a b"));
        assert!(!valid_var_name(&"a".repeat(65)));
    }
}
