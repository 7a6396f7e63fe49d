//! A run past one process: agents (`socketswarm agent`) make the load, each its share,
//! and the coordinator merges their ticks exactly.
//!
//! - [`hub`]    the coordinator's endpoint agents dial in to, per-run secrets.
//! - [`local`]  a fleet of joining agents (`JoinedFleet`), the `Launcher` that brings
//!   them to life, and agent processes on this machine (local mode).
//! - [`k8s`]    agents as pods of a Kubernetes Indexed Job (`--agents-on kubernetes`).
//! - [`agent`]  the agent process itself.

pub mod agent;
pub mod hub;
pub mod k8s;
pub mod local;
