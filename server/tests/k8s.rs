#![cfg(feature = "kubernetes")]
//! The Kubernetes launcher (`agents::k8s`) against a fake API server (`k8s_fake`): no
//! cluster can run here, so the fake records what the launcher asks and answers as the
//! API server would — and, for the end-to-end tests, plays the kubelet by starting a
//! real `socketswarm agent` process per Job index with the pod template's env.
//!
//! Covered: the exact Job and Secret bodies and their order (Job suspended → Secret owned
//! by it → Job resumed); pod watch → casualties (ImagePullBackOff, OOMKilled, a failed
//! pod with the tail of its log); the Job deleted in the background on stop; a 403 on
//! create → a clear error naming the service account; a 403 later → the Job deleted
//! again; the manifest against `tests/golden/k8s-job.json` (`UPDATE_GOLDEN=1`
//! rewrites it); whole runs through the launcher (completes with exact merged totals
//! and deletes its Job; an OOMKilled pod ends it as agent_lost; an image that cannot be
//! pulled fails it at once).
//!
//! Run: `cargo test -p server --test k8s`. No real cluster is used or needed; one test
//! for a real cluster is `#[ignore]`d (see its doc).
#![allow(clippy::unwrap_used)]
mod common;
mod k8s_fake;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use server::agents::k8s::manifest::{self, AgentResources, JobInput};
use server::agents::k8s::{KubeLauncher, KubeSettings};
use server::agents::local::Launcher;

const KEY: &str = "0123456789abcdef0123456789abcdef";
const NS: &str = "load";
const SECRET: &str = "not-a-real-secret-0123456789";
const JOIN: &str =
    "wss://socketswarm.load.svc:3443/api/agents/join/0123456789abcdef0123456789abcdef";
/// The coordinator's certificate pin the pods are given.
const PIN: &str = "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
/// The coordinator's allowlist, which each agent pod enforces too.
const ALLOW: [&str; 1] = ["10.1.2.0/24:443"];

fn allow() -> Vec<String> {
    ALLOW.iter().map(|s| s.to_string()).collect()
}

fn settings(api_url: &str) -> KubeSettings {
    KubeSettings {
        namespace: Some(NS.into()),
        image: "socketswarm:0.1.0".into(),
        image_pull_policy: Some("IfNotPresent".into()),
        coordinator_url: "wss://socketswarm.load.svc:3443".into(),
        api_url: Some(api_url.into()),
        resources: AgentResources {
            cpu_request: Some("500m".into()),
            cpu_limit: None,
            memory_request: Some("256Mi".into()),
            memory_limit: Some("1Gi".into()),
        },
        join_wait: Duration::from_secs(120),
        pending_limit: Duration::from_secs(90),
        deadline_margin: Duration::from_secs(120),
        ttl_after_finished: Duration::from_secs(600),
    }
}

/// A 30 s plan: with the settings above the Job's deadline is 30 + 120 + 120 s.
fn plan() -> engine::Plan {
    serde_json::from_value(common::plan(
        "k8s",
        "ws://127.0.0.1:9/echo",
        10,
        "10s",
        "20s",
    ))
    .unwrap()
}

fn launcher(url: &str) -> KubeLauncher {
    KubeLauncher::new(
        Arc::new(settings(url)),
        "run-golden",
        &plan(),
        PIN,
        &allow(),
    )
}

/// The golden file: the Job and the Secret for the fixed input above.
fn golden_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/k8s-job.json")
}

fn built_manifest() -> Value {
    let resources = settings("").resources;
    let allow = allow();
    let input = JobInput {
        run_key: KEY,
        run_id: "run-golden",
        namespace: NS,
        agents: 3,
        join: JOIN,
        pin: PIN,
        allow_targets: &allow,
        image: "socketswarm:0.1.0",
        image_pull_policy: Some("IfNotPresent"),
        resources: &resources,
        active_deadline_secs: 270,
        ttl_after_finished_secs: 600,
    };
    let job_uid = format!("uid-{}", manifest::name_for(KEY));
    json!({
        "job": manifest::job(&input),
        "secret": manifest::secret(&input, &job_uid, SECRET),
    })
}

fn golden() -> Value {
    serde_json::from_str(&std::fs::read_to_string(golden_path()).unwrap()).unwrap()
}

#[test]
fn the_job_manifest_matches_the_golden_file() {
    let built = built_manifest();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_path().parent().unwrap()).unwrap();
        std::fs::write(
            golden_path(),
            serde_json::to_string_pretty(&built).unwrap() + "\n",
        )
        .unwrap();
    }
    assert_eq!(
        built,
        golden(),
        "manifest changed: rerun with UPDATE_GOLDEN=1 and review the diff"
    );
    // What matters most, spelled out.
    let spec = &built["job"]["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    assert_eq!(spec["backoffLimitPerIndex"], 0);
    assert_eq!(spec["maxFailedIndexes"], 0);
    assert_eq!(spec["completions"], 3);
    assert_eq!(spec["parallelism"], 3);
    assert_eq!(spec["suspend"], true);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["containers"][0]["args"],
        json!([
            "agent",
            "--join",
            JOIN,
            "--coordinator-pin",
            PIN,
            "--allow-target",
            ALLOW[0]
        ])
    );
    assert_eq!(
        pod["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["name"],
        manifest::name_for(KEY)
    );
}

/// Polls `casualties` until `n` were found (bounded).
async fn casualties(l: &KubeLauncher, n: usize) -> Vec<(u32, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut found = Vec::new();
    while found.len() < n {
        assert!(Instant::now() < deadline, "only {found:?}");
        found.extend(l.casualties().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    found.sort();
    found
}

fn pod(index: u32, status: Value) -> Value {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{}-{index}-x", manifest::name_for(KEY)), "namespace": NS,
            "labels": {manifest::RUN_KEY_LABEL: KEY, "job-name": manifest::name_for(KEY)},
            "annotations": {manifest::INDEX_ANNOTATION: index.to_string()}},
        "spec": {"containers": [{"name": "agent", "image": "socketswarm:0.1.0", "resources": {"limits": {"memory": "1Gi"}}}]}});
    pod["status"] = status;
    pod
}

fn terminated(code: i32, reason: &str) -> Value {
    json!({"phase": "Failed", "containerStatuses": [{"name": "agent", "image": "socketswarm:0.1.0", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": code, "reason": reason}}}]})
}

#[tokio::test]
async fn launch_creates_the_suspended_job_then_its_secret_then_resumes_it() {
    let fake = k8s_fake::spawn().await;
    let l = launcher(&fake.url);
    l.launch(3, JOIN, SECRET).await.unwrap();
    let name = manifest::name_for(KEY);
    let calls = fake.calls();
    assert_eq!(
        calls[..4],
        [
            format!("POST /apis/batch/v1/namespaces/{NS}/jobs"),
            format!("POST /api/v1/namespaces/{NS}/secrets"),
            format!("PATCH /apis/batch/v1/namespaces/{NS}/jobs/{name}"),
            format!("GET /api/v1/namespaces/{NS}/pods"),
        ],
        "{calls:#?}"
    );
    let r = fake.requests();
    // Exactly the golden manifest went over the wire.
    let g = golden();
    assert_eq!(r[0].body, g["job"]);
    assert_eq!(r[1].body, g["secret"]);
    assert_eq!(
        r[1].body["metadata"]["ownerReferences"][0]["uid"],
        format!("uid-{name}")
    );
    assert_eq!(r[2].body, json!({"spec": {"suspend": false}}));
    assert!(
        r[3].query
            .contains("labelSelector=socketswarm%2Frun-key%3D"),
        "{}",
        r[3].query
    );
    assert_eq!(fake.job(&name).unwrap()["spec"]["suspend"], false);
    // Then the pods are watched, by the same selector.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !fake
        .requests()
        .iter()
        .any(|s| s.query.contains("watch=true"))
    {
        assert!(Instant::now() < deadline, "{:#?}", fake.calls());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let watch = fake
        .requests()
        .into_iter()
        .find(|s| s.query.contains("watch=true"))
        .unwrap();
    assert!(
        watch
            .query
            .contains(&format!("socketswarm%2Frun-key%3D{KEY}")),
        "{}",
        watch.query
    );
    assert!(l.status().unwrap().contains("no pods seen yet"));
}

#[tokio::test]
async fn pod_troubles_become_casualties_with_their_reasons() {
    let fake = k8s_fake::spawn().await;
    let l = launcher(&fake.url);
    l.launch(3, JOIN, SECRET).await.unwrap();
    // Agent 0's image cannot be pulled; agent 1 runs, then is OOMKilled; agent 2 runs.
    fake.put_pod(pod(0, json!({"phase": "Pending"})));
    fake.put_pod(pod(1, json!({"phase": "Running"})));
    fake.put_pod(pod(2, json!({"phase": "Running"})));
    fake.put_pod(pod(0, json!({"phase": "Pending", "containerStatuses": [{"name": "agent", "image": "socketswarm:0.1.0", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"socketswarm:0.1.0\""}}}]})));
    let first = casualties(&l, 1).await;
    assert_eq!(first[0].0, 0);
    assert!(
        first[0]
            .1
            .contains("cannot start image socketswarm:0.1.0: ImagePullBackOff"),
        "{first:?}"
    );
    fake.put_pod(pod(1, terminated(137, "OOMKilled")));
    let second = casualties(&l, 1).await;
    assert_eq!(second[0].0, 1);
    assert!(
        second[0].1.contains("was OOMKilled (memory limit 1Gi)"),
        "{second:?}"
    );
    let status = l.status().unwrap();
    assert!(
        status.contains("1 running") && status.contains("2 dead"),
        "{status}"
    );
    // Each casualty is reported once.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(l.casualties().await.is_empty());
}

#[tokio::test]
async fn a_failed_agent_is_reported_with_the_end_of_its_log() {
    let fake = k8s_fake::spawn().await;
    let l = launcher(&fake.url);
    l.launch(1, JOIN, SECRET).await.unwrap();
    let p = pod(0, terminated(1, "Error"));
    let pod_name = p["metadata"]["name"].as_str().unwrap().to_string();
    fake.set_log(
        &pod_name,
        "starting\nagent: could not reach the coordinator at wss://socketswarm.load.svc:3443/…\n",
    );
    fake.put_pod(p);
    let c = casualties(&l, 1).await;
    assert!(c[0].1.contains("the agent exited with 1 (Error)"), "{c:?}");
    assert!(
        c[0].1
            .contains("its log ends: starting | agent: could not reach the coordinator"),
        "{c:?}"
    );
    let log = fake
        .requests()
        .into_iter()
        .find(|s| s.path.ends_with("/log"))
        .unwrap();
    assert_eq!(
        log.path,
        format!("/api/v1/namespaces/{NS}/pods/{pod_name}/log")
    );
    assert!(
        log.query.contains("container=agent") && log.query.contains("tailLines=5"),
        "{}",
        log.query
    );
}

#[tokio::test]
async fn stop_deletes_the_job_in_the_background_once() {
    let fake = k8s_fake::spawn().await;
    let l = launcher(&fake.url);
    l.launch(2, JOIN, SECRET).await.unwrap();
    l.stop().await;
    l.stop().await;
    let name = manifest::name_for(KEY);
    let deletes: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|s| s.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1, "{:#?}", fake.calls());
    assert_eq!(
        deletes[0].path,
        format!("/apis/batch/v1/namespaces/{NS}/jobs/{name}")
    );
    assert_eq!(deletes[0].body["propagationPolicy"], "Background");
    assert!(fake.jobs().is_empty());
}

#[tokio::test]
async fn a_403_on_create_is_a_clear_error_naming_the_service_account() {
    let fake = k8s_fake::spawn().await;
    fake.forbid("create", "jobs");
    let l = launcher(&fake.url);
    let e = l.launch(2, JOIN, SECRET).await.unwrap_err();
    assert!(e.contains("403 Forbidden"), "{e}");
    assert!(e.contains("service account `socketswarm` (namespace `load`) may not create jobs.batch in namespace `load`"), "{e}");
    assert!(e.contains("docs/k8s-rbac.yaml"), "{e}");
    // Nothing else was tried, nothing is left to delete.
    assert_eq!(
        fake.calls(),
        [format!("POST /apis/batch/v1/namespaces/{NS}/jobs")]
    );
    l.stop().await;
    assert_eq!(fake.calls().len(), 1);
}

#[tokio::test]
async fn a_403_after_the_job_exists_deletes_it_again() {
    let fake = k8s_fake::spawn().await;
    fake.forbid("list", "pods");
    let l = launcher(&fake.url);
    let e = l.launch(2, JOIN, SECRET).await.unwrap_err();
    assert!(e.contains("may not list pods"), "{e}");
    assert!(fake.jobs().is_empty(), "{:#?}", fake.calls());
    assert_eq!(
        fake.calls().last().unwrap(),
        &format!(
            "DELETE /apis/batch/v1/namespaces/{NS}/jobs/{}",
            manifest::name_for(KEY)
        )
    );
}

// --- Whole runs: the app with `--agents-on kubernetes`, the fake playing the kubelet.

/// An app whose runs with `agents` get pods from `fake` (agents dial the app's agent
/// listener, its port reserved first: the coordinator URL is configured before the app
/// listens).
async fn app_on(fake: &k8s_fake::FakeCluster, cannot_pull: Option<u32>) -> common::App {
    fake.with_kubelet(k8s_fake::Kubelet {
        exe: env!("CARGO_BIN_EXE_socketswarm").into(),
        cannot_pull,
    });
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let mut args = common::args(dir.path().join("test.db"));
    args.k8s.agent_listen = format!("127.0.0.1:{port}").parse().unwrap();
    args.k8s.agents_on = server::config::k8s::AgentsOn::Kubernetes;
    args.k8s.k8s_coordinator_url = Some(format!("wss://127.0.0.1:{port}"));
    args.k8s.k8s_api_url = Some(fake.url.clone());
    args.k8s.k8s_namespace = Some(NS.into());
    args.k8s.k8s_join_timeout = "30s".into();
    common::spawn_with(args, dir).await
}

/// Waits (bounded) until the fake saw the Job deleted.
async fn job_deleted(fake: &k8s_fake::FakeCluster) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(d) = fake.requests().into_iter().find(|s| s.method == "DELETE") {
            assert!(fake.jobs().is_empty());
            return d.path;
        }
        assert!(Instant::now() < deadline, "{:#?}", fake.calls());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_goes_through_the_kubernetes_launcher_end_to_end() {
    let fake = k8s_fake::spawn().await;
    let app = app_on(&fake, None).await;
    let mut p = common::plan("k8s e2e", &app.ws("/echo?tag=k8se2e"), 40, "1s", "2s");
    p["agents"] = json!(2);
    p["script"] = json!([{"send": "hello {{vu}}"}, {"expect": {"contains": "hello"}}]);
    let id = app.launch(p).await;
    let (_, done) = app.follow(&id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    let s = &run["summary"];
    let sb = app.sandbox_profile("/echo?tag=k8se2e").await;
    assert_eq!(s["totals"]["attempted"], 40, "{s}");
    assert_eq!(s["totals"]["opened"], sb["accepted"], "{s} vs {sb}");
    assert_eq!(s["agents"].as_array().map(Vec::len), Some(2), "{s}");
    // One Indexed Job of 2 with the run's id, its Secret, then deleted when the run ended.
    let job = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/jobs"))
        .unwrap()
        .body;
    assert_eq!(job["spec"]["completions"], 2);
    assert_eq!(
        job["metadata"]["annotations"][manifest::RUN_ID_ANNOTATION],
        id.as_str()
    );
    // 3 s of plan + 30 s join + 2 min margin.
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 153);
    let deleted = job_deleted(&fake).await;
    assert!(
        deleted.ends_with(job["metadata"]["name"].as_str().unwrap()),
        "{deleted}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_killed_pod_ends_the_run_as_agent_lost() {
    let fake = k8s_fake::spawn().await;
    let app = app_on(&fake, None).await;
    let mut p = common::plan("k8s oom", &app.ws("/echo?tag=k8soom"), 20, "1s", "30s");
    p["agents"] = json!(2);
    let id = app.launch(p).await;
    // Once both agents report, agent 1's pod is OOMKilled.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, run) = app.get(&format!("/api/runs/{id}")).await;
        if run["last"]["agents"]
            .as_array()
            .is_some_and(|a| a.len() == 2)
        {
            break;
        }
        assert!(Instant::now() < deadline, "no agents seen: {run}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(fake.kill(1, "OOMKilled"));
    let (_, done) = app.follow(&id).await;
    assert_eq!(done["status"], "failed", "{done}");
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    let s = &run["summary"];
    assert_eq!(s["end_reason"], "agent_lost", "{s}");
    let lost = &s["lost_agents"][0];
    assert_eq!(lost["agent"], 1, "{s}");
    assert!(
        lost["reason"]
            .as_str()
            .unwrap()
            .contains("was OOMKilled (memory limit 1Gi)"),
        "{lost}"
    );
    assert!(s["duration_ms"].as_u64().unwrap() < 20_000, "{s}");
    job_deleted(&fake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_cannot_be_pulled_fails_the_run_at_once() {
    let fake = k8s_fake::spawn().await;
    let app = app_on(&fake, Some(1)).await;
    let mut p = common::plan("k8s pull", &app.ws("/echo?tag=k8spull"), 20, "1s", "5s");
    p["agents"] = json!(2);
    let started = Instant::now();
    let id = app.launch(p).await;
    let (_, done) = app.follow(&id).await;
    assert_eq!(done["status"], "failed", "{done}");
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    let error = run["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("agent 1 did not join") && error.contains("ImagePullBackOff"),
        "{run}"
    );
    // Long before the 30 s join timeout.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    job_deleted(&fake).await;
}

/// Against a real cluster, skipped by default: `SOCKETSWARM_K8S_E2E_NAMESPACE=load
/// SOCKETSWARM_K8S_E2E_IMAGE=registry/socketswarm:0.1.0 cargo test -p server --test k8s
/// -- --ignored` (kube's `Config::infer`: KUBECONFIG or ~/.kube/config, with the RBAC of
/// docs/k8s-rbac.yaml). One agent dials a coordinator that does not exist: its pod must
/// fail and come back as a casualty with its log tail; then the Job is deleted.
#[tokio::test]
#[ignore = "needs a real cluster"]
async fn real_cluster_a_pod_that_cannot_reach_its_coordinator_is_a_casualty() {
    let (Ok(ns), Ok(image)) = (
        std::env::var("SOCKETSWARM_K8S_E2E_NAMESPACE"),
        std::env::var("SOCKETSWARM_K8S_E2E_IMAGE"),
    ) else {
        eprintln!("set SOCKETSWARM_K8S_E2E_NAMESPACE and SOCKETSWARM_K8S_E2E_IMAGE");
        return;
    };
    let mut s = settings("");
    s.api_url = None;
    s.namespace = Some(ns);
    s.image = image;
    let l = KubeLauncher::new(Arc::new(s), "real-cluster-test", &plan(), PIN, &[]);
    let key = uuid::Uuid::new_v4().simple().to_string();
    let join = format!("wss://127.0.0.1:9/api/agents/join/{key}");
    l.launch(1, &join, SECRET).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    let found = loop {
        let c = l.casualties().await;
        if !c.is_empty() {
            break c;
        }
        assert!(Instant::now() < deadline, "{:?}", l.status());
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    l.stop().await;
    assert_eq!(found[0].0, 0, "{found:?}");
    assert!(
        found[0].1.contains("could not reach the coordinator"),
        "{found:?}"
    );
}
