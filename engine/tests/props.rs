//! Property tests of what users type: plans (JSON as the API reads them, TOML as the
//! CLI reads plan files), their validation, and templates.
//!
//! - Any text, and any mutation of a valid plan (a value replaced or removed anywhere,
//!   bytes of its JSON corrupted), either parses or is an error, never a panic; what
//!   parses validates without panicking, and the same way twice.
//! - A generated valid plan passes `validate`, and survives serialize -> parse as JSON
//!   and as TOML unchanged.
//! - Issue 14's fields (vars, captures, responders, JSON paths, the `sessions` open
//!   model, `auth.rotation`): generated ones
//!   validate and round-trip (inside the plans above); one bad value is an error naming
//!   its field and limit; JSON paths find what they name.
//! - Templates: anything parses or errs without panicking, text without `{{` renders
//!   to itself, `{{vu}}` renders the VU number, an unknown variable is an error naming it.
//!
//! Run: `cargo test -p engine --test props` (default 256 cases per property, a few
//! seconds). A failure prints the minimal input; keep it as a unit test beside the fix.
#![allow(clippy::unwrap_used)]

mod props_support;

use engine::plan::{Limits, Plan};
use engine::template::{Template, Vars};
use props_support::*;
use proptest::prelude::*;
use proptest::sample::select;

// ---------------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------------

/// Whatever parsed validates without panicking, and the same way twice.
fn validates_deterministically(plan: &Plan) -> Result<(), TestCaseError> {
    let limits = Limits::default();
    let first = plan.validate(&limits);
    prop_assert_eq!(&first, &plan.validate(&limits));
    if let Err(errs) = &first {
        prop_assert!(errs
            .iter()
            .all(|e| !e.field.is_empty() && !e.message.is_empty()));
    }
    Ok(())
}

/// Parses `text` as a JSON plan and as a TOML plan; each parses or errs.
fn parses_or_errs(text: &str) -> Result<(), TestCaseError> {
    if let Ok(p) = serde_json::from_str::<Plan>(text) {
        validates_deterministically(&p)?;
    }
    if let Ok(p) = toml::from_str::<Plan>(text) {
        validates_deterministically(&p)?;
    }
    Ok(())
}

proptest! {
    #[test]
    fn any_text_is_a_plan_or_an_error(text in any::<String>()) {
        parses_or_errs(&text)?;
    }

    #[test]
    fn toml_ish_lines_are_a_plan_or_an_error(
        lines in proptest::collection::vec((select(WORDS), select(NASTY), 0u8..4), 0..8)
    ) {
        let text: String = lines
            .iter()
            .map(|(k, v, form)| match form {
                0 => format!("{k} = {v:?}\n"),
                1 => format!("[{k}]\n"),
                2 => format!("[[{k}]]\n"),
                _ => format!("{k} = {v}\n"),
            })
            .collect();
        parses_or_errs(&text)?;
    }

    #[test]
    fn mutated_plans_are_plans_or_errors(
        plan in valid_plan(),
        edits in proptest::collection::vec(edit(), 1..4),
    ) {
        let mut v = plan;
        for e in &edits {
            apply(&mut v, e);
        }
        if let Ok(p) = serde_json::from_value::<Plan>(v.clone()) {
            validates_deterministically(&p)?;
        }
        parses_or_errs(&v.to_string())?;
        if let Ok(text) = toml::to_string(&v) {
            parses_or_errs(&text)?;
        }
    }

    #[test]
    fn plans_with_edge_values_validate_the_same_way_twice(
        plan in valid_plan(),
        picks in proptest::collection::vec((proptest::collection::vec(any::<u32>(), 1..6), any::<u32>()), 1..4),
    ) {
        let mut v = plan;
        for (path, pick) in picks {
            apply(&mut v, &Edit::Retype(path, pick));
        }
        if let Ok(p) = serde_json::from_value::<Plan>(v) {
            validates_deterministically(&p)?;
            if let Ok(text) = toml::to_string(&p) {
                parses_or_errs(&text)?;
            }
        }
    }

    #[test]
    fn corrupted_plan_json_is_a_plan_or_an_error(
        plan in valid_plan(),
        cuts in proptest::collection::vec((any::<u32>(), select(vec!["", "{", "}", "\"", ",", ":", "[", "]", "0", "-", "\\", "é"])), 1..4),
    ) {
        let mut text = plan.to_string();
        for (at, with) in cuts {
            let mut i = at as usize % (text.len() + 1);
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            let end = (i + 1).min(text.len());
            let end = if text.is_char_boundary(end) { end } else { i };
            text.replace_range(i..end, with);
        }
        parses_or_errs(&text)?;
    }

    #[test]
    fn valid_plans_validate_and_round_trip_through_json_and_toml(v in valid_plan()) {
        let plan: Plan = serde_json::from_value(v.clone())
            .map_err(|e| TestCaseError::fail(format!("generated plan does not parse: {e}\n{v}")))?;
        let limits = Limits::default();
        prop_assert_eq!(plan.validate(&limits), Ok(()), "{}", v);

        let json_text = serde_json::to_string(&plan).unwrap();
        let from_json: Plan = serde_json::from_str(&json_text).unwrap();
        prop_assert_eq!(&from_json, &plan, "JSON: {}", json_text);

        let toml_text = toml::to_string(&plan)
            .map_err(|e| TestCaseError::fail(format!("plan cannot be written as TOML: {e}")))?;
        let from_toml: Plan = toml::from_str(&toml_text)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{toml_text}")))?;
        prop_assert_eq!(&from_toml, &plan, "TOML: {}", toml_text);
        prop_assert_eq!(from_toml.validate(&limits), Ok(()));
    }
}

proptest! {
    /// Issue 14's fields: one bad value put into a valid plan is an error naming that
    /// field (and, for sizes, the limit), whatever else the plan holds.
    #[test]
    fn a_bad_session_value_is_an_error_naming_its_field(
        v in valid_plan(),
        which in 0u8..12,
        name in var_name(),
    ) {
        let mut v = v;
        let steps = v["script"].as_array().map_or(0, Vec::len);
        let responders = v["responders"].as_array().map_or(0, Vec::len);
        let (field, says) = match which {
            0 => {
                v["vars"]["bad name"] = serde_json::json!("x");
                ("vars.bad name".to_string(), "letters, digits")
            }
            1 => {
                v["vars"][name.as_str()] = serde_json::json!("x".repeat(1025));
                (format!("vars.{name}"), "the limit is 1024")
            }
            2 => {
                v["vars"][name.as_str()] = serde_json::json!("{{var.x}}");
                (format!("vars.{name}"), "cannot use")
            }
            3 => {
                v["script"].as_array_mut().unwrap().push(serde_json::json!(
                    {"expect": {"capture": {name.as_str(): {"json": "a..b"}}}}));
                (format!("script[{steps}].expect.capture.{name}.json"), "empty field name")
            }
            4 => {
                v["script"].as_array_mut().unwrap().push(serde_json::json!(
                    {"expect": {"capture": {name.as_str(): {"regex": "(a)", "group": 2}}}}));
                (format!("script[{steps}].expect.capture.{name}.group"), "the limit is 1")
            }
            5 => {
                v["responders"].as_array_mut().unwrap().push(serde_json::json!({"reply": "3"}));
                (format!("responders[{responders}]"), "needs a matcher")
            }
            6 => {
                v["responders"].as_array_mut().unwrap().push(serde_json::json!(
                    {"text": "2", "reply": format!("{{{{var.zz_undefined_{name}}}}}")}));
                (format!("responders[{responders}].reply"), "is not defined")
            }
            8 | 9 => {
                let (rotation, field, says) = if which == 8 {
                    (serde_json::json!({"mode": "reauth", "message": ""}),
                     "auth.rotation.message", "must not be empty")
                } else {
                    (serde_json::json!({"mode": "reauth", "message": "{{token}}",
                        "expect": {"contains": "ok", "timeout": "90s"}}),
                     "auth.rotation.expect.timeout", "the limit is above 0s up to 1m")
                };
                v["auth"] = serde_json::json!({"source": {"type": "oauth2",
                    "token_url": "http://127.0.0.1:9/oauth/token", "client_id": "c",
                    "client_secret": "s"}, "rotation": rotation});
                (field.to_string(), says)
            }
            10 | 11 => {
                let stay = if which == 10 {
                    serde_json::json!({"dist": "fixed", "duration": "10s"})
                } else {
                    serde_json::json!({"dist": "log_normal", "median": "10s", "sigma": 9})
                };
                let rate = if which == 10 { 1e9 } else { 1.0 };
                v["sessions"] = serde_json::json!({"arrivals": [{"duration": "10s", "rate": rate}], "stay": stay});
                v["stages"] = serde_json::json!([]);
                v.as_object_mut().unwrap().remove("probe");
                if which == 10 {
                    ("sessions.arrivals[0].rate".to_string(), "the limit is 0 to 50000")
                } else {
                    ("sessions.stay.sigma".to_string(), "the limit is above 0 up to 3")
                }
            }
            _ => {
                v["script"].as_array_mut().unwrap().push(serde_json::json!(
                    {"expect": {"json_field": "a[x]"}}));
                (format!("script[{steps}].expect.json_field"), "array index")
            }
        };
        let plan: Plan = serde_json::from_value(v.clone())
            .map_err(|e| TestCaseError::fail(format!("does not parse: {e}\n{v}")))?;
        let errs = plan.validate(&Limits::default()).err().unwrap_or_default();
        prop_assert!(
            errs.iter().any(|e| e.field == field && e.message.contains(says)),
            "{} / {}: {:?}", field, says, errs
        );
    }
}

proptest! {
    /// JSON paths: any text parses or errs without panicking, and a generated path finds
    /// the value put where it points (also inside framed JSON, as Socket.IO frames it).
    #[test]
    fn json_paths_parse_or_err_and_find_what_they_name(text in any::<String>(), p in json_path()) {
        let _ = engine::capture::JsonPath::parse(&text);
        let path = engine::capture::JsonPath::parse(&p)
            .map_err(|e| TestCaseError::fail(format!("{p}: {e}")))?;
        // Build the value from the inside out.
        let mut v = serde_json::json!("found");
        for seg in path.segments().iter().rev() {
            v = match seg {
                engine::capture::Segment::Key(k) => serde_json::json!({ k.as_str(): v }),
                engine::capture::Segment::Index(i) => {
                    let mut a = vec![serde_json::Value::Null; *i];
                    a.push(v);
                    serde_json::Value::Array(a)
                }
            };
        }
        prop_assert_eq!(path.get(&v), Some(&serde_json::json!("found")));
        let framed = engine::capture::read_json(&format!("42{v}"));
        if v.is_object() || v.is_array() {
            prop_assert_eq!(framed.as_ref().and_then(|f| path.get(f)), Some(&serde_json::json!("found")));
        }
    }
}

// ---------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------

fn render(t: &Template, vu: u64) -> String {
    let uuid = || "00000000-0000-4000-8000-000000000000".to_string();
    t.render(&Vars {
        vu,
        attempt: 1,
        uuid: &uuid,
        now_ms: 1,
        token: "tok",
        vars: &[("sid".to_string(), "s-1".to_string())],
    })
}

const KNOWN: &[&str] = &["vu", "attempt", "uuid", "now_ms", "token"];

proptest! {
    #[test]
    fn any_template_parses_or_errs_and_renders(text in any::<String>(), vu in any::<u64>()) {
        if let Ok(t) = Template::parse(&text) {
            render(&t, vu);
        }
    }

    #[test]
    fn brace_heavy_templates_parse_or_err_and_render(
        parts in proptest::collection::vec(select(vec!["{{", "}}", "{", "}", "vu", " ", "env.", "var.", "x", "=", "é", "{{vu}}", "\u{0}"]), 0..12),
        vu in any::<u64>(),
    ) {
        if let Ok(t) = Template::parse(&parts.concat()) {
            render(&t, vu);
        }
    }

    #[test]
    fn text_without_braces_renders_to_itself(text in any::<String>(), vu in any::<u64>()) {
        prop_assume!(!text.contains("{{"));
        let t = Template::parse(&text).unwrap();
        prop_assert_eq!(render(&t, vu), text);
    }

    #[test]
    fn vu_renders_the_vu_number(
        before in "[^{]{0,12}",
        after in ".{0,12}",
        pad in select(vec!["", " ", "  "]),
        vu in any::<u64>(),
    ) {
        prop_assume!(!after.contains("{{"));
        let t = Template::parse(&format!("{before}{{{{{pad}vu{pad}}}}}{after}")).unwrap();
        prop_assert_eq!(render(&t, vu), format!("{before}{vu}{after}"));
    }

    #[test]
    fn unknown_variables_are_errors_naming_them(
        name in "[a-z_][a-z0-9_]{0,10}",
        before in "[^{]{0,8}",
        pad in select(vec!["", " "]),
    ) {
        prop_assume!(!KNOWN.contains(&name.as_str()));
        let err = Template::parse(&format!("{before}{{{{{pad}{name}{pad}}}}} and {{{{vu}}}}")).unwrap_err();
        let named = format!("`{{{{{name}}}}}`");
        prop_assert!(err.contains(&named), "{} does not name {}", err, named);
    }
}
