//! History, comparison and sharing through the JSON API, against the embedded sandbox:
//! saved plans (TOML in and out), run again, tags/notes and list filters, baselines,
//! compare with behaviour changes, share links, CSV, delete; and a database written by
//! schema v1 migrating forward. Run: `cargo test -p server --test history`.
#![allow(clippy::unwrap_used)]
mod common;

use common::{args, plan, spawn_app, spawn_with, App};
use serde_json::{json, Value};

async fn text(app: &App, path: &str) -> (u16, String, String) {
    let r = app.fetch(path).await;
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ctype, r.text().await.unwrap())
}

/// Launches and waits for the end (SSE); returns the id.
async fn run_to_end(app: &App, p: Value) -> String {
    let id = app.launch(p).await;
    let (_, done) = app.follow(&id).await;
    assert_eq!(done["status"], "completed", "{done}");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_database_migrates_forward_and_keeps_its_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    std::fs::copy("tests/fixtures/v1.db", &db).unwrap();
    let mut app = spawn_with(args(db), dir).await;
    let (_, list) = app.get("/api/runs").await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let id = list[0]["id"].as_str().unwrap();
    assert_eq!(list[0]["name"], "fixture v1 run");
    assert_eq!(list[0]["status"], "completed");
    assert_eq!(list[0]["tags"], json!([]));
    let (status, run) = app.get(&format!("/api/runs/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(run["summary"]["totals"]["opened"], 5);
    assert_eq!(run["summary"]["totals"]["failed"], 3);
    assert_eq!(run["series"]["t"].as_array().unwrap().len(), 5);
    // Its ticks were stored whole (format 1): they still replay, running totals and all.
    assert_eq!(run["last"]["seq"], 5);
    assert_eq!(
        run["last"]["totals"], run["summary"]["totals"],
        "{}",
        run["last"]
    );
    assert_eq!(run["plan"]["auth"]["source"]["tokens"][0], "<redacted>");
    // New columns work on old rows: tag it, filter by the tag.
    let (s, _) = app
        .send(
            "PUT",
            &format!("/api/runs/{id}/meta"),
            r#"{"tags":["old"],"note":"from v1"}"#,
        )
        .await;
    assert_eq!(s, 200);
    let (_, tagged) = app.get("/api/runs?tag=old").await;
    assert_eq!(tagged[0]["note"], "from v1");
    // Run again: the token was typed in and never stored, so it must be given again.
    let (s, body) = app.post(&format!("/api/runs/{id}/rerun"), "").await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["fields"][0]["field"], "secrets.auth.source.tokens.0");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_plans_round_trip_as_toml_run_again_and_keep_their_secrets() {
    let app = spawn_app().await;
    let toml = format!(
        "name = \"tokens\"\ntarget = \"{}\"\n[[stages]]\nduration = \"500ms\"\nconnections = 4\n[[stages]]\nduration = \"700ms\"\nconnections = 4\n[auth.source]\ntype = \"static\"\ntokens = [\"static-secret-1\"]\n",
        app.ws("/echo?auth=bearer&tag=plan")
    );
    let (s, saved) = app.post("/api/plans", &toml).await;
    assert_eq!(s, 201, "{saved}");
    let pid = saved["id"].as_str().unwrap().to_string();

    // Export: commented TOML with the plan's values, so the file runs as the page runs
    // it (a hidden value is never written as a placeholder); the page shows it redacted.
    let (s, ctype, exported) = text(&app, &format!("/api/plans/{pid}/plan.toml")).await;
    assert_eq!(s, 200);
    assert!(ctype.starts_with("application/toml"));
    assert!(exported.contains("# Ramp linearly"), "{exported}");
    assert!(exported.contains("static-secret-1"), "{exported}");
    assert!(!exported.contains("<redacted>"));
    let (_, detail) = app.get(&format!("/api/plans/{pid}")).await;
    let page_toml = detail["toml"].as_str().unwrap().to_string();
    assert!(!page_toml.contains("static-secret-1"), "{page_toml}");
    assert!(page_toml.contains("<redacted>"));
    // Saving the page's (redacted) text back keeps the stored secret.
    let edited = page_toml.replace("connections = 4", "connections = 6");
    let (s, body) = app.send("PUT", &format!("/api/plans/{pid}"), &edited).await;
    assert_eq!(s, 200, "{body}");
    let (_, detail) = app.get(&format!("/api/plans/{pid}")).await;
    assert_eq!(detail["plan"]["stages"][0]["connections"], 6);
    assert!(!detail.to_string().contains("static-secret-1"));

    // Run it: the stored secret authenticates every connection.
    let (s, launched) = app.post(&format!("/api/plans/{pid}/runs"), "").await;
    assert_eq!(s, 201, "{launched}");
    let first = launched["id"].as_str().unwrap().to_string();
    let (_, done) = app.follow(&first).await;
    assert_eq!(done["status"], "completed");
    let (_, run) = app.get(&format!("/api/runs/{first}")).await;
    assert_eq!(run["summary"]["totals"]["opened"], 6, "{}", run["summary"]);
    assert_eq!(run["plan_id"], pid.as_str());
    assert!(!run.to_string().contains("static-secret-1"));

    // Run again from the run: same plan, secrets restored from the saved plan.
    let (s, again) = app.post(&format!("/api/runs/{first}/rerun"), "").await;
    assert_eq!(s, 201, "{again}");
    let second = again["id"].as_str().unwrap().to_string();
    let (_, done) = app.follow(&second).await;
    assert_eq!(done["status"], "completed");
    let (_, run2) = app.get(&format!("/api/runs/{second}")).await;
    assert_eq!(run2["summary"]["totals"]["opened"], 6);
    assert_eq!(run2["plan"], run["plan"]);
    let sb = app.sandbox_profile("/echo?auth=bearer&tag=plan").await;
    assert_eq!(sb["accepted"], 12);

    // Duplicate, list, filter runs by plan, delete the copy.
    let (s, copy) = app.post(&format!("/api/plans/{pid}/duplicate"), "").await;
    assert_eq!(s, 201);
    let (_, plans) = app.get("/api/plans").await;
    assert_eq!(plans.as_array().unwrap().len(), 2);
    let orig = plans
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == pid.as_str())
        .unwrap();
    assert_eq!(orig["runs"], 2);
    let (_, by_plan) = app.get(&format!("/api/runs?plan={pid}")).await;
    assert_eq!(by_plan.as_array().unwrap().len(), 2);
    let cid = copy["id"].as_str().unwrap();
    let (s, _) = app.send("DELETE", &format!("/api/plans/{cid}"), "").await;
    assert_eq!(s, 204);
    let (s, _) = app.get(&format!("/api/plans/{cid}")).await;
    assert_eq!(s, 404);

    // Bad TOML: 422 naming the text and the line; nothing stored.
    let (s, body) = app.post("/api/plans", "name = \"x\"\ntarget = 5\n").await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["fields"][0]["field"], "text");
    assert!(body["fields"][0]["message"]
        .as_str()
        .unwrap()
        .contains("line 2"));
    let (_, plans) = app.get("/api/plans").await;
    assert_eq!(plans.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_filters_sort_and_pages() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for (i, n) in [3u32, 5, 4].iter().enumerate() {
        let p = plan(&format!("run-{i}"), &app.ws("/echo"), *n, "300ms", "300ms");
        ids.push(run_to_end(&app, p).await);
    }
    let (s, _) = app
        .send(
            "PUT",
            &format!("/api/runs/{}/meta", ids[1]),
            r#"{"tags":["after-fix","v2"],"note":"raised the cap"}"#,
        )
        .await;
    assert_eq!(s, 200);
    let (_, l) = app.get("/api/runs?tag=after-fix").await;
    assert_eq!(l.as_array().unwrap().len(), 1);
    assert_eq!(l[0]["id"], ids[1].as_str());
    assert_eq!(l[0]["tags"], json!(["after-fix", "v2"]));
    assert_eq!(l[0]["note"], "raised the cap");
    let (_, l) = app.get("/api/runs?q=run-2").await;
    assert_eq!(l[0]["id"], ids[2].as_str());
    let (_, l) = app.get("/api/runs?sort=peak&dir=asc").await;
    let peaks: Vec<i64> = l
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["peak_open"].as_i64().unwrap())
        .collect();
    assert_eq!(peaks, vec![3, 4, 5]);
    let r = app.fetch("/api/runs?per_page=2&page=2").await;
    assert_eq!(r.headers()["x-total-count"], "3");
    assert_eq!(r.headers()["x-pages"], "2");
    let l: Value = r.json().await.unwrap();
    assert_eq!(l.as_array().unwrap().len(), 1);
    assert_eq!(l[0]["id"], ids[0].as_str(), "oldest is alone on page 2");
    let (_, l) = app.get("/api/runs?status=failed").await;
    assert_eq!(l, json!([]));
    let (_, l) = app.get("/api/runs?from=2000-01-01&to=2000-01-02").await;
    assert_eq!(l, json!([]));
    // Bad filters name the field.
    for (q, field) in [
        ("sort=speed", "sort"),
        ("status=done", "status"),
        ("from=yesterday", "from"),
        ("per_page=1000", "per_page"),
        ("page=-1", "page"),
    ] {
        let (s, body) = app.get(&format!("/api/runs?{q}")).await;
        assert_eq!(s, 400, "{q}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains(field),
            "{q}: {body}"
        );
    }
    let (s, body) = app
        .send(
            "PUT",
            &format!("/api/runs/{}/meta", ids[0]),
            r#"{"tags":["has space!"],"note":""}"#,
        )
        .await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["fields"][0]["field"], "tags");
    // Delete: the run, its ticks and tags go; others stay.
    let (s, _) = app
        .send("DELETE", &format!("/api/runs/{}", ids[1]), "")
        .await;
    assert_eq!(s, 204);
    let (s, _) = app.get(&format!("/api/runs/{}", ids[1])).await;
    assert_eq!(s, 404);
    let (_, l) = app.get("/api/runs").await;
    assert_eq!(l.as_array().unwrap().len(), 2);
    let (_, l) = app.get("/api/runs?tag=after-fix").await;
    assert_eq!(l, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_says_what_changed_and_share_links_reach_only_their_run() {
    let app = spawn_app().await;
    // Same plan, the target's cap raised from 4 to 8.
    let a = run_to_end(&app, plan("cap", &app.ws("/echo?cap=4"), 10, "1s", "1s")).await;
    let b = run_to_end(&app, plan("cap", &app.ws("/echo?cap=8"), 10, "1s", "1s")).await;
    let (s, cmp) = app.get(&format!("/api/compare?runs={a},{b}")).await;
    assert_eq!(s, 200, "{cmp}");
    let rows = cmp["comparison"]["metrics"].as_array().unwrap();
    let peak = rows.iter().find(|r| r["key"] == "peak_open").unwrap();
    assert_eq!(peak["values"], json!([4.0, 8.0]));
    assert_eq!(peak["changes"][1]["abs"], 4.0);
    assert_eq!(peak["changes"][1]["rel"], 1.0);
    assert_eq!(peak["changes"][1]["verdict"], "better");
    let behaviour: Vec<&str> = cmp["comparison"]["behaviour"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        behaviour.contains(&"first 429 at 4 open connections → 8"),
        "{behaviour:?}"
    );
    assert!(
        behaviour.contains(&"peak open connections 4 → 8"),
        "{behaviour:?}"
    );
    assert!(cmp["runs"][1]["series"]["t"].as_array().unwrap().len() > 1);
    // 1 or 5 runs: refused, naming the parameter.
    let (s, body) = app.get(&format!("/api/compare?runs={a}")).await;
    assert_eq!(s, 400);
    assert!(
        body["message"].as_str().unwrap().starts_with("runs:"),
        "{body}"
    );

    // CSV: a header and one row per tick.
    let (s, ctype, csv) = text(&app, &format!("/api/runs/{a}/series.csv")).await;
    assert_eq!(s, 200);
    assert!(ctype.starts_with("text/csv"));
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("t_s,target,open,opened_per_s,failed_http_429_per_s"),
        "{}",
        lines[0]
    );
    let (_, run) = app.get(&format!("/api/runs/{a}")).await;
    assert_eq!(
        lines.len() - 1,
        run["series"]["t"].as_array().unwrap().len()
    );

    // The server's JSON export (also behind share links) follows the documented schema.
    let (s, export) = app.get(&format!("/api/runs/{a}/export.json")).await;
    assert_eq!(s, 200);
    common::assert_export_schema(&export);
    assert_eq!(export["ticks"].as_array().unwrap().len(), lines.len() - 1);

    // Share links: one run, read-only, nothing else.
    let (s, link) = app.post(&format!("/api/runs/{a}/share"), "").await;
    assert_eq!(s, 201);
    let sid = link["id"].as_str().unwrap().to_string();
    assert_eq!(link["url"], format!("/share/{sid}"));
    assert_eq!(
        link["public_url"],
        Value::Null,
        "no --public-url: the page builds the link"
    );
    assert_eq!(link["local_only"], true, "a loopback-only server says so");
    assert_ne!(sid, a, "the share id is not the run id");
    let (_, again) = app.post(&format!("/api/runs/{a}/share"), "").await;
    assert_eq!(again["id"], sid.as_str(), "one link per run");
    let (s, view) = app.get(&format!("/api/shares/{sid}")).await;
    assert_eq!(s, 200);
    assert_eq!(view["Run"]["id"], a.as_str());
    let (s, _, html) = text(&app, &format!("/share/{sid}/report.html")).await;
    assert_eq!(s, 200);
    assert!(html.contains("<html"));
    assert!(
        html.contains("<h2>Environment</h2>"),
        "the report says where it ran"
    );
    let (s, _, csv2) = text(&app, &format!("/share/{sid}/series.csv")).await;
    assert_eq!((s, csv2), (200, csv));
    let (s, page_html) = {
        let (s, _, t) = text(&app, &format!("/share/{sid}")).await;
        (s, t)
    };
    assert_eq!(s, 200);
    assert!(page_html.contains("cap"), "the shared page renders the run");
    assert!(
        !page_html.contains(&format!("/runs/{b}")),
        "no links to other runs"
    );
    let (s, cl) = app
        .post(&format!("/api/compare/share?runs={a},{b}"), "")
        .await;
    assert_eq!(s, 201);
    let (s, cv) = app
        .get(&format!("/api/shares/{}", cl["id"].as_str().unwrap()))
        .await;
    assert_eq!(s, 200);
    assert_eq!(cv["Compare"]["runs"][1]["id"], b.as_str());
    // A compare share has no run downloads; unknown share ids are 404.
    let (s, _, _) = text(
        &app,
        &format!("/share/{}/report.html", cl["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .get("/api/shares/0123456789abcdef0123456789abcdef")
        .await;
    assert_eq!(s, 404);

    // Baseline needs a saved plan; then a later run shows its difference.
    let (s, body) = app.post(&format!("/api/runs/{a}/baseline"), "").await;
    assert_eq!(s, 409, "{body}");
    let (s, saved) = app.post(&format!("/api/runs/{a}/plan"), "").await;
    assert_eq!(s, 201);
    let (s, _) = app.post(&format!("/api/runs/{a}/baseline"), "").await;
    assert_eq!(s, 204);
    let pid = saved["id"].as_str().unwrap();
    let (_, c) = app.post(&format!("/api/plans/{pid}/runs"), "").await;
    let c = c["id"].as_str().unwrap().to_string();
    let (_, done) = app.follow(&c).await;
    assert_eq!(done["status"], "completed");
    let (_, run_c) = app.get(&format!("/api/runs/{c}")).await;
    assert_eq!(run_c["baseline"]["run_id"], a.as_str());
    assert!(
        run_c["baseline"]["comparison"]["metrics"]
            .as_array()
            .unwrap()
            .len()
            > 5
    );
    let (_, run_a) = app.get(&format!("/api/runs/{a}")).await;
    assert_eq!(run_a["is_baseline"], true);
    // A share of that run names neither its saved plan nor its baseline: not in its JSON
    // view, nor in the `done` event of its stream.
    let (_, link_c) = app.post(&format!("/api/runs/{c}/share"), "").await;
    let sid_c = link_c["id"].as_str().unwrap();
    let (_, view_c) = app.get(&format!("/api/shares/{sid_c}")).await;
    let url = format!("{}/share/{sid_c}/events", app.base);
    let (_, done_c) = common::follow_sse(&app.http, &url, None).await;
    for shown in [&view_c["Run"], &done_c] {
        assert_eq!(shown["id"], c.as_str());
        assert_eq!(shown["plan_id"], Value::Null, "{shown}");
        assert_eq!(shown["plan_name"], Value::Null);
        assert_eq!(shown["baseline"], Value::Null);
    }

    // Deleting a run removes its share links; a live run cannot be deleted.
    let (s, _) = app.send("DELETE", &format!("/api/runs/{a}"), "").await;
    assert_eq!(s, 204);
    let (s, _) = app.get(&format!("/api/shares/{sid}")).await;
    assert_eq!(s, 404);
    let (_, run_c) = app.get(&format!("/api/runs/{c}")).await;
    assert_eq!(
        run_c["baseline"],
        Value::Null,
        "baseline cleared with its run"
    );
    let live = app
        .launch(plan("live", &app.ws("/echo"), 2, "1s", "2s"))
        .await;
    let (s, body) = app.send("DELETE", &format!("/api/runs/{live}"), "").await;
    assert_eq!(s, 409, "{body}");
    assert!(body["message"].as_str().unwrap().contains("cancel it"));
    app.follow(&live).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_saves_a_starter_plan_aimed_at_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("first.db");
    let mut a = args(db.clone());
    a.starter_plan = true;
    let mut app = spawn_with(a, dir).await;
    let (_, plans) = app.get("/api/plans").await;
    assert_eq!(plans.as_array().unwrap().len(), 2, "{plans}");
    let by_target = |t: &str| {
        plans
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["target"].as_str().unwrap().starts_with(&app.ws(t)))
            .unwrap_or_else(|| panic!("{t}: {plans}"))
            .clone()
    };
    let starter = by_target("/echo");
    // The second starter plan: the web-messaging guests (issue 14).
    let guests = by_target("/webmessaging?");
    assert!(
        guests["name"].as_str().unwrap().contains("web-messaging"),
        "{guests}"
    );
    let pid = starter["id"].as_str().unwrap().to_string();
    let (_, ctype, toml) = text(&app, &format!("/api/plans/{pid}/plan.toml")).await;
    assert!(ctype.starts_with("application/toml"));
    assert!(
        toml.contains("# Ramp linearly") && toml.contains("[thresholds]"),
        "{toml}"
    );
    app.stop().await;
    // Not seeded again once the database has something in it.
    let dir2 = tempfile::tempdir().unwrap();
    let mut a = args(db);
    a.starter_plan = true;
    let mut again = spawn_with(a, dir2).await;
    let (_, plans) = again.get("/api/plans").await;
    assert_eq!(plans.as_array().unwrap().len(), 2);
    again.stop().await;
}

/// With `--public-url`, a share link is built on the name colleagues use, whatever
/// address the browser that asked for it used, and it opens through that name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_links_are_built_on_the_public_url() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = args(dir.path().join("test.db"));
    a.public_url = Some("http://swarm.example.test:8080/".into());
    let app = spawn_with(a, dir).await;
    let id = run_to_end(
        &app,
        plan("shared by name", &app.ws("/echo"), 2, "200ms", "200ms"),
    )
    .await;
    let (s, link) = app.post(&format!("/api/runs/{id}/share"), "").await;
    assert_eq!(s, 201, "{link}");
    let sid = link["id"].as_str().unwrap();
    assert_eq!(
        link["public_url"],
        format!("http://swarm.example.test:8080/share/{sid}")
    );
    assert_eq!(
        link["local_only"], false,
        "a public URL is reachable by others"
    );
    // The Host check accepts that name: a colleague's browser arriving through it (a
    // proxy or DNS pointing at this server) gets the shared page.
    let res = reqwest::Client::new()
        .get(format!("{}/share/{sid}", app.base))
        .header("host", "swarm.example.test:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("shared by name"));
}

/// The runs list carries each finished run's verdict, filters by it, and names the
/// field of a verdict that is not one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runs_list_shows_and_filters_by_verdict() {
    let app = spawn_app().await;
    let capped = run_to_end(&app, plan("capped", &app.ws("/echo?cap=4"), 10, "1s", "1s")).await;
    let clean = run_to_end(&app, plan("clean", &app.ws("/echo"), 4, "300ms", "300ms")).await;
    let (s, all) = app.get("/api/runs").await;
    assert_eq!(s, 200, "{all}");
    let verdict_of = |id: &str| {
        let r = all
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("{id} in {all}"))
            .clone();
        (r["verdict"].clone(), r["verdict_text"].clone())
    };
    assert_eq!(
        verdict_of(&capped),
        (json!("concurrency_cap"), json!("concurrency cap ≈ 4"))
    );
    assert_eq!(verdict_of(&clean), (json!("none"), json!("no limit")));
    let (_, only) = app.get("/api/runs?verdict=concurrency_cap").await;
    let ids: Vec<&str> = only
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![capped.as_str()]);
    let (s, bad) = app.get("/api/runs?verdict=capped").await;
    assert_eq!(s, 400, "{bad}");
    assert!(bad.to_string().contains("verdict"), "{bad}");
    assert!(bad.to_string().contains("concurrency_cap"), "{bad}");
}
