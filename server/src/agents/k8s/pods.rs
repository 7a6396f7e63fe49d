//! What the fleet knows of its pods, from the pod watch: each index's latest state, which
//! troubles are fatal (a casualty: the agent is lost) and which are only worth showing
//! (a status line). Pure: the watch task feeds it pods, `casualties` reads it with the
//! time; unit-tested below.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, Pod};

use super::manifest::INDEX_ANNOTATION;

/// Container waiting reasons that mean the image will not run: no point waiting.
const HOPELESS_WAITING: [&str; 4] = [
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "ErrImageNeverPull",
];

/// One pod's state, as the fleet cares about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodState {
    /// Not running yet; the note says why when Kubernetes said (`Unschedulable: …`,
    /// `ContainerCreating`).
    Pending(Option<String>),
    Running,
    /// It will not run (again): the reason, and whether its log may say more.
    Dead {
        reason: String,
        logs: bool,
    },
    /// Deleted while it was not dead.
    Gone,
}

/// A casualty found by `Pods::casualties`: which agent, why, and the pod whose log may
/// say more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Casualty {
    pub index: u32,
    pub reason: String,
    pub logs_of: Option<String>,
}

/// The latest seen of one index's pod.
#[derive(Debug, Clone)]
struct Seen {
    name: String,
    state: PodState,
    /// When the fleet first saw this pod (Pending is timed from here).
    first_seen: Instant,
}

/// Every pod of one fleet (written by the watch task, read by `casualties`/`status`).
#[derive(Debug, Default)]
pub struct Pods {
    by_index: BTreeMap<u32, Seen>,
    /// Indexes reported as casualties: each is reported once.
    reported: BTreeSet<u32>,
    /// Why the watch is failing right now (an RBAC refusal shows here).
    pub watch_error: Option<String>,
}

impl Pods {
    /// Takes the pod's latest state (a pod without a completion index is ignored).
    pub fn observe(&mut self, pod: &Pod, now: Instant) {
        let Some(index) = index_of(pod) else { return };
        let name = pod.metadata.name.clone().unwrap_or_default();
        let state = classify(pod);
        self.put(index, name, state, now);
    }

    /// The pod was deleted: lost, unless it had already died (the first reason stays).
    pub fn deleted(&mut self, pod: &Pod, now: Instant) {
        let Some(index) = index_of(pod) else { return };
        let name = pod.metadata.name.clone().unwrap_or_default();
        let state = match classify(pod) {
            dead @ PodState::Dead { .. } => dead,
            _ => PodState::Gone,
        };
        self.put(index, name, state, now);
    }

    fn put(&mut self, index: u32, name: String, state: PodState, now: Instant) {
        match self.by_index.get_mut(&index) {
            // A dead pod stays dead (a later "deleted" must not hide OOMKilled).
            Some(seen) if seen.name == name && matches!(seen.state, PodState::Dead { .. }) => {}
            Some(seen) if seen.name == name => seen.state = state,
            _ => {
                self.by_index.insert(
                    index,
                    Seen {
                        name,
                        state,
                        first_seen: now,
                    },
                );
            }
        }
    }

    /// Agents lost since the last call: dead or deleted pods, and pods Pending for longer
    /// than `pending_limit`.
    pub fn casualties(&mut self, now: Instant, pending_limit: Duration) -> Vec<Casualty> {
        let mut out = Vec::new();
        for (&index, seen) in &self.by_index {
            if self.reported.contains(&index) {
                continue;
            }
            let found = match &seen.state {
                PodState::Dead { reason, logs } => Some(Casualty {
                    index,
                    reason: reason.clone(),
                    logs_of: logs.then(|| seen.name.clone()),
                }),
                PodState::Gone => Some(Casualty {
                    index,
                    reason: format!("its pod {} was deleted", seen.name),
                    logs_of: None,
                }),
                PodState::Pending(note) if now.duration_since(seen.first_seen) > pending_limit => {
                    Some(Casualty {
                        index,
                        reason: format!(
                            "its pod {} stayed Pending for more than {} s{}",
                            seen.name,
                            pending_limit.as_secs(),
                            note.as_ref().map(|n| format!(": {n}")).unwrap_or_default()
                        ),
                        logs_of: None,
                    })
                }
                _ => None,
            };
            out.extend(found);
        }
        for c in &out {
            self.reported.insert(c.index);
        }
        out
    }

    /// One line for people: how many pods are in which state, and the first note of
    /// each kind (`2 running, 1 pending (Unschedulable: 0/3 nodes are available…)`).
    pub fn status(&self) -> String {
        let mut counts: BTreeMap<&str, (usize, Option<String>)> = BTreeMap::new();
        for seen in self.by_index.values() {
            let (kind, note) = match &seen.state {
                PodState::Pending(note) => ("pending", note.clone()),
                PodState::Running => ("running", None),
                PodState::Dead { reason, .. } => ("dead", Some(reason.clone())),
                PodState::Gone => ("deleted", None),
            };
            let entry = counts.entry(kind).or_insert((0, None));
            entry.0 += 1;
            if entry.1.is_none() {
                entry.1 = note;
            }
        }
        let mut parts: Vec<String> = counts
            .into_iter()
            .map(|(kind, (n, note))| match note {
                Some(note) => format!("{n} {kind} ({note})"),
                None => format!("{n} {kind}"),
            })
            .collect();
        if parts.is_empty() {
            parts.push("no pods seen yet".into());
        }
        let mut line = format!("pods: {}", parts.join(", "));
        if let Some(e) = &self.watch_error {
            line.push_str(&format!("; pod watch failing: {e}"));
        }
        line
    }
}

/// The pod's completion index: the annotation (every version with Indexed Jobs), else
/// the label (1.28+).
pub fn index_of(pod: &Pod) -> Option<u32> {
    let m = &pod.metadata;
    m.annotations
        .as_ref()
        .and_then(|a| a.get(INDEX_ANNOTATION))
        .or_else(|| m.labels.as_ref().and_then(|l| l.get(INDEX_ANNOTATION)))
        .and_then(|v| v.parse().ok())
}

/// What the pod's status says about the agent in it.
pub fn classify(pod: &Pod) -> PodState {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let Some(status) = &pod.status else {
        return PodState::Pending(None);
    };
    let containers: &[ContainerStatus] = status.container_statuses.as_deref().unwrap_or(&[]);
    // A container that ended, whatever the pod phase says yet.
    if let Some(t) = containers
        .iter()
        .find_map(|c| c.state.as_ref().and_then(|s| s.terminated.as_ref()))
    {
        return terminated(name, t, pod);
    }
    match status.phase.as_deref() {
        Some("Failed") => {
            let why = [status.reason.as_deref(), status.message.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ");
            return PodState::Dead {
                reason: format!(
                    "its pod {name} failed{}",
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!(" ({why})")
                    }
                ),
                logs: false,
            };
        }
        Some("Succeeded") => {
            return PodState::Dead {
                reason: format!("its pod {name} ended before the run was over"),
                logs: true,
            }
        }
        _ => {}
    }
    if let Some((c, w)) = containers.iter().find_map(|c| {
        c.state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .map(|w| (c, w))
    }) {
        let reason = w.reason.clone().unwrap_or_default();
        let message = w.message.clone().unwrap_or_default();
        if HOPELESS_WAITING.contains(&reason.as_str()) {
            return PodState::Dead {
                reason: format!(
                    "its pod {name} cannot start image {}: {reason}{}",
                    c.image,
                    if message.is_empty() {
                        String::new()
                    } else {
                        format!(" ({message})")
                    }
                ),
                logs: false,
            };
        }
        return PodState::Pending(Some(if message.is_empty() {
            reason
        } else {
            format!("{reason}: {message}")
        }));
    }
    match status.phase.as_deref() {
        Some("Running") => PodState::Running,
        _ => PodState::Pending(unschedulable(pod)),
    }
}

fn terminated(name: &str, t: &ContainerStateTerminated, pod: &Pod) -> PodState {
    let reason = t.reason.as_deref().unwrap_or("");
    if reason == "OOMKilled" {
        let limit = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.resources.as_ref())
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get("memory"))
            .map(|q| format!(" (memory limit {})", q.0))
            .unwrap_or_default();
        return PodState::Dead {
            reason: format!("its pod {name} was OOMKilled{limit}"),
            logs: false,
        };
    }
    let detail = match (reason, t.message.as_deref()) {
        ("", None) => String::new(),
        (r, None) => format!(" ({r})"),
        ("", Some(m)) => format!(" ({m})"),
        (r, Some(m)) => format!(" ({r}: {m})"),
    };
    PodState::Dead {
        reason: format!(
            "its pod {name} ended: the agent exited with {}{detail}",
            t.exit_code
        ),
        logs: true,
    }
}

/// `Unschedulable: 0/3 nodes are available: …` from the PodScheduled condition.
fn unschedulable(pod: &Pod) -> Option<String> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let c = conditions
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
    Some(match (&c.reason, &c.message) {
        (Some(r), Some(m)) => format!("{r}: {m}"),
        (Some(r), None) => r.clone(),
        (None, Some(m)) => m.clone(),
        (None, None) => "not scheduled".into(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn pod(index: u32, status: &serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("p-{index}"), "annotations": {INDEX_ANNOTATION: index.to_string()}},
            "spec": {"containers": [{"name": "agent", "resources": {"limits": {"memory": "1Gi"}}}]},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn image_pull_trouble_is_fatal_and_named() {
        let p = pod(
            1,
            &json!({"phase": "Pending", "containerStatuses": [{"name": "agent", "image": "socketswarm:9", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]}),
        );
        let PodState::Dead { reason, logs } = classify(&p) else {
            panic!("{:?}", classify(&p))
        };
        assert!(reason.contains("ImagePullBackOff") && reason.contains("socketswarm:9"));
        assert!(!logs);
    }

    #[test]
    fn oom_killed_names_the_limit() {
        let p = pod(
            0,
            &json!({"phase": "Failed", "containerStatuses": [{"name": "agent", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
        );
        assert_eq!(
            classify(&p),
            PodState::Dead {
                reason: "its pod p-0 was OOMKilled (memory limit 1Gi)".into(),
                logs: false
            }
        );
    }

    #[test]
    fn pending_is_a_casualty_only_past_the_limit_and_says_why() {
        let p = pod(
            2,
            &json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available: 1 Insufficient cpu."}]}),
        );
        let mut pods = Pods::default();
        let t0 = Instant::now();
        pods.observe(&p, t0);
        let limit = Duration::from_secs(60);
        assert!(pods
            .casualties(t0 + Duration::from_secs(10), limit)
            .is_empty());
        assert!(pods.status().contains("1 pending (Unschedulable"));
        let c = pods.casualties(t0 + Duration::from_secs(61), limit);
        assert_eq!(c.len(), 1);
        assert!(c[0].reason.contains("Insufficient cpu"), "{c:?}");
        // Reported once.
        assert!(pods
            .casualties(t0 + Duration::from_secs(99), limit)
            .is_empty());
    }

    #[test]
    fn a_deleted_dead_pod_keeps_its_first_reason() {
        let dead = pod(
            0,
            &json!({"phase": "Failed", "containerStatuses": [{"name": "agent", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
        );
        let running = pod(1, &json!({"phase": "Running"}));
        let mut pods = Pods::default();
        let t = Instant::now();
        pods.observe(&dead, t);
        pods.observe(&running, t);
        pods.deleted(&pod(0, &json!({"phase": "Running"})), t);
        pods.deleted(&running, t);
        let c = pods.casualties(t, Duration::from_secs(60));
        assert!(c[0].reason.contains("OOMKilled"), "{c:?}");
        assert!(c[1].reason.contains("deleted"), "{c:?}");
    }
}
