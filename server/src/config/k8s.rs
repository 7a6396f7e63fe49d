//! `--agents-on` and the `--k8s-*` flags: where runs split over agents get them, and how
//! agent pods are made (see `agents::k8s`). Checked once at startup with the rest.

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::agents::k8s::{AgentResources, KubeSettings};

/// Where a run's agents run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum AgentsOn {
    /// Processes on this machine.
    #[default]
    Local,
    /// Pods of a Kubernetes Job.
    Kubernetes,
    /// Agents that joined this server's pool (`socketswarm agent --pool URL --token T`
    /// on any machine; needs --agent-pool-token).
    Joined,
}

/// The default agent image: this version of the project's image.
pub const DEFAULT_IMAGE: &str = concat!("socketswarm:", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Agents in Kubernetes")]
pub struct K8sArgs {
    /// Where runs split over agents (a plan with `agents`) get them: `local` processes,
    /// or `kubernetes` pods of one Indexed Job per run (needs --k8s-coordinator-url).
    /// With `kubernetes`, every plan that names `agents` (even 1) runs in pods.
    #[arg(long, env = "SOCKETSWARM_AGENTS_ON", value_enum, default_value_t = AgentsOn::Local)]
    pub agents_on: AgentsOn,
    /// The token agents show to join this server's pool (`--agents-on joined`): the
    /// access token's strength rules (24+ characters, 10+ different, no pattern); give
    /// it through the environment rather than the command line, where other users of
    /// the machine can read it.
    #[arg(long, env = "SOCKETSWARM_AGENT_POOL_TOKEN", hide_env_values = true)]
    pub agent_pool_token: Option<String>,
    /// Where agents dial in (`wss://`, TLS with this server's own certificate, which
    /// agents pin): loopback on a free port by default, enough for local agent
    /// processes; pool agents and pods need an address they reach, e.g. 0.0.0.0:3443.
    #[arg(long, env = "SOCKETSWARM_AGENT_LISTEN", default_value = "127.0.0.1:0")]
    pub agent_listen: std::net::SocketAddr,
    /// The agent channel's key and certificate (PEM, both in one file). Default:
    /// `<database>.agent-tls.pem`, made on first start (mode 0600), so the pin agents
    /// are given stays the same across restarts.
    #[arg(long, env = "SOCKETSWARM_AGENT_TLS")]
    pub agent_tls: Option<std::path::PathBuf>,
    /// This server's agent listener as agent pods reach it, `wss://HOST:PORT` (a
    /// Service in front of it, e.g. `wss://socketswarm.load.svc:3443`). Required with
    /// `--agents-on kubernetes`.
    #[arg(long, env = "SOCKETSWARM_K8S_COORDINATOR_URL")]
    pub k8s_coordinator_url: Option<String>,
    /// Namespace for the Jobs, Secrets and pods; default: the kubeconfig's (or the
    /// in-cluster) namespace.
    #[arg(long, env = "SOCKETSWARM_K8S_NAMESPACE")]
    pub k8s_namespace: Option<String>,
    /// The agent image; its entrypoint must be `socketswarm`.
    #[arg(long, env = "SOCKETSWARM_K8S_IMAGE", default_value = DEFAULT_IMAGE)]
    pub k8s_image: String,
    /// `Always`, `IfNotPresent` or `Never`; default: Kubernetes' own rule.
    #[arg(long, env = "SOCKETSWARM_K8S_IMAGE_PULL_POLICY")]
    pub k8s_image_pull_policy: Option<String>,
    /// The API server, e.g. `http://127.0.0.1:8001` behind `kubectl proxy` (plain
    /// http works). Default: KUBECONFIG, ~/.kube/config, then the in-cluster account.
    #[arg(long, env = "SOCKETSWARM_K8S_API_URL")]
    pub k8s_api_url: Option<String>,
    /// CPU each agent pod requests (a Kubernetes quantity; empty = none).
    #[arg(long, env = "SOCKETSWARM_K8S_CPU_REQUEST", default_value = "500m")]
    pub k8s_cpu_request: String,
    /// CPU limit per agent pod; default none (a throttled load generator measures
    /// itself, not the target).
    #[arg(long, env = "SOCKETSWARM_K8S_CPU_LIMIT")]
    pub k8s_cpu_limit: Option<String>,
    /// Memory each agent pod requests (empty = none).
    #[arg(long, env = "SOCKETSWARM_K8S_MEMORY_REQUEST", default_value = "256Mi")]
    pub k8s_memory_request: String,
    /// Memory limit per agent pod (past it the pod is OOMKilled: the run says so).
    #[arg(long, env = "SOCKETSWARM_K8S_MEMORY_LIMIT", default_value = "1Gi")]
    pub k8s_memory_limit: String,
    /// How long agent pods get to start and join (image pull included).
    #[arg(long, env = "SOCKETSWARM_K8S_JOIN_TIMEOUT", default_value = "120s")]
    pub k8s_join_timeout: String,
    /// An agent pod Pending longer than this is lost (unschedulable, no quota…).
    #[arg(long, env = "SOCKETSWARM_K8S_PENDING_TIMEOUT", default_value = "90s")]
    pub k8s_pending_timeout: String,
    /// The Job's activeDeadlineSeconds is the plan's length + the join timeout + this.
    #[arg(long, env = "SOCKETSWARM_K8S_DEADLINE_MARGIN", default_value = "2m")]
    pub k8s_deadline_margin: String,
    /// The Job's ttlSecondsAfterFinished (a backstop: the server deletes its Jobs).
    #[arg(
        long,
        env = "SOCKETSWARM_K8S_TTL_AFTER_FINISHED",
        default_value = "10m"
    )]
    pub k8s_ttl_after_finished: String,
}

impl Default for K8sArgs {
    /// The same as an empty command line (for tests that build `ServeArgs` by hand).
    fn default() -> K8sArgs {
        K8sArgs {
            agents_on: AgentsOn::Local,
            agent_pool_token: None,
            agent_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            agent_tls: None,
            k8s_coordinator_url: None,
            k8s_namespace: None,
            k8s_image: DEFAULT_IMAGE.into(),
            k8s_image_pull_policy: None,
            k8s_api_url: None,
            k8s_cpu_request: "500m".into(),
            k8s_cpu_limit: None,
            k8s_memory_request: "256Mi".into(),
            k8s_memory_limit: "1Gi".into(),
            k8s_join_timeout: "120s".into(),
            k8s_pending_timeout: "90s".into(),
            k8s_deadline_margin: "2m".into(),
            k8s_ttl_after_finished: "10m".into(),
        }
    }
}

impl K8sArgs {
    /// The pool token with `--agents-on joined` (`None` otherwise); problems go to
    /// `problems`.
    pub fn pool_token(&self, problems: &mut Vec<String>) -> Option<String> {
        let token = self
            .agent_pool_token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        match (self.agents_on, token) {
            (AgentsOn::Joined, Some(t)) => match super::weak_token(t) {
                None => Some(t.to_string()),
                Some(why) => {
                    problems.push(format!("--agent-pool-token (SOCKETSWARM_AGENT_POOL_TOKEN) is too weak: {why} (anyone holding it receives this server's plans with their secrets and makes load from them). {}", super::STRONG_TOKEN));
                    None
                }
            },
            (AgentsOn::Joined, None) => {
                problems.push(format!("--agents-on joined needs --agent-pool-token (SOCKETSWARM_AGENT_POOL_TOKEN): the token agents show to join. {}", super::STRONG_TOKEN));
                None
            }
            (_, Some(_)) => {
                problems.push("--agent-pool-token: only used with --agents-on joined".into());
                None
            }
            (_, None) => None,
        }
    }
}

/// `--agents-on kubernetes` in a binary built without the launcher.
pub const NO_KUBERNETES: &str = "--agents-on kubernetes: this binary was built without the Kubernetes launcher (the cargo feature `kubernetes`; `make run`'s quick build leaves it out) — build it with `make build` or `cargo build --release -p server`";

/// `Some(value)` unless empty.
fn given(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_string())
}

impl K8sArgs {
    /// The pod settings when agents run in Kubernetes (`None` for local agents); every
    /// problem goes to `problems`.
    pub fn settings(&self, problems: &mut Vec<String>) -> Option<KubeSettings> {
        if self.agents_on != AgentsOn::Kubernetes {
            return None;
        }
        if !crate::agents::k8s::AVAILABLE {
            problems.push(NO_KUBERNETES.into());
            return None;
        }
        let mut duration = |flag: &str, text: &str| {
            engine::plan::parse_duration(text).unwrap_or_else(|e| {
                problems.push(format!("--{flag}: {e}"));
                Duration::ZERO
            })
        };
        let join_wait = duration("k8s-join-timeout", &self.k8s_join_timeout);
        let pending_limit = duration("k8s-pending-timeout", &self.k8s_pending_timeout);
        let deadline_margin = duration("k8s-deadline-margin", &self.k8s_deadline_margin);
        let ttl_after_finished = duration("k8s-ttl-after-finished", &self.k8s_ttl_after_finished);
        let coordinator_url = match self.k8s_coordinator_url.as_deref().map(str::trim) {
            Some(u) if u.starts_with("wss://") && url::Url::parse(u).is_ok() => {
                u.trim_end_matches('/').to_string()
            }
            Some(u) => {
                problems.push(format!("--k8s-coordinator-url: `{u}` is not a wss://HOST:PORT URL (agents dial this server's agent listener, --agent-listen, over TLS and pin its certificate)"));
                String::new()
            }
            None => {
                problems.push("--agents-on kubernetes needs --k8s-coordinator-url (SOCKETSWARM_K8S_COORDINATOR_URL): this server's agent listener (--agent-listen) as agent pods reach it, e.g. wss://socketswarm.load.svc:3443".into());
                String::new()
            }
        };
        if let Some(p) = self.k8s_image_pull_policy.as_deref() {
            if !["Always", "IfNotPresent", "Never"].contains(&p) {
                problems.push(format!(
                    "--k8s-image-pull-policy: `{p}` is not Always, IfNotPresent or Never"
                ));
            }
        }
        if join_wait < Duration::from_secs(5) {
            problems.push("--k8s-join-timeout: at least 5s".into());
        }
        Some(KubeSettings {
            namespace: self.k8s_namespace.as_deref().and_then(given),
            image: self.k8s_image.clone(),
            image_pull_policy: self.k8s_image_pull_policy.clone(),
            coordinator_url,
            api_url: self.k8s_api_url.as_deref().and_then(given),
            resources: AgentResources {
                cpu_request: given(&self.k8s_cpu_request),
                cpu_limit: self.k8s_cpu_limit.as_deref().and_then(given),
                memory_request: given(&self.k8s_memory_request),
                memory_limit: given(&self.k8s_memory_limit),
            },
            join_wait,
            pending_limit,
            deadline_margin,
            ttl_after_finished,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_needs_a_wss_coordinator_url() {
        let mut args = K8sArgs {
            agents_on: AgentsOn::Kubernetes,
            ..K8sArgs::default()
        };
        let mut problems = Vec::new();
        args.settings(&mut problems);
        assert!(
            problems[0].contains("--k8s-coordinator-url"),
            "{problems:?}"
        );
        for plain in ["http://x:3000", "ws://x:3000"] {
            args.k8s_coordinator_url = Some(plain.into());
            let mut problems = Vec::new();
            args.settings(&mut problems);
            assert_eq!(problems.len(), 1, "{problems:?}");
        }
        args.k8s_coordinator_url = Some("wss://socketswarm.load.svc:3443/".into());
        let mut problems = Vec::new();
        let s = args.settings(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let s = s.unwrap_or_else(|| panic!("settings"));
        assert_eq!(s.coordinator_url, "wss://socketswarm.load.svc:3443");
        assert_eq!(s.join_wait, Duration::from_secs(120));
        assert_eq!(s.resources.cpu_limit, None);
    }

    #[test]
    fn local_agents_need_no_settings() {
        let mut problems = Vec::new();
        assert!(K8sArgs::default().settings(&mut problems).is_none());
        assert!(problems.is_empty());
    }
}
