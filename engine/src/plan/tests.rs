//! Unit tests of the plan model: parsing, defaults, redaction and restoring secrets.

use super::*;

fn minimal() -> Plan {
    serde_json::from_str(
        r#"{"name":"smoke","target":"ws://127.0.0.1:9001/echo","stages":[{"duration":"2s","connections":50},{"duration":"3s","connections":50}]}"#,
    )
    .unwrap()
}

#[test]
fn parses_minimal_plan_with_defaults() {
    let p = minimal();
    assert_eq!(p.stages.len(), 2);
    assert_eq!(p.stages[0].duration, Dur::secs(2));
    assert_eq!(p.connect_timeout, Dur::secs(10));
    assert_eq!(p.reconnect, Reconnect::Never);
    assert_eq!(p.peak_connections(), 50);
    assert_eq!(p.duration(), Duration::from_secs(5));
    assert!(p.validate(&Limits::default()).is_ok());
}

#[test]
fn redacted_secrets_come_back_from_the_stored_plan() {
    let mut stored = minimal();
    stored.auth =
        serde_json::from_str(r#"{"source":{"type":"static","tokens":["t-one","t-two"]}}"#).unwrap();
    stored.headers.insert("X-Api-Key".into(), "k-123".into());
    let mut edited = stored.redacted();
    assert!(!serde_json::to_string(&edited).unwrap().contains("t-one"));
    edited.name = "renamed".into();
    edited.restore_secrets(&stored);
    assert_eq!(edited.auth, stored.auth);
    assert_eq!(edited.headers["X-Api-Key"], "k-123");
    assert_eq!(edited.name, "renamed");
}

#[test]
fn durations_parse_and_print() {
    assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
    assert!(parse_duration("3 fortnights").is_err());
    assert!(parse_duration("").is_err());
    assert_eq!(Dur::millis(1500).to_string(), "1500ms");
    assert_eq!(Dur::secs(120).to_string(), "2m");
    let d: Dur = serde_json::from_str("7").unwrap();
    assert_eq!(d, Dur::secs(7));
}

#[test]
fn plan_durations_are_whole_milliseconds_and_round_trip() {
    let d = |json: &str| serde_json::from_str::<Dur>(json).unwrap();
    assert_eq!(d(r#""1.001ms""#), Dur::millis(1));
    assert_eq!(d(r#""1.5ms""#), Dur::millis(2));
    assert_eq!(d(r#""0.4ms""#), Dur::millis(1), "positive stays positive");
    assert_eq!(d(r#""0ms""#), Dur::millis(0));
    assert_eq!(d(r#""0.3s""#), Dur::millis(300));
    assert_eq!(d("0.0005"), Dur::millis(1));
    assert_eq!(d("8760.0001"), Dur::secs(8760));
    // Thresholds keep sub-millisecond precision (they do not go through `Dur`).
    assert_eq!(parse_duration("0.5ms").unwrap(), Duration::from_micros(500));
    // The case proptest found (tests/props.rs): a repeat every 1.001ms was stored
    // as "1ms" and read back as a different plan.
    let p: Plan = serde_json::from_str(
        r#"{"target":"ws://127.0.0.1:1/","stages":[{"duration":"1ms","connections":0}],
            "script":[{"repeat":{"every":"1.001ms","steps":[{"send":""}]}}]}"#,
    )
    .unwrap();
    let again: Plan = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
    assert_eq!(p, again);
}

#[test]
fn reconnect_attempts_are_a_number_or_unlimited() {
    let p: Plan = serde_json::from_str(
        r#"{"target":"ws://h/x","stages":[{"duration":"1s","connections":1}],
          "reconnect":{"mode":"backoff","max_attempts":"unlimited"}}"#,
    )
    .unwrap();
    assert_eq!(p.reconnect, Reconnect::unlimited());
    assert!(p.validate(&Limits::default()).is_ok());
    let json = serde_json::to_string(&p).unwrap();
    assert!(json.contains(r#""max_attempts":"unlimited""#), "{json}");
    assert!(!MaxAttempts::UNLIMITED.exhausted(u32::MAX));
    assert!(MaxAttempts::Count(5).exhausted(5));
    assert!(!MaxAttempts::Count(5).exhausted(4));
    let bad = serde_json::from_str::<Plan>(
        r#"{"target":"ws://h/x","stages":[{"duration":"1s","connections":1}],
          "reconnect":{"mode":"backoff","max_attempts":"forever"}}"#,
    );
    assert!(bad.is_err());
}

#[test]
fn script_round_trips_through_json() {
    let text = r#"{"target":"ws://h/x","stages":[{"duration":"1s","connections":1}],
      "script":[{"send":"hi {{vu}}"},{"expect":{"contains":"hi","timeout":"2s"}},
                {"repeat":{"every":"1s","times":3,"steps":[{"ping":"1s"},{"wait":"10ms"}]}},
                {"wait":{"duration":"1s","jitter":"500ms"}},"close"],
      "reconnect":{"mode":"backoff","max_attempts":3}}"#;
    let p: Plan = serde_json::from_str(text).unwrap();
    assert_eq!(p.script.len(), 5);
    assert!(matches!(
        p.reconnect,
        Reconnect::Backoff {
            max_attempts: MaxAttempts::Count(3),
            ..
        }
    ));
    let again: Plan = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
    assert_eq!(p, again);
    assert!(p.validate(&Limits::default()).is_ok());
}

#[test]
fn unknown_fields_are_rejected_by_name() {
    let e = serde_json::from_str::<Plan>(r#"{"target":"ws://h","stages":[],"conections":5}"#)
        .unwrap_err();
    assert!(e.to_string().contains("conections"), "{e}");
}

#[test]
fn validation_names_field_value_and_limit() {
    let mut p = minimal();
    p.stages[1].connections = 50_000;
    p.target = "http://x".into();
    p.headers.insert("X-Bad".into(), "{{nope}}".into());
    let errs = p.validate(&Limits::default()).unwrap_err();
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert!(
        text.iter()
            .any(|t| t.starts_with("stages[1].connections: 50000") && t.contains("19000")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("target: ") && t.contains("scheme `http`")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("headers.X-Bad") && t.contains("nope")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|t| t.starts_with("source_addrs")),
        "{text:?}"
    );
}

#[test]
fn empty_and_zero_stages_are_refused() {
    let mut p = minimal();
    p.stages.clear();
    assert_eq!(
        p.validate(&Limits::default()).unwrap_err()[0].field,
        "stages"
    );
    p.stages.push(Stage {
        duration: Dur::secs(0),
        connections: 5,
    });
    assert!(p.validate(&Limits::default()).unwrap_err()[0]
        .message
        .contains("0s"));
}

#[test]
fn too_many_connections_for_ports_needs_sources() {
    let limits = Limits {
        max_connections: 100_000,
        ports_per_source: 100,
        ..Limits::default()
    };
    let mut p = minimal();
    p.stages[0].connections = 250;
    p.stages[1].connections = 250;
    let errs = p.validate(&limits).unwrap_err();
    assert!(
        errs[0].message.contains("add 2 more source addresses"),
        "{errs:?}"
    );
    p.source_addrs = vec![
        "127.0.0.1".parse().unwrap(),
        "127.0.0.2".parse().unwrap(),
        "127.0.0.3".parse().unwrap(),
    ];
    assert!(p.validate(&limits).is_ok());
}

#[test]
fn target_url_parts() {
    let t = TargetUrl::parse("ws://127.0.0.1:9001/echo?cap=5").unwrap();
    assert_eq!(
        (t.host.as_str(), t.port, t.resource.as_str()),
        ("127.0.0.1", 9001, "/echo?cap=5")
    );
    assert_eq!(TargetUrl::parse("ws://[::1]/").unwrap().host, "::1");
    assert!(TargetUrl::parse("not a url").is_err());
}
