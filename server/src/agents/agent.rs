//! `socketswarm agent`: one agent process. It dials its coordinator (`--join`, the run's
//! secret in `--token`), says `hello`, takes its share of each phase it is assigned,
//! starts at the barrier, and streams ticks until its share is over. It keeps every
//! tick not yet acknowledged and resends them after a reconnect; if its coordinator
//! cannot be reached again within the grace period, it stops its load (a load generator
//! whose coordinator is gone must not go on).

use std::net::IpAddr;
use std::time::Duration;

use engine::protocol::{FromAgent, ToAgent, PROTOCOL};
use engine::report::{AgentTick, Totals};
use engine::swarm::{Share, SwarmConfig};
use engine::Plan;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// `socketswarm agent` options.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// The coordinator's join URL (`ws://HOST:PORT/api/agents/join/KEY`).
    #[arg(long, env = "SOCKETSWARM_AGENT_JOIN")]
    pub join: String,
    /// The run's secret.
    #[arg(long, env = "SOCKETSWARM_AGENT_TOKEN")]
    pub token: String,
    /// This agent's index (a Kubernetes Job sets `JOB_COMPLETION_INDEX`).
    #[arg(long, env = "JOB_COMPLETION_INDEX")]
    pub index: Option<u32>,
    /// Local addresses to connect from when the plan names none (local agents each get
    /// their own 127.x on loopback).
    #[arg(long = "source")]
    pub source: Vec<IpAddr>,
    /// How long to keep trying to reach the coordinator again before stopping the load.
    #[arg(long, default_value_t = 5000)]
    pub grace_ms: u64,
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn connect(join: &str, token: &str) -> Result<Ws, String> {
    let url = url::Url::parse(join).map_err(|e| format!("--join: {e}"))?;
    if url.scheme() != "ws" {
        return Err(format!("--join: `{join}`: only ws:// is supported (use an SSH tunnel or a TLS-terminating proxy beyond one network)"));
    }
    let host = url.host_str().ok_or("--join: no host")?;
    let port = url.port_or_known_default().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("{join}: {e}"))?;
    let mut req = join
        .into_client_request()
        .map_err(|e| format!("--join: {e}"))?;
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .map_err(|_| "--token: not a valid header value".to_string())?,
    );
    let (ws, _) = tokio_tungstenite::client_async(req, tcp)
        .await
        .map_err(|e| format!("{join}: {e}"))?;
    Ok(ws)
}

/// Tries to (re)connect until `grace` has passed.
async fn reconnect(args: &AgentArgs, grace: Duration) -> Option<Ws> {
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        match connect(&args.join, &args.token).await {
            Ok(ws) => return Some(ws),
            Err(e) => tracing::debug!("agent: could not reach the coordinator: {e}"),
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One assignment: its phase, plan and share, once `assign`ed and until `done`.
struct Work {
    phase: u32,
    plan: Plan,
    share: Share,
    tick: Duration,
    policy: engine::outbound::Policy,
    /// Ticks sent and not yet acknowledged, for a resend after a reconnect.
    unacked: Vec<AgentTick>,
    totals: Totals,
    ticks: u64,
    /// Its last tick is out: `done` is (re)sent after a reconnect too.
    finished: bool,
}

fn hello(args: &AgentArgs, index: Option<u32>) -> FromAgent {
    FromAgent::Hello {
        index,
        protocol: PROTOCOL,
        version: format!("socketswarm {}", env!("CARGO_PKG_VERSION")),
        host: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default(),
        nofile: rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(0),
        source_addrs: args.source.clone(),
    }
}

/// Its share of the phase is over: cumulative totals and how many ticks carried them.
fn done(w: &Work) -> FromAgent {
    FromAgent::Done {
        phase: w.phase,
        totals: w.totals.clone(),
        ticks: w.ticks,
    }
}

async fn send(ws: &mut Ws, f: &FromAgent) -> bool {
    ws.send(Message::Text(f.to_text().into())).await.is_ok()
}

/// Runs the agent until its coordinator says `bye` (exit 0), or cannot be reached
/// (exit 1, load stopped).
pub async fn run(args: AgentArgs) -> i32 {
    // The load on a runtime of its own; this loop and the aggregator (the ticks, also
    // the heartbeat) stay on this one, so a connect burst never silences the agent.
    let load_rt = match engine::load_runtime::LoadRuntime::start("agent-load", 2) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("agent: could not start its load runtime: {e}");
            return 1;
        }
    };
    let rt = load_rt.handle().clone();
    let grace = Duration::from_millis(args.grace_ms);
    let mut index = args.index;
    let mut work: Option<Work> = None;
    let mut load = CancellationToken::new();
    let (ticks_tx, mut ticks_rx) = mpsc::channel::<AgentTick>(256);
    let Some(mut ws) = reconnect(&args, Duration::from_secs(10)).await else {
        eprintln!("agent: could not reach the coordinator at {}", args.join);
        return 1;
    };
    'conn: loop {
        let mut ok = send(&mut ws, &hello(&args, index)).await;
        if let Some(w) = &work {
            for t in &w.unacked {
                ok &= send(
                    &mut ws,
                    &FromAgent::Tick {
                        phase: w.phase,
                        tick: Box::new(t.clone()),
                    },
                )
                .await;
            }
            if w.finished {
                ok &= send(&mut ws, &done(w)).await;
            }
        }
        while ok {
            tokio::select! {
                frame = ws.next() => {
                    let Some(Ok(Message::Text(text))) = frame else {
                        if matches!(frame, Some(Ok(_))) { continue; }
                        break;
                    };
                    let Ok(msg) = serde_json::from_str::<ToAgent>(&text) else { continue };
                    match msg {
                        ToAgent::Welcome { index: i } => index = Some(i),
                        ToAgent::Assign { phase, mut plan, share, tick_ms, allow_targets } => {
                            if plan.source_addrs.is_empty() {
                                plan.source_addrs = args.source.clone();
                            }
                            let policy = match crate::allow::Allowlist::parse(&allow_targets) {
                                Ok(a) if a.is_empty() => None,
                                Ok(a) => Some(std::sync::Arc::new(a) as std::sync::Arc<dyn engine::outbound::Outbound>),
                                Err(e) => {
                                    ok = send(&mut ws, &FromAgent::Failed { phase, message: e }).await;
                                    continue;
                                }
                            };
                            index = Some(share.index);
                            work = Some(Work { phase, plan: *plan, share, tick: Duration::from_millis(tick_ms.max(50)), policy, unacked: Vec::new(), totals: Totals::default(), ticks: 0, finished: false });
                            ok = send(&mut ws, &FromAgent::Ready { phase }).await;
                        }
                        ToAgent::Start { phase, in_ms } => {
                            let Some(w) = work.as_ref().filter(|w| w.phase == phase) else { continue };
                            tokio::time::sleep(Duration::from_millis(in_ms)).await;
                            load = CancellationToken::new();
                            let cfg = SwarmConfig { tick: w.tick, ..SwarmConfig::default() };
                            if let Err(e) = engine::swarm::run_agent(w.plan.clone(), w.share, cfg, load.clone(), &rt, w.policy.clone(), ticks_tx.clone()).await {
                                ok = send(&mut ws, &FromAgent::Failed { phase, message: e.to_string() }).await;
                            }
                        }
                        ToAgent::Cancel => load.cancel(),
                        ToAgent::Ack { phase, seq } => {
                            if let Some(w) = work.as_mut().filter(|w| w.phase == phase) {
                                w.unacked.retain(|t| t.seq > seq);
                            }
                        }
                        ToAgent::Bye => {
                            load.cancel();
                            let _ = ws.close(None).await;
                            return 0;
                        }
                    }
                }
                Some(t) = ticks_rx.recv() => {
                    let Some(w) = work.as_mut() else { continue };
                    w.totals.merge(&t.interval);
                    w.ticks += 1;
                    let last = t.last;
                    ok = send(&mut ws, &FromAgent::Tick { phase: w.phase, tick: Box::new(t.clone()) }).await;
                    w.unacked.push(t);
                    if last {
                        w.finished = true;
                        if ok {
                            ok = send(&mut ws, &done(w)).await;
                        }
                    }
                }
            }
        }
        // The connection broke: reach the coordinator again, or stop.
        match reconnect(&args, grace).await {
            Some(again) => {
                ws = again;
                continue 'conn;
            }
            None => {
                load.cancel();
                eprintln!(
                    "agent: the coordinator is gone ({} ms without it): load stopped",
                    args.grace_ms
                );
                return 1;
            }
        }
    }
}
