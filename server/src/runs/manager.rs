//! The run manager: one task that owns every live run (goose's `MetricsCommand` shape).
//!
//! Commands arrive on an mpsc channel, each answered over a oneshot. For a launched run
//! the manager creates a cancel token (a child of the server's shutdown token, so
//! SIGTERM ends runs as `cancelled`) and a `watch` channel for the latest snapshot, then
//! either starts it or queues it (`max_concurrent` runs at once, at most `max_queued`
//! waiting; past that the launch is refused). A per-run task drives
//! the engine and persists every tick *before* publishing it (retrying while the
//! database is busy; a tick that cannot be stored is not published), so what a browser
//! saw is always in the database; it drops the `watch` sender only after the final summary is
//! stored, which is what ends the SSE streams.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use app::api::RunStatus;

use engine::swarm::{self, SwarmConfig, Update};
use engine::{Plan, Snapshot, Summary};
use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::now_ms;
use crate::metrics::{RunEntry, RunFigures};
use crate::store;

/// Latest snapshot of a live run (`None` until the first tick).
pub type SnapshotRx = watch::Receiver<Option<Snapshot>>;

/// Where a launched run went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Started,
    /// Waiting; `0` is next.
    Queued(usize),
    /// Not taken: `max_queued` runs are already waiting.
    QueueFull(usize),
}

/// Result of a cancel request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    Cancelled,
    NotLive,
}

enum Command {
    Launch {
        run_id: String,
        plan: Box<Plan>,
        reply: oneshot::Sender<Placement>,
    },
    Cancel {
        run_id: String,
        reply: oneshot::Sender<CancelOutcome>,
    },
    Subscribe {
        run_id: String,
        reply: oneshot::Sender<Option<SnapshotRx>>,
    },
    /// Sent by a run task when its run is fully stored: how it ended, and its figures
    /// (`None` when it never started).
    Finished {
        run_id: String,
        status: RunStatus,
        figures: Option<Box<RunFigures>>,
    },
    /// What `/metrics` shows (see [`MetricsView`]).
    Metrics { reply: oneshot::Sender<MetricsView> },
    /// Replies once no run is live (used at shutdown).
    Drain { reply: oneshot::Sender<()> },
}

/// Cheap, cloneable handle to the manager.
#[derive(Clone)]
pub struct ManagerHandle {
    tx: mpsc::Sender<Command>,
}

impl ManagerHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.ok()?;
        rx.await.ok()
    }
    /// Starts or queues a run already stored as `queued`.
    pub async fn launch(&self, run_id: String, plan: Plan) -> Option<Placement> {
        self.ask(|reply| Command::Launch {
            run_id,
            plan: Box::new(plan),
            reply,
        })
        .await
    }
    pub async fn cancel(&self, run_id: String) -> CancelOutcome {
        self.ask(|reply| Command::Cancel { run_id, reply })
            .await
            .unwrap_or(CancelOutcome::NotLive)
    }
    /// The live snapshot stream of a queued or running run; `None` once it finished.
    pub async fn subscribe(&self, run_id: String) -> Option<SnapshotRx> {
        self.ask(|reply| Command::Subscribe { run_id, reply })
            .await
            .flatten()
    }
    /// Waits until no run is live.
    pub async fn drain(&self) {
        let _ = self.ask(|reply| Command::Drain { reply }).await;
    }
    /// The live and recently finished runs, for `/metrics` (`None` once the manager
    /// has stopped).
    pub async fn metrics(&self) -> Option<MetricsView> {
        self.ask(|reply| Command::Metrics { reply }).await
    }
}

/// A live run as `/metrics` sees it: read its latest snapshot from `snapshots`.
pub struct LiveView {
    pub run_id: String,
    pub plan: String,
    /// Queued or running.
    pub status: RunStatus,
    pub snapshots: SnapshotRx,
}

/// The manager's answer to `metrics()`.
pub struct MetricsView {
    pub live: Vec<LiveView>,
    /// Runs finished within `RECENT_FOR` (at most `RECENT_RUNS`), newest last.
    pub recent: Vec<Arc<RunEntry>>,
    /// Runs ended since the manager started, by final status.
    pub ended: Vec<(RunStatus, u64)>,
}

/// How long a finished run's final values stay in `/metrics`: a few scrape intervals,
/// so the last increments of a run that ends between two scrapes are still seen.
const RECENT_FOR: Duration = Duration::from_secs(600);
/// At most this many finished runs are kept for `/metrics` (each holds its histograms).
const RECENT_RUNS: usize = 32;

/// A queued or running run, as the manager holds it.
struct LiveRun {
    /// Cancels this run only (child of the server's shutdown token).
    cancel: CancellationToken,
    /// Kept so new subscribers can be handed a receiver.
    snapshots: SnapshotRx,
    /// The sender, until the run task takes it on start.
    publisher: Option<watch::Sender<Option<Snapshot>>>,
    plan: Option<Plan>,
    /// The plan's name, for `/metrics` labels.
    plan_name: String,
}

/// Manager settings.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    pub max_concurrent: usize,
    /// Runs that may wait for a slot. Each holds its plan (up to ~2 MB) in memory, so
    /// the queue must not grow without bound (attack report 8a: 200 queued, +450 MB).
    pub max_queued: usize,
    pub swarm: SwarmConfig,
    /// Where runs may connect (`--allow-target`), enforced by the engine on the
    /// addresses each run resolves when it starts.
    pub policy: engine::outbound::Policy,
    /// Runs split over agent processes (`plan.agents` > 1) get them from here.
    pub agents: Option<AgentsSetup>,
}

/// What local agent fleets need: where agents dial in, and the allowlist to pass on.
#[derive(Clone)]
pub struct AgentsSetup {
    pub hub: std::sync::Arc<crate::agents::hub::Hub>,
    /// The coordinator as agents reach it (`ws://127.0.0.1:PORT`).
    pub base: String,
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

struct Manager {
    rx: mpsc::Receiver<Command>,
    /// For run tasks to report `Finished`.
    tx: mpsc::Sender<Command>,
    pool: SqlitePool,
    cfg: ManagerConfig,
    /// Runtime the swarms run on (separate from the UI's).
    engine_rt: tokio::runtime::Handle,
    shutdown: CancellationToken,
    live: HashMap<String, LiveRun>,
    running: usize,
    queue: VecDeque<String>,
    drain_waiters: Vec<oneshot::Sender<()>>,
    /// Runs finished lately, with when they finished (for `/metrics`), oldest first.
    recent: VecDeque<(Instant, Arc<RunEntry>)>,
    /// Runs ended since start, by final status (for `/metrics`).
    ended: Vec<(RunStatus, u64)>,
}

/// Spawns the manager on the current runtime.
pub fn spawn(
    pool: SqlitePool,
    cfg: ManagerConfig,
    engine_rt: tokio::runtime::Handle,
    shutdown: CancellationToken,
) -> ManagerHandle {
    let (tx, rx) = mpsc::channel(256);
    let m = Manager {
        rx,
        tx: tx.clone(),
        pool,
        cfg,
        engine_rt,
        shutdown,
        live: HashMap::new(),
        running: 0,
        queue: VecDeque::new(),
        drain_waiters: Vec::new(),
        recent: VecDeque::new(),
        ended: Vec::new(),
    };
    tokio::spawn(m.run());
    ManagerHandle { tx }
}

impl Manager {
    async fn run(mut self) {
        while let Some(cmd) = self.rx.recv().await {
            match cmd {
                Command::Launch {
                    run_id,
                    plan,
                    reply,
                } => {
                    let must_wait =
                        self.running >= self.cfg.max_concurrent || self.shutdown.is_cancelled();
                    if must_wait && self.queue.len() >= self.cfg.max_queued {
                        let _ = reply.send(Placement::QueueFull(self.cfg.max_queued));
                        continue;
                    }
                    let (ptx, prx) = watch::channel(None);
                    let cancel = self.shutdown.child_token();
                    self.live.insert(
                        run_id.clone(),
                        LiveRun {
                            cancel,
                            snapshots: prx,
                            publisher: Some(ptx),
                            plan_name: plan.name.clone(),
                            plan: Some(*plan),
                        },
                    );
                    if !must_wait {
                        self.start(&run_id);
                        let _ = reply.send(Placement::Started);
                    } else {
                        self.queue.push_back(run_id);
                        let _ = reply.send(Placement::Queued(self.queue.len() - 1));
                    }
                }
                Command::Cancel { run_id, reply } => {
                    let outcome = match self.live.get(&run_id) {
                        None => CancelOutcome::NotLive,
                        Some(run) if run.publisher.is_some() => {
                            // Still queued: it never started.
                            self.queue.retain(|q| q != &run_id);
                            self.live.remove(&run_id);
                            if let Err(e) = store::end_run_without_summary(
                                &self.pool,
                                &run_id,
                                "cancelled",
                                now_ms(),
                                None,
                            )
                            .await
                            {
                                tracing::error!(%run_id, "could not mark queued run cancelled: {e}");
                            }
                            self.count_ended(RunStatus::Cancelled);
                            self.notify_drained();
                            CancelOutcome::Cancelled
                        }
                        Some(run) => {
                            run.cancel.cancel();
                            CancelOutcome::Cancelled
                        }
                    };
                    let _ = reply.send(outcome);
                }
                Command::Subscribe { run_id, reply } => {
                    let _ = reply.send(self.live.get(&run_id).map(|r| r.snapshots.clone()));
                }
                Command::Finished {
                    run_id,
                    status,
                    figures,
                } => {
                    let plan = self.live.remove(&run_id).map(|r| r.plan_name);
                    self.count_ended(status);
                    self.remember(RunEntry {
                        id: run_id,
                        plan: plan.unwrap_or_default(),
                        status,
                        figures: figures.map(|f| *f),
                    });
                    self.running = self.running.saturating_sub(1);
                    while self.running < self.cfg.max_concurrent && !self.shutdown.is_cancelled() {
                        let Some(next) = self.queue.pop_front() else {
                            break;
                        };
                        self.start(&next);
                    }
                    if self.shutdown.is_cancelled() {
                        self.cancel_queued().await;
                    }
                    self.notify_drained();
                }
                Command::Metrics { reply } => {
                    let _ = reply.send(self.metrics_view());
                }
                Command::Drain { reply } => {
                    self.cancel_queued().await;
                    self.drain_waiters.push(reply);
                    self.notify_drained();
                }
            }
        }
    }

    fn count_ended(&mut self, status: RunStatus) {
        match self.ended.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => self.ended.push((status, 1)),
        }
    }

    /// Keeps a finished run's final values for `/metrics`, within the bounds.
    fn remember(&mut self, entry: RunEntry) {
        self.recent.push_back((Instant::now(), Arc::new(entry)));
        self.forget_old();
    }

    fn forget_old(&mut self) {
        while self.recent.len() > RECENT_RUNS
            || self
                .recent
                .front()
                .is_some_and(|(at, _)| at.elapsed() > RECENT_FOR)
        {
            self.recent.pop_front();
        }
    }

    fn metrics_view(&mut self) -> MetricsView {
        self.forget_old();
        let mut live: Vec<LiveView> = self
            .live
            .iter()
            .map(|(id, r)| LiveView {
                run_id: id.clone(),
                plan: r.plan_name.clone(),
                status: if r.publisher.is_some() {
                    RunStatus::Queued
                } else {
                    RunStatus::Running
                },
                snapshots: r.snapshots.clone(),
            })
            .collect();
        live.sort_by(|a, b| a.run_id.cmp(&b.run_id));
        MetricsView {
            live,
            recent: self.recent.iter().map(|(_, e)| e.clone()).collect(),
            ended: self.ended.clone(),
        }
    }

    async fn cancel_queued(&mut self) {
        for run_id in std::mem::take(&mut self.queue) {
            self.live.remove(&run_id);
            self.count_ended(RunStatus::Cancelled);
            if let Err(e) =
                store::end_run_without_summary(&self.pool, &run_id, "cancelled", now_ms(), None)
                    .await
            {
                tracing::error!(%run_id, "could not mark queued run cancelled: {e}");
            }
        }
    }

    fn notify_drained(&mut self) {
        if self.live.is_empty() {
            for w in self.drain_waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }

    fn start(&mut self, run_id: &str) {
        let Some(run) = self.live.get_mut(run_id) else {
            return;
        };
        let (Some(publisher), Some(plan)) = (run.publisher.take(), run.plan.take()) else {
            return;
        };
        self.running += 1;
        tokio::spawn(drive(
            run_id.to_string(),
            plan,
            run.cancel.clone(),
            publisher,
            self.pool.clone(),
            self.engine_rt.clone(),
            self.cfg.swarm,
            self.cfg.policy.clone(),
            self.cfg.agents.clone(),
            self.tx.clone(),
        ));
    }
}

/// How long a tick write is retried while another writer holds the database (an import
/// between two chunks, a burst of launches). Far past the busy timeout: giving up loses
/// data, waiting only delays the live view.
const TICK_STORE_DEADLINE: Duration = Duration::from_secs(60);

/// The pause between tries starts here and doubles up to `MAX_TICK_BACKOFF`.
const FIRST_TICK_BACKOFF: Duration = Duration::from_millis(10);
const MAX_TICK_BACKOFF: Duration = Duration::from_millis(500);

/// Stores one tick, retrying with backoff while the database is busy, for up to
/// `TICK_STORE_DEADLINE`. Returns whether it was stored: the caller publishes only
/// stored ticks, so what a browser saw is always in the database.
async fn store_tick(pool: &SqlitePool, run_id: &str, s: &Snapshot) -> bool {
    let json = match serde_json::to_string(s) {
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
) -> Result<std::sync::Arc<dyn swarm::Fleet>, String> {
    use crate::agents::local::{JoinedFleet, LocalProcesses};
    use engine::plan::Agents;
    let Some((asked, a)) = plan.agents.zip(agents) else {
        return Ok(std::sync::Arc::new(swarm::InProcess::one(policy, rt)));
    };
    if a.joined {
        let n = match asked {
            Agents::Count(n) => n,
            Agents::All(_) => match a.hub.pool.idle() {
                0 => return Err("agents: \"all\": no agent is idle in the pool (see GET /api/agents; start one with `socketswarm agent --pool ws://THIS_SERVER --token …`)".into()),
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
        Some(kube) if n >= 1 => Ok(std::sync::Arc::new(JoinedFleet::new(
            n,
            std::sync::Arc::new(crate::agents::k8s::KubeLauncher::new(
                kube.clone(),
                run_id,
                plan,
            )),
            a.hub,
            &kube.coordinator_url,
            a.allow_targets,
            rt,
        ))),
        None if n > 1 => Ok(std::sync::Arc::new(JoinedFleet::new(
            n,
            std::sync::Arc::new(LocalProcesses::new(a.exe)),
            a.hub,
            &a.base,
            a.allow_targets,
            rt,
        ))),
        _ => Ok(std::sync::Arc::new(swarm::InProcess::one(policy, rt))),
    }
}

/// Drives one run: engine updates -> database -> watch channel (a probe's phases arrive
/// as one continuous stream, see `swarm::start_plan`).
#[allow(clippy::too_many_arguments)]
async fn drive(
    run_id: String,
    plan: Plan,
    cancel: CancellationToken,
    publisher: watch::Sender<Option<Snapshot>>,
    pool: SqlitePool,
    rt: tokio::runtime::Handle,
    swarm_cfg: SwarmConfig,
    policy: engine::outbound::Policy,
    agents: Option<AgentsSetup>,
    manager: mpsc::Sender<Command>,
) {
    if let Err(e) = store::mark_running(&pool, &run_id, now_ms()).await {
        tracing::error!(%run_id, "could not mark run running: {e}");
    }
    let mut merged: Option<Summary> = None;
    // A run that cannot start ends `failed`.
    let mut status = RunStatus::Failed;
    let fleet = match fleet_for(&run_id, &plan, agents, policy, &rt) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(%run_id, "run failed to start: {e}");
            if let Err(e2) =
                store::end_run_without_summary(&pool, &run_id, status.as_str(), now_ms(), Some(&e))
                    .await
            {
                tracing::error!(%run_id, "could not mark run failed: {e2}");
            }
            let _ = manager
                .send(Command::Finished {
                    run_id,
                    status,
                    figures: None,
                })
                .await;
            return;
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
            while let Some(u) = updates.recv().await {
                match u {
                    Update::Tick(s) => {
                        if store_tick(&pool, &run_id, &s).await {
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
        if let Err(e) = store::finish_run(&pool, &run_id, status.as_str(), now_ms(), &json, h).await
        {
            tracing::error!(%run_id, "could not store the summary: {e}");
        }
        tracing::info!(%run_id, status = status.as_str(), opened = summary.totals.opened, failed = summary.totals.failed, "run finished");
    }
    drop(publisher);
    let _ = manager
        .send(Command::Finished {
            run_id,
            status,
            figures,
        })
        .await;
}
