//! A real protocol server nobody here wrote (issue 14): the npm `socket.io` package's
//! server (`examples/socketio-server.mjs`, installed by `scripts/setup.sh`'s `npm ci`)
//! driven by `examples/socketio-chat.json` through the JSON API. Per-session variables,
//! captures, correlation among pushes and an auto-responder for Engine.IO's heartbeat
//! are checked against what the server saw: connections, events, acks, pings and pongs,
//! packets, and why sessions ended.
//!
//! Run: `cargo test -p server --features app/ssr --test socketio` (needs `node` and
//! `node_modules`: `scripts/setup.sh`).
#![allow(clippy::unwrap_used)]
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{spawn_app, KillOnDrop};
use serde_json::Value;

/// The Socket.IO server on a free port, with the given heartbeat (ms); killed on drop.
struct SocketIo {
    _child: KillOnDrop,
    port: u16,
}

impl SocketIo {
    fn start(ping_interval: u32, ping_timeout: u32) -> SocketIo {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        assert!(
            std::path::Path::new(root)
                .join("node_modules/socket.io")
                .is_dir(),
            "node_modules/socket.io is missing: run scripts/setup.sh (npm ci)"
        );
        let mut child = Command::new("node")
            .arg(format!("{root}/examples/socketio-server.mjs"))
            .args(["--port", "0"])
            .args(["--ping-interval", &ping_interval.to_string()])
            .args(["--ping-timeout", &ping_timeout.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node runs (scripts/setup.sh installs it)");
        let stdout = child.stdout.take().unwrap();
        let child = KillOnDrop(child);
        // Its first line says it listens (it is written once the port is bound).
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the server's first line `{line}`: {e}"));
        SocketIo {
            _child: child,
            port: ready["port"].as_u64().unwrap() as u16,
        }
    }

    async fn counts(&self) -> Value {
        reqwest::get(format!("http://127.0.0.1:{}/counts", self.port))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// The example plan aimed at `server`, with `vus` sessions.
fn example(server: &SocketIo, vus: u64) -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/socketio-chat.json"
    ))
    .unwrap();
    let mut plan: Value = serde_json::from_str(&text).unwrap();
    let target = plan["target"]
        .as_str()
        .unwrap()
        .replace("127.0.0.1:3000", &format!("127.0.0.1:{}", server.port));
    plan["target"] = target.into();
    for stage in plan["stages"].as_array_mut().unwrap() {
        stage["connections"] = vus.into();
    }
    plan
}

async fn run(app: &common::App, plan: Value) -> Value {
    let id = app.launch(plan).await;
    let (_, done) = app.follow(&id).await;
    assert_eq!(done["status"], "completed", "{done}");
    done["summary"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socketio_example_holds_its_sessions_and_matches_the_server_s_counts() {
    const VUS: u64 = 20;
    // A heartbeat every second with a second to answer it: a 7 s run misses ~6 of them
    // per session unless the responder answers.
    let server = SocketIo::start(1000, 1000);
    let app = spawn_app().await;
    let s = run(&app, example(&server, VUS)).await;
    let c = server.counts().await;
    let t = &s["totals"];
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    println!(
        "engine: opened {} dropped {} sent {} received {} skipped {} auto replies {} rtt p50 {}us auto reply p50 {}us; server: {c}",
        t["opened"], t["dropped"], t["msgs_sent"], t["msgs_received"], t["msgs_skipped"],
        t["auto_replies"], s["latency"]["ws_rtt"]["p50_us"], s["latency"]["ws_auto_reply"]["p50_us"]
    );

    // Sessions: all opened, none dropped, all ended by us (not by a missed heartbeat).
    assert_eq!(n(&t["opened"]), VUS, "{t}");
    assert_eq!(c["connections"], VUS, "{c}");
    assert_eq!(n(&t["dropped"]), 0, "{t}");
    assert_eq!(n(&t["closes"]["client"]), VUS, "{t}");
    assert_eq!(c["disconnects"].get("ping timeout"), None, "{c}");
    assert_eq!(c["open"], 0, "{c}");

    // The script: a join each, three chats each with an ack, every reply correlated.
    assert_eq!(c["events"]["join"], VUS, "{c}");
    assert_eq!(c["events"]["chat"], 3 * VUS, "{c}");
    assert_eq!(c["acks"], 3 * VUS, "{c}");
    assert_eq!(n(&t["expect_timeouts"]), 0, "{t}");
    assert_eq!(n(&t["capture_misses"]), 0, "{t}");
    // 9 replies per session: open, connect, welcome, then 3 acks and 3 own broadcasts.
    assert_eq!(n(&s["latency"]["ws_rtt"]["count"]), 9 * VUS, "{s}");
    // Before each welcome a `motd`, before each ack a `typing` push: skipped, counted.
    assert!(n(&t["msgs_skipped"]) >= 4 * VUS, "{t}");

    // Heartbeats: every ping the server sent during the sessions was answered, and
    // every pong counted here reached it.
    let pongs = n(&c["pongs"]);
    assert!(pongs >= 5 * VUS, "about 6 heartbeats per session: {c}");
    assert_eq!(n(&t["auto_replies"]), pongs, "{t} {c}");
    assert_eq!(n(&t["auto_matched"]), pongs, "{t} {c}");
    assert_eq!(n(&s["latency"]["ws_auto_reply"]["count"]), pongs, "{s}");
    // Every message the engine sent reached the server (the `40`s, joins, chats, pongs).
    assert_eq!(n(&t["msgs_sent"]), n(&c["packets_in"]), "{t} {c}");
    assert_eq!(n(&t["msgs_sent"]), VUS * (1 + 1 + 3) + pongs, "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_responder_the_server_drops_the_sessions_for_missed_heartbeats() {
    const VUS: u64 = 5;
    // The control: the same plan without its responder is dropped by the same server,
    // so the test above would notice a responder that does nothing.
    let server = SocketIo::start(300, 300);
    let app = spawn_app().await;
    let mut plan = example(&server, VUS);
    plan.as_object_mut().unwrap().remove("responders");
    plan.as_object_mut().unwrap().remove("thresholds");
    plan["stages"] = serde_json::json!([
        {"duration": "200ms", "connections": VUS},
        {"duration": "2s", "connections": VUS}
    ]);
    let s = run(&app, plan).await;
    let c = server.counts().await;
    let t = &s["totals"];
    assert_eq!(c["pongs"], 0, "{c}");
    assert_eq!(c["disconnects"]["ping timeout"], VUS, "{c}");
    assert_eq!(t["dropped"], VUS, "{t}");
    assert_eq!(t["auto_replies"], 0, "{t}");
}
