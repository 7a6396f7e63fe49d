//! `socketswarm agent`: one agent process. It dials its coordinator over `wss://`
//! (`--join`, the run's secret in `--token`), accepting only the certificate whose pin
//! it was given (`--coordinator-pin`: a coordinator it cannot authenticate never sees
//! the token and never sends it a plan), says `hello`, takes its share of each phase it
//! is assigned, starts at the barrier, and streams ticks until its share is over. It
//! enforces its own target allowlist (`--allow-target`, required with `--pool`) on top
//! of the coordinator's, and refuses a plan that would read its environment. It keeps
//! every tick not yet acknowledged and resends them after a reconnect; if its
//! coordinator cannot be reached again within the grace period, it stops its load (a
//! load generator whose coordinator is gone must not go on).

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
    /// The coordinator's join URL (`wss://HOST:PORT/api/agents/join/KEY`, its agent
    /// listener): make one run's load and exit.
    #[arg(
        long,
        env = "SOCKETSWARM_AGENT_JOIN",
        required_unless_present = "pool",
        conflicts_with = "pool"
    )]
    pub join: Option<String>,
    /// A server to wait at for runs (`wss://HOST:PORT`, the agent listener of its
    /// `serve --agents-on joined`): join its pool and make each run's load it is
    /// invited to, until stopped.
    #[arg(long, env = "SOCKETSWARM_AGENT_POOL")]
    pub pool: Option<String>,
    /// The run's secret (with --join) or the server's pool token (with --pool).
    #[arg(long, env = "SOCKETSWARM_AGENT_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The SHA-256 pin of the coordinator's certificate (`sha256:…`, printed by the
    /// server at start and in `GET /api/agents`): any other server is refused before
    /// it sees the token.
    #[arg(long, env = "SOCKETSWARM_AGENT_PIN")]
    pub coordinator_pin: Option<String>,
    /// Where this agent may make load (entries as the server's `--allow-target`):
    /// enforced on top of the coordinator's list, so a coordinator cannot aim it
    /// elsewhere. Required with --pool (`0.0.0.0/0` and `::/0` allow anywhere).
    #[arg(
        long = "allow-target",
        env = "SOCKETSWARM_AGENT_ALLOW_TARGETS",
        value_delimiter = ','
    )]
    pub allow_target: Vec<String>,
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

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Why the coordinator could not be reached.
enum Unreachable {
    /// Worth trying again (refused, reset, not up yet).
    Now(String),
    /// Never worth trying again: it is not the coordinator this agent was given (its
    /// certificate does not have the pin), or the URL cannot work.
    Never(String),
}

/// Dials `url` (`wss://`) and upgrades with `token`, accepting only a coordinator whose
/// certificate has `pin`.
async fn connect(url: &str, token: &str, pin: &[u8; 32]) -> Result<Ws, Unreachable> {
    let u = url::Url::parse(url).map_err(|e| Unreachable::Never(format!("`{url}`: {e}")))?;
    if u.scheme() != "wss" {
        return Err(Unreachable::Never(format!(
            "`{url}`: agents dial their coordinator's agent listener over wss:// only (plans carry secrets, and the coordinator must prove it is the one pinned)"
        )));
    }
    let host = u
        .host_str()
        .ok_or_else(|| Unreachable::Never(format!("`{url}`: no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = u.port_or_known_default().unwrap_or(443);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| Unreachable::Now(format!("{url}: {e}")))?;
    let name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|e| Unreachable::Never(format!("`{host}`: {e}")))?;
    let connector = super::channel::connector(pin).map_err(Unreachable::Never)?;
    let tls = connector.connect(name, tcp).await.map_err(|e| {
        let text = e.to_string();
        if text.contains("not the pin") {
            Unreachable::Never(format!("{url}: {text}"))
        } else {
            Unreachable::Now(format!("{url}: {text}"))
        }
    })?;
    let mut req = url
        .into_client_request()
        .map_err(|e| Unreachable::Never(format!("`{url}`: {e}")))?;
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .map_err(|_| Unreachable::Never("--token: not a valid header value".into()))?,
    );
    let (ws, _) = tokio_tungstenite::client_async(req, tls)
        .await
        .map_err(|e| Unreachable::Now(format!("{url}: {e}")))?;
    Ok(ws)
}

/// Tries to (re)connect until `grace` has passed; gives up at once on a coordinator
/// that is not the pinned one.
async fn reconnect(join: &str, cfg: &Channel, grace: Duration) -> Result<Ws, String> {
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        match connect(join, &cfg.token, &cfg.pin).await {
            Ok(ws) => return Ok(ws),
            Err(Unreachable::Never(e)) => return Err(e),
            Err(Unreachable::Now(e)) => {
                tracing::debug!("agent: could not reach the coordinator: {e}");
                if tokio::time::Instant::now() >= deadline {
                    return Err(e);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What an agent checks its channel and its plans with: the token it shows, the pin it
/// accepts, and its own allowlist.
#[derive(Clone)]
struct Channel {
    token: String,
    pin: [u8; 32],
    allow: crate::allow::Allowlist,
}

/// Both allowlists must allow an address: the agent's own and the coordinator's.
#[derive(Debug)]
struct Both(crate::allow::Allowlist, crate::allow::Allowlist);

impl engine::outbound::Outbound for Both {
    fn allows(&self, host: &str, addr: std::net::SocketAddr) -> bool {
        use engine::outbound::Outbound as O;
        O::allows(&self.0, host, addr) && O::allows(&self.1, host, addr)
    }
    fn describe(&self) -> String {
        use engine::outbound::Outbound as O;
        format!(
            "this agent's ({}) and its coordinator's ({})",
            O::describe(&self.0),
            O::describe(&self.1)
        )
    }
}

/// The policy a phase runs under: this agent's list and the coordinator's, both.
fn policy_for(
    own: &crate::allow::Allowlist,
    theirs: &[String],
) -> Result<engine::outbound::Policy, String> {
    use std::sync::Arc;
    let theirs = crate::allow::Allowlist::parse(theirs)?;
    Ok(match (own.is_empty(), theirs.is_empty()) {
        (true, true) => None,
        (false, true) => Some(Arc::new(own.clone())),
        (true, false) => Some(Arc::new(theirs)),
        (false, false) => Some(Arc::new(Both(own.clone(), theirs))),
    })
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

/// Reads the channel settings: the pin (required), this agent's allowlist (required
/// with `--pool`). A problem is the message to exit with.
fn channel(args: &AgentArgs) -> Result<Channel, String> {
    let pin = match args.coordinator_pin.as_deref() {
        Some(p) => super::channel::parse_pin(p).map_err(|e| format!("--coordinator-pin: {e}"))?,
        None => {
            return Err("give --coordinator-pin (SOCKETSWARM_AGENT_PIN): the pin of the coordinator's certificate, which it prints at start and shows in GET /api/agents; without it this agent cannot tell its coordinator from anyone else".into())
        }
    };
    let allow = crate::allow::Allowlist::parse(&args.allow_target)
        .map_err(|e| format!("--allow-target: {e}"))?;
    if args.pool.is_some() && allow.is_empty() {
        return Err("--pool needs --allow-target (SOCKETSWARM_AGENT_ALLOW_TARGETS): where this agent may make load, whatever the servers that invite it say (`0.0.0.0/0,::/0` for anywhere)".into());
    }
    Ok(Channel {
        token: args.token.clone(),
        pin,
        allow,
    })
}

/// Runs the agent: one run (`--join`), or the runs a server's pool invites it to
/// (`--pool`). Returns the exit code.
pub async fn run(args: AgentArgs) -> i32 {
    let cfg = match channel(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agent: {e}");
            return 2;
        }
    };
    match (&args.join, &args.pool) {
        (Some(join), None) => run_one(join.clone(), &args, &cfg).await,
        (None, Some(pool)) => run_pooled(pool.clone(), args, cfg).await,
        _ => {
            eprintln!("agent: give either --join (one run) or --pool (wait for runs)");
            2
        }
    }
}

/// Waits in the pool at `base` (`wss://HOST:PORT`) and makes the load of each run it is
/// invited to, one at a time; after a run it is back in the pool. A lost pool
/// connection is dialled again (every 1 to 5 s) while a run it makes goes on; a server
/// that is not the pinned coordinator ends the agent (exit 1).
async fn run_pooled(base: String, args: AgentArgs, cfg: Channel) -> i32 {
    let base = base.trim_end_matches('/').to_string();
    let lobby = format!("{base}/api/agents/pool");
    let mut busy: Option<tokio::task::JoinHandle<i32>> = None;
    let mut wait = Duration::from_secs(1);
    loop {
        let mut ws = match connect(&lobby, &cfg.token, &cfg.pin).await {
            Ok(ws) => ws,
            Err(Unreachable::Never(e)) => {
                eprintln!("agent: {e}: not joining");
                return 1;
            }
            Err(Unreachable::Now(e)) => {
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
                        // The run is joined on the same (pinned) server, by path only.
                        if busy.is_some() || !path.starts_with("/api/agents/join/") {
                            continue;
                        }
                        let join = format!("{base}{path}");
                        let one = AgentArgs { join: Some(join.clone()), pool: None, token: secret.clone(), index: Some(index), ..args.clone() };
                        let run_cfg = Channel { token: secret, ..cfg.clone() };
                        busy = Some(tokio::spawn(async move { run_one(join, &one, &run_cfg).await }));
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
async fn run_one(join: String, args: &AgentArgs, cfg: &Channel) -> i32 {
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
    let mut ws = match reconnect(&join, cfg, Duration::from_secs(10)).await {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("agent: could not reach the coordinator at {join}: {e}");
            return 1;
        }
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
                            // An agent never reads its own environment for a plan (the
                            // coordinator sends values): a plan that would is refused.
                            let reads = plan.env_names();
                            if let Some((field, name)) = reads.first() {
                                let message = format!("{field} reads the environment variable `{name}`: an agent does not read its own environment (its coordinator sends values)");
                                ok = send(&mut ws, &FromAgent::Failed { phase, message }).await;
                                continue;
                            }
                            let policy = match policy_for(&cfg.allow, &allow_targets) {
                                Ok(p) => p,
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
        match reconnect(&join, cfg, grace).await {
            Ok(again) => {
                ws = again;
                continue 'conn;
            }
            Err(_) => {
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
