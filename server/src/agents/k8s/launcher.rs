//! The launcher itself (built with the `kubernetes` feature, on by default).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};

use super::manifest::{self, JobInput};
use super::pods::Pods;
use super::KubeSettings;
use crate::agents::local::{BoxFuture, Launcher};

/// What `launch` made: the client and the Job to delete.
struct Live {
    client: kube::Client,
    namespace: String,
    job: String,
}

/// One fleet's agents as an Indexed Job.
pub struct KubeLauncher {
    settings: Arc<KubeSettings>,
    /// Put on the Job as an annotation, for people reading `kubectl get jobs`.
    run_id: String,
    /// The plan's length: the Job's deadline is derived from it.
    run_for: Duration,
    /// The pin of the coordinator's certificate and its target allowlist, given to
    /// every agent pod.
    pin: String,
    allow: Vec<String>,
    /// Set once the Job exists; taken by `stop` (so the Job is deleted once).
    live: Mutex<Option<Arc<Live>>>,
    /// Written by the watch task, read by `casualties` and `status`.
    pods: Arc<Mutex<Pods>>,
    /// The pod watch task (aborted by `stop` and on drop).
    watch: Mutex<Option<tokio::task::AbortHandle>>,
}

/// How long the casualty path waits for a pod's log.
const LOG_WAIT: Duration = Duration::from_secs(3);
/// The pause before the pod watch lists again after an error.
const WATCH_RETRY: Duration = Duration::from_secs(1);

impl KubeLauncher {
    /// A launcher for one run of `plan` (its length sets the Job's deadline).
    pub fn new(
        settings: Arc<KubeSettings>,
        run_id: &str,
        plan: &engine::Plan,
        pin: &str,
        allow: &[String],
    ) -> KubeLauncher {
        let run_for = match &plan.probe {
            Some(p) => p.max_duration.0,
            None => engine::schedule::total_duration(&plan.stages),
        };
        KubeLauncher {
            settings,
            run_id: run_id.to_string(),
            run_for,
            pin: pin.to_string(),
            allow: allow.to_vec(),
            live: Mutex::new(None),
            pods: Arc::new(Mutex::new(Pods::default())),
            watch: Mutex::new(None),
        }
    }

    /// The Job's `activeDeadlineSeconds`: the run, the join and a margin.
    fn deadline_secs(&self) -> i64 {
        let s = &self.settings;
        (self.run_for + s.join_wait + s.deadline_margin)
            .as_secs()
            .max(1) as i64
    }

    /// The manifest input for this fleet (a fixed input gives a fixed Job).
    fn input<'a>(
        &'a self,
        run_key: &'a str,
        namespace: &'a str,
        agents: u32,
        join: &'a str,
    ) -> JobInput<'a> {
        let s = &self.settings;
        JobInput {
            run_key,
            run_id: &self.run_id,
            namespace,
            agents,
            join,
            pin: &self.pin,
            allow_targets: &self.allow,
            image: &s.image,
            image_pull_policy: s.image_pull_policy.as_deref(),
            resources: &s.resources,
            active_deadline_secs: self.deadline_secs(),
            ttl_after_finished_secs: i32::try_from(s.ttl_after_finished.as_secs())
                .unwrap_or(i32::MAX),
        }
    }

    /// A client and the namespace to work in.
    async fn connect(&self) -> Result<(kube::Client, String), String> {
        let config = match &self.settings.api_url {
            Some(url) => kube::Config::new(
                url.parse()
                    .map_err(|e| format!("--k8s-api-url `{url}`: {e}"))?,
            ),
            None => kube::Config::infer().await.map_err(|e| {
                format!(
                    "no Kubernetes configuration (KUBECONFIG, ~/.kube/config or in-cluster): {e}"
                )
            })?,
        };
        let namespace = self
            .settings
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = kube::Client::try_from(config)
            .map_err(|e| format!("could not make a Kubernetes client: {e}"))?;
        Ok((client, namespace))
    }

    /// Creates the Secret (owned by `job`), resumes the Job and checks the pods can be
    /// watched; the caller deletes the Job if any of it fails.
    async fn finish_launch(
        &self,
        live: &Live,
        input: &JobInput<'_>,
        job: &Job,
        secret: &str,
    ) -> Result<(), String> {
        let uid = job
            .metadata
            .uid
            .as_deref()
            .ok_or("the API server returned the Job without a uid")?;
        let secrets: Api<Secret> = Api::namespaced(live.client.clone(), &live.namespace);
        secrets
            .create(
                &PostParams::default(),
                &manifest::secret(input, uid, secret),
            )
            .await
            .map_err(|e| refused("create", "secrets", &live.namespace, e))?;
        let jobs: Api<Job> = Api::namespaced(live.client.clone(), &live.namespace);
        let resume = serde_json::json!({"spec": {"suspend": false}});
        jobs.patch(&live.job, &PatchParams::default(), &Patch::Merge(&resume))
            .await
            .map_err(|e| refused("patch", "jobs.batch", &live.namespace, e))?;
        // A refusal to watch pods is a launch error too: without it, pod troubles would
        // only show as agents that never joined.
        let pods: Api<Pod> = Api::namespaced(live.client.clone(), &live.namespace);
        pods.list(&ListParams::default().labels(&manifest::selector(input.run_key)))
            .await
            .map_err(|e| refused("list", "pods", &live.namespace, e))?;
        Ok(())
    }

    /// Starts the pod watch task for `run_key`'s pods.
    fn watch_pods(&self, live: &Live, run_key: &str) {
        let api: Api<Pod> = Api::namespaced(live.client.clone(), &live.namespace);
        let task = tokio::spawn(watch_pods(
            api,
            manifest::selector(run_key),
            live.namespace.clone(),
            self.pods.clone(),
        ));
        if let Ok(mut w) = self.watch.lock() {
            *w = Some(task.abort_handle());
        }
    }

    /// `reason`, with the last lines of `pod`'s log when there are any.
    async fn with_log(&self, reason: String, pod: &str) -> String {
        let live = self.live.lock().ok().and_then(|l| l.clone());
        let Some(live) = live else { return reason };
        let api: Api<Pod> = Api::namespaced(live.client.clone(), &live.namespace);
        let params = LogParams {
            container: Some(manifest::CONTAINER.into()),
            tail_lines: Some(5),
            limit_bytes: Some(2048),
            ..LogParams::default()
        };
        match tokio::time::timeout(LOG_WAIT, api.logs(pod, &params)).await {
            Ok(Ok(text)) if !text.trim().is_empty() => {
                let lines: Vec<&str> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect();
                format!("{reason}; its log ends: {}", lines.join(" | "))
            }
            _ => reason,
        }
    }
}

/// The hub's key: the last segment of the join URL.
fn run_key(join: &str) -> Result<&str, String> {
    join.rsplit('/')
        .next()
        .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric()))
        .ok_or_else(|| format!("`{join}` does not end with a run key"))
}

/// A clear message for a refused API call; a 403 names who was refused what, and where
/// the Role that allows it is described.
pub fn refused(verb: &str, resource: &str, namespace: &str, e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 403 => format!(
            "Kubernetes refused (403 Forbidden): {} may not {verb} {resource} in namespace `{namespace}`. \
             Bind it to a Role that allows create/get/list/watch/patch/delete on jobs, create on secrets, \
             get/list/watch on pods and get on pods/log (docs/k8s-rbac.yaml). Kubernetes said: {}",
            identity(&s.message),
            s.message
        ),
        kube::Error::Api(s) => format!(
            "Kubernetes refused to {verb} {resource} in namespace `{namespace}`: {} {}: {}",
            s.code, s.reason, s.message
        ),
        other => format!("could not {verb} {resource} in namespace `{namespace}`: {other}"),
    }
}

/// Who the API server says we are, from a Forbidden message
/// (`User "system:serviceaccount:NS:NAME" cannot …`).
fn identity(message: &str) -> String {
    let user = message
        .split_once("User \"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(user, _)| user);
    match user {
        Some(u) => match u
            .strip_prefix("system:serviceaccount:")
            .and_then(|sa| sa.split_once(':'))
        {
            Some((ns, name)) => format!("service account `{name}` (namespace `{ns}`)"),
            None => format!("user `{u}`"),
        },
        None => "the identity this server uses (its kubeconfig user or in-cluster service account)"
            .into(),
    }
}

/// Lists, then watches, the fleet's pods into `pods`; lists again whenever the watch
/// ends (timeout, `410 Gone`) or fails. Runs until aborted.
async fn watch_pods(api: Api<Pod>, selector: String, namespace: String, pods: Arc<Mutex<Pods>>) {
    loop {
        let outcome = follow(&api, &selector, &pods).await;
        let error = outcome
            .err()
            .map(|e| refused("watch", "pods", &namespace, e));
        let failed = error.is_some();
        if let Some(e) = &error {
            tracing::warn!("agent pods: {e}");
        }
        if let Ok(mut p) = pods.lock() {
            p.watch_error = error;
        }
        if failed {
            tokio::time::sleep(WATCH_RETRY).await;
        }
    }
}

/// One list and one watch, until the watch ends.
async fn follow(api: &Api<Pod>, selector: &str, pods: &Mutex<Pods>) -> Result<(), kube::Error> {
    let list = api.list(&ListParams::default().labels(selector)).await?;
    let now = Instant::now();
    if let Ok(mut p) = pods.lock() {
        p.watch_error = None;
        for pod in &list.items {
            p.observe(pod, now);
        }
    }
    let version = list.metadata.resource_version.unwrap_or_default();
    let stream = api
        .watch(
            &WatchParams::default().labels(selector).timeout(290),
            &version,
        )
        .await?;
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        let now = Instant::now();
        let Ok(mut p) = pods.lock() else { break };
        match event? {
            WatchEvent::Added(pod) | WatchEvent::Modified(pod) => p.observe(&pod, now),
            WatchEvent::Deleted(pod) => p.deleted(&pod, now),
            WatchEvent::Bookmark(_) => {}
            // Most often 410 Gone (the version is too old): list again.
            WatchEvent::Error(_) => break,
        }
    }
    Ok(())
}

impl Launcher for KubeLauncher {
    fn launch<'a>(
        &'a self,
        n: u32,
        join: &'a str,
        secret: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let key = run_key(join)?;
            let (client, namespace) = self.connect().await?;
            let input = self.input(key, &namespace, n, join);
            let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
            let job = jobs
                .create(&PostParams::default(), &manifest::job(&input))
                .await
                .map_err(|e| refused("create", "jobs.batch", &namespace, e))?;
            let live = Arc::new(Live {
                client,
                namespace: namespace.clone(),
                job: manifest::name_for(key),
            });
            if let Ok(mut l) = self.live.lock() {
                *l = Some(live.clone());
            }
            tracing::info!(job = %live.job, %namespace, agents = n, "agent Job created");
            if let Err(e) = self.finish_launch(&live, &input, &job, secret).await {
                self.stop().await;
                return Err(e);
            }
            self.watch_pods(&live, key);
            Ok(())
        })
    }

    fn casualties(&self) -> BoxFuture<'_, Vec<(u32, String)>> {
        Box::pin(async move {
            let found = match self.pods.lock() {
                Ok(mut p) => p.casualties(Instant::now(), self.settings.pending_limit),
                Err(_) => Vec::new(),
            };
            let mut out = Vec::with_capacity(found.len());
            for c in found {
                let reason = match &c.logs_of {
                    Some(pod) => self.with_log(c.reason, pod).await,
                    None => c.reason,
                };
                out.push((c.index, reason));
            }
            out
        })
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(w) = self.watch.lock().ok().and_then(|mut w| w.take()) {
                w.abort();
            }
            let live = self.live.lock().ok().and_then(|mut l| l.take());
            let Some(live) = live else { return };
            let jobs: Api<Job> = Api::namespaced(live.client.clone(), &live.namespace);
            match jobs.delete(&live.job, &DeleteParams::background()).await {
                Ok(_) => tracing::info!(job = %live.job, "agent Job deleted"),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => tracing::warn!(
                    "{} (it ends by its deadline and is removed {} s later)",
                    refused("delete", "jobs.batch", &live.namespace, e),
                    self.settings.ttl_after_finished.as_secs()
                ),
            }
        })
    }

    fn status(&self) -> Option<String> {
        self.pods.lock().ok().map(|p| p.status())
    }

    fn join_wait(&self) -> Duration {
        self.settings.join_wait
    }
}

impl Drop for KubeLauncher {
    fn drop(&mut self) {
        if let Some(w) = self.watch.lock().ok().and_then(|mut w| w.take()) {
            w.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_names_the_service_account() {
        let m = r#"jobs.batch is forbidden: User "system:serviceaccount:load:socketswarm" cannot create resource "jobs" in API group "batch" in the namespace "load""#;
        assert_eq!(
            identity(m),
            "service account `socketswarm` (namespace `load`)"
        );
        assert_eq!(identity(r#"User "alice" cannot"#), "user `alice`");
        assert!(identity("nope").contains("kubeconfig user"));
    }

    #[test]
    fn the_run_key_is_the_last_segment() {
        assert_eq!(run_key("ws://h:1/api/agents/join/ab12").ok(), Some("ab12"));
        assert!(run_key("ws://h:1/api/agents/join/").is_err());
        assert!(run_key("ws://h:1/x/a.b").is_err());
    }
}
