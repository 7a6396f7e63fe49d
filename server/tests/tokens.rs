//! Tokens and identities against the sandbox's auth profiles: OAuth2 client credentials
//! from its mock endpoint, static pools, per-token caps, expiry mid-connection, token
//! endpoint rate limits, and secrets that are never stored.
//! Run: `cargo test -p server --test tokens`.
#![allow(clippy::unwrap_used)]
mod common;

use common::{plan, spawn_app};
use serde_json::{json, Value};

async fn finish(app: &common::App, p: Value) -> (String, Value) {
    let id = app.launch(p).await;
    let (_, done) = app.follow(&id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    (id, run)
}

fn oauth(app: &common::App, query: &str) -> Value {
    json!({"type": "oauth2", "token_url": format!("http://{}/oauth/token?{query}", app.sandbox), "client_id": "loadtest", "client_secret": "s3cret"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_tokens_are_fetched_once_per_slot_and_secrets_are_not_stored() {
    let app = spawn_app().await;
    let mut p = plan(
        "oauth",
        &app.ws("/echo?auth=bearer&tag=o1"),
        12,
        "300ms",
        "700ms",
    );
    p["auth"] =
        json!({"source": oauth(&app, "ttl=60s&tag=o1"), "policy": {"mode": "pool", "size": 3}});
    let (_, run) = finish(&app, p).await;
    let s = &run["summary"];
    assert_eq!(s["totals"]["opened"], 12, "{s}");
    assert_eq!(
        s["latency"]["token_fetch"]["count"], 3,
        "one fetch per slot"
    );
    assert_eq!(
        app.sandbox_profile("/oauth/token?tag=o1&ttl=60s").await["accepted"],
        3,
        "three tokens minted"
    );
    let sb = app.sandbox_profile("/echo?auth=bearer&tag=o1").await;
    assert_eq!(sb["accepted"], 12);
    assert_eq!(sb["per_token"].as_object().unwrap().len(), 3);
    assert_eq!(
        s["identities"]["token"].as_object().unwrap().len(),
        3,
        "handshakes counted per token"
    );
    assert_eq!(s["identities"]["token"]["0"]["opened"], 4);
    // The typed-in secret ran the test but was never stored.
    assert_eq!(run["plan"]["auth"]["source"]["client_secret"], "<redacted>");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_tokens_are_401s_and_diagnosed_as_auth() {
    let app = spawn_app().await;
    let (_, run) = finish(
        &app,
        plan(
            "no token",
            &app.ws("/echo?auth=bearer&tag=o2"),
            6,
            "200ms",
            "300ms",
        ),
    )
    .await;
    assert_eq!(run["summary"]["totals"]["failures"]["http_401"], 6);
    assert_eq!(
        app.sandbox_profile("/echo?auth=bearer&tag=o2").await["rejected"]["401"],
        6
    );
    assert_eq!(run["diagnosis"]["kind"], "auth_failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_token_cap_is_diagnosed_per_token() {
    let app = spawn_app().await;
    let mut p = plan(
        "per token",
        &app.ws("/echo?auth=bearer&token_cap=5&tag=o3"),
        30,
        "3s",
        "1s",
    );
    p["auth"] = json!({
        "source": {"type": "static", "tokens": ["static-a", "static-b", "static-c"]},
        "policy": {"mode": "per_connections", "connections": 10}
    });
    let (_, run) = finish(&app, p).await;
    let t = &run["summary"]["totals"];
    assert_eq!(t["opened"], 15, "{t}");
    assert_eq!(t["failures"]["http_429"], 15);
    let sb = app
        .sandbox_profile("/echo?auth=bearer&tag=o3&token_cap=5")
        .await;
    assert_eq!(sb["per_token"]["static-a"]["accepted"], 5);
    assert_eq!(sb["per_token"]["static-b"]["rejected_429"], 5);
    let d = &run["diagnosis"];
    assert_eq!(d["kind"], "concurrency_cap", "{d}");
    assert_eq!(d["per"], "token", "{d}");
    assert_eq!(d["level"], 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expiring_mid_connection_close_with_4401() {
    let app = spawn_app().await;
    let mut p = plan(
        "expiry",
        &app.ws("/echo?auth=bearer&tag=o4"),
        5,
        "100ms",
        "2500ms",
    );
    p["auth"] = json!({"source": oauth(&app, "ttl=1s&tag=o4"), "refresh_before": "0s"});
    let (_, run) = finish(&app, p).await;
    assert_eq!(
        run["summary"]["totals"]["closes"]["server_4401"], 5,
        "{}",
        run["summary"]["totals"]
    );
    assert_eq!(
        app.sandbox_profile("/echo?auth=bearer&tag=o4").await["closed"]["server_4401"],
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_token_endpoint_is_measured() {
    let app = spawn_app().await;
    let mut p = plan(
        "token rate",
        &app.ws("/echo?auth=bearer&tag=o5"),
        5,
        "100ms",
        "500ms",
    );
    p["auth"] = json!({"source": oauth(&app, "rate=0.5&burst=1&tag=o5"), "policy": {"mode": "per_connection"}});
    let (_, run) = finish(&app, p).await;
    let t = &run["summary"]["totals"];
    assert_eq!(t["opened"], 1, "{t}");
    assert_eq!(t["failures"]["token_http_429"], 4);
    assert_eq!(
        app.sandbox_profile("/oauth/token?burst=1&rate=0.5&tag=o5")
            .await["rejected"]["429"],
        4
    );
    let d = &run["diagnosis"];
    assert_eq!(d["kind"], "token_exhaustion", "{d}");
    assert!(
        d["headline"]
            .as_str()
            .unwrap()
            .starts_with("OAuth token exhaustion: the token endpoint refused 4 token requests"),
        "{d}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_steps_create_a_session_whose_id_the_handshake_uses() {
    let app = spawn_app().await;
    let mut p = plan(
        "session",
        &app.ws("/echo?need_session=1&tag=o6&session={{var.sid}}"),
        6,
        "200ms",
        "800ms",
    );
    p["http_steps"] = json!([{
        "method": "POST",
        "url": format!("http://{}/session", app.sandbox),
        "body": "{\"user\": \"vu-{{vu}}\"}",
        "capture": {"sid": "session_id"}
    }]);
    p["script"] = json!([{"send": "my session is {{var.sid}}"}, {"expect": {"contains": "my session is sess-"}}]);
    let (_, run) = finish(&app, p).await;
    let s = &run["summary"];
    assert_eq!(s["totals"]["opened"], 6, "{s}");
    assert_eq!(s["latency"]["http_step"]["count"], 6);
    assert_eq!(
        s["latency"]["ws_rtt"]["count"], 6,
        "the captured id reached the script"
    );
    assert_eq!(app.sandbox_profile("/session").await["accepted"], 6);
    assert_eq!(
        app.sandbox_profile("/echo?need_session=1&tag=o6").await["accepted"],
        6
    );

    // Without the step the handshake is refused, and an uncaptured variable is a plan error.
    let (_, run) = finish(
        &app,
        plan(
            "no session",
            &app.ws("/echo?need_session=1&tag=o7"),
            3,
            "100ms",
            "300ms",
        ),
    )
    .await;
    assert_eq!(run["summary"]["totals"]["failures"]["http_403"], 3);
    let (status, body) = app
        .post(
            "/api/runs",
            &plan("typo", &app.ws("/echo?session={{var.sdi}}"), 1, "1s", "1s").to_string(),
        )
        .await;
    assert_eq!(status, 422);
    assert!(body.to_string().contains("var.sdi"), "{body}");
}

/// A rotating plan: 4 connections on a pool of 2 tokens that live 1 s, refreshed
/// 400 ms ahead (due every ~600 ms), held 3 s — several rotations per connection.
fn rotating(app: &common::App, tag: &str, rotation: Option<Value>) -> Value {
    let mut p = plan(
        tag,
        &app.ws(&format!("/echo?auth=bearer&tag={tag}")),
        4,
        "100ms",
        "3s",
    );
    p["auth"] = json!({
        "source": oauth(app, &format!("ttl=1s&tag={tag}")),
        "policy": {"mode": "pool", "size": 2},
        "refresh_before": "400ms"
    });
    if let Some(r) = rotation {
        p["auth"]["rotation"] = r;
    }
    p
}

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reauth_rotation_keeps_connections_past_their_tokens_expiry() {
    let app = spawn_app().await;
    // Without rotation the sandbox closes every connection when its token expires.
    let (_, run) = finish(&app, rotating(&app, "r0", None)).await;
    let t = &run["summary"]["totals"];
    assert_eq!(t["closes"]["server_4401"], 4, "{t}");
    assert_eq!(count(&t["rotations"]), 0, "{t}");

    // Re-authenticating on the open socket, confirmed by the sandbox's reply.
    let rotation = json!({"mode": "reauth",
        "message": "{\"action\":\"refresh\",\"token\":\"{{token}}\"}",
        "expect": {"json_field": "action", "equals": "refreshed", "timeout": "300ms"}});
    let (_, run) = finish(&app, rotating(&app, "r1", Some(rotation))).await;
    let s = &run["summary"];
    let t = &s["totals"];
    let rotations = count(&t["rotations"]);
    let sb = app.sandbox_profile("/echo?auth=bearer&tag=r1").await;
    println!(
        "reauth: rotations {rotations}, failures {}, ws_rotation p50 {} us, token fetches {}, sandbox refreshed {}",
        t["rotation_failures"], s["latency"]["ws_rotation"]["p50_us"], s["latency"]["token_fetch"]["count"], sb["refreshed"]
    );
    assert!(rotations >= 12, "several rotations per connection: {t}");
    assert_eq!(count(&t["rotation_failures"]), 0, "{t}");
    assert_eq!(count(&t["dropped"]), 0, "no 4401 with rotation: {t}");
    assert_eq!(t["closes"]["client"], 4, "{t}");
    assert_eq!(count(&sb["closed"]["server_4401"]), 0, "{sb}");
    assert_eq!(count(&sb["refresh_refused"]), 0, "{sb}");
    // A refresh in flight when the run ended reached the sandbox but was not confirmed.
    let refreshed = count(&sb["refreshed"]);
    assert!(
        (rotations..=rotations + 4).contains(&refreshed),
        "engine {rotations}, sandbox {refreshed}"
    );
    assert_eq!(count(&s["latency"]["ws_rotation"]["count"]), rotations);
    // Through the slot cache: one fetch per slot per refresh, not one per connection.
    let fetches = count(&s["latency"]["token_fetch"]["count"]);
    assert!(
        fetches <= rotations / 2 + 2,
        "{fetches} fetches for {rotations} rotations"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reauth_without_a_reply_counts_what_the_sandbox_counts() {
    let app = spawn_app().await;
    let rotation = json!({"mode": "reauth",
        "message": "{\"action\":\"refresh\",\"token\":\"{{token}}\"}"});
    let (_, run) = finish(&app, rotating(&app, "r2", Some(rotation))).await;
    let t = &run["summary"]["totals"];
    let sb = app.sandbox_profile("/echo?auth=bearer&tag=r2").await;
    assert!(count(&t["rotations"]) >= 12, "{t}");
    assert_eq!(t["rotations"], sb["refreshed"], "{t} {sb}");
    assert_eq!(count(&t["dropped"]), 0, "{t}");
    assert_eq!(count(&sb["closed"]["server_4401"]), 0, "{sb}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_rotation_is_neither_a_drop_nor_a_failure() {
    let app = spawn_app().await;
    let (_, run) = finish(
        &app,
        rotating(&app, "r3", Some(json!({"mode": "reconnect"}))),
    )
    .await;
    let s = &run["summary"];
    let t = &s["totals"];
    let rotations = count(&t["rotations"]);
    let sb = app.sandbox_profile("/echo?auth=bearer&tag=r3").await;
    println!(
        "reconnect: rotations {rotations}, ws_rotation p50 {} us, opened {}, sandbox accepted {}",
        s["latency"]["ws_rotation"]["p50_us"], t["opened"], sb["accepted"]
    );
    assert!(rotations >= 12, "{t}");
    assert_eq!(count(&t["rotation_failures"]), 0, "{t}");
    assert_eq!(count(&t["closes"]["rotation"]), rotations, "{t}");
    assert_eq!((count(&t["dropped"]), count(&t["failed"])), (0, 0), "{t}");
    assert_eq!(count(&t["opened"]), 4 + rotations, "{t}");
    assert_eq!(sb["accepted"], t["opened"], "{sb}");
    assert_eq!(count(&sb["closed"]["server_4401"]), 0, "{sb}");
    assert_eq!(count(&sb["closed"]["client"]), 4 + rotations, "{sb}");
    assert_ne!(
        run["diagnosis"]["kind"], "server_drops",
        "{}",
        run["diagnosis"]
    );
}
