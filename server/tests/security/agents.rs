//! The agent channel, attacked from both ends. A rogue agent (it has the pool token and
//! the coordinator's pin, which is public) and a fake coordinator (it has neither the
//! coordinator's key nor its address).
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
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Dials the agent listener at `url` (`wss://…`) as an agent does: TLS with `pin`.
async fn dial(url: &str, pin: &str, bearer: &str) -> Result<Ws, String> {
    let u = url::Url::parse(url).unwrap();
    let tcp = tokio::net::TcpStream::connect((u.host_str().unwrap(), u.port().unwrap()))
        .await
        .map_err(|e| e.to_string())?;
    let pin = server::agents::channel::parse_pin(pin)?;
    let tls = server::agents::channel::connector(&pin)?
        .connect(
            rustls::pki_types::ServerName::try_from("coordinator").unwrap(),
            tcp,
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut req = url.into_client_request().map_err(|e| e.to_string())?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {bearer}").parse().unwrap());
    tokio_tungstenite::client_async(req, tls)
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
    let mut seen = Vec::new();
    for i in 0..300 {
        let s = app
            .agent_upgrade(
                "/api/agents/pool",
                &format!("Bearer guess-{i:05}-xxxxxxxxxxxxxxxxxxxx"),
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
    let right = app
        .agent_upgrade("/api/agents/pool", &format!("Bearer {POOL_TOKEN}"))
        .await;
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
    let (base, pin) = (app.agents_url(), app.agent_pin());
    // Two rogue pool members: each is invited as one of the run's two agents.
    let mut lobby = Vec::new();
    for _ in 0..2 {
        let mut ws = dial(&format!("{base}/api/agents/pool"), &pin, POOL_TOKEN)
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
        let mut run = dial(&format!("{base}{path}"), &pin, &secret).await.unwrap();
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
    // Agent 1 is honest about its counts but puts a token it was sent into its
    // evidence, where share links would show it.
    let mut quiet = AgentTick {
        agent: 1,
        last: true,
        ..boastful_tick(0)
    };
    quiet
        .evidence
        .bodies
        .insert(401, vec![format!("denied {}", tokens[1])]);
    quiet
        .evidence
        .rate_limit_headers
        .insert("x-ratelimit-echo".into(), tokens[3].into());
    quiet
        .evidence
        .add_close_reason(4001, &format!("bad {}", tokens[1]), 1);
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
    for token in tokens {
        assert!(
            !run.to_string().contains(token),
            "a token an agent echoed was stored: {}",
            run["summary"]["evidence"]
        );
    }
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

/// A fake coordinator on 127.0.0.1: plain `ws://`, or TLS with an identity of its own.
/// It keeps the `Authorization` each agent sent and sends every agent that says hello
/// `assign` + `start` for `plan` (with no allowlist).
async fn fake_coordinator(
    plan: Value,
    tls: Option<&'static server::agents::channel::Identity>,
) -> (
    String,
    Arc<std::sync::Mutex<Vec<String>>>,
    Arc<std::sync::Mutex<Vec<String>>>,
) {
    let l = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (s, f) = (seen.clone(), failed.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let (s, f, plan) = (s.clone(), f.clone(), plan.clone());
            tokio::spawn(async move {
                match tls {
                    Some(id) => {
                        let Ok(stream) = id.acceptor().unwrap().accept(tcp).await else {
                            return;
                        };
                        fake_session(stream, s, f, plan).await
                    }
                    None => fake_session(tcp, s, f, plan).await,
                }
            });
        }
    });
    (addr, seen, failed)
}

async fn fake_session<S>(
    stream: S,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    plan: Value,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // The callback's error type is tungstenite's (a whole HTTP response).
    #[allow(clippy::result_large_err)]
    let cb = |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        seen.lock().unwrap().push(auth);
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, cb).await else {
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
            Ok(FromAgent::Failed { message, .. }) => failed.lock().unwrap().push(message),
            _ => {}
        }
    }
}

fn identity() -> &'static server::agents::channel::Identity {
    static ID: std::sync::OnceLock<server::agents::channel::Identity> = std::sync::OnceLock::new();
    ID.get_or_init(|| server::agents::channel::Identity::generate().unwrap())
}

fn spawn_agent(how: &[String], pin: &str, allow: &str, token: &str) -> KillOnDrop {
    KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_socketswarm"))
            .arg("agent")
            .args(how)
            .args(["--coordinator-pin", pin, "--allow-target", allow])
            .args(["--grace-ms", "1000"])
            .env("SOCKETSWARM_AGENT_TOKEN", token)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Waits (bounded) until every agent exited; whether they all did.
async fn all_exit(agents: &mut [KillOnDrop]) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while agents.iter_mut().any(|a| a.0.try_wait().unwrap().is_none())
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agents.iter_mut().all(|a| a.0.try_wait().unwrap().is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_coordinator_gets_no_token_and_no_agent() {
    let (off, reached) = off_list_counter().await;
    let plan = json!({"name": "hijack", "target": format!("ws://{off}/x"),
        "stages": [{"duration": "500ms", "connections": 3}], "connect_timeout": "1s"});
    // The real coordinator's pin (the agents are given it); the fakes are not it.
    let real = server::agents::channel::Identity::generate().unwrap();
    let secret = "the-real-Pool-t0ken-or-run-secret-99";
    for tls in [None, Some(identity())] {
        let (fake, tokens, _) = fake_coordinator(plan.clone(), tls).await;
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        let mut agents = vec![
            spawn_agent(
                &["--pool".into(), format!("{scheme}://{fake}")],
                &real.pin,
                "127.0.0.1",
                secret,
            ),
            spawn_agent(
                &[
                    "--join".into(),
                    format!("{scheme}://{fake}/api/agents/join/k3y"),
                ],
                &real.pin,
                "127.0.0.1",
                secret,
            ),
        ];
        // Each agent gives up on a coordinator it cannot authenticate (an agent that
        // took the plan instead never exits).
        let exited = all_exit(&mut agents).await;
        drop(agents);
        let got = tokens.lock().unwrap().clone();
        assert!(
            got.iter().all(|a| !a.contains(secret)),
            "{scheme}: the fake coordinator received the token: {got:?}"
        );
        assert!(
            exited,
            "{scheme}: an agent stayed with the fake coordinator"
        );
    }
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "an agent made load for the fake coordinator off the allowlist"
    );
}

/// Even the pinned coordinator (say, a compromised one) cannot aim an agent outside its
/// own allowlist, nor make it send its own environment (its token) to a target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_holds_its_own_allowlist_and_environment_against_its_coordinator() {
    let (off, reached) = off_list_counter().await;
    let off_plan = json!({"name": "off", "target": format!("ws://{off}/x"),
        "stages": [{"duration": "500ms", "connections": 3}], "connect_timeout": "1s"});
    let (coord, _, failed) = fake_coordinator(off_plan, Some(identity())).await;
    let mut a = vec![spawn_agent(
        &[
            "--join".into(),
            format!("wss://{coord}/api/agents/join/k3y"),
        ],
        &identity().pin,
        "127.0.0.1",
        "run-secret-for-the-own-list-test-1",
    )];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while failed.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(a.pop());
    let why = failed.lock().unwrap().clone();
    assert!(
        why.iter()
            .any(|m| m.contains("127.0.0.2") && m.contains("allowlist")),
        "the agent did not refuse: {why:?}"
    );
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "it connected off its own list"
    );

    let (target, hits) = crate::security_support::http_recorder("127.0.0.1", |_: &str| {
        crate::security_support::json(404, "{}")
    })
    .await;
    let env_plan = json!({"name": "env", "target": format!("ws://{target}/x"),
        "headers": {"X-Leak": "{{env.SOCKETSWARM_AGENT_TOKEN}}"},
        "stages": [{"duration": "500ms", "connections": 1}], "connect_timeout": "1s"});
    let (coord, _, failed) = fake_coordinator(env_plan, Some(identity())).await;
    let secret = "run-secret-env-test-9f1e77Kq";
    let mut a = vec![spawn_agent(
        &[
            "--join".into(),
            format!("wss://{coord}/api/agents/join/k3y"),
        ],
        &identity().pin,
        "127.0.0.1",
        secret,
    )];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while failed.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(a.pop());
    let why = failed.lock().unwrap().clone();
    assert!(
        why.iter().any(|m| m.contains("SOCKETSWARM_AGENT_TOKEN")),
        "the agent did not refuse to read its environment: {why:?}"
    );
    assert!(
        hits.all().iter().all(|h| !h.head.contains(secret)),
        "the agent sent its token to a target: {:?}",
        hits.all()
    );
}
