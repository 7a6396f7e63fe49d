//! One run's life, driven by the task the manager spawns when the run starts: its fleet
//! (in this process, local agent processes, Kubernetes pods or pool agents), the engine,
//! and every tick stored *before* it is published (retrying while the database is busy),
//! then the summary. The manager (`super::manager`) only does the bookkeeping: it spawns
//! [`drive`] and hears back from the task's return value, so this file never sees its
//! commands.

use std::time::Duration;

use app::api::RunStatus;
use engine::swarm::{self, SwarmConfig, Update};
use engine::{Plan, Snapshot, Summary};
use sqlx::SqlitePool;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::now_ms;
use crate::metrics::RunFigures;
use crate::store;

/// What local agent fleets need: where agents dial in, and the allowlist to pass on.
#[derive(Clone)]
pub struct AgentsSetup {
    pub hub: std::sync::Arc<crate::agents::hub::Hub>,
    /// The coordinator's agent listener as agents on this machine reach it
    /// (`wss://127.0.0.1:PORT`).
    pub base: String,
    /// The pin of the coordinator's certificate, given to every agent it starts.
    pub pin: String,
    pub allow_targets: Vec<String>,
    /// The program agents run (`socketswarm agent`).
    pub exe: Option<std::path::PathBuf>,
    /// Agents as Kubernetes pods instead (`--agents-on kubernetes`).
    pub kube: Option<std::sync::Arc<crate::agents::k8s::KubeSettings>>,
    /// Agents from the hub's pool instead (`--agents-on joined`).
    pub joined: bool,
}

impl std::fmt::Debug for AgentsSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentsSetup")
            .field("base", &self.base)
            .finish()
    }
}

/// How long a tick write is retried while another writer holds the database (an import
/// between two chunks, a burst of launches). Far past the busy timeout: giving up loses
/// data, waiting only delays the live view.
const TICK_STORE_DEADLINE: Duration = Duration::from_secs(60);

/// The pause between tries starts here and doubles up to `MAX_TICK_BACKOFF`.
const FIRST_TICK_BACKOFF: Duration = Duration::from_millis(10);
const MAX_TICK_BACKOFF: Duration = Duration::from_millis(500);

/// Stores one tick (what changed during it: `engine::report::StoredTick`), retrying
/// with backoff while the database is busy, for up to `TICK_STORE_DEADLINE`. Returns
/// whether it was stored: the caller publishes only stored ticks, so what a browser saw
/// is always in the database (and a tick not stored does not count in the next ones).
async fn store_tick(
    pool: &SqlitePool,
    run_id: &str,
    s: &Snapshot,
    ticks: &mut engine::report::TickEncoder,
) -> bool {
    let before = ticks.clone();
    let stored = store_encoded(pool, run_id, s, ticks).await;
    if !stored {
        *ticks = before;
    }
    stored
}

async fn store_encoded(
    pool: &SqlitePool,
    run_id: &str,
    s: &Snapshot,
    ticks: &mut engine::report::TickEncoder,
) -> bool {
    let json = match serde_json::to_string(&ticks.encode(s)) {
        Ok(json) => json,
        Err(e) => {
            tracing::error!(%run_id, "could not encode tick: {e}");
            return false;
        }
    };
    let deadline = Instant::now() + TICK_STORE_DEADLINE;
    let mut backoff = FIRST_TICK_BACKOFF;
    loop {
        let stored =
            store::insert_interval(pool, run_id, s.seq as i64, s.elapsed_ms as i64, &json).await;
        match stored {
            Ok(()) => return true,
            Err(e) if store::is_busy(&e) && Instant::now() + backoff < deadline => {
                tracing::debug!(%run_id, seq = s.seq, "database busy, retrying the tick: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_TICK_BACKOFF);
            }
            Err(e) => {
                tracing::error!(%run_id, "could not store tick {} (not published): {e}", s.seq);
                return false;
            }
        }
    }
}

/// Where a run's load is made: in this process, or by the agents its plan asks for —
/// local processes, Kubernetes pods (`--agents-on kubernetes`, any plan naming agents)
/// or agents of the pool (`--agents-on joined`; `"all"`: every idle one now).
fn fleet_for(
    run_id: &str,
    plan: &Plan,
    agents: Option<AgentsSetup>,
    policy: engine::outbound::Policy,
    rt: &tokio::runtime::Handle,
    steer: Option<watch::Receiver<engine::steer::Course>>,
) -> Result<std::sync::Arc<dyn swarm::Fleet>, String> {
    use crate::agents::local::{JoinedFleet, LocalProcesses};
    use engine::plan::Agents;
    let Some((asked, a)) = plan.agents.zip(agents) else {
        // Only a run made in this process can be steered (see `super::steer`).
        return Ok(std::sync::Arc::new(match steer {
            Some(steer) => swarm::InProcess::steered(policy, rt, steer),
            None => swarm::InProcess::one(policy, rt),
        }));
    };
    if a.joined {
        let n = match asked {
            Agents::Count(n) => n,
            Agents::All(_) => match a.hub.pool.idle() {
                0 => return Err("agents: \"all\": no agent is idle in the pool (see GET /api/agents; start one with `socketswarm agent --pool wss://THIS_SERVER:AGENT_PORT --coordinator-pin … --allow-target …`)".into()),
                n => n,
            },
        };
        let launcher = crate::agents::pool::PoolLauncher::new(a.hub.pool.clone(), run_id);
        return Ok(std::sync::Arc::new(JoinedFleet::new(
            n,
            std::sync::Arc::new(launcher),
            a.hub,
            &a.base,
            a.allow_targets,
            rt,
        )));
    }
    let n = match asked {
        Agents::Count(n) => n,
        Agents::All(_) => return Err("agents: \"all\" means every agent joined to this server's pool; this server has none (start it with --agents-on joined --agent-pool-token …)".into()),
    };
    match a.kube {
        #[cfg(not(feature = "kubernetes"))]
        Some(_) => Err(crate::config::k8s::NO_KUBERNETES.into()),
        #[cfg(feature = "kubernetes")]
        Some(kube) if n >= 1 => Ok(std::sync::Arc::new(JoinedFleet::new(
            n,
            std::sync::Arc::new(crate::agents::k8s::KubeLauncher::new(
                kube.clone(),
                run_id,
                plan,
                &a.pin,
                &a.allow_targets,
            )),
            a.hub,
            &kube.coordinator_url,
            a.allow_targets,
            rt,
        ))),
        None if n > 1 => Ok(std::sync::Arc::new(JoinedFleet::new(
            n,
            std::sync::Arc::new(LocalProcesses::new(
                a.exe,
                a.pin.clone(),
                a.allow_targets.clone(),
            )),
            a.hub,
            &a.base,
            a.allow_targets,
            rt,
        ))),
        _ => Ok(std::sync::Arc::new(swarm::InProcess::one(policy, rt))),
    }
}

/// Drives one run: engine updates -> database -> watch channel (a probe's phases arrive
/// as one continuous stream, see `swarm::start_plan`). Returns once the run is fully
/// stored, with how it ended and its figures (`None` when it never started); dropping
/// the publisher on the way out is what ends the run's SSE streams.
#[allow(clippy::too_many_arguments)]
pub(super) async fn drive(
    run_id: String,
    plan: Plan,
    cancel: CancellationToken,
    publisher: watch::Sender<Option<Snapshot>>,
    pool: SqlitePool,
    rt: tokio::runtime::Handle,
    swarm_cfg: SwarmConfig,
    policy: engine::outbound::Policy,
    agents: Option<AgentsSetup>,
    steer: Option<watch::Receiver<engine::steer::Course>>,
) -> (RunStatus, Option<Box<RunFigures>>) {
    if let Err(e) = store::mark_running(&pool, &run_id, now_ms()).await {
        tracing::error!(%run_id, "could not mark run running: {e}");
    }
    let mut merged: Option<Summary> = None;
    // A run that cannot start ends `failed`.
    let mut status = RunStatus::Failed;
    let fleet = match fleet_for(&run_id, &plan, agents, policy, &rt, steer) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(%run_id, "run failed to start: {e}");
            if let Err(e2) =
                store::end_run_without_summary(&pool, &run_id, status.as_str(), now_ms(), Some(&e))
                    .await
            {
                tracing::error!(%run_id, "could not mark run failed: {e2}");
            }
            return (status, None);
        }
    };
    match swarm::start_plan(plan, swarm_cfg, cancel, &rt, fleet).await {
        Err(e) => {
            tracing::warn!(%run_id, "run failed to start: {e}");
            if let Err(e2) = store::end_run_without_summary(
                &pool,
                &run_id,
                status.as_str(),
                now_ms(),
                Some(&e.to_string()),
            )
            .await
            {
                tracing::error!(%run_id, "could not mark run failed: {e2}");
            }
        }
        Ok(mut updates) => {
            let mut ticks = engine::report::TickEncoder::new();
            while let Some(u) = updates.recv().await {
                match u {
                    Update::Tick(s) => {
                        if store_tick(&pool, &run_id, &s, &mut ticks).await {
                            publisher.send_replace(Some(s));
                        }
                    }
                    Update::Finished(summary) => merged = Some(summary),
                }
            }
        }
    }
    let figures = merged.as_ref().map(|s| Box::new(RunFigures::of_summary(s)));
    if let Some(summary) = merged {
        status = RunStatus::ended(summary.end_reason);
        let h = store::Headline {
            peak_open: summary.peak_open as i64,
            opened: summary.totals.opened as i64,
            failed: summary.totals.failed as i64,
            duration_ms: summary.duration_ms as i64,
        };
        let json = serde_json::to_string(&summary).unwrap_or_else(|_| "{}".into());
        // The verdict first: once the status says finished, the runs list has it.
        let reads = super::reads::Reads::new(pool.clone());
        match reads.verdict(&run_id, summary.clone()).await {
            Ok((kind, text)) => {
                if let Err(e) = store::set_verdict(&pool, &run_id, &kind, &text).await {
                    tracing::warn!(%run_id, "could not store the verdict: {e}");
                }
            }
            Err(e) => tracing::warn!(%run_id, "could not diagnose the run: {e}"),
        }
        if let Err(e) = store::finish_run(&pool, &run_id, status.as_str(), now_ms(), &json, h).await
        {
            tracing::error!(%run_id, "could not store the summary: {e}");
        }
        tracing::info!(%run_id, status = status.as_str(), opened = summary.totals.opened, failed = summary.totals.failed, "run finished");
    }
    drop(publisher);
    (status, figures)
}
