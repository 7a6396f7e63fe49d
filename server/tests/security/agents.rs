//! The agent channel, attacked from both ends. A rogue agent (it has the pool token) and
//! a fake coordinator (it has neither the coordinator's key nor its address).
//! Seen: a pool token `aaaaaaaaaaaaaaaa` was accepted; 300 wrong guesses got 401
//! without throttling; a rogue agent received the full plan with every secret, then sent
//! ticks that stored a 5-connection run as *opened 4,000,000*; a fake coordinator
//! received the real pool token and sent an agent a plan aimed outside every allowlist,
//! which the agent hit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use engine::protocol::{FromAgent, ToAgent, PROTOCOL};
use engine::report::{AgentTick, Totals};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{self, App, KillOnDrop};

const POOL_TOKEN: &str = "pool-Tok3n-for-the-rogue-test-7c1e";

async fn pool_app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let mut a = common::args(dir.path().join("t.db"));
    a.k8s.agents_on = server::config::k8s::AgentsOn::Joined;
    a.k8s.agent_pool_token = Some(POOL_TOKEN.into());
    a.allow_target = vec!["127.0.0.1".into()];
    common::spawn_with(a, dir).await
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn dial(url: &str, bearer: &str) -> Result<Ws, String> {
    let mut req = url.into_client_request().map_err(|e| e.to_string())?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {bearer}").parse().unwrap());
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

async fn send(ws: &mut Ws, f: &FromAgent) {
    ws.send(Message::Text(f.to_text().into())).await.unwrap();
}

/// The next frame from the coordinator (bounded wait).
async fn next(ws: &mut Ws) -> ToAgent {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("no frame from the coordinator")
            .expect("the coordinator closed")
            .unwrap();
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

fn hello(index: Option<u32>) -> FromAgent {
    FromAgent::Hello {
        index,
        protocol: PROTOCOL,
        version: "socketswarm rogue".into(),
        host: "rogue-host".into(),
        nofile: 1024,
        source_addrs: Vec::new(),
    }
}

/// The status of a WebSocket upgrade of `url` (http://…) with `bearer`.
async fn upgrade_status(http: &reqwest::Client, url: &str, bearer: &str) -> u16 {
    http.get(url)
        .header("authorization", format!("Bearer {bearer}"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weak_pool_token_is_refused_at_startup() {
    for weak in [
        "aaaaaaaaaaaaaaaa",
        "0123456789abcdef",
        "pool-token-short-19",
        "abcabcabcabcabcabcabcabcabc",
    ] {
        let mut a = common::args("/nonexistent/t.db".into());
        a.k8s.agents_on = server::config::k8s::AgentsOn::Joined;
        a.k8s.agent_pool_token = Some(weak.into());
        let e = a.validate().expect_err(weak);
        assert!(e.contains("--agent-pool-token"), "{weak}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_token_guesses_are_throttled() {
    let app = pool_app().await;
    let url = format!("{}/api/agents/pool", app.base);
    let mut seen = Vec::new();
    for i in 0..300 {
        let s = upgrade_status(
            &app.http,
            &url,
            &format!("guess-{i:05}-xxxxxxxxxxxxxxxxxxxx"),
        )
        .await;
        seen.push(s);
        if s == 429 {
            break;
        }
    }
    assert!(
        seen.contains(&429),
        "{} wrong pool tokens, never throttled: {:?}",
        seen.len(),
        &seen[..seen.len().min(10)]
    );
    assert!(seen.len() <= 6, "throttled only after {seen:?}");
    // The right one still joins from the same address.
    let right = upgrade_status(&app.http, &url, POOL_TOKEN).await;
    assert_eq!(right, 101, "the right pool token was refused");
}

/// A tick claiming `opened` connections in its first 250 ms, as the agent's last.
fn boastful_tick(opened: u64) -> AgentTick {
    let interval = Totals {
        attempted: opened,
        opened,
        ..Totals::default()
    };
    AgentTick {
        agent: 0,
        seq: 1,
        elapsed_ms: 250,
        target: 5,
        open: opened,
        peak_in_tick: opened,
        interval,
        last: true,
        ..AgentTick::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rogue_agent_gets_only_its_share_and_cannot_inflate_a_run() {
    let app = pool_app().await;
    let ws_base = app.base.replace("http://", "ws://");
    // Two rogue pool members: each is invited as one of the run's two agents.
    let mut lobby = Vec::new();
    for _ in 0..2 {
        let mut ws = dial(&format!("{ws_base}/api/agents/pool"), POOL_TOKEN)
            .await
            .unwrap();
        send(&mut ws, &hello(None)).await;
        lobby.push(ws);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tokens = [
        "static-T0k3n-zero-11aa",
        "static-T0k3n-one-22bb",
        "static-T0k3n-two-33cc",
        "static-T0k3n-three-44dd",
    ];
    let plan = json!({
        "name": "rogue",
        "target": app.ws("/echo"),
        "stages": [{"duration": "1s", "connections": 5}, {"duration": "1s", "connections": 5}],
        "agents": 2,
        "auth": {"source": {"type": "static", "tokens": tokens}, "policy": {"mode": "per_connection"}},
        "thresholds": {"drops": "== 0"}
    });
    let id = app.launch(plan).await;
    let mut runs = Vec::new();
    for ws in lobby.iter_mut() {
        let ToAgent::Invite {
            path,
            secret,
            index,
        } = next(ws).await
        else {
            panic!("no invitation")
        };
        let mut run = dial(&format!("{ws_base}{path}"), &secret).await.unwrap();
        send(&mut run, &hello(Some(index))).await;
        runs.push((index, run));
    }
    runs.sort_by_key(|(i, _)| *i);
    let mut phase = 0;
    let mut shared_too = Vec::new();
    for (index, run) in runs.iter_mut() {
        let ToAgent::Assign { phase: p, plan, .. } = next(run).await else {
            panic!("no assignment")
        };
        phase = p;
        let text = serde_json::to_string(&plan).unwrap();
        // Agent i of 2 makes connections i, i+2, …: with a token per connection it uses
        // tokens i and i+2 only.
        for (t, token) in tokens.iter().enumerate() {
            if text.contains(token) != (t % 2 == *index as usize) {
                shared_too.push(format!("agent {index} got token {t}: {text}"));
            }
        }
        send(run, &FromAgent::Ready { phase }).await;
    }
    for (_, run) in runs.iter_mut() {
        assert!(matches!(next(run).await, ToAgent::Start { .. }));
    }
    // Agent 0 boasts; agent 1 says it made nothing and is done.
    let tick = boastful_tick(4_000_000);
    send(
        &mut runs[0].1,
        &FromAgent::Tick {
            phase,
            tick: Box::new(tick.clone()),
        },
    )
    .await;
    send(
        &mut runs[0].1,
        &FromAgent::Done {
            phase,
            totals: tick.interval.clone(),
            ticks: 1,
        },
    )
    .await;
    let quiet = AgentTick {
        agent: 1,
        last: true,
        ..boastful_tick(0)
    };
    send(
        &mut runs[1].1,
        &FromAgent::Tick {
            phase,
            tick: Box::new(quiet.clone()),
        },
    )
    .await;
    let (_, done) = app.follow(&id).await;
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    let opened = run["summary"]["totals"]["opened"].as_u64().unwrap_or(0);
    assert!(
        opened <= 5,
        "the rogue's count was merged: opened {opened}; {done}"
    );
    let why = format!("{} {}", run["error"], run["summary"]["lost_agents"]);
    assert!(
        why.contains("agent 0") && why.contains("4000000"),
        "the rogue is not named: {why}"
    );
    assert!(shared_too.is_empty(), "{shared_too:#?}");
}

/// A listener on 127.0.0.2 (off every allowlist here) that counts connections.
async fn off_list_counter() -> (String, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind(("127.0.0.2", 0))
        .await
        .unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (addr, n)
}

/// A fake coordinator: accepts agents on 127.0.0.1, keeps the `Authorization` each one
/// sent, and sends every agent that says hello `assign` + `start` for `plan`.
async fn fake_coordinator(plan: Value) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let l = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let (s, plan) = (s.clone(), plan.clone());
            tokio::spawn(async move {
                let cb = |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                          resp| {
                    let auth = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    s.lock().unwrap().push(auth);
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, cb).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    let Message::Text(t) = m else { continue };
                    match serde_json::from_str::<FromAgent>(&t) {
                        Ok(FromAgent::Hello { index, .. }) => {
                            let assign = ToAgent::Assign {
                                phase: 1,
                                plan: Box::new(serde_json::from_value(plan.clone()).unwrap()),
                                share: engine::swarm::Share {
                                    index: index.unwrap_or(0),
                                    of: 1,
                                },
                                tick_ms: 250,
                                allow_targets: Vec::new(),
                            };
                            let _ = ws.send(Message::Text(assign.to_text().into())).await;
                        }
                        Ok(FromAgent::Ready { phase }) => {
                            let start = ToAgent::Start { phase, in_ms: 10 };
                            let _ = ws.send(Message::Text(start.to_text().into())).await;
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_coordinator_gets_no_token_and_no_agent() {
    let (off, reached) = off_list_counter().await;
    let plan = json!({"name": "hijack", "target": format!("ws://{off}/x"),
        "stages": [{"duration": "500ms", "connections": 3}], "connect_timeout": "1s"});
    let (fake, tokens) = fake_coordinator(plan).await;
    let secret = "the-real-Pool-t0ken-or-run-secret-99";
    // A pool agent and a one-run agent, both pointed at the fake.
    let mut agents = Vec::new();
    for how in [
        vec!["--pool".to_string(), format!("ws://{fake}")],
        vec![
            "--join".to_string(),
            format!("ws://{fake}/api/agents/join/k3y"),
        ],
    ] {
        agents.push(KillOnDrop(
            std::process::Command::new(env!("CARGO_BIN_EXE_socketswarm"))
                .arg("agent")
                .args(&how)
                .env("SOCKETSWARM_AGENT_TOKEN", secret)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        ));
    }
    // Each agent gives up on a coordinator it cannot authenticate: wait for both to
    // exit (bounded: an agent that took the plan instead never does).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while agents.iter_mut().any(|a| a.0.try_wait().unwrap().is_none())
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exited = agents.iter_mut().all(|a| a.0.try_wait().unwrap().is_some());
    drop(agents);
    let got = tokens.lock().unwrap().clone();
    assert!(
        got.iter().all(|a| !a.contains(secret)),
        "the fake coordinator received the token: {got:?}"
    );
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "an agent made load for the fake coordinator off the allowlist"
    );
    assert!(exited, "an agent stayed with the fake coordinator");
}
