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
//! stored, which is what ends the SSE streams. A run's own life (its fleet, the engine,
//! storing and publishing ticks) is `super::drive`; this file is the actor's bookkeeping.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use app::api::RunStatus;

use engine::swarm::SwarmConfig;
use engine::{Plan, Snapshot};
use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::drive::drive;
pub use super::drive::AgentsSetup;
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

/// Result of a steering request.
#[derive(Debug)]
pub enum SteerOutcome {
    /// Applied (and stored) as this event.
    Steered(engine::steer::SteerEvent),
    /// Refused, with why.
    Refused(app::api::ApiError),
    /// No such run is queued or running.
    NotLive,
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
    /// Steer a running run (see `super::steer`); `check` is the server's validation of
    /// the steered plan.
    Steer {
        run_id: String,
        steer: engine::steer::Steer,
        check: super::steer::Check,
        reply: oneshot::Sender<SteerOutcome>,
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
    /// Applies one steering change to a running run.
    pub async fn steer(
        &self,
        run_id: String,
        steer: engine::steer::Steer,
        check: super::steer::Check,
    ) -> SteerOutcome {
        self.ask(|reply| Command::Steer {
            run_id,
            steer,
            check,
            reply,
        })
        .await
        .unwrap_or(SteerOutcome::NotLive)
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
    /// Why this run cannot be steered (probe, sessions, agents); `None`: it can.
    unsteerable: Option<&'static str>,
    /// Its steering once it runs: the course's sender and the plan as steered so far.
    steering: Option<super::steer::Steering>,
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
                            unsteerable: super::steer::unsteerable(&plan),
                            steering: None,
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
                Command::Steer {
                    run_id,
                    steer,
                    check,
                    reply,
                } => {
                    let outcome = match self.live.get_mut(&run_id) {
                        None => SteerOutcome::NotLive,
                        Some(run) => {
                            super::steer::steer_live(
                                &self.pool,
                                &run_id,
                                run.unsteerable,
                                run.steering.as_mut(),
                                steer,
                                check,
                            )
                            .await
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
        let steer = match run.unsteerable {
            None => {
                let (steering, rx) = super::steer::Steering::new(&plan);
                run.steering = Some(steering);
                Some(rx)
            }
            Some(_) => None,
        };
        let run = drive(
            run_id.to_string(),
            plan,
            run.cancel.clone(),
            publisher,
            self.pool.clone(),
            self.engine_rt.clone(),
            self.cfg.swarm,
            self.cfg.policy.clone(),
            self.cfg.agents.clone(),
            steer,
        );
        let (run_id, manager) = (run_id.to_string(), self.tx.clone());
        tokio::spawn(async move {
            let (status, figures) = run.await;
            let _ = manager
                .send(Command::Finished {
                    run_id,
                    status,
                    figures,
                })
                .await;
        });
    }
}
