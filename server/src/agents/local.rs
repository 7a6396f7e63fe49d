//! A fleet of agents that join: a `Launcher` brings N agents to life (local processes
//! here; pods of a Kubernetes Job in `k8s`), they dial in through the hub with the
//! run's secret, and the fleet bridges their frames to the engine's coordinator: assign → ready (every agent) →
//! start (all at once, after a short barrier) → ticks (acknowledged, so a reconnecting
//! agent resends only what is missing) → done. Cancelling the run cancels every agent.
//! An agent whose connection breaks and does not come back within the grace period,
//! or whose process exits before the end, is lost: the coordinator ends the run and
//! says why. Dropping the fleet says `bye`, ends the processes and asks the launcher to
//! `stop` (a Kubernetes Job is deleted), on a spawned task so the drop never blocks.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::protocol::{FromAgent, ToAgent};
use engine::swarm::{AgentMsg, EngineError, Fleet, Share, SwarmConfig};
use engine::Plan;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::hub::{AgentConn, Hub};

/// Where the current phase's frames go.
#[derive(Default)]
struct Route {
    phase: u32,
    /// The coordinator's channel while a phase runs.
    ticks: Option<mpsc::Sender<AgentMsg>>,
    /// Ready / failed answers to an `assign`.
    ready: Option<mpsc::Sender<(u32, Result<(), String>)>>,
    /// The run is over (no more loss reports).
    over: bool,
}

/// The fleet's shared state (tasks per agent read and write it).
struct State {
    route: Mutex<Route>,
    /// Each agent's current connection.
    links: Mutex<HashMap<u32, mpsc::Sender<ToAgent>>>,
    /// Bumped on every new connection of an agent, so a stale reader's close is ignored.
    generation: Mutex<HashMap<u32, u64>>,
}

/// A boxed future, as the object-safe traits here return.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// How a fleet's agents come to be, and how their deaths are noticed.
pub trait Launcher: Send + Sync {
    /// Starts `n` agents that join at `join` with `secret`, agent i with index i.
    fn launch<'a>(
        &'a self,
        n: u32,
        join: &'a str,
        secret: &'a str,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// Agents that died since the last call: (index, why).
    fn casualties(&self) -> BoxFuture<'_, Vec<(u32, String)>>;
    /// Releases what `launch` made elsewhere (a Kubernetes Job). Called once the fleet
    /// is dropped, on a spawned task: what lives in this process ends on drop anyway.
    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
    /// One line on how the launch is going, for errors and logs (`pods: 2 running,
    /// 1 pending (Unschedulable: …)`).
    fn status(&self) -> Option<String> {
        None
    }
    /// How long agents get to start and join: pods may first pull an image.
    fn join_wait(&self) -> Duration {
        JOIN_WAIT
    }
}

/// N agents that join this coordinator.
pub struct JoinedFleet {
    n: u32,
    hub: Arc<Hub>,
    key: String,
    join: String,
    secret: String,
    allow: Vec<String>,
    launcher: Arc<dyn Launcher>,
    grace: Duration,
    rt: tokio::runtime::Handle,
    state: Arc<State>,
    phase: Mutex<u32>,
}

/// Agent processes on this machine, each with its own loopback source address (used
/// when the plan names none). Each starts with an empty environment but for its run's
/// secret (`SOCKETSWARM_AGENT_TOKEN`): nothing of this server's own environment (its
/// access token, the variables plans may read) reaches them; the values a plan reads
/// come with its assignment.
pub struct LocalProcesses {
    /// The program to run (`socketswarm agent`); `None`: this one.
    exe: Option<std::path::PathBuf>,
    /// The pin of this server's agent certificate (`--coordinator-pin`).
    pin: String,
    /// This server's target allowlist, which each agent enforces itself too.
    allow: Vec<String>,
    /// The processes (ended when the launcher is dropped).
    children: tokio::sync::Mutex<Vec<Option<tokio::process::Child>>>,
}

impl LocalProcesses {
    pub fn new(exe: Option<std::path::PathBuf>, pin: String, allow: Vec<String>) -> LocalProcesses {
        LocalProcesses {
            exe,
            pin,
            allow,
            children: tokio::sync::Mutex::new(Vec::new()),
        }
    }

    /// Agent i's own loopback source addresses: two, because Linux hands `connect()`
    /// the ports of one parity first (even ones are left for `bind()`): past ~14,100
    /// connections from one address to one target port, every connect scans the whole
    /// range before it takes an even port, and opening slows to a crawl with the agent's
    /// CPU in the kernel. One address per agent was the wall at 6 × ~14,100 ≈ 84,600 of
    /// 100,000 in bench/AGENTS.md; an agent holds at most ~19,700 (its open files), which
    /// two addresses carry on the fast path.
    fn sources(i: u32) -> [IpAddr; 2] {
        let (hi, lo) = (1 + (i / 250) as u8, 1 + (i % 250) as u8);
        [
            IpAddr::from([127, 0, hi, lo]),
            IpAddr::from([127, 1, hi, lo]),
        ]
    }
}

impl Launcher for LocalProcesses {
    fn launch<'a>(
        &'a self,
        n: u32,
        join: &'a str,
        secret: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let exe = match &self.exe {
                Some(e) => e.clone(),
                None => std::env::current_exe()
                    .map_err(|e| format!("cannot find this program to start agents: {e}"))?,
            };
            let mut children = self.children.lock().await;
            for i in 0..n {
                let child = tokio::process::Command::new(&exe)
                    .arg("agent")
                    .args(["--join", join])
                    .args(["--coordinator-pin", &self.pin])
                    .args(["--index", &i.to_string()])
                    .args(
                        Self::sources(i)
                            .iter()
                            .flat_map(|a| ["--source".to_string(), a.to_string()]),
                    )
                    .args(
                        self.allow
                            .iter()
                            .flat_map(|a| ["--allow-target".to_string(), a.clone()]),
                    )
                    .env_clear()
                    .env("SOCKETSWARM_AGENT_TOKEN", secret)
                    .env("NO_COLOR", "1")
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| format!("agent {i} could not start: {e}"))?;
                children.push(Some(child));
            }
            Ok(())
        })
    }

    fn casualties(&self) -> BoxFuture<'_, Vec<(u32, String)>> {
        Box::pin(async move {
            let mut out = Vec::new();
            let mut list = self.children.lock().await;
            for (i, slot) in list.iter_mut().enumerate() {
                if let Some(Ok(Some(status))) = slot.as_mut().map(|c| c.try_wait()) {
                    out.push((i as u32, format!("its process exited ({status})")));
                    *slot = None;
                }
            }
            out
        })
    }
}

/// How long agents get to start and join, and to set up each phase.
const JOIN_WAIT: Duration = Duration::from_secs(30);
/// How often the launcher is asked for casualties while agents join.
const CASUALTY_CHECK: Duration = Duration::from_millis(200);
/// The start barrier: every agent starts this long after the `start` frame.
const BARRIER_MS: u64 = 300;

impl JoinedFleet {
    /// A fleet of `n` agents brought up by `launcher`, joining through `hub` at `base`
    /// (the coordinator's agent listener, `wss://host:port`, as the agents reach it).
    pub fn new(
        n: u32,
        launcher: Arc<dyn Launcher>,
        hub: Arc<Hub>,
        base: &str,
        allow: Vec<String>,
        rt: &tokio::runtime::Handle,
    ) -> JoinedFleet {
        let key = uuid::Uuid::new_v4().simple().to_string();
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        JoinedFleet {
            n: n.max(1),
            launcher,
            join: format!("{base}/api/agents/join/{key}"),
            hub,
            key,
            secret,
            allow,
            grace: Duration::from_secs(5),
            rt: rt.clone(),
            state: Arc::new(State {
                route: Mutex::new(Route::default()),
                links: Mutex::new(HashMap::new()),
                generation: Mutex::new(HashMap::new()),
            }),
            phase: Mutex::new(0),
        }
    }

    fn send(&self, agent: u32, m: ToAgent) {
        let tx = self
            .state
            .links
            .lock()
            .ok()
            .and_then(|l| l.get(&agent).cloned());
        if let Some(tx) = tx {
            let _ = tx.try_send(m);
        }
    }

    fn send_all(&self, m: &ToAgent) {
        for i in 0..self.n {
            self.send(i, m.clone());
        }
    }

    /// Launches the agents and waits until every one has joined. An agent that dies
    /// before it joins (its pod cannot pull the image, its process exits) fails the
    /// launch at once, with the launcher's reason.
    async fn spawn(&self) -> Result<(), EngineError> {
        let mut joined = self.hub.register(&self.key, &self.secret);
        self.launcher
            .launch(self.n, &self.join, &self.secret)
            .await
            .map_err(EngineError::Agents)?;
        let wait = self.launcher.join_wait();
        let deadline = tokio::time::Instant::now() + wait;
        let mut check = tokio::time::interval(CASUALTY_CHECK);
        let mut have = 0u32;
        while have < self.n {
            let conn = tokio::select! {
                conn = tokio::time::timeout_at(deadline, joined.recv()) => conn.ok().flatten(),
                _ = check.tick() => {
                    if let Some((i, why)) = self.launcher.casualties().await.into_iter().next() {
                        return Err(EngineError::Agents(format!("agent {i} did not join: {why}")));
                    }
                    continue;
                }
            };
            let Some(conn) = conn else {
                return Err(EngineError::Agents(self.join_timeout(have, wait)));
            };
            if let Some(i) = conn.index().filter(|i| *i < self.n) {
                if self.attach(i, conn) {
                    have += 1;
                }
            }
        }
        // Later joins are reconnects: the agent takes its place again.
        let state = self.state.clone();
        let (n, grace) = (self.n, self.grace);
        self.rt.spawn(async move {
            while let Some(conn) = joined.recv().await {
                if let Some(i) = conn.index().filter(|i| *i < n) {
                    attach(&state, i, conn, grace);
                }
            }
        });
        self.watch_casualties();
        Ok(())
    }

    /// Why the join failed: how many came, and how the launch looks (pods pending…).
    fn join_timeout(&self, have: u32, wait: Duration) -> String {
        let mut m = format!(
            "{have} of {} agents joined within {} s",
            self.n,
            wait.as_secs()
        );
        if let Some(status) = self.launcher.status() {
            m.push_str(&format!(" ({status})"));
        }
        m
    }

    fn attach(&self, i: u32, conn: AgentConn) -> bool {
        let first = !self
            .state
            .links
            .lock()
            .map(|l| l.contains_key(&i))
            .unwrap_or(true);
        attach(&self.state, i, conn, self.grace);
        first
    }

    /// An agent that dies (its process exits, its pod fails) before the run is over is
    /// lost.
    fn watch_casualties(&self) {
        let state = self.state.clone();
        let launcher = self.launcher.clone();
        self.rt.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if state.route.lock().map(|r| r.over).unwrap_or(true) {
                    return;
                }
                for (i, why) in launcher.casualties().await {
                    lose(&state, i, why);
                }
            }
        });
    }
}

/// Makes `conn` agent `i`'s connection and relays its frames to the current phase.
fn attach(state: &Arc<State>, i: u32, mut conn: AgentConn, grace: Duration) {
    let gen = {
        let mut g = state.generation.lock().unwrap_or_else(|e| e.into_inner());
        let e = g.entry(i).or_default();
        *e += 1;
        *e
    };
    if let Ok(mut l) = state.links.lock() {
        l.insert(i, conn.tx.clone());
    }
    let state = state.clone();
    tokio::spawn(async move {
        while let Some(f) = conn.rx.recv().await {
            let (phase, ticks, ready) = match state.route.lock() {
                Ok(r) => (r.phase, r.ticks.clone(), r.ready.clone()),
                Err(_) => return,
            };
            match f {
                FromAgent::Ready { phase: p } if p == phase => {
                    if let Some(r) = ready {
                        let _ = r.send((i, Ok(()))).await;
                    }
                }
                FromAgent::Failed { phase: p, message } if p == phase => {
                    if let Some(r) = ready {
                        let _ = r.send((i, Err(message))).await;
                    }
                }
                FromAgent::Tick { phase: p, mut tick } if p == phase => {
                    tick.agent = i;
                    let seq = tick.seq;
                    if let Some(t) = ticks {
                        let _ = t.send(AgentMsg::Tick(tick)).await;
                    }
                    let _ = conn.tx.try_send(ToAgent::Ack { phase, seq });
                }
                _ => {}
            }
        }
        // The connection ended: lost, unless the agent comes back in time (or the run
        // is over).
        tokio::time::sleep(grace).await;
        let current = state
            .generation
            .lock()
            .map(|g| g.get(&i).copied())
            .ok()
            .flatten();
        let over = state.route.lock().map(|r| r.over).unwrap_or(true);
        if current == Some(gen) && !over {
            lose(
                &state,
                i,
                format!(
                    "its connection broke and it did not come back within {} s",
                    grace.as_secs()
                ),
            );
        }
    });
}

fn lose(state: &State, agent: u32, reason: String) {
    let ticks = state.route.lock().ok().and_then(|r| r.ticks.clone());
    if let Some(t) = ticks {
        let _ = t.try_send(AgentMsg::Lost { agent, reason });
    }
}

impl Fleet for JoinedFleet {
    fn agents(&self) -> usize {
        self.n as usize
    }

    fn start_phase<'a>(
        &'a self,
        plan: Plan,
        cfg: SwarmConfig,
        cancel: CancellationToken,
        tx: mpsc::Sender<AgentMsg>,
    ) -> engine::swarm::PhaseStart<'a> {
        Box::pin(async move {
            let first = self
                .state
                .links
                .lock()
                .map(|l| l.is_empty())
                .unwrap_or(true);
            let (ready_tx, mut ready_rx) = mpsc::channel(self.n as usize * 2);
            let phase = {
                let mut p = self.phase.lock().unwrap_or_else(|e| e.into_inner());
                *p += 1;
                *p
            };
            if let Ok(mut r) = self.state.route.lock() {
                r.phase = phase;
                r.ticks = Some(tx);
                r.ready = Some(ready_tx);
            }
            if first {
                self.spawn().await?;
            }
            for i in 0..self.n {
                let share = Share {
                    index: i,
                    of: self.n,
                };
                // Only what this agent needs: its tokens, the environment's values.
                let plan = engine::swarm::plan_for_agent(&plan, share)
                    .map_err(|e| EngineError::Agents(format!("agent {i}: {e}")))?;
                self.send(
                    i,
                    ToAgent::Assign {
                        phase,
                        plan: Box::new(plan),
                        share,
                        tick_ms: cfg.tick.as_millis() as u64,
                        allow_targets: self.allow.clone(),
                    },
                );
            }
            let deadline = tokio::time::Instant::now() + JOIN_WAIT;
            let mut ready = 0;
            while ready < self.n {
                match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
                    Ok(Some((_, Ok(())))) => ready += 1,
                    Ok(Some((i, Err(message)))) => {
                        self.send_all(&ToAgent::Cancel);
                        return Err(EngineError::Agents(format!("agent {i}: {message}")));
                    }
                    _ => {
                        self.send_all(&ToAgent::Cancel);
                        return Err(EngineError::Agents(format!(
                            "{ready} of {} agents were ready within {} s",
                            self.n,
                            JOIN_WAIT.as_secs()
                        )));
                    }
                }
            }
            self.send_all(&ToAgent::Start {
                phase,
                in_ms: BARRIER_MS,
            });
            // Cancelling the run cancels every agent.
            let state = self.state.clone();
            let n = self.n;
            self.rt.spawn(async move {
                cancel.cancelled().await;
                let links: Vec<mpsc::Sender<ToAgent>> = state
                    .links
                    .lock()
                    .map(|l| (0..n).filter_map(|i| l.get(&i).cloned()).collect())
                    .unwrap_or_default();
                for l in links {
                    let _ = l.try_send(ToAgent::Cancel);
                }
            });
            Ok(())
        })
    }
}

impl Drop for JoinedFleet {
    fn drop(&mut self) {
        if let Ok(mut r) = self.state.route.lock() {
            r.over = true;
            r.ticks = None;
        }
        self.send_all(&ToAgent::Bye);
        self.hub.unregister(&self.key);
        // Deleting a Job takes a request: done on the runtime, never blocking the drop.
        let launcher = self.launcher.clone();
        self.rt.spawn(async move { launcher.stop().await });
    }
}
