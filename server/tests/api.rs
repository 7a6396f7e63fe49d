//! Integration tests of the walking skeleton through the JSON API and SSE, against the
//! embedded sandbox. Each test starts its own app on port 0 with a temp database.
//! Run: `cargo test -p server --test api`.
#![allow(clippy::unwrap_used)]
mod common;

use common::{follow_sse, plan, spawn_app};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_connections_agree_with_the_sandbox_and_stream_over_sse() {
    let app = spawn_app().await;
    let mut p = plan("smoke", &app.ws("/echo?tag=smoke"), 50, "1s", "2s");
    p["script"] = json!([{"repeat": {"every": "250ms", "steps": [{"send": "hi {{vu}}"}, {"expect": {"contains": "hi {{vu}}"}}]}}]);
    let id = app.launch(p).await;
    let (snaps, done) = app.follow(&id).await;

    // SSE: snapshots with increasing seq and monotonic totals, then `done`.
    assert!(snaps.len() >= 3, "got {} snapshots", snaps.len());
    for w in snaps.windows(2) {
        assert!(w[1]["seq"].as_u64() > w[0]["seq"].as_u64());
        for k in ["attempted", "opened", "msgs_sent", "msgs_received"] {
            assert!(
                w[1]["totals"][k].as_u64() >= w[0]["totals"][k].as_u64(),
                "{k} went down"
            );
        }
    }
    assert_eq!(done["status"], "completed");

    // Stored summary == the sandbox's own counters.
    let (status, run) = app.get(&format!("/api/runs/{id}")).await;
    assert_eq!(status, 200);
    let t = &run["summary"]["totals"];
    let sb = app.sandbox_profile("/echo?tag=smoke").await;
    assert_eq!(t["attempted"], 50);
    assert_eq!(t["opened"], 50);
    assert_eq!(t["failed"], 0);
    assert_eq!(run["summary"]["peak_open"], 50);
    assert_eq!(t["opened"], sb["accepted"]);
    assert_eq!(sb["peak_open"], 50);
    assert_eq!(t["msgs_sent"], sb["msgs_in"]);
    assert_eq!(t["msgs_received"], sb["msgs_out"]);
    assert!(
        t["msgs_sent"].as_u64().unwrap() >= 50 * 8,
        "each VU sent about every 250 ms: {t}"
    );
    assert_eq!(t["closes"]["client"], 50);
    assert_eq!(sb["closed"]["client"], 50);
    assert_eq!(sb["open"], 0);
    // The last snapshot and the summary agree.
    assert_eq!(snaps.last().unwrap()["totals"], *t);
    // The run is listed, newest first.
    let (_, list) = app.get("/api/runs").await;
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["opened"], 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_plans_get_errors_naming_the_field_and_store_nothing() {
    let app = spawn_app().await;
    let cases = [
        (
            r#"{"target":"ws://127.0.0.1:1/echo","stages":[{"duration":"1s","connections":5}],"conections":5}"#,
            400,
            "conections",
        ),
        (
            r#"{"target":"ws://127.0.0.1:1/echo","stages":[{"duration":"1s","connections":500000}]}"#,
            422,
            "stages[0].connections",
        ),
        (
            r#"{"target":"http://127.0.0.1:1/","stages":[{"duration":"1s","connections":5}]}"#,
            422,
            "target",
        ),
        (
            r#"{"target":"ws://127.0.0.1:1/","stages":[]}"#,
            422,
            "stages",
        ),
        (
            r#"{"target":"ws://127.0.0.1:1/","stages":[{"duration":"1s","connections":1}],"script":[{"send":"{{nope}}"}]}"#,
            422,
            "script[0].send",
        ),
        (
            r#"{"target":"ws://127.0.0.1:1/","stages":[{"duration":"1 fortnight","connections":1}]}"#,
            400,
            "fortnight",
        ),
        ("not json", 400, "plan:"),
    ];
    for (body, want_status, needle) in cases {
        let (status, resp) = app.post("/api/runs", body).await;
        assert_eq!(status, want_status, "{body} -> {resp}");
        assert!(
            resp.to_string().contains(needle),
            "{body} -> {resp} should mention {needle}"
        );
    }
    let (_, list) = app.get("/api/runs").await;
    assert_eq!(list.as_array().unwrap().len(), 0, "nothing stored");
    let (status, _) = app.get("/api/runs/doesnotexist").await;
    assert_eq!(status, 404);
    let r = app.fetch("/api/runs/doesnotexist/events").await;
    assert_eq!(r.status().as_u16(), 404, "no stream for unknown runs");
    let (status, _) = app.post("/api/runs/doesnotexist/cancel", "").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_a_run_as_cancelled_with_clean_closes() {
    let app = spawn_app().await;
    let id = app
        .launch(plan(
            "long",
            &app.ws("/echo?tag=cancel"),
            10,
            "200ms",
            "60s",
        ))
        .await;
    // Wait until all ten are open, as seen on the live stream.
    let http = app.http.clone();
    let url = format!("{}/api/runs/{id}/events", app.base);
    let follower = tokio::spawn(async move { follow_sse(&http, &url, None).await });
    loop {
        let (_, run) = app.get(&format!("/api/runs/{id}")).await;
        if run["last"]["open"] == 10 {
            break;
        }
        tokio::task::yield_now().await;
    }
    let (status, _) = app.post(&format!("/api/runs/{id}/cancel"), "").await;
    assert_eq!(status, 202);
    let (_, done) = follower.await.unwrap();
    assert_eq!(done["status"], "cancelled");
    assert_eq!(done["summary"]["end_reason"], "cancelled");
    assert_eq!(done["summary"]["totals"]["closes"]["client"], 10);
    let sb = app.sandbox_profile("/echo?tag=cancel").await;
    assert_eq!(sb["closed"]["client"], 10);
    // A finished run cannot be cancelled again.
    let (status, body) = app.post(&format!("/api/runs/{id}/cancel"), "").await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_survive_a_restart_and_sse_resumes_from_last_event_id() {
    let mut app = spawn_app().await;
    let id = app
        .launch(plan("persist", &app.ws("/echo"), 5, "200ms", "1s"))
        .await;
    let (snaps, _) = app.follow(&id).await;
    let (_, before) = app.get(&format!("/api/runs/{id}")).await;
    app.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let again = common::spawn_with(common::args(app.db.clone()), dir).await;
    let (status, after) = again.get(&format!("/api/runs/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(after["status"], "completed");
    assert_eq!(after["summary"], before["summary"]);
    // A finished run answers `done` at once...
    let (none, done) = again.follow(&id).await;
    assert!(none.is_empty());
    assert_eq!(done["id"], id.as_str());
    // ...and with Last-Event-ID it replays exactly the stored ticks after that id.
    let url = format!("{}/api/runs/{id}/events", again.base);
    let seqs = |snaps: &[serde_json::Value]| -> Vec<u64> {
        snaps.iter().map(|s| s["seq"].as_u64().unwrap()).collect()
    };
    let after = |n: u64| -> Vec<u64> { seqs(&snaps).into_iter().filter(|s| *s > n).collect() };
    let (replayed, _) = follow_sse(&again.http, &url, Some(1)).await;
    assert_eq!(seqs(&replayed), after(1));
    // `?after=` does the same on a first connection; a Last-Event-ID (a reconnect) wins.
    let (by_query, _) = follow_sse(&again.http, &format!("{url}?after=1"), None).await;
    assert_eq!(seqs(&by_query), after(1));
    let (both, _) = follow_sse(&again.http, &format!("{url}?after=1"), Some(2)).await;
    assert_eq!(seqs(&both), after(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_left_running_by_a_crash_are_marked_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    {
        let pool = server::store::open(&db).await.unwrap();
        server::store::insert_run(
            &pool,
            server::store::NewRun {
                run_id: "crashed",
                name: "c",
                target: "ws://127.0.0.1:1/",
                plan_json: r#"{"target":"ws://127.0.0.1:1/","stages":[{"duration":"1s","connections":1}]}"#,
                created_at: 1,
                plan_id: None,
                env_json: None,
            },
        )
        .await
        .unwrap();
        server::store::mark_running(&pool, "crashed", 2)
            .await
            .unwrap();
        server::store::insert_interval(&pool, "crashed", 1, 1000, r#"{"seq":1,"elapsed_ms":1000}"#)
            .await
            .unwrap();
        pool.close().await;
    }
    let app = common::spawn_with(common::args(db), dir).await;
    let (_, run) = app.get("/api/runs/crashed").await;
    assert_eq!(run["status"], "interrupted");
    assert_eq!(run["last"]["seq"], 1, "ticks up to the last flush are kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_runs_queue_and_then_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = common::args(dir.path().join("q.db"));
    a.max_concurrent_runs = 1;
    let app = common::spawn_with(a, dir).await;
    let first = app
        .launch(plan("first", &app.ws("/echo?tag=q1"), 3, "100ms", "700ms"))
        .await;
    let (status, second) = app
        .post(
            "/api/runs",
            &plan("second", &app.ws("/echo?tag=q2"), 3, "100ms", "300ms").to_string(),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(second["status"], "queued");
    let (_, done1) = app.follow(&first).await;
    let (_, done2) = app.follow(second["id"].as_str().unwrap()).await;
    assert_eq!(done1["status"], "completed");
    assert_eq!(done2["status"], "completed");
    assert!(done2["started_at_ms"].as_i64() >= done1["finished_at_ms"].as_i64());
    assert_eq!(done2["summary"]["totals"]["opened"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_carry_security_headers() {
    let app = spawn_app().await;
    for path in ["/api/runs", "/runs/new"] {
        let r = app.fetch(path).await;
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "same-origin", "{path}");
    }

    // A page: its policy names a fresh nonce, and every inline script carries it.
    let mut pages = Vec::new();
    for n in 0..2 {
        let r = app.fetch(&format!("/runs/new?n={n}")).await;
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        pages.push((csp, r.text().await.unwrap()));
    }
    let directive = |csp: &str, name: &str| -> String {
        csp.split(';')
            .map(str::trim)
            .find(|d| d.starts_with(name))
            .unwrap_or_default()
            .to_string()
    };
    let (csp, html) = &pages[0];
    assert_eq!(directive(csp, "frame-ancestors"), "frame-ancestors 'none'");
    assert_eq!(directive(csp, "object-src"), "object-src 'none'");
    let script_src = directive(csp, "script-src");
    let nonce = script_src
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or_else(|| panic!("no nonce in {csp}"));
    assert!(nonce.len() >= 16, "{nonce}");
    assert!(!script_src.contains("unsafe-inline"), "{script_src}");
    let inline: Vec<&str> = html
        .split("<script")
        .skip(1)
        .map(|tag| tag.split('>').next().unwrap_or(""))
        .filter(|attrs| !attrs.contains("src="))
        .collect();
    assert!(!inline.is_empty(), "the page hydrates with inline scripts");
    for attrs in inline {
        assert!(
            attrs.contains(&format!("nonce=\"{nonce}\"")),
            "an inline script without the nonce: <script{attrs}>"
        );
    }
    assert_ne!(pages[0].0, pages[1].0, "a new nonce per response");

    // Not a page: no inline script may run at all.
    let r = app.fetch("/api/runs").await;
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert_eq!(directive(csp, "script-src"), "script-src 'self'");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_listen_address_is_refused_without_the_opt_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = common::args(dir.path().join("x.db"));
    a.listen = "0.0.0.0:0".parse().unwrap();
    let err = server::start(a).await.err().expect("refused");
    assert!(err.to_string().contains("--allow-remote"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_size_and_body_limits_name_the_limit() {
    let app = spawn_app().await;
    let mut p = plan("big", &app.ws("/echo"), 1, "1s", "1s");
    // Over --max-message-bytes (1 MiB here) but within the body limit: the field says so.
    p["script"] = json!([{"send": "a".repeat(1_500_000)}]);
    let (status, body) = app.post("/api/runs", &p.to_string()).await;
    assert_eq!(
        status,
        422,
        "{}",
        &body.to_string()[..200.min(body.to_string().len())]
    );
    assert_eq!(body["fields"][0]["field"], "script[0].send");
    assert!(body["fields"][0]["message"]
        .as_str()
        .unwrap()
        .contains("1048576"));
    // Past the body limit: 413 naming it, before the body is read.
    p["script"] = json!([{"send": "a".repeat(3_000_000)}]);
    let (status, body) = app.post("/api/runs", &p.to_string()).await;
    assert_eq!(status, 413);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("the limit is 2162688"),
        "{body}"
    );
    let (_, list) = app.get("/api/runs").await;
    assert_eq!(list, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_answer_with_the_status_of_what_they_show() {
    let app = spawn_app().await;
    let unknown = "0123456789abcdef0123456789abcdef";
    for (path, status, says) in [
        (format!("/runs/{unknown}"), 404, "not found"),
        (format!("/share/{unknown}"), 404, "not found"),
        ("/plans/nope".to_string(), 404, "not found"),
        ("/compare?runs=a".to_string(), 400, "runs:"),
        ("/runs".to_string(), 200, "socketswarm"),
        (
            "/runs?from=2026-13-45".to_string(),
            400,
            "from: `2026-13-45` is not a date",
        ),
        ("/runs?status=bogus".to_string(), 400, "Clear the filters"),
    ] {
        let r = app.fetch(&path).await;
        assert_eq!(r.status().as_u16(), status, "{path}");
        let html = r.text().await.unwrap();
        assert!(html.contains(says), "{path}: {html}");
    }
}
