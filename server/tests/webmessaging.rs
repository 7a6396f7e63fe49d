//! The web-messaging guest flow (issue 14): `examples/web-messaging-guests.json` — 500
//! guests against a deployment capped at 150 configured sessions — run through the JSON
//! API against the sandbox's `/webmessaging` profile. The run must be diagnosed as a
//! concurrency cap of ~150 (enforced after the upgrade: an error response, then a close),
//! and the engine's counts must agree with what the sandbox counted: sessions configured
//! and refused, replies correlated among pushes, heartbeats answered.
//!
//! Run: `cargo test -p server --features app/ssr --test webmessaging`.
#![allow(clippy::unwrap_used)]
mod common;

use common::{spawn_app, Label};
use serde_json::Value;

/// The example plan aimed at this test's sandbox, with `tag` separating its counters
/// and the stages given.
fn example(app: &common::App, tag: &str, stages: Value) -> (Value, String) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/web-messaging-guests.json"
    ))
    .unwrap();
    let mut plan: Value = serde_json::from_str(&text).unwrap();
    let url = plan["target"].as_str().unwrap().to_string();
    let (_, path_query) = url.split_once("127.0.0.1:9001").unwrap();
    let path_query = format!("{path_query}&tag={tag}");
    plan["target"] = app.ws(&path_query).into();
    plan["stages"] = stages;
    // The sandbox's counter key: the path and the sorted query.
    let (path, query) = path_query.split_once('?').unwrap();
    let mut pairs: Vec<&str> = query.split('&').collect();
    pairs.sort();
    (plan, format!("{path}?{}", pairs.join("&")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_guests_against_a_cap_of_150_are_diagnosed_and_counted() {
    let app = spawn_app().await;
    let stages = serde_json::json!([
        {"duration": "5s", "connections": 500},
        {"duration": "6s", "connections": 500}
    ]);
    let (plan, key) = example(&app, "wm500", stages);
    let id = app.launch(plan).await;
    let (_, done) = app.follow(&id).await;
    assert_eq!(done["status"], "completed", "{done}");
    common::record_fixture(
        &app,
        &id,
        "sandbox-webmessaging-cap-150",
        "sandbox webmessaging session_cap=150 (429 response, then close 1008)",
        Label {
            kind: "concurrency_cap",
            level: Some(150.0),
            per: None,
            how: Some("accepted_then_closed"),
        },
    )
    .await;
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    let s = &run["summary"];
    let t = &s["totals"];
    let d = &run["diagnosis"];
    let c = app.sandbox_profile(&key).await;
    let w = &c["webmessaging"];
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    println!(
        "engine: opened {} dropped {} closes {} sent {} received {} skipped {} auto matched {} rtt count {} p50 {}us; diagnosis: {}; sandbox: {c}",
        t["opened"], t["dropped"], t["closes"], t["msgs_sent"], t["msgs_received"], t["msgs_skipped"],
        t["auto_matched"], s["latency"]["ws_rtt"]["count"], s["latency"]["ws_rtt"]["p50_us"], d["headline"]
    );

    // The diagnosis: a cap of ~150, enforced after the upgrade with the refusal's close.
    assert_eq!(d["kind"], "concurrency_cap", "{d}");
    let level = d["level"].as_f64().unwrap();
    assert!((142.5..=157.5).contains(&level), "{d}");
    assert_eq!(d["enforcement"]["how"], "accepted_then_closed", "{d}");
    assert_eq!(d["enforcement"]["close_code"], 1008, "{d}");
    assert!(d["confidence"].as_f64().unwrap() >= 0.7, "{d}");

    // Every guest was upgraded; 150 configured, the other 350 refused by the cap.
    assert_eq!(n(&t["opened"]), 500, "{t}");
    assert_eq!(n(&c["accepted"]), 500, "{c}");
    assert_eq!(n(&w["configured"]), 150, "{w}");
    assert_eq!(n(&w["peak_sessions"]), 150, "{w}");
    assert_eq!(n(&w["refused"]["session_cap"]), 350, "{w}");
    assert_eq!(w["refused"].as_object().unwrap().len(), 1, "{w}");
    assert_eq!(n(&t["closes"]["server_1008"]), 350, "{t}");
    assert_eq!(n(&c["closed"]["server_1008"]), 350, "{c}");
    // What the close frames said is kept with the code: every refusal's reason, counted.
    assert_eq!(
        s["evidence"]["close_reasons"]["1008"],
        serde_json::json!({"too many concurrent sessions": 350}),
        "{}",
        s["evidence"]
    );
    // The 150 held to the end (heartbeats kept them from the idle timeout).
    assert_eq!(n(&t["closes"]["client"]), 150, "{t}");
    assert_eq!(n(&w["idle_closed"]), 0, "{w}");
    assert_eq!(n(&w["sessions_open"]), 0, "{w}");

    // Correlation: each configured guest's one message got its agent reply, picked out
    // of the inbound echo and the presence push; the typing push went to the responder.
    assert_eq!(n(&w["guest_messages"]), 150, "{w}");
    assert_eq!(n(&w["replies_pushed"]), 150, "{w}");
    assert_eq!(n(&w["typing_pushed"]), 150, "{w}");
    assert_eq!(n(&t["auto_matched"]), 150, "{t}");
    assert_eq!(n(&t["expect_timeouts"]), 0, "{t}");
    assert_eq!(n(&w["token_mismatch"]), 0, "{w}");
    // Skipped: 350 refusals' error responses, and per configured guest the presence
    // push and the inbound echo.
    assert_eq!(n(&t["msgs_skipped"]), 350 + 2 * 150, "{t}");
    // Heartbeats: every answer the engine matched was one the sandbox counted (one sent
    // as the run ended may be answered but not matched).
    let hb = n(&w["heartbeats"]);
    assert!(hb >= 2 * 150, "about 2 heartbeats per guest in 6 s: {w}");
    let rtt = n(&s["latency"]["ws_rtt"]["count"]);
    assert!(
        rtt >= 300 && rtt - 300 <= hb && hb - (rtt - 300) <= 150,
        "rtt {rtt}, heartbeats {hb}"
    );
    // Every message sent reached the sandbox: 500 configures, 150 messages, heartbeats.
    assert_eq!(n(&t["msgs_sent"]), n(&c["msgs_in"]), "{t} {c}");
    assert_eq!(n(&t["msgs_sent"]), 500 + 150 + hb, "{t} {w}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_limit_refuses_by_its_own_name() {
    let app = spawn_app().await;
    let guest = |q: &str, tag: &str, vus: u32, token: &str| {
        let stages = serde_json::json!([
            {"duration": "500ms", "connections": vus},
            {"duration": "1500ms", "connections": vus}
        ]);
        let (mut plan, key) = example(&app, tag, stages);
        let target = plan["target"]
            .as_str()
            .unwrap()
            .replace("session_cap=150", q);
        plan["target"] = target.into();
        plan["vars"]["guest"] = token.into();
        let key = key.replace("session_cap=150&", "");
        (plan, key)
    };
    let cases = [
        // 10 guests, 3 session starts then 1 per second: 3 or 4 get in.
        (
            "session_rate=1&session_burst=3",
            "wmrate",
            10,
            "{{uuid}}",
            "session_rate",
        ),
        // Two tokens shared by 8 guests, at most 2 sessions each: 4 get in.
        (
            "token_limit=2",
            "wmtoken",
            8,
            "shared-{{vu % 2}}",
            "token_limit",
        ),
    ];
    for (q, tag, vus, token, why) in cases {
        let (plan, _) = guest(q, tag, vus, token);
        let id = app.launch(plan).await;
        let (_, done) = app.follow(&id).await;
        assert_eq!(done["status"], "completed", "{done}");
        let stats: Value = reqwest::get(format!("http://{}/stats", app.sandbox))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let (_, c) = stats["profiles"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(k, _)| k.contains(&format!("tag={tag}")))
            .unwrap_or_else(|| panic!("{stats}"));
        let w = &c["webmessaging"];
        let t = &done["summary"]["totals"];
        let configured = w["configured"].as_u64().unwrap();
        let refused = w["refused"][why].as_u64().unwrap_or(0);
        assert_eq!(configured + refused, u64::from(vus), "{q}: {w}");
        assert_eq!(
            t["closes"]["server_1008"].as_u64().unwrap_or(0),
            refused,
            "{q}: {t}"
        );
        match why {
            "token_limit" => assert_eq!(configured, 4, "{w}"),
            _ => assert!((3..=5).contains(&configured), "{w}"),
        }
    }
}

/// The open model for sessions (issue 14): guests arrive at 20/s for 3 s and each stays
/// 1 s, then leaves by itself: every session is a departure (a `client` close), none a
/// drop, and the sandbox saw the same arrivals and departures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_arrive_at_a_rate_stay_their_time_and_leave() {
    let app = spawn_app().await;
    let plan = serde_json::json!({
        "name": "arrivals",
        "target": app.ws("/echo?tag=arrivals"),
        "stages": [],
        "sessions": {
            "arrivals": [{"duration": "3s", "rate": 20}],
            "stay": {"dist": "fixed", "duration": "1s"}
        },
        "script": [{"repeat": {"every": "200ms", "steps": [{"send": "x"}, {"expect": {}}]}}]
    });
    let id = app.launch(plan).await;
    let (_, done) = app.follow(&id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let s = &done["summary"];
    let t = &s["totals"];
    let c = app.sandbox_profile("/echo?tag=arrivals").await;
    println!(
        "engine: {t}; time in system {}; sandbox: {c}",
        s["latency"]["ws_session_duration"]
    );
    assert_eq!(t["attempted"], 60, "{t}");
    assert_eq!(t["opened"], 60, "{t}");
    assert_eq!(c["accepted"], 60, "{c}");
    assert_eq!(t["dropped"], 0, "{t}");
    assert_eq!(t["closes"]["client"], 60, "{t}");
    assert_eq!(c["closed"]["client"], 60, "{c}");
    // Every guest arrived once; those whose second was over before the arrivals ended
    // (about the first two seconds' 40) departed by themselves, the rest left with the
    // run: departures are neither drops nor the run's end.
    assert_eq!(t["arrivals"], 60, "{t}");
    let departures = t["departures"].as_u64().unwrap();
    assert!((35..=45).contains(&departures), "{t}");
    // At 20/s with 1 s each, about 20 inside at once.
    let peak = c["peak_open"].as_u64().unwrap();
    assert!((15..=25).contains(&peak), "{c}");
    // Time in system: the stay (a departure at 1 s; the last guests, still inside at
    // the end of the arrivals, leave with the run).
    let p50 = s["latency"]["ws_session_duration"]["p50_us"]
        .as_u64()
        .unwrap();
    assert!((900_000..=1_200_000).contains(&p50), "{s}");
}
