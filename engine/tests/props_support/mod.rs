//! Generators for the property tests (`props.rs`): valid plans as JSON (every field,
//! every default), junk values, and edits that break a plan in one place.
#![allow(dead_code, unreachable_pub)]

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{json, Map, Value};

mod session;
pub(crate) use session::*;

// ---------------------------------------------------------------------------------
// Generators of valid plans (as JSON, so plans get every field's default)
// ---------------------------------------------------------------------------------

/// A duration of about `lo_ms..=hi_ms`, written as users write them: `250ms`, `2s`,
/// `1.5s`, `5m`, `2.25ms`, or a JSON number of seconds.
pub(crate) fn dur(lo_ms: u64, hi_ms: u64) -> impl Strategy<Value = Value> {
    (lo_ms..=hi_ms, 0u8..7, 1u32..1000).prop_map(move |(ms, form, micros)| match form {
        0 => json!(format!("{ms}ms")),
        1 if ms.is_multiple_of(1000) => json!(format!("{}s", ms / 1000)),
        2 if ms.is_multiple_of(60_000) => json!(format!("{}m", ms / 60_000)),
        3 => json!(format!("{}s", ms as f64 / 1000.0)),
        4 => json!(ms as f64 / 1000.0),
        // Sub-millisecond digits, within the range.
        5 if ms < hi_ms => json!(format!("{ms}.{micros:03}ms")),
        6 if ms < hi_ms => json!((ms as f64 + f64::from(micros) / 1000.0) / 1000.0),
        _ => json!(format!("{ms}ms")),
    })
}

/// Template text: literals and known variables (`{{var.*}}` needs a capture, so none).
pub(crate) fn template_text() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        4 => "[a-zA-Z0-9 .:/_-]{0,10}",
        1 => select(vec!["{{vu}}", "{{ attempt }}", "{{uuid}}", "{{now_ms}}", "{{token}}", "{{env.HOME}}"]).prop_map(str::to_string),
    ];
    proptest::collection::vec(part, 0..5).prop_map(|p| p.concat())
}

pub(crate) fn target() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        1u16..,
        "[a-z]{0,8}",
        select(vec!["", "/{{vu}}", "?cap=5&tag=t{{vu}}"]),
    )
        .prop_map(|(tls, port, path, tail)| {
            let scheme = if tls { "wss" } else { "ws" };
            format!("{scheme}://127.0.0.1:{port}/{path}{tail}")
        })
}

pub(crate) fn stages() -> impl Strategy<Value = Value> {
    proptest::collection::vec((dur(1, 600_000), 0u32..=19_000), 1..5).prop_map(|v| {
        Value::Array(
            v.into_iter()
                .map(|(d, c)| json!({"duration": d, "connections": c}))
                .collect(),
        )
    })
}

pub(crate) fn headers() -> impl Strategy<Value = Value> {
    proptest::collection::btree_map("[A-Za-z][A-Za-z0-9_-]{0,15}", template_text(), 0..4).prop_map(
        |m| {
            let reserved = [
                "host",
                "upgrade",
                "connection",
                "sec-websocket-key",
                "sec-websocket-version",
            ];
            Value::Object(
                m.into_iter()
                    .filter(|(k, _)| !reserved.contains(&k.to_ascii_lowercase().as_str()))
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect(),
            )
        },
    )
}

pub(crate) fn expect() -> impl Strategy<Value = Value> {
    let matcher = prop_oneof![
        1 => Just(Map::new()),
        1 => template_text().prop_map(|t| Map::from_iter([("contains".into(), json!(t))])),
        3 => matcher(false),
        1 => select(vec!["^a+$", "pong", "\\d+", "(?i)hello"])
            .prop_map(|r| Map::from_iter([("regex".into(), json!(r))])),
        1 => (
            "[a-z]{1,8}",
            proptest::option::of(prop_oneof![
                "[a-z]{0,5}".prop_map(Value::from),
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
    ];
    (matcher, proptest::option::of(dur(1, 600_000)), captures()).prop_map(|(mut m, t, c)| {
        if let Some(t) = t {
            m.insert("timeout".into(), t);
        }
        if c.as_object().is_some_and(|c| !c.is_empty()) {
            m.insert("capture".into(), c);
        }
        json!({ "expect": m })
    })
}

/// One step that is not a repeat.
pub(crate) fn flat_step() -> impl Strategy<Value = Value> {
    prop_oneof![
        template_text().prop_map(|t| json!({ "send": t })),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(|b| {
            json!({ "send_binary": b.iter().map(|x| format!("{x:02x}")).collect::<String>() })
        }),
        expect(),
        dur(0, 60_000).prop_map(|d| json!({ "wait": d })),
        (dur(0, 60_000), dur(0, 60_000))
            .prop_map(|(d, j)| json!({"wait": {"duration": d, "jitter": j}})),
        dur(1, 60_000).prop_map(|d| json!({ "ping": d })),
        Just(json!("close")),
    ]
}

pub(crate) fn script() -> impl Strategy<Value = Value> {
    let repeat = (
        dur(1, 60_000),
        proptest::option::of(1u32..100),
        proptest::collection::vec(flat_step(), 1..4),
    )
        .prop_map(|(every, times, steps)| {
            let mut r = json!({"every": every, "steps": steps});
            if let Some(t) = times {
                r["times"] = json!(t);
            }
            json!({ "repeat": r })
        });
    proptest::collection::vec(prop_oneof![4 => flat_step(), 1 => repeat], 0..6)
        .prop_map(Value::Array)
}

pub(crate) fn reconnect() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"mode": "never"})),
        (1u32..=1000, 1u64..=10_000, 0u64..=50_000, any::<bool>()).prop_map(
            |(attempts, initial, extra, honor)| json!({
                "mode": "backoff",
                "max_attempts": attempts,
                "initial": format!("{initial}ms"),
                "max": format!("{}ms", initial + extra),
                "honor_retry_after": honor,
            })
        ),
    ]
}

pub(crate) fn auth() -> impl Strategy<Value = Value> {
    let source = prop_oneof![
        proptest::collection::vec("[a-z0-9-]{1,12}", 1..4)
            .prop_map(|t| json!({"type": "static", "tokens": t})),
        (
            "[a-z]{1,8}",
            "[a-zA-Z0-9]{1,12}",
            proptest::option::of("[a-z:]{1,10}")
        )
            .prop_map(|(id, secret, scope)| {
                let mut s = json!({
                    "type": "oauth2",
                    "token_url": "http://127.0.0.1:9/oauth/token",
                    "client_id": id,
                    "client_secret": secret,
                });
                if let Some(sc) = scope {
                    s["scope"] = json!(sc);
                }
                s
            }),
    ];
    let policy = prop_oneof![
        Just(json!({"mode": "shared"})),
        (1u32..=100).prop_map(|n| json!({"mode": "pool", "size": n})),
        (1u32..=100).prop_map(|n| json!({"mode": "per_connections", "connections": n})),
        Just(json!({"mode": "per_connection"})),
    ];
    (
        source,
        policy,
        select(vec!["Authorization", "", "X-Token"]),
        dur(0, 120_000),
        proptest::option::of(rotation()),
    )
        .prop_map(|(source, policy, header, refresh, rotation)| {
            let mut a = json!({"source": source, "policy": policy, "header": header,
                   "value": "Bearer {{token}}", "refresh_before": refresh});
            // Static tokens never expire: rotation is for OAuth2 sources only.
            if let (Some(r), "oauth2") = (rotation, a["source"]["type"].as_str().unwrap_or("")) {
                a["rotation"] = r;
            }
            a
        })
}

pub(crate) fn http_steps() -> impl Strategy<Value = Value> {
    let step = (
        select(vec!["GET", "POST", "PUT", "DELETE"]),
        template_text(),
        proptest::option::of(template_text()),
    )
        .prop_map(|(method, header, body)| {
            let mut s = json!({
                "method": method,
                "url": "http://127.0.0.1:9/session/{{vu}}",
                "headers": {"X-Trace": header},
                "capture": {"sid": "session_id"},
            });
            if let Some(b) = body {
                s["body"] = json!(b);
            }
            s
        });
    proptest::collection::vec(step, 0..3).prop_map(Value::Array)
}

pub(crate) fn thresholds() -> impl Strategy<Value = Value> {
    proptest::sample::subsequence(
        vec![
            ("handshake_failure_rate", "< 1%"),
            ("ws_connecting.p95", "< 300ms"),
            ("drops", "== 0"),
            ("ws_rtt.p99", "<= 1s"),
            ("opened", ">= 10"),
        ],
        0..=5,
    )
    .prop_map(|v| Value::Object(v.into_iter().map(|(k, e)| (k.into(), json!(e))).collect()))
}

pub(crate) fn probe() -> impl Strategy<Value = Value> {
    (1u32..=19_000, 1u32..=20_000, 8u64..=3600).prop_map(|(c, r, d)| {
        json!({"max_connections": c, "max_connect_rate": r as f64 / 2.0 + 0.5, "max_duration": format!("{d}s")})
    })
}

/// A plan `validate` should accept, as JSON; optional fields only sometimes present.
pub(crate) fn valid_plan() -> impl Strategy<Value = Value> {
    let core = (
        "[a-zA-Z0-9][a-zA-Z0-9 _.-]{0,30}",
        target(),
        stages(),
        proptest::option::of(1u32..=40_000),
        proptest::option::of(dur(10, 300_000)),
        headers(),
        proptest::collection::vec("[a-z0-9.]{1,10}", 0..3),
        script(),
    );
    let extra = (
        reconnect(),
        proptest::collection::vec(1u8..=254, 0..3),
        any::<bool>(),
        proptest::option::of(auth()),
        proptest::option::of(probe()),
        http_steps(),
        thresholds(),
        any::<bool>(),
        proptest::option::of(dur(0, 60_000)),
    );
    (
        core,
        extra,
        vars(),
        responders(),
        proptest::option::of(sessions()),
    )
        .prop_map(
            |(
                (name, target, stages, rate, timeout, headers, protocols, script),
                (reconnect, sources, insecure, auth, probe, http_steps, thresholds, abort, grace),
                vars,
                responders,
                sessions,
            )| {
                let mut p = json!({"name": name, "target": target, "stages": stages,
                "headers": headers, "subprotocols": protocols, "script": script,
                "reconnect": reconnect, "insecure_tls": insecure, "http_steps": http_steps,
                "thresholds": thresholds, "abort_on_fail": abort});
                if let Some(r) = rate {
                    p["max_connect_rate"] = json!(f64::from(r) / 2.0);
                }
                if let Some(t) = timeout {
                    p["connect_timeout"] = t;
                }
                if !sources.is_empty() {
                    p["source_addrs"] = json!(sources
                        .iter()
                        .map(|n| format!("127.0.0.{n}"))
                        .collect::<Vec<_>>());
                }
                if let Some(a) = auth {
                    p["auth"] = a;
                }
                if let Some(pr) = probe {
                    p["probe"] = pr;
                }
                if let Some(g) = grace {
                    p["abort_grace"] = g;
                }
                p["vars"] = vars;
                p["responders"] = responders;
                // The open model for sessions sets the load instead of stages (and a probe).
                if let Some(s) = sessions {
                    p["sessions"] = s;
                    p["stages"] = json!([]);
                    if let Some(o) = p.as_object_mut() {
                        o.remove("probe");
                    }
                }
                p
            },
        )
}

// ---------------------------------------------------------------------------------
// Junk and mutations
// ---------------------------------------------------------------------------------

/// Field names and enum words of the plan, so junk objects reach deep into it.
pub(crate) const WORDS: &[&str] = &[
    "name",
    "target",
    "stages",
    "duration",
    "connections",
    "max_connect_rate",
    "connect_timeout",
    "headers",
    "subprotocols",
    "script",
    "send",
    "send_binary",
    "expect",
    "contains",
    "regex",
    "json_field",
    "equals",
    "vars",
    "capture",
    "json",
    "group",
    "responders",
    "reply",
    "text",
    "prefix",
    "timeout",
    "wait",
    "jitter",
    "ping",
    "repeat",
    "every",
    "times",
    "steps",
    "close",
    "reconnect",
    "mode",
    "max_attempts",
    "initial",
    "max",
    "honor_retry_after",
    "source_addrs",
    "insecure_tls",
    "auth",
    "source",
    "type",
    "tokens",
    "token_url",
    "client_id",
    "client_secret",
    "scope",
    "audience",
    "env",
    "policy",
    "size",
    "header",
    "value",
    "refresh_before",
    "rotation",
    "reauth",
    "message",
    "sessions",
    "arrivals",
    "stay",
    "dist",
    "probe",
    "max_connections",
    "max_duration",
    "http_steps",
    "method",
    "url",
    "body",
    "capture",
    "thresholds",
    "abort_on_fail",
    "abort_grace",
    "never",
    "backoff",
    "static",
    "oauth2",
    "shared",
    "pool",
    "per_connections",
    "per_connection",
];

/// Strings that have broken parsers before, or might.
pub(crate) const NASTY: &[&str] = &[
    "",
    " ",
    "{{",
    "}}",
    "{{}}",
    "{{ }}",
    "{{nope}}",
    "{{env.}}",
    "{{var.}}",
    "{{var.x}}",
    "{{env.A=B}}",
    "{{env.\u{0}}}",
    "-1s",
    "1e999",
    "NaN",
    "inf",
    "1.5ms",
    "0.0001s",
    "0.3s",
    "99999999999999999999h",
    "8760h",
    "8761h",
    ".",
    "..",
    "1..2s",
    "ms",
    "\u{0}",
    "<redacted>",
    "ws://",
    "wss://[::1",
    "ws://h:99999/",
    "http://x",
    "ws://127.0.0.1:1/{{vu",
    "é",
    "🦀🦀",
    "\r\n",
    "a\nb",
    "< 1%",
    "<",
    "== ",
    ">= 1e308",
    "ws_rtt.p99",
    "ws_rtt.",
    "(",
    "[",
    "\\",
    "zz",
    "0",
    "-0",
    "00",
    "255.255.255.255",
    "::1",
    "GET",
    "get",
];

pub(crate) fn junk() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(json!(u64::MAX)),
        any::<f64>().prop_map(Value::from),
        select(NASTY).prop_map(Value::from),
        select(WORDS).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((select(WORDS), inner), 0..4).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

/// Numbers at the edges of what fields hold.
pub(crate) const EDGE_NUMBERS: &[f64] = &[
    0.0,
    -0.0,
    -1.0,
    0.5,
    1.0,
    1e-9,
    255.0,
    65_535.0,
    65_536.0,
    4_294_967_295.0,
    4_294_967_296.0,
    31_536_000.0,
    31_536_001.0,
    9.007_199_254_740_993e15,
    1e308,
    -1e308,
];

/// One change somewhere in a JSON tree: `path` picks a child at each level.
#[derive(Debug, Clone)]
pub(crate) enum Edit {
    Replace(Vec<u32>, Value),
    /// Replace a leaf by another of its kind (string by string, number by number), so
    /// the plan still parses more often and `validate` gets to judge it.
    Retype(Vec<u32>, u32),
    Remove(Vec<u32>),
    Insert(Vec<u32>, String, Value),
}

pub(crate) fn edit() -> impl Strategy<Value = Edit> {
    let path = || proptest::collection::vec(any::<u32>(), 0..6);
    prop_oneof![
        2 => (path(), junk()).prop_map(|(p, v)| Edit::Replace(p, v)),
        3 => (path(), any::<u32>()).prop_map(|(p, pick)| Edit::Retype(p, pick)),
        1 => path().prop_map(Edit::Remove),
        1 => (path(), select(WORDS), junk()).prop_map(|(p, k, v)| Edit::Insert(p, k.into(), v)),
    ]
}

/// Walks down `path` (each step picks a child modulo the count) as far as it goes.
pub(crate) fn walk<'a>(v: &'a mut Value, path: &[u32]) -> (&'a mut Value, Option<u32>) {
    let Some((&first, rest)) = path.split_first() else {
        return (v, None);
    };
    let len = match v {
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        _ => 0,
    };
    if len == 0 || rest.is_empty() {
        return (v, Some(first));
    }
    let i = first as usize % len;
    let child = match v {
        Value::Array(a) => &mut a[i],
        Value::Object(o) => o.values_mut().nth(i).unwrap(),
        _ => unreachable!("len > 0 only for arrays and objects"),
    };
    walk(child, rest)
}

pub(crate) fn apply(v: &mut Value, e: &Edit) {
    match e {
        Edit::Replace(path, new) => *walk(v, path).0 = new.clone(),
        Edit::Retype(path, pick) => {
            let at = walk(v, path).0;
            let i = *pick as usize;
            match at {
                Value::String(_) => *at = json!(NASTY[i % NASTY.len()]),
                Value::Number(_) => {
                    let x = EDGE_NUMBERS[i % EDGE_NUMBERS.len()];
                    *at = if x.fract() == 0.0 && x.abs() < 9e15 && i.is_multiple_of(2) {
                        json!(x as i64)
                    } else {
                        json!(x)
                    };
                }
                Value::Bool(b) => *b = !*b,
                _ => {}
            }
        }
        Edit::Remove(path) => {
            if let (parent, Some(pick)) = walk(v, path) {
                match parent {
                    Value::Array(a) if !a.is_empty() => {
                        let i = pick as usize % a.len();
                        a.remove(i);
                    }
                    Value::Object(o) if !o.is_empty() => {
                        let k = o.keys().nth(pick as usize % o.len()).unwrap().clone();
                        o.remove(&k);
                    }
                    _ => {}
                }
            }
        }
        Edit::Insert(path, key, new) => {
            if let Value::Object(o) = walk(v, path).0 {
                o.insert(key.clone(), new.clone());
            }
        }
    }
}
