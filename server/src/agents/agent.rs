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
    /// The coordinator's join URL (`ws://HOST:PORT/api/agents/join/KEY`): make one
    /// run's load and exit.
    #[arg(
        long,
        env = "SOCKETSWARM_AGENT_JOIN",
        required_unless_present = "pool",
        conflicts_with = "pool"
    )]
    pub join: Option<String>,
    /// A server to wait at for runs (`ws://HOST:PORT`, its `serve --agents-on joined`):
    /// join its pool and make each run's load it is invited to, until stopped.
    #[arg(long, env = "SOCKETSWARM_AGENT_POOL")]
    pub pool: Option<String>,
    /// The run's secret (with --join) or the server's pool token (with --pool).
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
async fn reconnect(join: &str, args: &AgentArgs, grace: Duration) -> Option<Ws> {
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        match connect(join, &args.token).await {
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

/// Runs the agent: one run (`--join`), or the runs a server's pool invites it to
/// (`--pool`). Returns the exit code.
pub async fn run(args: AgentArgs) -> i32 {
    match (&args.join, &args.pool) {
        (Some(join), None) => run_one(join.clone(), &args).await,
        (None, Some(pool)) => run_pooled(pool.clone(), args).await,
        _ => {
            eprintln!("agent: give either --join (one run) or --pool (wait for runs)");
            2
        }
    }
}

/// Waits in the pool at `base` (`ws://HOST:PORT`) and makes the load of each run it is
/// invited to, one at a time; after a run it is back in the pool. A lost pool
/// connection is dialled again (every 1 to 5 s) while a run it makes goes on.
async fn run_pooled(base: String, args: AgentArgs) -> i32 {
    let base = base.trim_end_matches('/').to_string();
    let lobby = format!("{base}/api/agents/pool");
    let mut busy: Option<tokio::task::JoinHandle<i32>> = None;
    let mut wait = Duration::from_secs(1);
    loop {
        let mut ws = match connect(&lobby, &args.token).await {
            Ok(ws) => ws,
            Err(e) => {
                eprintln!(
                    "agent: could not join the pool at {base}: {e} (again in {} s)",
                    wait.as_secs()
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        wait = Duration::from_secs(1);
        if !send(&mut ws, &hello(&args, None)).await {
            continue;
        }
        eprintln!("agent: in the pool at {base}");
        loop {
            let finished = async {
                match busy.as_mut() {
                    Some(h) => h.await.unwrap_or(1),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                code = finished => {
                    busy = None;
                    eprintln!("agent: run over (exit {code}); back in the pool");
                }
                frame = ws.next() => {
                    let text = match frame {
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                        Some(Ok(_)) => continue,
                    };
                    if let Ok(ToAgent::Invite { path, secret, index }) = serde_json::from_str::<ToAgent>(&text) {
                        if busy.is_some() {
                            continue;
                        }
                        let join = format!("{base}{path}");
                        let one = AgentArgs { join: Some(join.clone()), pool: None, token: secret, index: Some(index), ..args.clone() };
                        busy = Some(tokio::spawn(async move { run_one(join, &one).await }));
                    }
                }
            }
        }
        eprintln!("agent: lost the pool connection to {base}; dialling again");
        tokio::time::sleep(wait).await;
    }
}

/// Makes one run's load: until its coordinator says `bye` (0), or cannot be reached
/// (1, load stopped).
async fn run_one(join: String, args: &AgentArgs) -> i32 {
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
    let Some(mut ws) = reconnect(&join, args, Duration::from_secs(10)).await else {
        eprintln!("agent: could not reach the coordinator at {join}");
        return 1;
    };
    'conn: loop {
        let mut ok = send(&mut ws, &hello(args, index)).await;
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
                        // For agents waiting in a pool (`run_pooled`), not in a run.
                        ToAgent::Invite { .. } => {}
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
        match reconnect(&join, args, grace).await {
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
