//! # server: the socketswarm process
//!
//! Module map:
//! - [`allow`]    the target allowlist (`--allow-target`).
//! - [`cli`]      headless `run` and `plan init|check` for CI.
//! - [`config`]   CLI + env (`Cli`, `ServeArgs`, `TargetArgs`), validated once.
//! - [`error`]    `AppError` -> HTTP answers.
//! - [`export`]   the versioned JSON export: one struct written and read back.
//! - [`http`]     routers: `/api/runs...` JSON, SSE, `/metrics`, pages, static files;
//!   `AppState`, what every handler can reach.
//! - [`metrics`]  the Prometheus exposition of live runs (model + pure renderer).
//! - [`plan_file`] plans as TOML/JSON text; the commented TOML export.
//! - [`report`]   the self-contained HTML report.
//! - [`agents`]   runs split over agents: the hub, fleets (local, pool, Kubernetes), the agent.
//! - [`runs`]     the manager actor (live runs, queue, cancel; one run's life in
//!   `drive`) and the services the pages and the API share: `reads`, `launch`,
//!   `history`, `plans`, gathered in `service::Runs` (it implements
//!   `app::api::RunService`).
//! - [`site`]     the built site (wasm, CSS, JS) embedded in the binary, served from memory.
//! - [`store`]    all SQL (the runs list's filters and sorting included).
//!
//! Start-up order ([`start`]): settings -> open-file limit -> database (migrations,
//! crashed runs marked `interrupted`) -> sandbox target thread -> engine runtime thread
//! -> manager -> HTTP. Shutdown ([`Running::stop`]): cancel the shutdown token (runs end
//! as `cancelled` with a final flush, SSE streams end), wait for the manager to drain,
//! then for the HTTP server.
// Rendering the run page's components into a report (`report`) instantiates leptos view
// types deep enough to pass the default query depth (as `app` and `frontend` do).
#![recursion_limit = "256"]

pub mod agents;
pub mod allow;
pub mod cli;
pub mod config;
pub mod error;
pub mod export;
pub mod http;
pub mod metrics;
pub mod plan_file;
pub mod report;
pub mod runs;
pub mod secret;
pub mod site;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use engine::swarm::SwarmConfig;
use engine::Limits;
use leptos::config::{Env, LeptosOptions};
use tokio_util::sync::CancellationToken;

use config::ServeArgs;
use http::AppState;
use runs::manager::{self, ManagerConfig, ManagerHandle};
use runs::service::{Runs, RunsConfig};

/// A started server.
pub struct Running {
    /// Where the UI/API listens (resolved, so port 0 works in tests).
    pub addr: SocketAddr,
    /// Where the embedded sandbox listens, if enabled.
    pub sandbox: Option<SocketAddr>,
    /// Its `wss://` listener, if enabled.
    pub sandbox_tls: Option<SocketAddr>,
    /// Where agents dial in (`wss://`, `--agent-listen`, resolved).
    pub agents_addr: SocketAddr,
    /// The pin agents are given for this server's agent certificate (`sha256:…`).
    pub agent_pin: String,
    pub shutdown: CancellationToken,
    manager: ManagerHandle,
    http: tokio::task::JoinHandle<()>,
    target: Option<engine::target::TargetHandle>,
    /// Stops the engine runtime: only after every live run has stored its summary.
    engine: Option<engine::load_runtime::LoadRuntime>,
}

impl Running {
    /// Graceful stop: live runs end as `cancelled` with their final flush.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if tokio::time::timeout(Duration::from_secs(20), self.manager.drain())
            .await
            .is_err()
        {
            tracing::warn!("runs did not finish within 20 s of shutdown");
        }
        // Only now may the engine runtime go: the runs' final flushes ran on it.
        let engine_thread = self.engine.take().and_then(|e| e.stop());
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.http).await;
        if let Some(t) = self.target.take() {
            t.stop();
        }
        if let Some(t) = engine_thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// Raises the soft open-file limit to the hard one; returns the limit in force.
fn raise_nofile() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("could not raise the open-file limit: {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _)| soft)
                .unwrap_or(1024)
        }
    }
}

/// File descriptors kept for the process itself: the database, logs, the sandbox's
/// listeners, token and HTTP-step clients.
const FD_RESERVE: u64 = 200;

/// HTTP connections always kept, however many a run may hold (or a quarter of a
/// smaller open-file limit).
const HTTP_FLOOR: u64 = 256;

/// How the open-file limit is shared between HTTP connections and runs.
struct FdBudget {
    /// HTTP connections served at once: what runs leave, but at least `HTTP_FLOOR`
    /// (or a quarter of the limit) and at most `--max-http-connections`.
    http_connections: usize,
    /// Connections one run may open: `--max-connections`, at most what is left after
    /// `FD_RESERVE` and the HTTP connections, so a flood of HTTP clients never takes a
    /// live run's sockets.
    run_connections: u32,
}

fn fd_budget(nofile: u64, args: &ServeArgs) -> FdBudget {
    let usable = nofile.saturating_sub(FD_RESERVE);
    let left_by_runs = usable.saturating_sub(u64::from(args.max_connections));
    let http = left_by_runs
        .max(HTTP_FLOOR.min(nofile / 4))
        .min(args.max_http_connections as u64)
        .max(1);
    FdBudget {
        http_connections: usize::try_from(http).unwrap_or(usize::MAX),
        run_connections: args
            .max_connections
            .min(u32::try_from(usable.saturating_sub(http)).unwrap_or(u32::MAX)),
    }
}

/// Why a listener could not bind, for a person: the flag, the address and what to do
/// (issue 15: every listener's busy port is a clear error, never a panic). `off` is
/// offered for listeners that can be turned off.
pub fn listen_error(
    flag: &str,
    addr: SocketAddr,
    can_be_off: bool,
    e: &std::io::Error,
) -> anyhow::Error {
    use std::io::ErrorKind;
    let free_port = SocketAddr::new(addr.ip(), 0);
    let off = if can_be_off {
        format!(", or `{flag} off` to go without it")
    } else {
        String::new()
    };
    let why = match e.kind() {
        ErrorKind::AddrInUse => format!(
            "the address is already in use (another socketswarm, or another program?). Stop that program, or pass another address: `{flag} {free_port}` takes any free port{off}"
        ),
        ErrorKind::AddrNotAvailable => format!(
            "this machine has no such address. Pass one of its addresses, e.g. `{flag} 127.0.0.1:{}`{off}",
            addr.port()
        ),
        ErrorKind::PermissionDenied => format!(
            "permission denied (ports below 1024 need privileges). Pass a port above 1024, e.g. `{flag} {free_port}`{off}"
        ),
        _ => format!("{e}. Pass another address{off}"),
    };
    anyhow::anyhow!("{flag} {addr}: could not listen: {why}")
}

/// Starts everything and returns once the HTTP listener is bound.
pub async fn start(args: ServeArgs) -> anyhow::Result<Running> {
    engine::install_crypto_provider();
    if args.allow_remote && args.access_token.is_none() && !args.listen.ip().is_loopback() {
        tracing::warn!(listen = %args.listen, "LISTENING ON A NON-LOOPBACK ADDRESS WITHOUT AN ACCESS TOKEN (--allow-remote): anyone who can reach it can launch load against any allowed target");
    }
    let settings = args
        .validate()
        .map_err(|p| anyhow::anyhow!("invalid settings:\n{p}"))?;
    for (flag, addr) in settings.exposed_sandboxes() {
        tracing::warn!(%addr, "SANDBOX TARGET ON A NON-LOOPBACK ADDRESS ({flag}, --allow-remote): anyone who can reach it can hold connections on this machine and read its /stats; it has no access token");
    }
    if !engine::budget::Budget::set_process_limit(args.max_inflight_bytes) {
        // A second server in one process (tests): the first one's budget stands.
        tracing::debug!("the in-flight byte budget was set before");
    }
    let nofile = raise_nofile();
    let fds = fd_budget(nofile, &args);
    // A run holds up to `--max-connections` in all; past what this process can hold it
    // is split over local agent processes.
    let in_process = args
        .max_process_connections
        .map_or(fds.run_connections, |n| n.min(fds.run_connections));
    let limits = Limits {
        max_connections: args.max_connections,
        max_duration: engine::plan::Dur(settings.max_duration),
        max_message_bytes: args.max_message_bytes,
        ..Limits::default()
    };
    tracing::info!(
        nofile,
        max_connections = args.max_connections,
        in_process,
        max_http_connections = fds.http_connections,
        "limits"
    );
    if args.access_token.is_some() {
        tracing::info!("access token required (share links stay open, read-only)");
    }
    if settings.allowlist.is_empty() {
        tracing::info!("target allowlist: none (runs may aim anywhere)");
    } else {
        tracing::info!(allow = ?settings.allowlist.entries(), "target allowlist");
    }

    let pool = store::open(&args.database).await?;
    let discarded = store::discard_unfinished_imports(&pool)
        .await
        .context("could not remove unfinished imports")?;
    if discarded > 0 {
        tracing::warn!(
            discarded,
            "imports left half-way by an earlier process were removed"
        );
    }
    let interrupted = store::mark_interrupted(&pool, runs::now_ms())
        .await
        .context("could not mark interrupted runs")?;
    if interrupted > 0 {
        tracing::warn!(
            interrupted,
            "runs left live by an earlier process were marked interrupted"
        );
    }

    let target = match settings.sandbox {
        Some(addr) => Some(
            engine::target::spawn_thread(addr, settings.sandbox_tls).map_err(|e| match e {
                engine::target::SpawnError::Listen { kind, addr, source } => {
                    let flag = match kind {
                        engine::target::ListenerKind::Plain => "--sandbox",
                        engine::target::ListenerKind::Tls => "--sandbox-tls",
                    };
                    listen_error(flag, addr, true, &source)
                }
                other => anyhow::Error::new(other),
            })?,
        ),
        None => None,
    };
    let sandbox = target.as_ref().map(|t| t.addr);
    let sandbox_tls = target.as_ref().and_then(|t| t.tls_addr);
    if let Some(a) = sandbox {
        tracing::info!("sandbox target on ws://{a}/echo (stats: http://{a}/stats)");
    }
    if let Some(a) = sandbox_tls {
        tracing::info!("sandbox TLS target on wss://{a}/echo (self-signed: set insecure_tls)");
    }

    let shutdown = CancellationToken::new();
    // Swarms run on their own runtime, so thousands of sockets never starve the UI's
    // (nor the runs' ticks, which stay on this one: see engine::load_runtime).
    let engine = engine::load_runtime::LoadRuntime::start("swarm", 2)
        .context("could not start the engine runtime")?;
    let engine_rt = engine.handle().clone();
    let swarm = SwarmConfig {
        tick: Duration::from_millis(args.tick_ms),
        ..SwarmConfig::default()
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| listen_error("--listen", args.listen, false, &e))?;
    let addr = listener.local_addr()?;
    // Agents of runs split over processes dial in on a listener of their own, over TLS
    // with this server's certificate, which they pin (see `agents::channel`).
    let identity_file = args.k8s.agent_tls.clone().unwrap_or_else(|| {
        let mut name = args.database.clone().into_os_string();
        name.push(".agent-tls.pem");
        name.into()
    });
    let identity = match agents::channel::Identity::load_or_create(&identity_file) {
        Ok(id) => id,
        // Given explicitly, it must be usable; the default file next to the database
        // may not be writable, and local agents do with a key made for this start.
        Err(e) if args.k8s.agent_tls.is_some() => anyhow::bail!("--agent-tls: {e}"),
        Err(e) => {
            tracing::warn!("agent channel identity: {e}; using a new one for this start (its pin changes at every start; give --agent-tls FILE for a lasting one)");
            agents::channel::Identity::generate().map_err(|e| anyhow::anyhow!(e))?
        }
    };
    let agent_listener = tokio::net::TcpListener::bind(args.k8s.agent_listen)
        .await
        .map_err(|e| listen_error("--agent-listen", args.k8s.agent_listen, false, &e))?;
    let agents_addr = agent_listener.local_addr()?;
    let hub = Arc::new(agents::hub::Hub::with_pool(
        settings.pool_token.clone(),
        agents::channel::loopback_url(agents_addr),
        identity.pin.clone(),
    ));
    let manager = manager::spawn(
        pool.clone(),
        ManagerConfig {
            max_concurrent: args.max_concurrent_runs,
            max_queued: args.max_queued_runs,
            swarm,
            policy: (!settings.allowlist.is_empty()).then(|| {
                std::sync::Arc::new(settings.allowlist.clone())
                    as std::sync::Arc<dyn engine::outbound::Outbound>
            }),
            agents: Some(manager::AgentsSetup {
                hub: hub.clone(),
                base: agents::channel::loopback_url(agents_addr),
                pin: identity.pin.clone(),
                allow_targets: settings.allowlist.entries(),
                exe: args.agent_exe.clone(),
                kube: settings.kube.clone().map(Arc::new),
                joined: settings.pool_token.is_some(),
            }),
        },
        engine_rt,
        shutdown.clone(),
    );
    let runs = Runs::new(
        pool.clone(),
        manager.clone(),
        RunsConfig {
            limits,
            sandbox,
            nofile,
            http_connections: fds.http_connections as u64,
            allowlist: settings.allowlist.clone(),
            env_allow: settings.env_allow.clone(),
            max_import_ticks: args.max_import_ticks,
            in_process,
            per_agent: args
                .max_process_connections
                .unwrap_or_else(|| agents::per_process(nofile)),
            joined: settings.pool_token.is_some(),
            public_url: settings.public_url.clone(),
            loopback_only: addr.ip().is_loopback(),
        },
    );
    let service: app::api::Service = runs.clone();
    // Runs stored before verdicts were kept get theirs in the background.
    tokio::spawn({
        let pool = pool.clone();
        async move { runs::reads::fill_verdicts(&pool).await }
    });
    if args.starter_plan {
        match runs.plans.seed_starter_plan().await {
            Ok(true) => tracing::info!("first start: saved the starter plan (Plans page)"),
            Ok(false) => {}
            Err(e) => tracing::warn!("could not save the starter plan: {e}"),
        }
    }

    let hosts = http::hosts::HostAllowlist::new(addr, settings.public_url.as_ref());
    tracing::info!("answering to Host: {}", hosts.describe());
    let site = site::Site::new(args.site_root.as_deref());
    if site.is_built() {
        tracing::info!("site {}", site.describe());
    } else {
        tracing::warn!(
            "NO BUILT SITE ({}): pages are served without CSS, JavaScript or wasm; build with scripts/build.sh (or pass --site-root DIR)",
            site.describe()
        );
    }
    let leptos_options = LeptosOptions::builder()
        .output_name(site.output_name())
        .site_root(site.root())
        .site_pkg_dir("pkg")
        .site_addr(addr)
        .env(Env::PROD)
        .build();
    let agent_routes: axum::Router = hub.clone().router();
    let state = AppState {
        leptos_options,
        site,
        pool,
        runs,
        service,
        manager: manager.clone(),
        shutdown: shutdown.clone(),
        access_token: args
            .access_token
            .clone()
            .map(|t| std::sync::Arc::from(t.trim())),
        hosts: Arc::new(hosts),
        hub,
        throttle: Arc::default(),
        limits: Arc::new(http::HttpLimits::new(&args)),
    };
    let app = http::router(state);
    let serve_limits = http::ServeLimits {
        header_timeout: Duration::from_millis(args.header_timeout_ms),
        max_connections: fds.http_connections,
        reserve: if args.access_token.is_some() {
            http::Conns::reserve_for(fds.http_connections)
        } else {
            0
        },
    };
    let http = tokio::spawn(http::serve(listener, app, serve_limits, shutdown.clone()));
    agents::channel::serve(agent_listener, agent_routes, &identity, shutdown.clone())
        .map_err(|e| anyhow::anyhow!("the agent listener: {e}"))?;
    tracing::info!(
        "agents join at wss://{agents_addr} (coordinator pin {})",
        identity.pin
    );
    tracing::info!("socketswarm on http://{addr}");
    Ok(Running {
        addr,
        sandbox,
        sandbox_tls,
        agents_addr,
        agent_pin: identity.pin.clone(),
        shutdown,
        manager,
        http,
        target,
        engine: Some(engine),
    })
}

/// Runs `serve` until Ctrl-C or SIGTERM.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let running = start(args).await?;
    wait_for_signal().await;
    tracing::info!("shutting down: cancelling live runs");
    running.stop().await;
    Ok(())
}

/// Runs the sandbox target alone until Ctrl-C or SIGTERM.
pub async fn target(args: config::TargetArgs) -> anyhow::Result<()> {
    let nofile = raise_nofile();
    let shared = args.processes > 1 || args.helper;
    let listener = engine::target::listen_with(args.listen, shared)
        .map_err(|e| listen_error("--listen", args.listen, false, &e))?;
    let addr = listener.local_addr()?;
    let sandbox = Arc::new(engine::target::Sandbox::default());
    let stop = CancellationToken::new();
    if args.helper {
        // A helper's own counters, for the first process to add up.
        let own = engine::target::listen("127.0.0.1:0".parse()?)?;
        println!("helper counters on http://{}", own.local_addr()?);
        tokio::spawn(engine::target::serve(own, sandbox.clone(), stop.clone()));
    } else {
        tracing::info!(
            nofile,
            processes = args.processes,
            "sandbox target on ws://{addr}/echo (stats: http://{addr}/stats)"
        );
    }
    if let Some(tls) = args.tls_listen {
        let l = engine::target::listen(tls)
            .map_err(|e| listen_error("--tls-listen", tls, false, &e))?;
        tracing::info!(
            "sandbox TLS target on wss://{}/echo (self-signed)",
            l.local_addr()?
        );
        let (sb, st) = (sandbox.clone(), stop.clone());
        tokio::spawn(async move {
            if let Err(e) = engine::target::serve_tls(l, sb, st).await {
                tracing::error!("sandbox TLS target: {e}");
            }
        });
    }
    let helpers = if args.processes > 1 {
        target_helpers(
            addr,
            args.processes - 1,
            args.stats_listen,
            sandbox.clone(),
            stop.clone(),
        )
        .await?
    } else {
        Vec::new()
    };
    let task = tokio::spawn(engine::target::serve(listener, sandbox, stop.clone()));
    if args.helper {
        tokio::select! {
            _ = wait_for_signal() => {}
            _ = parent_gone() => tracing::info!("the first target process ended: stopping"),
        }
    } else {
        wait_for_signal().await;
    }
    stop.cancel();
    drop(helpers);
    let _ = task.await;
    Ok(())
}

/// Resolves when standard input closes: a helper's parent holds the other end.
async fn parent_gone() {
    use tokio::io::AsyncReadExt;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// Starts `n` helper target processes sharing `addr`, and serves the counters of all of
/// them as one on `stats` (`GET /stats`). The helpers end with the returned handles.
async fn target_helpers(
    addr: SocketAddr,
    n: u32,
    stats: Option<SocketAddr>,
    own: Arc<engine::target::Sandbox>,
    stop: CancellationToken,
) -> anyhow::Result<Vec<tokio::process::Child>> {
    use tokio::io::AsyncBufReadExt;
    let exe = std::env::current_exe().context("could not find this program")?;
    let mut children = Vec::new();
    let mut counters = Vec::new();
    for _ in 0..n {
        let mut child = tokio::process::Command::new(&exe)
            .args(["target", "--listen", &addr.to_string(), "--helper"])
            .stdout(std::process::Stdio::piped())
            // The helper ends when this pipe closes: when this process ends, however.
            .stdin(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("could not start a helper target process")?;
        let out = child.stdout.take().context("helper output")?;
        let mut lines = tokio::io::BufReader::new(out).lines();
        let at = tokio::time::timeout(Duration::from_secs(10), async {
            while let Ok(Some(l)) = lines.next_line().await {
                if let Some(a) = l.strip_prefix("helper counters on ") {
                    return Some(a.to_string());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .context("a helper target process did not start")?;
        counters.push(format!("{at}/stats"));
        children.push(child);
    }
    let stats = stats.unwrap_or_else(|| SocketAddr::new(addr.ip(), 0));
    let listener = tokio::net::TcpListener::bind(stats)
        .await
        .map_err(|e| listen_error("--stats-listen", stats, false, &e))?;
    tracing::info!(
        helpers = n,
        "all {} processes' counters on http://{}/stats",
        n + 1,
        listener.local_addr()?
    );
    // Its own helper processes on loopback: never through a proxy.
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap_or_default();
    let app = axum::Router::new().route(
        "/stats",
        axum::routing::get(move || {
            let (own, http, counters) = (own.clone(), http.clone(), counters.clone());
            async move {
                let mut all = own.report();
                for url in &counters {
                    if let Ok(r) = http.get(url).send().await {
                        if let Ok(rep) = r.json::<engine::target::StatsReport>().await {
                            all.merge(&rep);
                        }
                    }
                }
                axum::Json(all)
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
    });
    Ok(children)
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
