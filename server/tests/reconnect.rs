//! Reconnect like real clients (issue 16): the seed's case — 500 connections against a
//! sandbox cap of 150 with reconnect on — keeps retrying to the end with unlimited
//! attempts and counts no one as given up, while a policy that runs out of attempts
//! counts (and the run page explains) the connections that gave up. Through the API and
//! the server-rendered run page, as a user sees them.
//! Run: `cargo test -p server --features app/ssr --test reconnect`.
#![allow(clippy::unwrap_used)]
mod common;

use common::{plan, spawn_app};
use serde_json::{json, Value};

/// The seed's plan against `/echo?cap=150&tag=TAG` with this reconnect policy.
fn seed(app: &common::App, tag: &str, reconnect: Value) -> Value {
    let mut p = plan(
        tag,
        &app.ws(&format!("/echo?cap=150&tag={tag}")),
        500,
        "2s",
        "6s",
    );
    p["reconnect"] = reconnect;
    p
}

/// Failed attempts in the snapshots whose elapsed time is past `from_ms`.
fn failures_after(snaps: &[Value], from_ms: u64) -> u64 {
    snaps
        .iter()
        .filter(|s| s["elapsed_ms"].as_u64().unwrap_or(0) > from_ms)
        .map(|s| s["interval"]["failed"].as_u64().unwrap_or(0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlimited_reconnect_retries_to_the_end_and_a_limited_one_counts_who_gave_up() {
    let app = spawn_app().await;
    let unlimited = app
        .launch(seed(
            &app,
            "unlimited",
            json!({"mode": "backoff", "max_attempts": "unlimited", "initial": "200ms", "max": "1s"}),
        ))
        .await;
    let limited = app
        .launch(seed(
            &app,
            "limited",
            json!({"mode": "backoff", "max_attempts": 2, "initial": "200ms", "max": "1s"}),
        ))
        .await;
    let (snaps_u, done_u) = app.follow(&unlimited).await;
    let (snaps_l, done_l) = app.follow(&limited).await;
    assert_eq!(done_u["status"], "completed", "{done_u}");
    assert_eq!(done_l["status"], "completed", "{done_l}");

    // Unlimited: still knocking in the run's last two seconds, and no one gave up.
    let (_, run_u) = app.get(&format!("/api/runs/{unlimited}")).await;
    let totals_u = &run_u["summary"]["totals"];
    assert_eq!(totals_u["gave_up"], 0, "{totals_u}");
    assert!(
        failures_after(&snaps_u, 6_000) > 0,
        "refused attempts keep coming until the end: {totals_u}"
    );
    assert!(totals_u["failures"]["http_429"].as_u64().unwrap() > 350);

    // Two attempts in a row: every connection over the cap stops trying, counted.
    let (_, run_l) = app.get(&format!("/api/runs/{limited}")).await;
    let gave_up = run_l["summary"]["totals"]["gave_up"].as_u64().unwrap();
    assert!(
        (300..=350).contains(&gave_up),
        "the 350 over the cap gave up (a few may have got in): {gave_up}"
    );
    assert_eq!(failures_after(&snaps_l, 6_000), 0, "the storm ended early");

    // The run page says so, and shows what the target said, on both.
    let page_l = app
        .fetch(&format!("/runs/{limited}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page_l.contains(&format!("data-gave-up=\"{gave_up}\"")),
        "gave-up note"
    );
    let page_u = app
        .fetch(&format!("/runs/{unlimited}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!page_u.contains("data-gave-up"), "no one gave up");
    for page in [&page_l, &page_u] {
        assert!(page.contains("What the target said"));
        assert!(page.contains("HTTP 429 Too Many Requests"));
        assert!(
            page.contains("too many concurrent connections"),
            "the 429 body"
        );
        assert!(page.contains("Retry-After"));
    }
}
