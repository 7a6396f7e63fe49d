//! Steering a live run (issue 16): a sandbox run's level is raised mid-run through
//! `POST /api/runs/{id}/steer`; the snapshots' open connections reach the new level, the
//! change is recorded in the stored plan (`steering`, with the steered `stages`), ending
//! the hold finishes the run early as `completed`; and every bad request is a 4xx that
//! names its field (or says why the run cannot be steered).
//! Run: `cargo test -p server --features app/ssr --test steer`.
#![allow(clippy::unwrap_used)]
mod common;

use std::time::{Duration, Instant};

use common::{plan, spawn_app, App};
use serde_json::{json, Value};

/// Polls the run until its latest stored tick shows `open` connections (bounded: 15 s).
async fn wait_open(app: &App, id: &str, open: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, run) = app.get(&format!("/api/runs/{id}")).await;
        if run["last"]["open"].as_u64() == Some(open) {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "never {open} open: {}",
            run["last"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn steer(app: &App, id: &str, body: Value) -> (u16, Value) {
    app.post(&format!("/api/runs/{id}/steer"), &body.to_string())
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_the_level_mid_run_reaches_it_and_is_recorded_in_the_stored_plan() {
    let app = spawn_app().await;
    // Ramp to 20 in 1 s, then a long hold: the hold is ended by steering, not by time.
    let id = app
        .launch(plan("steer", &app.ws("/echo"), 20, "1s", "60s"))
        .await;
    let follower = {
        let (http, url) = (
            app.http.clone(),
            format!("{}/api/runs/{id}/events", app.base),
        );
        tokio::spawn(async move { common::follow_sse(&http, &url, None).await })
    };
    wait_open(&app, &id, 20).await;

    let (status, body) = steer(&app, &id, json!({"level": 60})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["event"]["kind"], "level");
    assert_eq!(body["event"]["from"], 20.0);
    assert_eq!(body["event"]["to"], 60.0);
    let at_ms = body["event"]["at_ms"].as_u64().unwrap();
    assert!(at_ms >= 1000, "after the ramp: {at_ms}");
    assert_eq!(body["change"], "level 20 → 60");

    // The stored plan says what runs now, while live.
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    let stored = &run["plan"];
    assert_eq!(stored["steering"].as_array().unwrap().len(), 1, "{stored}");
    assert_eq!(stored["steering"][0]["to"], 60.0);
    let stages = stored["stages"].as_array().unwrap();
    assert_eq!(stages.last().unwrap()["connections"], 60, "{stored}");
    assert_eq!(stages[0]["connections"], 20, "the ramp as it ran");

    // The swarm follows: 60 open, against a target of 60.
    let run = wait_open(&app, &id, 60).await;
    assert_eq!(run["last"]["target"], 60, "{}", run["last"]);

    // A rate change is taken too.
    let (status, body) = steer(&app, &id, json!({"rate": 50})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["event"]["kind"], "rate");

    // Ending the hold finishes the run as a normal finish, long before its 61 s.
    let (status, body) = steer(&app, &id, json!({"end_hold": true})).await;
    assert_eq!(status, 200, "{body}");
    let (snaps, done) = follower.await.unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    let peak = snaps
        .iter()
        .filter_map(|s| s["open"].as_u64())
        .max()
        .unwrap();
    assert_eq!(peak, 60, "the snapshots reach the new level");
    assert!(
        snaps
            .iter()
            .any(|s| s["elapsed_ms"].as_u64().unwrap() > at_ms && s["open"] == 60),
        "open 60 after the change"
    );
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    assert_eq!(run["status"], "completed");
    assert!(
        run["summary"]["duration_ms"].as_u64().unwrap() < 30_000,
        "{}",
        run["summary"]["duration_ms"]
    );
    let kinds: Vec<&str> = run["plan"]["steering"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["level", "rate", "end_hold"]);
    assert_eq!(run["plan"]["max_connect_rate"], 50.0);

    // A finished run cannot be steered: 409.
    let (status, body) = steer(&app, &id, json!({"level": 5})).await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_steering_requests_are_4xx_naming_the_field() {
    let app = spawn_app().await;
    let (status, _) = steer(&app, "nosuchrun", json!({"level": 5})).await;
    assert_eq!(status, 404);
    let id = app
        .launch(plan("steer-errors", &app.ws("/echo"), 5, "1s", "60s"))
        .await;
    wait_open(&app, &id, 5).await;
    for (body, field) in [
        (json!({"level": -1}), "level"),
        (json!({"level": 100_000_000}), "level"),
        (json!({"rate": 0}), "rate"),
        (json!({"rate": -3.5}), "rate"),
        (json!({"rate": 1e12}), "rate"),
        (json!({"extend_s": 0}), "extend_s"),
        (json!({"extend_s": 1e9}), "extend_s"),
        (json!({"end_hold": false}), "end_hold"),
        (json!({}), "steer"),
        (json!({"level": 3, "rate": 2}), "steer"),
    ] {
        let (status, answer) = steer(&app, &id, body.clone()).await;
        assert_eq!(status, 422, "{body} -> {answer}");
        let errs = answer["error"]["fields"]
            .as_array()
            .or_else(|| answer["fields"].as_array())
            .cloned()
            .unwrap_or_default();
        let text = answer.to_string();
        assert!(
            errs.iter().any(|e| e["field"] == field) || text.contains(&format!("\"{field}\"")),
            "{body} -> {answer}"
        );
    }
    // Malformed bodies: 400 saying what.
    let (status, answer) = app
        .post(&format!("/api/runs/{id}/steer"), r#"{"lvl": 3}"#)
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("lvl"), "{answer}");
    let (status, _) = app.post(&format!("/api/runs/{id}/steer"), "not json").await;
    assert_eq!(status, 400);
    // A cross-site request is refused like every other state change (CSRF guard).
    let r = app
        .http
        .post(format!("{}/api/runs/{id}/steer", app.base))
        .header("content-type", "application/json")
        .header("origin", "http://evil.example")
        .body(r#"{"level": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // Nothing of that changed the run.
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    assert!(run["plan"].get("steering").is_none(), "{}", run["plan"]);
    let (status, _) = app.post(&format!("/api/runs/{id}/cancel"), "").await;
    assert_eq!(status, 202);
    app.follow(&id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_runs_say_steering_is_not_supported() {
    let app = spawn_app().await;
    let id = app
        .launch(
            json!({"name": "probe", "target": app.ws("/echo?cap=5"), "stages": [],
            "probe": {"max_connections": 10, "max_connect_rate": 10, "max_duration": "20s"}}),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let (status, answer) = steer(&app, &id, json!({"level": 3})).await;
        // Queued for a moment before it runs: also a 409, with its own words.
        if answer.to_string().contains("probe") || Instant::now() > deadline {
            assert_eq!(status, 409, "{answer}");
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(answer.to_string().contains("not supported"), "{answer}");
    app.post(&format!("/api/runs/{id}/cancel"), "").await;
    app.follow(&id).await;
}
