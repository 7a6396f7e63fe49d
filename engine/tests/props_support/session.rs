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

/// The open model for sessions (`sessions`): 1 to 3 arrival stages of up to 10 min at
/// up to 10 guests/s (so the run stays within the default limits) and a stay from each
/// distribution.
pub(crate) fn sessions() -> impl Strategy<Value = Value> {
    let rate = (0u32..=40).prop_map(|q| f64::from(q) / 4.0);
    let stage = (
        super::dur(1_000, 600_000),
        rate.clone(),
        proptest::option::of(rate),
    )
        .prop_map(|(d, r, to)| {
            let mut s = json!({"duration": d, "rate": r});
            if let Some(t) = to {
                s["to"] = json!(t);
            }
            s
        });
    let stay = prop_oneof![
        super::dur(1, 3_600_000).prop_map(|d| json!({"dist": "fixed", "duration": d})),
        (0u64..=60_000, 1u64..=60_000).prop_map(|(lo, extra)| json!(
            {"dist": "uniform", "min": format!("{lo}ms"), "max": format!("{}ms", lo + extra)})),
        super::dur(1, 600_000).prop_map(|m| json!({"dist": "exponential", "mean": m})),
        (super::dur(1, 600_000), 1u32..=300).prop_map(|(m, s)| json!(
            {"dist": "log_normal", "median": m, "sigma": f64::from(s) / 100.0})),
    ];
    (
        proptest::collection::vec(stage, 1..=3),
        stay,
        proptest::option::of(0u64..=i64::MAX as u64),
    )
        .prop_map(|(arrivals, stay, seed)| {
            let mut s = json!({"arrivals": arrivals, "stay": stay});
            if let Some(seed) = seed {
                s["seed"] = json!(seed);
            }
            s
        })
}

/// `auth.rotation` (for OAuth2 sources): reconnect, or a templated re-authentication
/// message with or without a reply matcher (captures included).
pub(crate) fn rotation() -> impl Strategy<Value = Value> {
    let expect = (matcher(false), captures(), super::dur(1, 60_000)).prop_map(|(mut m, c, t)| {
        if c.as_object().is_some_and(|c| !c.is_empty()) {
            m.insert("capture".into(), c);
        }
        m.insert("timeout".into(), t);
        Value::Object(m)
    });
    prop_oneof![
        Just(json!({"mode": "reconnect"})),
        (template_text(), proptest::option::of(expect)).prop_map(|(t, e)| {
            let mut r = json!({"mode": "reauth",
                "message": format!("{{\"action\":\"refresh\",\"token\":\"{{{{token}}}}\"}}{t}")});
            if let Some(e) = e {
                r["expect"] = e;
            }
            r
        }),
    ]
}
