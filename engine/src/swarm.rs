//! The swarm controller and the engine's entry point, [`start`].
//!
//! `start` checks what can only fail at setup (the target's address), then spawns three
//! kinds of task on the given runtime: the controller (paces VU starts along the
//! schedule and the connect-rate cap, retires VUs on ramp-down, ends the run), the VUs
//! (`conn.rs`) and the aggregator (`aggregate.rs`). The caller gets a receiver of
//! [`Update`]s; it ends after `Update::Finished`.
//!
//! Layout: this file (`start`, `run_agent`, the controller, `start_plan`),
//! `swarm/compile.rs` (the plan compiled for the VUs: ops, responders, identity
//! dimensions) and `swarm/fleet.rs` (the [`Fleet`] interface and [`InProcess`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::aggregate::{self, Gauges};
use crate::conn::{guest, run_vu, Shared, Stop};
use crate::coordinate::{coordinate, Coordination};
pub use crate::coordinate::{AgentMsg, Update};
use crate::plan::{Plan, TargetUrl};
pub use crate::schedule::Share;
use crate::schedule::{target_at, Pacer};
use crate::steer::Course;
use crate::template::Template;

mod compile;
mod fleet;
mod for_agent;

pub use for_agent::plan_for_agent;

use compile::{compile, compile_responders, identity_dimensions, raw_resource};
pub use fleet::{Fleet, InProcess, PhaseStart};

/// Setup failures: the only errors a run can end with before it starts.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("target: {0}")]
    BadTarget(String),
    #[error("target: could not resolve `{host}`: {reason}")]
    Dns { host: String, reason: String },
    #[error("script: {0}")]
    BadScript(String),
    #[error("tls: {0}")]
    Tls(String),
    #[error("auth: {0}")]
    Auth(String),
    /// An address the run would use is outside the operator's allowlist (checked on the
    /// addresses it resolves to now, when the run starts).
    #[error("{0}")]
    Blocked(String),
    /// Agents could not be started, did not join, or one could not set up its share.
    #[error("agents: {0}")]
    Agents(String),
}

/// Engine tuning (from the server's configuration).
#[derive(Debug, Clone, Copy)]
pub struct SwarmConfig {
    /// Snapshot period.
    pub tick: Duration,
    /// How often a busy VU hands its partial results over.
    pub flush: Duration,
    /// How long VUs get to close cleanly at the end before they are aborted.
    pub grace: Duration,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        SwarmConfig {
            tick: Duration::from_secs(1),
            flush: Duration::from_millis(250),
            grace: Duration::from_secs(5),
        }
    }
}

/// Starts one phase of a run on `fleet`: its agents make the load, the coordinator here
/// merges their ticks. The plan must already be validated. Returns the update stream;
/// cancel `cancel` to stop early (VUs close with 1000 and flush).
pub async fn start(
    plan: Plan,
    cfg: SwarmConfig,
    cancel: CancellationToken,
    rt: &tokio::runtime::Handle,
    fleet: &dyn Fleet,
) -> Result<mpsc::Receiver<Update>, EngineError> {
    let (tx, rx) = mpsc::channel(1024);
    let started = Instant::now();
    fleet
        .start_phase(plan.clone(), cfg, cancel.clone(), tx)
        .await?;
    Ok(coordinate(
        rx,
        Coordination {
            agents: fleet.agents(),
            plan,
            tick: cfg.tick,
            // Ticks are the heartbeat: an agent silent for many of them is gone.
            silence: (cfg.tick * 10).max(Duration::from_secs(10)),
            started,
            steer: fleet.steering(),
        },
        cancel,
        &crate::load_runtime::control_runtime(rt),
    ))
}

/// Starts one agent: its share of `plan` (agent `share.index` of `share.of`), sending a
/// tick of deltas to `out` every `cfg.tick` and a last one when all its connections
/// ended. Errors are setup errors (nothing started).
pub async fn run_agent(
    plan: Plan,
    share: Share,
    cfg: SwarmConfig,
    cancel: CancellationToken,
    rt: &tokio::runtime::Handle,
    policy: crate::outbound::Policy,
    out: mpsc::Sender<crate::report::AgentTick>,
) -> Result<(), EngineError> {
    run_agent_steered(plan, share, cfg, cancel, rt, policy, out, None).await
}

/// [`run_agent`] for a run that can be steered: its controller follows the newest
/// [`Course`] on `steer` (see `steer.rs`).
#[allow(clippy::too_many_arguments)]
pub async fn run_agent_steered(
    plan: Plan,
    share: Share,
    cfg: SwarmConfig,
    cancel: CancellationToken,
    rt: &tokio::runtime::Handle,
    policy: crate::outbound::Policy,
    out: mpsc::Sender<crate::report::AgentTick>,
    steer: Option<watch::Receiver<Course>>,
) -> Result<(), EngineError> {
    crate::install_crypto_provider();
    let url = TargetUrl::parse(&plan.target).map_err(EngineError::BadTarget)?;
    // Resolved once for the whole run, and only to addresses the policy allows.
    let addrs = crate::outbound::pin("target", &url.host, url.port, &policy)
        .await
        .map_err(|e| {
            if policy.is_some() && !e.contains("could not resolve") && !e.contains("no address") {
                EngineError::Blocked(e)
            } else {
                EngineError::Dns {
                    host: url.host.clone(),
                    reason: e,
                }
            }
        })?;
    let mut http_urls: Vec<(String, String)> = plan
        .http_steps
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("http_steps[{i}].url"), s.url.clone()))
        .collect();
    if let Some(crate::plan::TokenSource::Oauth2 { token_url, .. }) =
        plan.auth.as_ref().map(|a| &a.source)
    {
        http_urls.push(("auth.source.token_url".into(), token_url.clone()));
    }
    let pinned = crate::outbound::Pinned::resolve(&http_urls, &policy)
        .await
        .map_err(EngineError::Blocked)?;
    let mut ops = Vec::new();
    compile(&plan.script, &mut ops).map_err(EngineError::BadScript)?;
    let vars = plan
        .vars
        .iter()
        .map(|(k, v)| Ok((k.clone(), Template::parse(v)?)))
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| EngineError::BadScript(format!("vars: {e}")))?;
    let responders = compile_responders(&plan).map_err(EngineError::BadScript)?;
    let mut headers = plan
        .headers
        .iter()
        .map(|(k, v)| Ok((k.clone(), Template::parse(v)?)))
        .collect::<Result<Vec<_>, String>>()
        .map_err(EngineError::BadScript)?;
    if let Some(auth) = plan.auth.as_ref().filter(|a| !a.header.is_empty()) {
        headers.push((
            auth.header.clone(),
            Template::parse(&auth.value).map_err(EngineError::BadScript)?,
        ));
    }
    let tokens = match &plan.auth {
        Some(auth) => {
            let tls_cfg = crate::tls::client_config(plan.insecure_tls).map_err(EngineError::Tls)?;
            Some(
                crate::tokens::TokenPool::new(
                    auth,
                    plan.peak_connections(),
                    share,
                    &tls_cfg,
                    plan.connect_timeout.0,
                    &pinned,
                )
                .map_err(EngineError::Auth)?,
            )
        }
        None => None,
    };
    let mut http_steps = Vec::new();
    for (i, step) in plan.http_steps.iter().enumerate() {
        let bad = |e: String| EngineError::BadScript(format!("http_steps[{i}]: {e}"));
        http_steps.push(crate::conn::HttpCall {
            method: reqwest::Method::from_bytes(step.method.as_bytes())
                .map_err(|e| bad(e.to_string()))?,
            url: Template::parse(&step.url).map_err(bad)?,
            headers: step
                .headers
                .iter()
                .map(|(k, v)| Ok((k.clone(), Template::parse(v)?)))
                .collect::<Result<_, String>>()
                .map_err(bad)?,
            body: step
                .body
                .as_deref()
                .map(Template::parse)
                .transpose()
                .map_err(bad)?,
            capture: step
                .capture
                .iter()
                .map(|(k, v)| Ok((k.clone(), crate::capture::JsonPath::parse(v)?)))
                .collect::<Result<_, String>>()
                .map_err(bad)?,
        });
    }
    let http = if http_steps.is_empty() {
        None
    } else {
        let tls_cfg = crate::tls::client_config(plan.insecure_tls).map_err(EngineError::Tls)?;
        Some(
            pinned
                .client(
                    reqwest::Client::builder()
                        .use_preconfigured_tls((*tls_cfg).clone())
                        .timeout(plan.connect_timeout.0),
                )
                .build()
                .map_err(|e| EngineError::BadScript(format!("http_steps: {e}")))?,
        )
    };
    let default_port = if url.tls { 443 } else { 80 };
    let host_header = match (url.host.contains(':'), url.port == default_port) {
        (true, true) => format!("[{}]", url.host),
        (true, false) => format!("[{}]:{}", url.host, url.port),
        (false, true) => url.host.clone(),
        (false, false) => format!("{}:{}", url.host, url.port),
    };
    let tls = if url.tls {
        let config = crate::tls::client_config(plan.insecure_tls).map_err(EngineError::Tls)?;
        let name = crate::tls::server_name(&url.host).map_err(EngineError::Tls)?;
        Some((tokio_rustls::TlsConnector::from(config), name))
    } else {
        None
    };
    // Room for a few flushes from every VU before anyone has to keep data back.
    let (tx, rx) = mpsc::channel(4096);
    let gauges = Arc::new(Gauges::default());
    let (identities, dims) = identity_dimensions(&plan);
    let shared = Arc::new(Shared {
        host_header,
        resource: Template::parse(&raw_resource(&plan.target).map_err(EngineError::BadTarget)?)
            .map_err(EngineError::BadTarget)?,
        addrs,
        sources: plan.source_addrs.clone(),
        share,
        headers,
        protocols: plan.subprotocols.clone(),
        connect_timeout: plan.connect_timeout.0,
        ops,
        vars,
        responders,
        reconnect: plan.reconnect.clone(),
        flush_every: cfg.flush,
        tx,
        tls,
        tokens,
        rotation: match plan.auth.as_ref().and_then(|a| a.rotation.as_ref()) {
            Some(r) => Some(crate::conn::Rotor::compile(r).map_err(EngineError::BadScript)?),
            None => None,
        },
        http_steps,
        http,
        pinned,
        secrets: crate::secrets::Secrets::of_plan(&plan),
        gauges: gauges.clone(),
        budget: crate::budget::Budget::process(),
        identities,
    });
    let started = Instant::now();
    // The ticks (also the heartbeat) run on the caller's runtime, the load on `rt`: a
    // connect burst on `rt` never delays them (see `load_runtime`).
    crate::load_runtime::control_runtime(rt).spawn(aggregate::run(
        rx,
        out,
        gauges.clone(),
        aggregate::Setup {
            agent: share.index,
            started,
            tick: cfg.tick,
            dims,
        },
    ));
    rt.spawn(control(
        plan, share, shared, gauges, started, cancel, cfg.grace, steer,
    ));
    Ok(())
}

/// Paces VU starts along the schedule; retires the newest VUs on ramp-down; ends the run.
/// A steered run's schedule and rate cap come from `steer` once it changes.
#[allow(clippy::too_many_arguments)]
async fn control(
    plan: Plan,
    share: Share,
    shared: Arc<Shared>,
    gauges: Arc<Gauges>,
    started: Instant,
    cancel: CancellationToken,
    grace: Duration,
    mut steer: Option<watch::Receiver<Course>>,
) {
    let mut total = plan.duration();
    // The schedule followed (the plan's, until a steering change replaces it).
    let mut stages = plan.stages.clone();
    let mut rate = plan.max_connect_rate;
    // The connect-rate cap: starts paced along the clock by the one pure pacer.
    let mut pacer = rate.map(|r| Pacer::sharded(r, Duration::from_millis(20), share));
    let mut vus = JoinSet::new();
    // Stop signals of started, not yet retired VU slots, oldest first.
    let mut live: Vec<Stop> = Vec::new();
    // This agent's k-th connection is the run's slot `share.slot(k)` (its `{{vu}}`).
    let mut next_k = 0u64;
    // The next wake-up: every 5 ms, sooner when the pacer has a start due.
    let mut wake = started;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(wake.into()) => {}
            Some(_) = vus.join_next(), if !vus.is_empty() => continue,
        }
        if let Some(rx) = steer
            .as_mut()
            .filter(|rx| rx.has_changed().unwrap_or(false))
        {
            let course = rx.borrow_and_update().clone();
            if course.max_connect_rate != rate {
                // A new cap paces from now on (the pacer forfeits unused allowance).
                rate = course.max_connect_rate;
                pacer = rate.map(|r| Pacer::sharded(r, Duration::from_millis(20), share));
            }
            total = crate::schedule::total_duration(&course.stages);
            stages = course.stages;
        }
        let now = Instant::now();
        let elapsed = now - started;
        if elapsed >= total {
            break;
        }
        if let Some(sessions) = &plan.sessions {
            // The open model for sessions: this agent's arrivals as they fall due, each
            // leaving by itself after its drawn stay (`plan/lifecycle.rs`).
            let arrived = u32::try_from(sessions.arrived_by(elapsed)).unwrap_or(u32::MAX);
            let due = u64::from(share.target(arrived));
            while next_k < due {
                let slot = share.slot(next_k);
                let stop = Stop::default();
                live.push(stop.clone());
                let vu = run_vu(shared.clone(), slot, now, stop.clone());
                vus.spawn(guest(vu, stop, now + sessions.stay_of(slot)));
                next_k += 1;
            }
            // Forget guests that left (bounded: at most those inside now, plus a batch).
            if live.len() >= 1024 && next_k.is_multiple_of(64) {
                live.retain(|s| !s.is_stopped());
            }
            gauges.target.store(vus.len() as u32, Ordering::Relaxed);
            wake = now + Duration::from_millis(5);
            continue;
        }
        let want = share.target(target_at(&stages, elapsed)) as usize;
        gauges.target.store(want as u32, Ordering::Relaxed);
        while live.len() > want {
            if let Some(t) = live.pop() {
                t.stop();
            }
        }
        let missing = want - live.len();
        let starts: Vec<Instant> = match pacer.as_mut() {
            Some(p) => p
                .take(elapsed, missing as u64)
                .into_iter()
                .map(|at| started + at)
                .collect(),
            None => vec![now; missing],
        };
        for scheduled in starts {
            let token = Stop::default();
            live.push(token.clone());
            vus.spawn(run_vu(shared.clone(), share.slot(next_k), scheduled, token));
            next_k += 1;
        }
        wake = now + Duration::from_millis(5);
        if let (Some(p), true) = (&pacer, live.len() < want) {
            wake = wake.min((started + p.next_due()).max(now + Duration::from_millis(1)));
        }
    }
    drop(shared);
    // Retired VUs were stopped when they were retired; stop the rest.
    for t in live.drain(..) {
        t.stop();
    }
    let drained =
        tokio::time::timeout(grace, async { while vus.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            left = vus.len(),
            "VUs did not close within the grace period; aborting them"
        );
        vus.abort_all();
    }
}

/// Runs a whole plan: its stages, or for a probe its experiments back to back (each
/// chosen by `probe::next_phase` from what the earlier ones showed), as one stream of
/// updates (seq and elapsed continue across phases; the final `Summary` adds them up and
/// lists the phases). Setup errors of the first phase are returned; a later phase that
/// cannot start ends the stream early.
pub async fn start_plan(
    plan: Plan,
    cfg: SwarmConfig,
    cancel: CancellationToken,
    rt: &tokio::runtime::Handle,
    fleet: std::sync::Arc<dyn Fleet>,
) -> Result<mpsc::Receiver<Update>, EngineError> {
    let is_probe = plan.probe.is_some();
    let first = if is_probe {
        crate::probe::next_phase(&plan, &[], &crate::report::Series::default())
            .ok_or_else(|| EngineError::BadScript("the probe has no phases".into()))?
    } else {
        crate::plan::Segment {
            name: "run".into(),
            plan: plan.clone(),
            steps: Vec::new(),
        }
    };
    // What a user follows of a probe (issue 16): experiments, readings, whole-run counters.
    let mut follow = crate::probe::follow::Follow::new(&plan);
    follow.begin(&first, 0);
    let first_rx = start(first.plan, cfg, cancel.clone(), rt, fleet.as_ref()).await?;
    let (tx, rx) = mpsc::channel(64);
    let handle = rt.clone();
    crate::load_runtime::control_runtime(rt).spawn(async move {
        let (mut seq_off, mut ms_off) = (0u64, 0u64);
        let mut merged: Option<crate::report::Summary> = None;
        let mut spans: Vec<crate::report::PhaseSpan> = Vec::new();
        // The run so far, for choosing the next experiment.
        let mut series = crate::report::Series::default();
        // The outcome keys the whole run keeps: each phase's merger bounds its own, the
        // phases together are bounded here, where every tick and the summary leave.
        let mut keys = crate::report::OutcomeKeys::new();
        let mut next = Some((first.name, first.steps, first_rx));
        while let Some((name, steps, mut updates)) = next.take() {
            let start_ms = ms_off;
            let (mut last_seq, mut last_ms) = (seq_off, ms_off);
            while let Some(u) = updates.recv().await {
                match u {
                    Update::Tick(mut s) => {
                        s.seq += seq_off;
                        s.elapsed_ms += ms_off;
                        (last_seq, last_ms) = (s.seq, s.elapsed_ms);
                        keys.bound(&mut s.interval);
                        if is_probe {
                            series.push(&s);
                            crate::probe::follow::stitch(&mut s, merged.as_ref());
                            s.probe = Some(follow.progress(&series, &spans, s.elapsed_ms));
                        }
                        keys.bound(&mut s.totals);
                        if tx.send(Update::Tick(s)).await.is_err() {
                            return;
                        }
                    }
                    Update::Finished(mut summary) => {
                        keys.bound(&mut summary.totals);
                        match merged.as_mut() {
                            None => merged = Some(summary),
                            Some(m) => m.absorb_phase(&summary),
                        }
                    }
                }
            }
            (seq_off, ms_off) = (last_seq, last_ms);
            spans.push(crate::report::PhaseSpan {
                name,
                start_ms,
                end_ms: ms_off,
                steps,
            });
            if cancel.is_cancelled() || !is_probe {
                break;
            }
            if let Some(phase) = crate::probe::next_phase(&plan, &spans, &series) {
                follow.begin(&phase, ms_off);
                match start(phase.plan, cfg, cancel.clone(), &handle, fleet.as_ref()).await {
                    Ok(rx) => next = Some((phase.name, phase.steps, rx)),
                    Err(e) => tracing::warn!("probe phase {} could not start: {e}", phase.name),
                }
            }
        }
        if let Some(mut summary) = merged {
            keys.bound(&mut summary.totals);
            summary.duration_ms = ms_off;
            if is_probe {
                summary.probe = Some(follow.finish(&series, &spans));
                summary.phases = spans;
            }
            let _ = tx.send(Update::Finished(summary)).await;
        }
    });
    Ok(rx)
}
