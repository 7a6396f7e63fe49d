//! Agents as pods of one Kubernetes Indexed Job (`--agents-on kubernetes`). The launcher
//! owns what it creates in the cluster for one fleet: the Job (created suspended), the
//! Secret with the run's secret (owned by the Job), the pod watch, and the Job's
//! deletion when the fleet is dropped (run finished, failed or cancelled).
//!
//! Order of creation, and why: Job (suspended) → Secret with an ownerReference to the
//! Job's uid → Job resumed. The Secret can only name its owner once the Job exists, and
//! pods must not start before the Secret they read exists (they would sit in
//! `CreateContainerConfigError` until the kubelet retries). Any failure on the way
//! deletes the Job, which takes the Secret with it: nothing is left behind.
//!
//! - [`manifest`] the Job and Secret as values (golden-tested).
//! - [`pods`]     pod states, casualties and the status line.
//!
//! The launcher, the manifest and the pod model need the `kubernetes` cargo feature (on
//! by default; `make run`'s quick build leaves it out: the Kubernetes client is a tenth
//! of the server's compile time). The settings are always here, so the flags parse the
//! same; without the feature `--agents-on kubernetes` is refused at start-up.

#[cfg(feature = "kubernetes")]
mod launcher;
#[cfg(feature = "kubernetes")]
pub mod manifest;
#[cfg(feature = "kubernetes")]
pub mod pods;

use std::time::Duration;

#[cfg(feature = "kubernetes")]
pub use launcher::{refused, KubeLauncher};

/// Whether this binary can start agents as Kubernetes pods (the `kubernetes` feature).
pub const AVAILABLE: bool = cfg!(feature = "kubernetes");

/// How agent pods are made and watched (from `--k8s-*`, validated at startup).
#[derive(Debug, Clone)]
pub struct KubeSettings {
    /// Where Jobs, Secrets and pods go; `None`: the kubeconfig's (or in-cluster) default.
    pub namespace: Option<String>,
    /// The agent image (`socketswarm:<version>`; its entrypoint is `socketswarm`).
    pub image: String,
    pub image_pull_policy: Option<String>,
    /// `ws://HOST:PORT`: this server as pods reach it (they dial `…/api/agents/join/KEY`).
    pub coordinator_url: String,
    /// An explicit API server URL (`http://` works: tests, `kubectl proxy`); `None`:
    /// kube's `Config::infer` (KUBECONFIG, ~/.kube/config, then in-cluster).
    pub api_url: Option<String>,
    pub resources: AgentResources,
    /// How long pods get to start and join (image pulls on a fresh node take a while).
    pub join_wait: Duration,
    /// A pod Pending longer than this is lost (with the reason Kubernetes gave).
    pub pending_limit: Duration,
    /// The Job's `activeDeadlineSeconds` = run length + join wait + this.
    pub deadline_margin: Duration,
    /// The Job's `ttlSecondsAfterFinished` (a backstop: we delete it ourselves).
    pub ttl_after_finished: Duration,
}

/// CPU and memory for each agent pod, as Kubernetes quantities (`500m`, `1Gi`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentResources {
    pub cpu_request: Option<String>,
    pub cpu_limit: Option<String>,
    pub memory_request: Option<String>,
    pub memory_limit: Option<String>,
}
