//! A run split over local agent processes (the real binary, `socketswarm agent`): the
//! coordinator merges their ticks exactly — merged totals = the sandbox's own counters =
//! the sum of the agents' totals — and the verdict is read on merged data; an agent
//! killed mid-run ends the run with the reason. Run: `cargo test -p server --test agents`.
#![allow(clippy::unwrap_used)]
mod common;

use common::{plan, spawn_app};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_merge_exactly_and_a_cap_is_still_a_cap() {
    let app = spawn_app().await;
    // 3 × 100 connections against a cap of 150: each agent alone stays under it.
    let mut p = plan(
        "three agents",
        &app.ws("/echo?cap=150&tag=agents3"),
        300,
        "3s",
        "3s",
    );
    p["agents"] = json!(3);
    p["script"] = json!([{"send": "hello {{vu}}"}, {"expect": {"contains": "hello"}}]);
    let id = app.launch(p).await;
    let (snaps, done) = app.follow(&id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    let s = &run["summary"];
    let t = &s["totals"];
    let sb = app.sandbox_profile("/echo?cap=150&tag=agents3").await;
    // Merged totals = what the target counted.
    assert_eq!(t["opened"], sb["accepted"], "{t} vs {sb}");
    assert_eq!(
        t["failures"]["http_429"], sb["rejected"]["429"],
        "{t} vs {sb}"
    );
    assert_eq!(t["attempted"], 300, "{t}");
    assert_eq!(t["msgs_received"], sb["msgs_out"], "{t} vs {sb}");
    // = the sum of the agents' own totals.
    let agents = s["agents"].as_array().unwrap_or_else(|| panic!("{s}"));
    assert_eq!(agents.len(), 3);
    for key in ["attempted", "opened", "failed"] {
        let sum: u64 = agents
            .iter()
            .map(|a| a["totals"][key].as_u64().unwrap())
            .sum();
        assert_eq!(sum, t[key].as_u64().unwrap(), "{key}");
    }
    // Each agent held its share (100 slots, global {{vu}} numbers).
    assert!(
        agents.iter().all(|a| a["totals"]["attempted"] == 100),
        "{s}"
    );
    // Live snapshots showed the agents, and never more open than the cap.
    assert!(snaps
        .iter()
        .any(|x| x["agents"].as_array().is_some_and(|a| a.len() == 3)));
    let open: Vec<u64> = run["series"]["open"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as u64)
        .collect();
    assert!(open.iter().all(|o| *o <= 150), "{open:?}");
    let d = &run["diagnosis"];
    assert_eq!(d["kind"], "concurrency_cap", "{d}");
    assert!(
        (142.0..=158.0).contains(&d["level"].as_f64().unwrap()),
        "{d}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_ends_the_run_and_says_why() {
    let app = spawn_app().await;
    let mut p = plan("kill one", &app.ws("/echo?tag=agentkill"), 40, "1s", "30s");
    p["agents"] = json!(2);
    let id = app.launch(p).await;
    // Wait (bounded) for a snapshot that names both agents' processes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let pid = loop {
        let (_, run) = app.get(&format!("/api/runs/{id}")).await;
        let pids: Vec<u64> = run["last"]["agents"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x["pid"].as_u64())
                    .filter(|p| *p > 0)
                    .collect()
            })
            .unwrap_or_default();
        if pids.len() == 2 {
            break pids[1];
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no agents seen: {run}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let (_, done) = app.follow(&id).await;
    assert_eq!(done["status"], "failed", "{done}");
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    let s: &Value = &run["summary"];
    assert_eq!(s["end_reason"], "agent_lost", "{s}");
    let lost = &s["lost_agents"][0];
    assert_eq!(lost["agent"], 1, "{s}");
    assert!(
        lost["reason"].as_str().unwrap().contains("exited"),
        "{lost}"
    );
    // It ended long before its 31 s: the other agent stopped its load.
    assert!(s["duration_ms"].as_u64().unwrap() < 20_000, "{s}");
}

/// A run larger than one process may hold is split over local agents without being
/// asked (local mode); here one "process" holds 50.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_larger_than_a_process_is_split_over_agents() {
    let app = common::spawn_tuned(|a| a.max_process_connections = Some(50)).await;
    let p = plan(
        "too big for one",
        &app.ws("/echo?tag=autosplit"),
        120,
        "1s",
        "1s",
    );
    let id = app.launch(p).await;
    let (_, done) = app.follow(&id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    assert_eq!(
        run["plan"]["agents"], 3,
        "120 connections over agents of 50"
    );
    let s = &run["summary"];
    assert_eq!(s["agents"].as_array().map(Vec::len), Some(3), "{s}");
    assert_eq!(s["totals"]["opened"], 120, "{s}");
    assert_eq!(
        app.sandbox_profile("/echo?tag=autosplit").await["accepted"],
        120
    );
}

/// Token pools are sharded: three agent processes fetch the tokens one process would
/// (10 for a pool of 10), not three times them, and every connection still carries a
/// token its agent owns (the sandbox counts 10 distinct tokens over 30 handshakes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_fetch_a_token_pool_once_not_three_times() {
    let app = spawn_app().await;
    let mut p = plan(
        "sharded tokens",
        &app.ws("/echo?auth=bearer&tag=shard"),
        30,
        "1s",
        "1s",
    );
    p["agents"] = json!(3);
    p["auth"] = json!({
        "source": {"type": "oauth2", "token_url": format!("http://{}/oauth/token?ttl=60s&tag=shard", app.sandbox), "client_id": "loadtest", "client_secret": "s3cret"},
        "policy": {"mode": "pool", "size": 10}
    });
    let id = app.launch(p).await;
    let (_, done) = app.follow(&id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    let s = &run["summary"];
    assert_eq!(s["totals"]["opened"], 30, "{s}");
    assert_eq!(
        app.sandbox_profile("/oauth/token?tag=shard&ttl=60s").await["accepted"],
        10,
        "ten tokens minted for a pool of ten, across three agents"
    );
    assert_eq!(s["latency"]["token_fetch"]["count"], 10, "{s}");
    let sb = app.sandbox_profile("/echo?auth=bearer&tag=shard").await;
    assert_eq!(sb["accepted"], 30);
    assert_eq!(sb["per_token"].as_object().unwrap().len(), 10, "{sb}");
    // The per-token identities are the run's ten slots; each agent spreads its ten
    // connections over the slots it owns (4 or 3 of them), so 2 to 4 handshakes each.
    let ids = s["identities"]["token"].as_object().unwrap();
    assert_eq!(ids.len(), 10, "{ids:?}");
    let opened: Vec<u64> = ids
        .values()
        .map(|v| v["opened"].as_u64().unwrap())
        .collect();
    assert_eq!(opened.iter().sum::<u64>(), 30, "{ids:?}");
    assert!(opened.iter().all(|o| (2..=4).contains(o)), "{ids:?}");
}

/// Local agents each connect from two loopback addresses of their own (one address
/// stalls past ~14,100 connections to one port: connect() takes ports of one parity
/// first), and use both: round robins go by the agent's own ordinal of its connections,
/// not by `{{vu}}` (= i + kN, always one parity in an even-sized run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_agents_spread_over_both_their_source_addresses() {
    let app = spawn_app().await;
    let mut p = plan("sources", &app.ws("/echo?tag=src2"), 40, "1s", "1s");
    p["agents"] = json!(2);
    p["reconnect"] = json!({"mode": "never"});
    let id = app.launch(p).await;
    let (_, done) = app.follow(&id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    let s = &run["summary"];
    assert_eq!(s["totals"]["opened"], 40, "{s}");
    let by_source = s["identities"]["source_addr"]
        .as_object()
        .unwrap_or_else(|| panic!("{s}"));
    let mut seen: Vec<(String, u64)> = by_source
        .iter()
        .map(|(a, c)| (a.clone(), c["opened"].as_u64().unwrap()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("127.0.1.1".to_string(), 10),
            ("127.0.1.2".to_string(), 10),
            ("127.1.1.1".to_string(), 10),
            ("127.1.1.2".to_string(), 10)
        ],
        "{by_source:?}"
    );
}
