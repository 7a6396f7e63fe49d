//! The objects a Kubernetes fleet is made of, built as plain values (no I/O): one
//! Indexed Job (`completions = parallelism = N`, pod i is agent i through
//! `JOB_COMPLETION_INDEX`) and the Secret holding the run's secret, owned by the Job so
//! the garbage collector deletes it with the Job. Golden-tested
//! (`server/tests/golden/k8s-job.json`): any change here shows up as a diff there.

use std::collections::BTreeMap;

pub use super::AgentResources;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, Secret, SecretKeySelector, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// `app.kubernetes.io/name` of every agent pod (and its Job and Secret).
pub const APP_NAME: &str = "socketswarm-agent";
/// The label that ties a Job, its Secret and its pods to one fleet (the hub's run key).
pub const RUN_KEY_LABEL: &str = "socketswarm/run-key";
/// The annotation naming the run (run ids are not guaranteed to be label values).
pub const RUN_ID_ANNOTATION: &str = "socketswarm/run-id";
/// The key of the run's secret inside the Secret.
pub const SECRET_KEY: &str = "token";
/// The agent container's name (logs are read from it).
pub const CONTAINER: &str = "agent";
/// Where Kubernetes puts a pod's completion index (also a label since 1.28).
pub const INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";
/// A non-root user for the agent (distroless `nonroot`); the agent writes no files.
const AGENT_UID: i64 = 65532;

/// Everything a fleet's Job depends on: a fixed input gives a fixed manifest.
#[derive(Debug, Clone)]
pub struct JobInput<'a> {
    /// The hub's key for this run (the last segment of the join URL).
    pub run_key: &'a str,
    pub run_id: &'a str,
    pub namespace: &'a str,
    pub agents: u32,
    /// Where agents dial in (`wss://…/api/agents/join/KEY`).
    pub join: &'a str,
    /// The pin of the coordinator's certificate (`--coordinator-pin`).
    pub pin: &'a str,
    /// The coordinator's target allowlist, which each agent enforces itself too.
    pub allow_targets: &'a [String],
    pub image: &'a str,
    pub image_pull_policy: Option<&'a str>,
    pub resources: &'a AgentResources,
    pub active_deadline_secs: i64,
    pub ttl_after_finished_secs: i32,
}

/// The name of the Job and of its Secret (`socketswarm-agents-<key>`, 51 characters:
/// pod names and the `job-name` label stay under 63).
pub fn name_for(run_key: &str) -> String {
    format!("socketswarm-agents-{run_key}")
}

/// The label selector of a fleet's pods.
pub fn selector(run_key: &str) -> String {
    format!("{RUN_KEY_LABEL}={run_key}")
}

fn labels(run_key: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), APP_NAME.to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "socketswarm".to_string(),
        ),
        (RUN_KEY_LABEL.to_string(), run_key.to_string()),
    ])
}

fn meta(input: &JobInput<'_>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name_for(input.run_key)),
        namespace: Some(input.namespace.to_string()),
        labels: Some(labels(input.run_key)),
        annotations: Some(BTreeMap::from([(
            RUN_ID_ANNOTATION.to_string(),
            input.run_id.to_string(),
        )])),
        ..ObjectMeta::default()
    }
}

/// The Indexed Job, created suspended: its pods only start once the Secret they read
/// exists (`launch` resumes it), so no pod ever fails for a missing Secret.
///
/// `backoffLimitPerIndex: 0` and `maxFailedIndexes: 0`: a load generator that failed is
/// never silently started again (the coordinator has already counted it lost), and one
/// failed index fails the Job. `activeDeadlineSeconds` bounds the pods' life if the
/// coordinator is gone; `ttlSecondsAfterFinished` removes a Job nobody deleted.
pub fn job(input: &JobInput<'_>) -> Job {
    let n = i32::try_from(input.agents).unwrap_or(i32::MAX);
    Job {
        metadata: meta(input),
        spec: Some(JobSpec {
            completions: Some(n),
            parallelism: Some(n),
            completion_mode: Some("Indexed".into()),
            backoff_limit_per_index: Some(0),
            max_failed_indexes: Some(0),
            active_deadline_seconds: Some(input.active_deadline_secs),
            ttl_seconds_after_finished: Some(input.ttl_after_finished_secs),
            suspend: Some(true),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(input.run_key)),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(input)),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// One agent: `socketswarm agent --join URL --coordinator-pin PIN`, its secret from the
/// Secret, its index from `JOB_COMPLETION_INDEX` (set by Kubernetes), the coordinator's
/// allowlist as its own. No service account token (agents never talk to the API), no
/// restarts, non-root, read-only root file system.
fn pod_spec(input: &JobInput<'_>) -> PodSpec {
    PodSpec {
        restart_policy: Some("Never".into()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(10),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(AGENT_UID),
            run_as_group: Some(AGENT_UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..PodSecurityContext::default()
        }),
        containers: vec![Container {
            name: CONTAINER.into(),
            image: Some(input.image.to_string()),
            image_pull_policy: input.image_pull_policy.map(str::to_string),
            args: Some(
                [
                    "agent".to_string(),
                    "--join".into(),
                    input.join.to_string(),
                    "--coordinator-pin".into(),
                    input.pin.to_string(),
                ]
                .into_iter()
                .chain(
                    input
                        .allow_targets
                        .iter()
                        .flat_map(|a| ["--allow-target".to_string(), a.clone()]),
                )
                .collect(),
            ),
            env: Some(vec![
                EnvVar {
                    name: "SOCKETSWARM_AGENT_TOKEN".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: name_for(input.run_key),
                            key: SECRET_KEY.into(),
                            optional: Some(false),
                        }),
                        ..EnvVarSource::default()
                    }),
                },
                EnvVar {
                    name: "NO_COLOR".into(),
                    value: Some("1".into()),
                    value_from: None,
                },
            ]),
            resources: Some(resources(input.resources)),
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    add: None,
                }),
                ..SecurityContext::default()
            }),
            ..Container::default()
        }],
        ..PodSpec::default()
    }
}

fn resources(r: &AgentResources) -> ResourceRequirements {
    let pick = |cpu: &Option<String>, memory: &Option<String>| {
        let m: BTreeMap<String, Quantity> = [("cpu", cpu), ("memory", memory)]
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), Quantity(v.clone()))))
            .collect();
        (!m.is_empty()).then_some(m)
    };
    ResourceRequirements {
        requests: pick(&r.cpu_request, &r.memory_request),
        limits: pick(&r.cpu_limit, &r.memory_limit),
        ..ResourceRequirements::default()
    }
}

/// The Secret with the run's secret, owned by the Job (`uid` from the created Job): it
/// goes when the Job goes, by `kubectl delete`, TTL or our own delete. Not
/// `blockOwnerDeletion`: that needs update rights on `jobs/finalizers`.
pub fn secret(input: &JobInput<'_>, job_uid: &str, token: &str) -> Secret {
    let mut metadata = meta(input);
    metadata.owner_references = Some(vec![OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: name_for(input.run_key),
        uid: job_uid.to_string(),
        controller: None,
        block_owner_deletion: None,
    }]);
    Secret {
        metadata,
        type_: Some("Opaque".into()),
        immutable: Some(true),
        string_data: Some(BTreeMap::from([(
            SECRET_KEY.to_string(),
            token.to_string(),
        )])),
        data: None,
    }
}
