//! The standing pool of remote agents: `socketswarm agent --pool wss://AGENTS
//! --coordinator-pin PIN --allow-target …` with the pool token (the real
//! binary, as on another machine) joins a server started with `--agents-on joined`; the
//! server lists it; a plan asking for `"all"` runs on every idle one, merged exactly, and
//! the agents are back in the pool afterwards, ready for the next run. Outsiders without
//! the pool token are refused, and a server without a pool refuses `"all"` by name.
//! Run: `cargo test -p server --features app/ssr --test agent_pool`.
#![allow(clippy::unwrap_used)]
mod common;

use std::time::Duration;

use common::{args, plan, spawn_app, spawn_with, KillOnDrop};
use serde_json::{json, Value};

const POOL_TOKEN: &str = "pool-T0ken-9f2Kx7Lq4Zr8Wm3Np";

async fn pool_app() -> common::App {
    let dir = tempfile::tempdir().unwrap();
    let mut a = args(dir.path().join("test.db"));
    a.k8s.agents_on = server::config::k8s::AgentsOn::Joined;
    a.k8s.agent_pool_token = Some(POOL_TOKEN.into());
    spawn_with(a, dir).await
}

fn pool_agent(app: &common::App, source: &str) -> KillOnDrop {
    KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_socketswarm"))
            .args(["agent", "--pool", &app.agents_url(), "--source", source])
            .args(["--coordinator-pin", &app.agent_pin()])
            .args(["--allow-target", "127.0.0.0/8"])
            .env("SOCKETSWARM_AGENT_TOKEN", POOL_TOKEN)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// The status a WebSocket upgrade of the pool endpoint with `bearer` gets.
async fn pool_upgrade(app: &common::App, bearer: &str) -> u16 {
    app.agent_upgrade("/api/agents/pool", bearer).await
}

/// Waits (bounded) until `GET /api/agents` satisfies `ok`; the listing it saw.
async fn agents_until(app: &common::App, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, list) = app.get("/api/agents").await;
        assert_eq!(status, 200, "{list}");
        if ok(&list) {
            return list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: never happened; last listing {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_asking_for_all_runs_on_every_pool_agent_and_they_come_back() {
    let app = pool_app().await;
    let _a = pool_agent(&app, "127.0.3.1");
    let _b = pool_agent(&app, "127.0.3.2");
    let list = agents_until(&app, "two agents in the pool", |l| l["idle"] == 2).await;
    let agents = list["agents"].as_array().unwrap();
    assert!(agents
        .iter()
        .all(|a| a["run"].is_null() && a["nofile"].as_u64() > Some(0)));
    let sources: Vec<&str> = agents
        .iter()
        .map(|a| a["source_addrs"][0].as_str().unwrap())
        .collect();
    assert!(
        sources.contains(&"127.0.3.1") && sources.contains(&"127.0.3.2"),
        "{list}"
    );

    for round in 0..2 {
        let tag = format!("pool{round}");
        let mut p = plan(
            "all joined",
            &app.ws(&format!("/echo?tag={tag}")),
            200,
            "1s",
            "1s",
        );
        p["agents"] = json!("all");
        p["reconnect"] = json!({"mode": "never"});
        let id = app.launch(p).await;
        let (_, done) = app.follow(&id).await;
        assert_eq!(done["status"], "completed", "round {round}: {done}");
        let (_, run) = app.get(&format!("/api/runs/{id}")).await;
        let s = &run["summary"];
        assert_eq!(s["agents"].as_array().map(Vec::len), Some(2), "{s}");
        let sb = app.sandbox_profile(&format!("/echo?tag={tag}")).await;
        assert_eq!(s["totals"]["opened"], 200, "{s}");
        assert_eq!(
            sb["accepted"], 200,
            "merged = what the target counted: {sb}"
        );
        for a in s["agents"].as_array().unwrap() {
            assert_eq!(a["totals"]["attempted"], 100, "{a}");
        }
        // The stored plan keeps "all": a rerun takes whoever is in the pool then.
        assert_eq!(run["plan"]["agents"], "all");
        // Back in the pool, ready for the next round.
        agents_until(&app, "both agents idle again", |l| l["idle"] == 2).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_cannot_join_the_pool_and_all_needs_a_pool() {
    let app = pool_app().await;
    // A wrong token: refused before the upgrade.
    let r = pool_upgrade(&app, "Bearer wrong-token-0123456789").await;
    assert_eq!(r, 401);
    assert_eq!(app.get("/api/agents").await.1["idle"], 0);
    // With an empty pool, "all" ends the run with the reason.
    let mut p = plan("nobody", &app.ws("/echo"), 10, "1s", "1s");
    p["agents"] = json!("all");
    let id = app.launch(p).await;
    let (_, done) = app.follow(&id).await;
    assert_eq!(done["status"], "failed", "{done}");
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    assert!(
        run.to_string().contains("no agent is idle in the pool"),
        "{run}"
    );

    // A server without a pool: no pool endpoint, and "all" is refused by field.
    let plain = spawn_app().await;
    let r = pool_upgrade(&plain, &format!("Bearer {POOL_TOKEN}")).await;
    assert_eq!(r, 404);
    let mut p = plan("no pool", &plain.ws("/echo"), 10, "1s", "1s");
    p["agents"] = json!("all");
    let (status, body) = plain.post("/api/runs", &p.to_string()).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("agents"), "{body}");
    assert!(body.to_string().contains("no pool"), "{body}");
}
