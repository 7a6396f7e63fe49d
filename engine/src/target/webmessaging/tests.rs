//! Unit tests of the web-messaging profile: actions and options parsed, the limits
//! refusing and releasing, replies carrying what a guest correlates on.

use super::*;

#[test]
fn actions_parse_and_bad_ones_say_why() {
    assert_eq!(
        parse_action(r#"{"action":"configureSession","deploymentId":"D","token":"t-1"}"#),
        Action::Configure {
            deployment: "D".into(),
            token: "t-1".into()
        }
    );
    assert_eq!(
        parse_action(r#"{"action":"echo","message":{"type":"Text","text":"ping"}}"#),
        Action::Echo {
            text: "ping".into()
        }
    );
    assert_eq!(
        parse_action(
            r#"{"action":"onMessage","token":"t","message":{"type":"Text","text":"hi","metadata":{"customMessageId":"c1"}}}"#
        ),
        Action::OnMessage {
            token: "t".into(),
            text: "hi".into(),
            custom_id: Some("c1".into())
        }
    );
    for (bad, says) in [
        ("nope", "not JSON"),
        (
            r#"{"action":"configureSession","deploymentId":"D"}"#,
            "needs",
        ),
        (r#"{"action":"dance"}"#, "`dance`"),
        (r#"{"x":1}"#, "no action"),
    ] {
        match parse_action(bad) {
            Action::Invalid(why) => assert!(why.contains(says), "{bad}: {why}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn the_cap_the_rate_and_the_per_token_limit_refuse_and_release() {
    let now = Instant::now();
    let o = Options {
        session_cap: Some(2),
        token_limit: Some(1),
        ..Options::default()
    };
    let s = WmState::default();
    assert_eq!(s.admit(&o, "a", now), Ok(()));
    assert_eq!(s.admit(&o, "a", now), Err(Refusal::TokenLimit));
    assert_eq!(s.admit(&o, "b", now), Ok(()));
    assert_eq!(s.admit(&o, "c", now), Err(Refusal::SessionCap));
    s.release(&o, "a");
    assert_eq!(s.admit(&o, "a", now), Ok(()));
    let c = s.snapshot();
    assert_eq!((c.configured, c.sessions_open, c.peak_sessions), (3, 2, 2));

    let rate = Options {
        session_rate: Some(10.0),
        session_burst: Some(2.0),
        ..Options::default()
    };
    let s = WmState::default();
    assert_eq!(s.admit(&rate, "a", now), Ok(()));
    assert_eq!(s.admit(&rate, "b", now), Ok(()));
    assert_eq!(s.admit(&rate, "c", now), Err(Refusal::SessionRate));
    assert_eq!(
        s.admit(&rate, "c", now + Duration::from_millis(100)),
        Ok(())
    );
}

#[test]
fn replies_carry_what_the_guest_correlates_on() {
    let (inbound, reply) = inbound_and_reply("m1", "hi", Some("g-1"));
    let i: Value = serde_json::from_str(&inbound).unwrap();
    let r: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(i["body"]["metadata"]["customMessageId"], "g-1");
    assert_eq!(i["body"]["direction"], "Inbound");
    assert_eq!(r["body"]["metadata"]["inReplyTo"], "g-1");
    assert_eq!(r["body"]["direction"], "Outbound");
    let (_, reply) = inbound_and_reply("m2", "hi", None);
    let r: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(r["body"]["metadata"]["inReplyTo"], "m2");
    let e: Value = serde_json::from_str(&error_response(
        429,
        "TooManyRequestsErrorEvent",
        "too many concurrent sessions",
    ))
    .unwrap();
    assert_eq!(e["code"], 429);
    assert_eq!(e["body"]["errorMessage"], "too many concurrent sessions");
    let s: Value = serde_json::from_str(&session_response()).unwrap();
    assert_eq!(s["class"], "SessionResponse");
}

#[test]
fn options_parse_and_name_bad_values() {
    let mut o = Options::default();
    for (k, v) in [
        ("deploymentId", "D"),
        ("session_cap", "150"),
        ("session_rate", "5"),
        ("token_limit", "1"),
        ("idle", "2s"),
        ("refuse_code", "4029"),
    ] {
        assert_eq!(o.set(k, v), Ok(true), "{k}");
    }
    assert_eq!(o.session_cap, Some(150));
    assert_eq!(o.idle, Duration::from_secs(2));
    assert_eq!(o.refuse_code, 4029);
    assert_eq!(o.set("cap", "1"), Ok(false));
    assert!(o.set("session_rate", "0").unwrap_err().contains("above 0"));
    assert!(o.set("refuse_code", "7").unwrap_err().contains("1000-4999"));
    assert!(selected("/webmessaging") && selected("/v1/webmessaging/"));
    assert!(!selected("/echo"));
}
