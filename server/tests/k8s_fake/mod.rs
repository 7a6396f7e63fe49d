//! A fake Kubernetes API server on 127.0.0.1:0, speaking just enough of the REST API for
//! `agents::k8s`: create Jobs and Secrets, merge-patch and delete Jobs, list and watch
//! pods by label selector (`?watch=true`: one JSON event per line, from any
//! `resourceVersion`), and pod logs. Every request is recorded (method, path, query,
//! body) for tests to assert on. Two optional powers:
//! - `forbid("create", "jobs")`: that call answers 403 with a Kubernetes `Status` body
//!   naming a service account, as RBAC does.
//! - a kubelet (`with_kubelet`): resuming a Job starts one real `socketswarm agent`
//!   process per index, with the env the Job's pod template gives it (the Secret's
//!   value, `JOB_COMPLETION_INDEX`), and reports its pod Running, then Succeeded or
//!   Failed with the exit code and the process's stderr as the pod's log. `kill(i, why)`
//!   kills agent i's process and reports the pod Failed with that reason (OOMKilled).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{broadcast, oneshot};

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Value,
}

/// The objects and their history (watchers replay it from their resourceVersion).
#[derive(Default)]
struct Objects {
    rv: u64,
    jobs: BTreeMap<String, Value>,
    secrets: BTreeMap<String, Value>,
    pods: BTreeMap<String, Value>,
    /// Every pod event: (resourceVersion, {"type", "object"}).
    history: Vec<(u64, Value)>,
}

/// Starts agent processes for resumed Jobs.
#[derive(Clone)]
pub struct Kubelet {
    pub exe: PathBuf,
    /// This index's image "cannot be pulled": its pod stays in ImagePullBackOff.
    pub cannot_pull: Option<u32>,
}

pub struct Cluster {
    seen: Mutex<Vec<Seen>>,
    objects: Mutex<Objects>,
    events: broadcast::Sender<(u64, Value)>,
    forbidden: Mutex<Vec<(String, String)>>,
    kubelet: Mutex<Option<Kubelet>>,
    /// Pod name → what its process wrote to stderr (or what a test put there).
    logs: Mutex<HashMap<String, String>>,
    /// Pod name → how to kill its process (with the reason to report).
    kills: Mutex<HashMap<String, oneshot::Sender<String>>>,
}

pub struct FakeCluster {
    pub url: String,
    pub cluster: Arc<Cluster>,
}

pub async fn spawn() -> FakeCluster {
    let cluster = Arc::new(Cluster {
        seen: Mutex::new(Vec::new()),
        objects: Mutex::new(Objects::default()),
        events: broadcast::channel(1024).0,
        forbidden: Mutex::new(Vec::new()),
        kubelet: Mutex::new(None),
        logs: Mutex::new(HashMap::new()),
        kills: Mutex::new(HashMap::new()),
    });
    let app = Router::new()
        .route("/apis/batch/v1/namespaces/{ns}/jobs", post(create_job))
        .route(
            "/apis/batch/v1/namespaces/{ns}/jobs/{name}",
            patch(patch_job).delete(delete_job),
        )
        .route("/api/v1/namespaces/{ns}/secrets", post(create_secret))
        .route("/api/v1/namespaces/{ns}/pods", get(pods))
        .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(pod_log))
        .fallback(|| async { status(404, "NotFound", "the fake has no such route") })
        .layer(axum::middleware::from_fn_with_state(
            cluster.clone(),
            record,
        ))
        .with_state(cluster.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    FakeCluster { url, cluster }
}

impl FakeCluster {
    pub fn requests(&self) -> Vec<Seen> {
        self.cluster.seen.lock().unwrap().clone()
    }

    /// `METHOD path` of every request, in order (watch and list both `GET …/pods`).
    pub fn calls(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|s| format!("{} {}", s.method, s.path))
            .collect()
    }

    pub fn forbid(&self, verb: &str, resource: &str) {
        self.cluster
            .forbidden
            .lock()
            .unwrap()
            .push((verb.into(), resource.into()));
    }

    pub fn with_kubelet(&self, kubelet: Kubelet) {
        *self.cluster.kubelet.lock().unwrap() = Some(kubelet);
    }

    pub fn job(&self, name: &str) -> Option<Value> {
        self.cluster.objects.lock().unwrap().jobs.get(name).cloned()
    }

    pub fn jobs(&self) -> Vec<String> {
        let o = self.cluster.objects.lock().unwrap();
        o.jobs.keys().cloned().collect()
    }

    /// Adds or replaces a pod (ADDED or MODIFIED for watchers).
    pub fn put_pod(&self, pod: Value) {
        self.cluster.put_pod(pod);
    }

    pub fn set_log(&self, pod: &str, text: &str) {
        self.cluster
            .logs
            .lock()
            .unwrap()
            .insert(pod.into(), text.into());
    }

    /// Kills the process of agent `index` and reports its pod Failed with `reason`.
    pub fn kill(&self, index: u32, reason: &str) -> bool {
        let name = {
            let o = self.cluster.objects.lock().unwrap();
            o.pods
                .iter()
                .find(|(_, p)| {
                    p["metadata"]["annotations"][INDEX].as_str() == Some(index.to_string().as_str())
                })
                .map(|(n, _)| n.clone())
        };
        let Some(name) = name else { return false };
        let kill = self.cluster.kills.lock().unwrap().remove(&name);
        kill.is_some_and(|k| k.send(reason.to_string()).is_ok())
    }
}

const INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// A Kubernetes `Status` answer.
fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": if code < 300 { "Success" } else { "Failure" },
        "message": message, "reason": reason, "code": code});
    (StatusCode::from_u16(code).unwrap(), Json(body)).into_response()
}

/// Records every request (its body read whole) before it is served.
async fn record(State(c): State<Arc<Cluster>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    c.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    });
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

impl Cluster {
    /// A 403 like RBAC's, when a test forbade `verb` on `resource`.
    fn refuse(&self, verb: &str, resource: &str, ns: &str) -> Option<Response> {
        let forbidden = self.forbidden.lock().unwrap();
        forbidden.iter().any(|(v, r)| v == verb && r == resource).then(|| {
            let group = if resource == "jobs" { "batch" } else { "" };
            let full = if group.is_empty() { resource.to_string() } else { format!("{resource}.{group}") };
            status(403, "Forbidden", &format!(
                "{full} is forbidden: User \"system:serviceaccount:{ns}:socketswarm\" cannot {verb} resource \"{resource}\" in API group \"{group}\" in the namespace \"{ns}\""
            ))
        })
    }

    fn stamp(o: &mut Objects, mut obj: Value) -> Value {
        o.rv += 1;
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        obj["metadata"]["uid"] = json!(format!("uid-{name}"));
        obj["metadata"]["resourceVersion"] = json!(o.rv.to_string());
        obj
    }

    fn put_pod(&self, pod: Value) {
        let mut o = self.objects.lock().unwrap();
        let name = pod["metadata"]["name"].as_str().unwrap().to_string();
        let kind = if o.pods.contains_key(&name) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let pod = Self::stamp(&mut o, pod);
        o.pods.insert(name, pod.clone());
        self.emit(&mut o, kind, pod);
    }

    /// Changes a pod's status (MODIFIED).
    fn set_pod_status(&self, name: &str, status: Value) {
        let pod = self.objects.lock().unwrap().pods.get(name).cloned();
        if let Some(mut pod) = pod {
            pod["status"] = status;
            self.put_pod(pod);
        }
    }

    fn delete_pod(&self, name: &str) {
        let mut o = self.objects.lock().unwrap();
        if let Some(pod) = o.pods.remove(name) {
            o.rv += 1;
            self.emit(&mut o, "DELETED", pod);
        }
    }

    /// Sends an event while the objects are locked, so a watcher that read the history
    /// under the same lock misses none.
    fn emit(&self, o: &mut Objects, kind: &str, object: Value) {
        let mut event = json!({"type": kind});
        event["object"] = object;
        o.history.push((o.rv, event.clone()));
        let _ = self.events.send((o.rv, event));
    }

    /// The kubelet's part: one pod per index of a resumed Job.
    fn start_pods(self: &Arc<Self>, job: &Value) {
        let Some(kubelet) = self.kubelet.lock().unwrap().clone() else {
            return;
        };
        let name = job["metadata"]["name"].as_str().unwrap().to_string();
        let template = &job["spec"]["template"];
        for i in 0..job["spec"]["completions"].as_u64().unwrap() as u32 {
            let mut labels = template["metadata"]["labels"].clone();
            labels[INDEX] = json!(i.to_string());
            labels["job-name"] = json!(name.clone());
            let pod_name = format!("{name}-{i}-fake{i}");
            self.put_pod(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod_name, "namespace": job["metadata"]["namespace"], "labels": labels, "annotations": {INDEX: i.to_string()}},
                "spec": template["spec"], "status": {"phase": "Pending"}}));
            let container = &template["spec"]["containers"][0];
            let image = container["image"].as_str().unwrap_or_default().to_string();
            if kubelet.cannot_pull == Some(i) {
                self.set_pod_status(&pod_name, json!({"phase": "Pending", "containerStatuses": [container_status(&image, json!({"waiting": {"reason": "ImagePullBackOff", "message": format!("Back-off pulling image \"{image}\"")}}))]}));
                continue;
            }
            self.run_agent(&kubelet, &pod_name, &image, container, i);
        }
    }

    /// Starts agent `i`'s process as its pod would run it.
    fn run_agent(
        self: &Arc<Self>,
        kubelet: &Kubelet,
        pod: &str,
        image: &str,
        container: &Value,
        i: u32,
    ) {
        let mut cmd = tokio::process::Command::new(&kubelet.exe);
        for a in container["args"].as_array().unwrap() {
            cmd.arg(a.as_str().unwrap());
        }
        for e in container["env"].as_array().unwrap() {
            let name = e["name"].as_str().unwrap();
            let value = match e["value"].as_str() {
                Some(v) => v.to_string(),
                None => self.secret_value(&e["valueFrom"]["secretKeyRef"]),
            };
            cmd.env(name, value);
        }
        cmd.env("JOB_COMPLETION_INDEX", i.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap();
        self.set_pod_status(pod, json!({"phase": "Running", "containerStatuses": [container_status(image, json!({"running": {}}))]}));
        let (kill_tx, kill_rx) = oneshot::channel::<String>();
        self.kills.lock().unwrap().insert(pod.to_string(), kill_tx);
        let stderr = child.stderr.take().unwrap();
        let me = self.clone();
        let name = pod.to_string();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let mut logs = me.logs.lock().unwrap();
                let log = logs.entry(name.clone()).or_default();
                log.push_str(&l);
                log.push('\n');
            }
        });
        let me = self.clone();
        let name = pod.to_string();
        let image = image.to_string();
        tokio::spawn(async move {
            let (code, reason) = tokio::select! {
                s = child.wait() => {
                    let code = s.ok().and_then(|s| s.code()).unwrap_or(137);
                    (code, if code == 0 { "Completed".to_string() } else { "Error".to_string() })
                }
                why = kill_rx => {
                    let _ = child.kill().await;
                    match why {
                        Ok(why) => (137, why),
                        Err(_) => return, // deleted with its Job
                    }
                }
            };
            let phase = if code == 0 { "Succeeded" } else { "Failed" };
            me.set_pod_status(&name, json!({"phase": phase, "containerStatuses": [container_status(&image, json!({"terminated": {"exitCode": code, "reason": reason}}))]}));
        });
    }

    fn secret_value(&self, r: &Value) -> String {
        let o = self.objects.lock().unwrap();
        let secret = &o.secrets[r["name"].as_str().unwrap()];
        secret["stringData"][r["key"].as_str().unwrap()]
            .as_str()
            .unwrap()
            .to_string()
    }
}

fn container_status(image: &str, state: Value) -> Value {
    let mut status = json!({"name": "agent", "image": image, "imageID": "", "ready": state.get("running").is_some(), "restartCount": 0});
    status["state"] = state;
    status
}

async fn create_job(
    State(c): State<Arc<Cluster>>,
    Path(ns): Path<String>,
    Json(job): Json<Value>,
) -> Response {
    if let Some(r) = c.refuse("create", "jobs", &ns) {
        return r;
    }
    let mut o = c.objects.lock().unwrap();
    let job = Cluster::stamp(&mut o, job);
    o.jobs.insert(
        job["metadata"]["name"].as_str().unwrap().into(),
        job.clone(),
    );
    (StatusCode::CREATED, Json(job)).into_response()
}

async fn create_secret(
    State(c): State<Arc<Cluster>>,
    Path(ns): Path<String>,
    Json(secret): Json<Value>,
) -> Response {
    if let Some(r) = c.refuse("create", "secrets", &ns) {
        return r;
    }
    let mut o = c.objects.lock().unwrap();
    let secret = Cluster::stamp(&mut o, secret);
    o.secrets.insert(
        secret["metadata"]["name"].as_str().unwrap().into(),
        secret.clone(),
    );
    (StatusCode::CREATED, Json(secret)).into_response()
}

/// A merge patch; only `spec.suspend` matters: resuming starts the pods.
async fn patch_job(
    State(c): State<Arc<Cluster>>,
    Path((ns, name)): Path<(String, String)>,
    Json(p): Json<Value>,
) -> Response {
    if let Some(r) = c.refuse("patch", "jobs", &ns) {
        return r;
    }
    let job = {
        let mut o = c.objects.lock().unwrap();
        let Some(job) = o.jobs.get_mut(&name) else {
            return status(404, "NotFound", &format!("jobs.batch \"{name}\" not found"));
        };
        if let Some(s) = p["spec"]["suspend"].as_bool() {
            job["spec"]["suspend"] = json!(s);
        }
        job.clone()
    };
    if job["spec"]["suspend"] == json!(false) {
        c.start_pods(&job);
    }
    Json(job).into_response()
}

/// Deletes the Job, its Secret (garbage collection by ownerReference) and its pods.
async fn delete_job(
    State(c): State<Arc<Cluster>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    if let Some(r) = c.refuse("delete", "jobs", &ns) {
        return r;
    }
    let pods: Vec<String> = {
        let mut o = c.objects.lock().unwrap();
        if o.jobs.remove(&name).is_none() {
            return status(404, "NotFound", &format!("jobs.batch \"{name}\" not found"));
        }
        o.secrets
            .retain(|_, s| s["metadata"]["ownerReferences"][0]["name"] != json!(name));
        o.pods
            .iter()
            .filter(|(_, p)| p["metadata"]["labels"]["job-name"] == json!(name))
            .map(|(n, _)| n.clone())
            .collect()
    };
    for p in pods {
        c.kills.lock().unwrap().remove(&p); // dropping the sender kills quietly
        c.delete_pod(&p);
    }
    status(200, "", "")
}

fn matches(selector: &str, pod: &Value) -> bool {
    selector
        .split(',')
        .filter(|s| !s.is_empty())
        .all(|kv| match kv.split_once('=') {
            Some((k, v)) => pod["metadata"]["labels"][k] == json!(v),
            None => false,
        })
}

/// A list, or with `watch=true` a stream of events after `resourceVersion`.
async fn pods(
    State(c): State<Arc<Cluster>>,
    Path(ns): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let selector = q.get("labelSelector").cloned().unwrap_or_default();
    let watch = matches!(q.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = if watch { "watch" } else { "list" };
    if let Some(r) = c.refuse(verb, "pods", &ns) {
        return r;
    }
    if !watch {
        let o = c.objects.lock().unwrap();
        let items: Vec<&Value> = o.pods.values().filter(|p| matches(&selector, p)).collect();
        return Json(json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": o.rv.to_string()}, "items": items})).into_response();
    }
    let since: u64 = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (backlog, rx) = {
        let o = c.objects.lock().unwrap();
        let backlog: Vec<(u64, Value)> = o
            .history
            .iter()
            .filter(|(rv, _)| *rv > since)
            .cloned()
            .collect();
        (backlog, c.events.subscribe())
    };
    let live =
        tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(|e| async move { e.ok() });
    let lines = futures_util::stream::iter(backlog)
        .chain(live)
        .filter(move |(_, e)| std::future::ready(matches(&selector, &e["object"])))
        .map(|(_, e)| Ok::<_, std::convert::Infallible>(Bytes::from(format!("{e}\n"))));
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(lines))
        .unwrap()
}

async fn pod_log(
    State(c): State<Arc<Cluster>>,
    Path((_ns, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(text) = c.logs.lock().unwrap().get(&name).cloned() else {
        return status(404, "NotFound", &format!("pods \"{name}\" not found"));
    };
    let tail: usize = q
        .get("tailLines")
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(tail);
    (StatusCode::OK, lines[start..].join("\n")).into_response()
}
