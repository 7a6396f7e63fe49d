//! The runtime that carries a run's load, apart from the one that carries its ticks.
//!
//! A connect burst (tens of thousands of VUs becoming runnable at once on two cores)
//! fills a tokio runtime's run queues for seconds. Anything queued behind it waits:
//! before this split, an agent's aggregator and its control connection shared the
//! runtime with its VUs, so at 50,000 connects/s asked the ticks — which are also the
//! heartbeat — stopped for more than 10 s and the coordinator declared every agent lost
//! (bench/AGENTS.md). Now every process that makes load (`serve`, `run`, `agent`) runs
//! its VUs and the controller on a `LoadRuntime` of their own, while the aggregator, the
//! coordinator and the control connection stay on the caller's runtime: the OS
//! scheduler shares the cores between the two, so ticks keep their cadence however
//! deep the load's queue is.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// A multi-thread runtime on its own OS thread; dropping (or `stop`ping) it ends it
/// without blocking the caller (a runtime dropped inside async code would panic).
pub struct LoadRuntime {
    handle: tokio::runtime::Handle,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LoadRuntime {
    /// Starts one with `workers` threads named `name`.
    pub fn start(name: &str, workers: usize) -> std::io::Result<LoadRuntime> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .thread_name(name)
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let stop = CancellationToken::new();
        let until = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-runtime"))
            .spawn(move || {
                rt.block_on(until.cancelled());
                // Give VU tasks a moment to flush before the runtime goes away.
                rt.shutdown_timeout(Duration::from_secs(10));
            })?;
        Ok(LoadRuntime {
            handle,
            stop,
            thread: Some(thread),
        })
    }

    /// Where load tasks are spawned.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Ends the runtime; the returned thread finishes once its tasks were given up to
    /// 10 s to end (join it from blocking code, or drop it).
    pub fn stop(mut self) -> Option<std::thread::JoinHandle<()>> {
        self.stop.cancel();
        self.thread.take()
    }
}

impl Drop for LoadRuntime {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The runtime the caller runs on: where ticks and coordination belong. Outside any
/// runtime (never the case for the async functions that ask), `fallback`.
pub(crate) fn control_runtime(fallback: &tokio::runtime::Handle) -> tokio::runtime::Handle {
    tokio::runtime::Handle::try_current().unwrap_or_else(|_| fallback.clone())
}
