//! A run past one process: agents (`socketswarm agent`) make the load, each its share,
//! and the coordinator merges their ticks exactly.
//!
//! - [`hub`]    the coordinator's endpoint agents dial in to, per-run secrets.
//! - [`local`]  a fleet of agent processes on this machine (local mode).
//! - [`agent`]  the agent process itself.

pub mod agent;
pub mod hub;
pub mod local;
