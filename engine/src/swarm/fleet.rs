//! Where a run's agents are: the [`Fleet`] interface every way of running agents
//! implements (this process, local agent processes, other machines), and [`InProcess`],
//! the agents of this process.

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{run_agent_steered, AgentMsg, EngineError, Share, SwarmConfig};
use crate::plan::Plan;
use crate::steer::Course;

/// What [`Fleet::start_phase`] returns: resolves once every agent started.
pub type PhaseStart<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), EngineError>> + Send + 'a>>;

/// Where a run's agents are: they make the load, each its share, and send their ticks
/// to the coordinator. In this process (`InProcess`), in local agent processes or on
/// other machines (the server's fleets): one interface, one coordinator.
pub trait Fleet: Send + Sync {
    /// How many agents share the run.
    fn agents(&self) -> usize;
    /// Starts every agent on its share of `plan` (one phase of the run), all at once;
    /// their messages go to `tx`. Returns once they started, or with the setup error.
    /// Cancelling `cancel` stops every agent (they then send their last ticks).
    fn start_phase<'a>(
        &'a self,
        plan: Plan,
        cfg: SwarmConfig,
        cancel: CancellationToken,
        tx: mpsc::Sender<AgentMsg>,
    ) -> PhaseStart<'a>;
    /// The steering of a run whose agents follow it (`steer.rs`); `None`: not steerable.
    fn steering(&self) -> Option<watch::Receiver<Course>> {
        None
    }
}

/// Agents in this process (one for a plain run: a second one here would share its
/// open-file limit, so other processes are where a run grows).
pub struct InProcess {
    pub agents: u32,
    pub policy: crate::outbound::Policy,
    pub rt: tokio::runtime::Handle,
    /// A steerable run's newest course (every agent here follows it).
    pub steer: Option<watch::Receiver<Course>>,
}

impl InProcess {
    /// The whole run in one agent here.
    pub fn one(policy: crate::outbound::Policy, rt: &tokio::runtime::Handle) -> InProcess {
        InProcess {
            agents: 1,
            policy,
            rt: rt.clone(),
            steer: None,
        }
    }

    /// The whole run in one agent here, following `steer` (see `steer.rs`).
    pub fn steered(
        policy: crate::outbound::Policy,
        rt: &tokio::runtime::Handle,
        steer: watch::Receiver<Course>,
    ) -> InProcess {
        InProcess {
            steer: Some(steer),
            ..InProcess::one(policy, rt)
        }
    }
}

impl Fleet for InProcess {
    fn agents(&self) -> usize {
        self.agents.max(1) as usize
    }

    fn steering(&self) -> Option<watch::Receiver<Course>> {
        self.steer.clone()
    }

    fn start_phase<'a>(
        &'a self,
        plan: Plan,
        cfg: SwarmConfig,
        cancel: CancellationToken,
        tx: mpsc::Sender<AgentMsg>,
    ) -> PhaseStart<'a> {
        Box::pin(async move {
            let of = self.agents.max(1);
            for index in 0..of {
                let (ticks_tx, mut ticks) = mpsc::channel(256);
                run_agent_steered(
                    plan.clone(),
                    Share { index, of },
                    cfg,
                    cancel.child_token(),
                    &self.rt,
                    self.policy.clone(),
                    ticks_tx,
                    self.steer.clone(),
                )
                .await?;
                let tx = tx.clone();
                // The agent's ticks go straight to the coordinator (on the control
                // runtime, like the ticks themselves).
                crate::load_runtime::control_runtime(&self.rt).spawn(async move {
                    while let Some(t) = ticks.recv().await {
                        if tx.send(AgentMsg::Tick(Box::new(t))).await.is_err() {
                            return;
                        }
                    }
                });
            }
            Ok(())
        })
    }
}
