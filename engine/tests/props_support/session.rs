//! Generators for issue 14's plan fields: per-session `vars`, JSON paths, `capture`
//! maps, matchers (shared by `expect` and responders) and `responders`.

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{json, Map, Value};

use super::template_text;

/// A JSON path in each written form: `$`, `$.a.b`, `a[0].b`, `[1].from`.
pub(crate) fn json_path() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        "[a-z][a-z0-9_]{0,6}".prop_map(|k| format!(".{k}")),
        (0usize..5).prop_map(|i| format!("[{i}]")),
    ];
    (
        any::<bool>(),
        "[a-z][a-z0-9_]{0,6}",
        proptest::collection::vec(seg, 0..4),
    )
        .prop_map(|(dollar, first, rest)| {
            let rest = rest.concat();
            if dollar {
                format!("$.{first}{rest}")
            } else {
                format!("{first}{rest}")
            }
        })
}

/// A variable name.
pub(crate) fn var_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_-]{0,10}"
}

/// Per-session variables (their templates use no `{{var.…}}`).
pub(crate) fn vars() -> impl Strategy<Value = Value> {
    proptest::collection::btree_map(var_name(), template_text(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k, json!(v))).collect()))
}

/// `capture` maps: JSON paths and regex groups.
pub(crate) fn captures() -> impl Strategy<Value = Value> {
    let one = prop_oneof![
        json_path().prop_map(|p| json!({ "json": p })),
        (
            select(vec![
                r"id=(\d+)",
                r"^(\w+):(\w+)$",
                r"(?i)token ([a-f0-9-]+)"
            ]),
            proptest::option::of(0u32..=1)
        )
            .prop_map(|(r, g)| {
                let mut c = json!({ "regex": r });
                if let Some(g) = g {
                    c["group"] = json!(g);
                }
                c
            }),
    ];
    proptest::collection::btree_map(var_name(), one, 0..3)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// One matcher of an `expect` or responder (`required`: never "any message").
pub(crate) fn matcher(required: bool) -> BoxedStrategy<Map<String, Value>> {
    if required {
        some_matcher().boxed()
    } else {
        prop_oneof![1 => Just(Map::new()), 6 => some_matcher()].boxed()
    }
}

fn some_matcher() -> impl Strategy<Value = Map<String, Value>> {
    let one = |k: &'static str| move |t: String| Map::from_iter([(k.to_string(), json!(t))]);
    prop_oneof![
        1 => template_text().prop_map(one("text")),
        1 => template_text().prop_map(one("prefix")),
        1 => template_text().prop_map(one("contains")),
        1 => select(vec!["^a+$", "pong", "\\d+", "(?i)hello"]).prop_map(move |r| one("regex")(r.to_string())),
        2 => (
            json_path(),
            proptest::option::of(prop_oneof![
                "[a-z]{0,5}".prop_map(Value::from),
                template_text().prop_map(Value::from),
                any::<bool>().prop_map(Value::from),
                any::<i32>().prop_map(Value::from),
            ])
        )
            .prop_map(|(f, eq)| {
                let mut m = Map::from_iter([("json_field".into(), json!(f))]);
                if let Some(v) = eq {
                    m.insert("equals".into(), v);
                }
                m
            }),
    ]
}

/// Auto-responders.
pub(crate) fn responders() -> impl Strategy<Value = Value> {
    let one = (
        matcher(true),
        captures(),
        proptest::option::of(template_text()),
    )
        .prop_map(|(mut m, c, reply)| {
            if c.as_object().is_some_and(|c| !c.is_empty()) {
                m.insert("capture".into(), c);
            }
            if let Some(r) = reply {
                m.insert("reply".into(), json!(r));
            }
            Value::Object(m)
        });
    proptest::collection::vec(one, 0..3).prop_map(Value::Array)
}
