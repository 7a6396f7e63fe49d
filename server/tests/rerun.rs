//! Run again and edit-and-run-again with the typed-in secrets a run did not keep (issue
//! 16 item 5), and the close reasons the engine keeps as evidence (item 2 of the same
//! brief): against the sandbox's strict mock OAuth endpoint and its `close_cap` profile.
//! Run: `cargo test -p server --features app/ssr --test rerun`.
#![allow(clippy::unwrap_used)]
mod common;

use common::{plan, spawn_app};
use serde_json::{json, Value};

/// The one client secret the sandbox's `strict_client=1` token endpoint accepts.
const SECRET: &str = "sandbox-client-secret";

fn oauth_plan(app: &common::App, tag: &str, n: u32) -> Value {
    let mut p = plan(
        "oauth again",
        // No `auth=` here: the stored URL would redact its value (a credential-like
        // name) and Run again would ask for it too. The token is fetched all the same.
        &app.ws(&format!("/echo?tag={tag}")),
        n,
        "300ms",
        "600ms",
    );
    p["auth"] = json!({"source": {"type": "oauth2",
        "token_url": format!("http://{}/oauth/token?strict_client=1&tag={tag}", app.sandbox),
        "client_id": "loadtest", "client_secret": SECRET}});
    p
}

async fn finished(app: &common::App, launched: &Value) -> Value {
    let id = launched["id"].as_str().unwrap().to_string();
    let (_, done) = app.follow(&id).await;
    assert_eq!(done["status"], "completed", "{done}");
    app.get(&format!("/api/runs/{id}")).await.1
}

/// Everything SQLite holds (the database and its write-ahead log), as text.
fn stored_bytes(app: &common::App) -> String {
    let mut all = Vec::new();
    for suffix in ["", "-wal"] {
        let mut path = app.db.clone().into_os_string();
        path.push(suffix);
        all.extend(std::fs::read(path).unwrap_or_default());
    }
    String::from_utf8_lossy(&all).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_again_asks_for_the_secret_it_did_not_keep_and_never_stores_it() {
    let mut app = spawn_app().await;
    let first = app.launch(oauth_plan(&app, "r1", 4)).await;
    let run = finished(&app, &json!({ "id": first })).await;
    assert_eq!(run["summary"]["totals"]["opened"], 4, "{}", run["summary"]);
    let token_url = format!("http://{}/oauth/token?strict_client=1&tag=r1", app.sandbox);
    assert_eq!(
        run["missing_secrets"],
        json!([{"key": "auth.source.client_secret",
            "label": format!("OAuth client secret for token endpoint {token_url}")}])
    );

    // Without it: a 422 naming the secret, by key and in words.
    let rerun = format!("/api/runs/{first}/rerun");
    let (s, body) = app.post(&rerun, "").await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(
        body["fields"][0]["field"],
        "secrets.auth.source.client_secret"
    );
    let msg = body["fields"][0]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("OAuth client secret for token endpoint"),
        "{msg}"
    );
    // A key that names no missing secret, and a body that is not a request: 4xx too.
    let (s, body) = app
        .post(
            &rerun,
            &json!({"secrets": {"auth.source.client_secret": SECRET, "headers.X": "v"}})
                .to_string(),
        )
        .await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["fields"][0]["field"], "secrets.headers.X");
    let (s, _) = app.post(&rerun, r#"{"secret": {}}"#).await;
    assert_eq!(s, 400);

    // With it: the run launches, fetches its token and completes.
    let (s, launched) = app
        .post(
            &rerun,
            &json!({"secrets": {"auth.source.client_secret": SECRET}}).to_string(),
        )
        .await;
    assert_eq!(s, 201, "{launched}");
    assert!(!launched.to_string().contains(SECRET));
    let again = finished(&app, &launched).await;
    assert_eq!(
        again["summary"]["totals"]["opened"], 4,
        "{}",
        again["summary"]
    );
    assert_eq!(again["summary"]["latency"]["token_fetch"]["count"], 1);
    assert_eq!(
        app.sandbox_profile("/oauth/token?strict_client=1&tag=r1")
            .await["accepted"],
        2,
        "one token for each run"
    );
    assert_eq!(again["plan"], run["plan"], "the same plan, stored redacted");
    assert_eq!(again["missing_secrets"], run["missing_secrets"]);
    assert!(!again.to_string().contains(SECRET));
    assert!(
        !stored_bytes(&app).contains(SECRET),
        "the secret is in SQLite"
    );

    // A wrong secret is a measurement, not a crash: the token endpoint's refusal is
    // counted and shown as what the target said.
    let (s, launched) = app
        .post(
            &rerun,
            &json!({"secrets": {"auth.source.client_secret": "not-the-secret"}}).to_string(),
        )
        .await;
    assert_eq!(s, 201, "{launched}");
    let wrong = finished(&app, &launched).await;
    let totals = &wrong["summary"]["totals"];
    assert_eq!(totals["opened"], 0, "{totals}");
    assert!(
        totals["failures"]["token_http_401"].as_u64().unwrap() >= 1,
        "{totals}"
    );
    let refused = &app
        .sandbox_profile("/oauth/token?strict_client=1&tag=r1")
        .await["rejected"];
    assert!(refused["401"].as_u64().unwrap() >= 1, "{refused}");
    assert_eq!(
        wrong["diagnosis"]["kind"], "auth_failure",
        "{}",
        wrong["diagnosis"]
    );
    assert!(!stored_bytes(&app).contains("not-the-secret"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_and_run_again_launches_the_edited_plan_with_the_secret() {
    let mut app = spawn_app().await;
    let first = app.launch(oauth_plan(&app, "r2", 3)).await;
    let run = finished(&app, &json!({ "id": first })).await;
    // The page's editor starts from the plan as shown (redacted); one value changes.
    let mut edited = run["plan"].clone();
    edited["stages"][1]["connections"] = json!(5);
    edited["stages"][0]["connections"] = json!(5);
    let rerun = format!("/api/runs/{first}/rerun");
    let (s, body) = app
        .post(&rerun, &json!({ "plan": edited }).to_string())
        .await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(
        body["fields"][0]["field"],
        "secrets.auth.source.client_secret"
    );
    let (s, launched) = app
        .post(
            &rerun,
            &json!({"plan": edited, "secrets": {"auth.source.client_secret": SECRET}}).to_string(),
        )
        .await;
    assert_eq!(s, 201, "{launched}");
    let again = finished(&app, &launched).await;
    assert_eq!(again["plan"]["stages"][1]["connections"], 5);
    assert_eq!(
        again["summary"]["totals"]["opened"], 5,
        "{}",
        again["summary"]
    );
    assert_eq!(
        again["plan"]["auth"]["source"]["client_secret"],
        "<redacted>"
    );
    assert!(!stored_bytes(&app).contains(SECRET));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_reasons_are_kept_with_counts_and_exported() {
    let mut app = spawn_app().await;
    // Three may stay; every later one is accepted and closed at once, with a reason.
    let p = plan(
        "closes with reasons",
        &app.ws("/echo?close_cap=3&close_code=1008&tag=c1"),
        10,
        "300ms",
        "500ms",
    );
    let id = app.launch(p).await;
    let run = finished(&app, &json!({ "id": id })).await;
    let s = &run["summary"];
    let closed = s["totals"]["closes"]["server_1008"].as_u64().unwrap();
    assert!(closed >= 7, "{s}");
    assert_eq!(
        s["evidence"]["close_reasons"],
        json!({"1008": {"too many concurrent connections": closed}}),
        "every close counted under its reason"
    );
    // The export carries them and follows the documented schema.
    let (st, export) = app.get(&format!("/api/runs/{id}/export.json")).await;
    assert_eq!(st, 200);
    assert_eq!(
        export["summary"]["evidence"]["close_reasons"]["1008"]["too many concurrent connections"],
        closed
    );
    common::assert_export_schema(&export);
    app.stop().await;
}
