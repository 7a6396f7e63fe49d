//! The redaction rule applied to whole plans: what is shown, what is scrubbed, what a
//! stored plan asks for again, and that nothing hidden is ever run as the placeholder.

use super::*;
use crate::plan::TokenSource;

fn plan(v: serde_json::Value) -> Plan {
    let mut base = serde_json::json!({
        "name": "p", "target": "ws://127.0.0.1:1/echo",
        "stages": [{"duration": "1s", "connections": 1}]
    });
    if let serde_json::Value::Object(fields) = v {
        for (k, x) in fields {
            base[k.as_str()] = x;
        }
    }
    serde_json::from_value(base).unwrap()
}

#[test]
fn urls_show_what_is_connected_with_secrets_hidden() {
    let none = Public(&[]);
    assert_eq!(
        redact_url(
            "wss://user:pw@h.example:1/p?access_token=abc&x=1&tenant={{vu}}&session_cap=150",
            none
        ),
        "wss://<redacted>@h.example:1/p?access_token=<redacted>&x=1&tenant={{vu}}&session_cap=150"
    );
    assert_eq!(redact_url("ws://h.example:1/p", none), "ws://h.example:1/p");
    assert_eq!(
        redact_url(
            "ws://h.example:1/ws/9f1e77abc0d1/x?jwt=eyJhbGciOiJIUzI1NiJ9.e30.x1Y2z3",
            none
        ),
        "ws://h.example:1/ws/<redacted>/x?jwt=<redacted>"
    );
    let public = ["path".to_string(), "jwt".to_string()];
    assert_eq!(
        redact_url(
            "ws://h.example:1/ws/9f1e77abc0d1?jwt=a1b2c3d4e5",
            Public(&public)
        ),
        "ws://h.example:1/ws/9f1e77abc0d1?jwt=a1b2c3d4e5"
    );
    // What no reader agrees on is never shown as something else.
    assert_eq!(
        redact_url("ws://127.0.0.2:18090\\@127.0.0.1:18095/echo", none),
        REDACTED
    );
}

#[test]
fn percent_encoded_and_nested_secrets_are_hidden_and_scrubbed() {
    // `sk_live_…` percent-encoded in a query value and a path segment.
    let p = plan(serde_json::json!({
        "target": "ws://127.0.0.1:1/ws/sk%5Flive%5F9fQ2xLm7Rt?k=sk%5Flive%5F9fQ2xLm7Rt&n=1",
        "http_steps": [{"method": "POST", "url": "http://127.0.0.1:2/s",
            "body": r#"{"user":{"name":"guest","credentials":{"otp":123456}},"lang":"en"}"#}]
    }));
    let r = p.redacted();
    assert_eq!(r.target, "ws://127.0.0.1:1/ws/<redacted>?k=<redacted>&n=1");
    assert_eq!(r.http_steps[0].body.as_deref(), Some(REDACTED));
    let s = Secrets::of_plan(&p);
    assert_eq!(
        s.scrub("echo sk_live_9fQ2xLm7Rt and sk%5Flive%5F9fQ2xLm7Rt"),
        "echo <redacted> and <redacted>"
    );
    assert_eq!(s.scrub("otp 123456"), "otp <redacted>");
}

#[test]
fn values_are_scrubbed_raw_and_percent_encoded() {
    let mut s = Secrets::default();
    s.add("Bearer CANARY-123456");
    s.add("ab"); // too short to scrub
    assert_eq!(s.scrub("x CANARY-123456 y"), "x <redacted> y");
    assert_eq!(s.scrub("cap=CANARY-123456"), "cap=<redacted>");
    let mut e = Secrets::default();
    e.add("a b/c+d=secret");
    assert_eq!(e.scrub("q=a+b%2Fc%2Bd%3Dsecret"), "q=<redacted>");
    assert_eq!(s.scrub("ab"), "ab");
    // A hidden template: its key-like literal, alone too; never the structure.
    let mut h = Secrets::default();
    h.add_hidden("Basic dXNlcjpwYXNz{{vu}}");
    assert_eq!(h.scrub("echo dXNlcjpwYXNz"), "echo <redacted>");
    assert_eq!(h.scrub("Basic realm"), "Basic realm");
}

#[test]
fn every_kind_of_value_a_plan_brings_is_judged() {
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJndWVzdCJ9.q7ZfT3kPx9LmW2vBn8sRt";
    let p = plan(serde_json::json!({
        "target": format!("ws://127.0.0.1:1/echo?jwt={jwt}&session_cap=150"),
        "headers": {"X-Jwt": jwt, "X-Client-Version": "2.1.0", "Authorization": "Bearer {{token}}"},
        "subprotocols": ["graphql-ws", format!("base64url.bearer.authorization.k8s.io.{jwt}")],
        "vars": {"guest": "guest-{{vu}}-{{uuid}}", "who": jwt},
        "script": [{"send": format!("hello {jwt}")}],
        "http_steps": [{"method": "POST",
            "url": format!("http://u:pw-9f1e77@127.0.0.1:2/s?client_secret={jwt}&lang=en"),
            "headers": {"X-Api-Key": "k3y-VALUE-77", "Accept": "application/json"},
            "body": r#"{"user":"guest","password":"letmein"}"#}],
        "auth": {"source": {"type": "oauth2",
            "token_url": "http://tu:pw-tok-9f@127.0.0.1:3/token?api_key=sk9f1e77aa&password=hunter2&realm=main",
            "client_id": "c-id", "client_secret": "sec-9f1e77"}}
    }));
    let r = p.redacted();
    let text = serde_json::to_string(&r).unwrap();
    for secret in [
        "q7ZfT3kPx9LmW2vBn8sRt",
        "pw-9f1e77",
        "k3y-VALUE-77",
        "letmein",
        "pw-tok-9f",
        "sk9f1e77aa",
        "hunter2",
        "sec-9f1e77",
    ] {
        assert!(!text.contains(secret), "{secret} shown: {text}");
    }
    assert_eq!(
        r.target,
        "ws://127.0.0.1:1/echo?jwt=<redacted>&session_cap=150"
    );
    assert_eq!(r.headers["X-Client-Version"], "2.1.0");
    assert_eq!(r.headers["Authorization"], "Bearer {{token}}");
    assert_eq!(r.subprotocols[0], "graphql-ws");
    assert_eq!(r.vars["guest"], "guest-{{vu}}-{{uuid}}");
    assert_eq!(r.http_steps[0].headers["Accept"], "application/json");
    assert_eq!(
        r.http_steps[0].url,
        "http://<redacted>@127.0.0.1:2/s?client_secret=<redacted>&lang=en"
    );
    match &r.auth.as_ref().unwrap().source {
        TokenSource::Oauth2 {
            token_url,
            client_id,
            ..
        } => {
            assert_eq!(
                token_url,
                "http://<redacted>@127.0.0.1:3/token?api_key=<redacted>&password=<redacted>&realm=main"
            );
            assert_eq!(client_id, "c-id");
        }
        other => panic!("{other:?}"),
    }
    // Repeated elsewhere: scrubbed by value.
    assert_eq!(
        r.script,
        vec![crate::plan::Step::Send("hello <redacted>".into())]
    );
}

#[test]
fn a_plan_with_nothing_secret_is_stored_as_it_is() {
    for text in [
        include_str!("../../../examples/web-messaging-guests.json"),
        include_str!("../../../examples/socketio-chat.json"),
    ] {
        let p: Plan = serde_json::from_str(text).unwrap();
        assert_eq!(p.redacted(), p, "{}", p.name);
        assert!(p.placeholders().is_empty());
    }
    let t: Plan = toml::from_str(crate::plan::TEMPLATE).unwrap();
    assert_eq!(t.redacted(), t);
}

#[test]
fn placeholders_never_run() {
    let p = plan(serde_json::json!({
        "target": "ws://127.0.0.1:1/echo?session_cap=<redacted>",
        "headers": {"X-K": "<redacted>"},
        "subprotocols": ["<redacted>"],
        "script": [{"send": "x <redacted>"}],
        "auth": {"source": {"type": "static", "tokens": ["<redacted>"]}}
    }));
    let fields: Vec<String> = p
        .validate(&crate::Limits::default())
        .unwrap_err()
        .into_iter()
        .map(|e| e.field)
        .collect();
    for f in [
        "target",
        "headers.X-K",
        "subprotocols[0]",
        "script[0].send",
        "auth.source.tokens[0]",
    ] {
        assert_eq!(
            fields.iter().filter(|x| *x == f).count(),
            1,
            "{f} named once: {fields:?}"
        );
    }
}

fn oauth_plan(secret: &str) -> Plan {
    plan(serde_json::json!({
        "name": "oauth",
        "target": "ws://u:pw-9f1e@127.0.0.1:1/echo?access_token=tok-typed-1&tag=a",
        "headers": {"X-Api-Key": "KEY-VALUE-1"},
        "auth": {"source": {"type": "oauth2", "token_url": "http://127.0.0.1:1/oauth/token",
            "client_id": "c", "client_secret": secret}}
    }))
}

#[test]
fn a_stored_plan_names_the_secrets_it_did_not_keep_and_takes_them_back() {
    let stored = oauth_plan("s3cret-typed").redacted();
    let missing = stored.missing_secrets();
    let keys: Vec<&str> = missing.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "auth.source.client_secret",
            "headers.X-Api-Key",
            "target#1",
            "target#2"
        ]
    );
    assert_eq!(
        missing[0].label,
        "OAuth client secret for token endpoint http://127.0.0.1:1/oauth/token"
    );
    assert_eq!(missing[1].label, "Value of handshake header X-Api-Key");
    assert!(
        missing[2].label.starts_with("The user info"),
        "{}",
        missing[2].label
    );
    assert!(
        missing[3]
            .label
            .starts_with("The value of query parameter `access_token` in the target URL ws://<redacted>@127.0.0.1:1/"),
        "{}",
        missing[3].label
    );
    // A plan with nothing typed in misses nothing.
    let env = plan(serde_json::json!({
        "auth": {"source": {"type": "oauth2", "token_url": "http://h/t", "client_id": "c",
            "client_secret": {"env": "SOME_VAR"}}}
    }));
    assert!(env.redacted().missing_secrets().is_empty());

    // One missing and one unknown key: both named, nothing filled.
    let mut p = stored.clone();
    let given = std::collections::BTreeMap::from([
        ("auth.source.client_secret".to_string(), "again".to_string()),
        ("auth.nope".to_string(), "x".to_string()),
    ]);
    let errs = p.fill_secrets(&given).unwrap_err();
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "secrets.headers.X-Api-Key",
            "secrets.target#1",
            "secrets.target#2",
            "secrets.auth.nope"
        ]
    );
    assert_eq!(p, stored);

    // All given: the plan holds them, and redacting it again hides them again.
    let given = std::collections::BTreeMap::from([
        (
            "auth.source.client_secret".to_string(),
            "again-1".to_string(),
        ),
        ("headers.X-Api-Key".to_string(), "KEY-2".to_string()),
        ("target#1".to_string(), "u:pw-2".to_string()),
        ("target#2".to_string(), "tok-2".to_string()),
    ]);
    p.fill_secrets(&given).unwrap();
    assert!(p.missing_secrets().is_empty());
    assert!(p.placeholders().is_empty());
    match &p.auth.as_ref().unwrap().source {
        TokenSource::Oauth2 { client_secret, .. } => {
            assert_eq!(client_secret.resolve().as_deref(), Some("again-1"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.headers["X-Api-Key"], "KEY-2");
    assert_eq!(
        p.target,
        "ws://u:pw-2@127.0.0.1:1/echo?access_token=tok-2&tag=a"
    );
    assert_eq!(p.redacted(), stored);
}
