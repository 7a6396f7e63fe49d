//! A run past one process: agents (`socketswarm agent`) make the load, each its share,
//! and the coordinator merges their ticks exactly.
//!
//! - [`channel`] the agent channel's transport: `wss://` on the agent listener, the
//!   coordinator's certificate pinned by agents; its identity (key, certificate, pin).
//! - [`hub`]    the coordinator's endpoint agents dial in to, per-run secrets.
//! - [`hello`]  an agent connection's first frame (`hello`), read by `hub` and `pool`.
//! - [`local`]  a fleet of joining agents (`JoinedFleet`), the `Launcher` that brings
//!   them to life, and agent processes on this machine (local mode).
//! - [`pool`]   the standing pool of remote agents (`agent --pool`, `--agents-on joined`).
//! - [`k8s`]    agents as pods of a Kubernetes Indexed Job (`--agents-on kubernetes`).
//! - [`agent`]  the agent process itself.

pub mod agent;
pub mod channel;
pub mod hello;
pub mod hub;
pub mod k8s;
pub mod local;
pub mod pool;

/// Connections one process holds: its open-file limit, less a reserve for everything
/// else it opens (listeners, the database, HTTP clients).
pub fn per_process(nofile: u64) -> u32 {
    u32::try_from(nofile.saturating_sub(300))
        .unwrap_or(u32::MAX)
        .max(1)
}
