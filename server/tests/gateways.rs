//! The diagnosis against real gateways nobody here wrote: nginx and HAProxy from
//! Debian's packages, each configured with its own limit feature in front of the
//! sandbox's plain echo (`tests/gateways/*.conf|cfg`, rendered with the ports). Every
//! run can be recorded as a labelled fixture for the diagnosis corpus
//! (`SOCKETSWARM_RECORD_FIXTURES=engine/tests/fixtures/diagnosis`).
//!
//! Run: `cargo test -p server --test gateways`. `scripts/setup.sh --test` installs
//! nginx and haproxy (CI runs it); without them these tests fail and say so, unless
//! `SOCKETSWARM_SKIP_GATEWAYS=1` asks to skip them.
#![allow(clippy::unwrap_used)]
mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{plan, record_fixture, spawn_app, App, Label};
use serde_json::{json, Value};

/// A gateway process of ours, stopped (by its PID) when dropped.
struct Gateway {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for f in ["logs/error.log", "logs/stderr.log"] {
            if let Ok(t) = std::fs::read_to_string(self.dir.path().join(f)) {
                out.push_str(&t);
            }
        }
        out
    }
}

fn skip() -> bool {
    std::env::var("SOCKETSWARM_SKIP_GATEWAYS").is_ok_and(|v| v == "1")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the gateway of `case` (`rate.nginx.conf`, `lockout.haproxy.cfg`, …) in front
/// of `upstream` (`127.0.0.1:PORT`) and waits until it accepts connections.
fn start(case: &str, upstream: &str) -> Gateway {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gateways");
    let up_port = upstream.rsplit(':').next().unwrap();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
    let nginx = here.join(format!("{case}.nginx.conf"));
    let (bin, template) = if nginx.exists() {
        ("nginx", nginx)
    } else {
        ("haproxy", here.join(format!("{case}.haproxy.cfg")))
    };
    let text = std::fs::read_to_string(&template)
        .unwrap_or_else(|e| panic!("{}: {e}", template.display()))
        .replace("@UPSTREAM@", up_port)
        .replace("@LISTEN@", &port.to_string());
    let conf = dir.path().join(if bin == "nginx" {
        "nginx.conf"
    } else {
        "haproxy.cfg"
    });
    std::fs::write(&conf, text).unwrap();
    let prefix = format!("{}/", dir.path().display());
    let mut cmd = Command::new(bin);
    if bin == "nginx" {
        cmd.args(["-p", &prefix, "-e", "logs/error.log", "-c"])
            .arg(&conf)
            .args(["-g", "daemon off;"]);
    } else {
        cmd.arg("-f").arg(&conf).arg("-db");
    }
    let stderr = std::fs::File::create(dir.path().join("logs/stderr.log")).unwrap();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{bin} could not start ({e}): run `scripts/setup.sh --test` to install nginx and haproxy, or set SOCKETSWARM_SKIP_GATEWAYS=1")
        });
    let gw = Gateway { child, port, dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{bin} did not listen on {port}: {}",
            gw.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    gw
}

fn level(d: &Value) -> f64 {
    d["level"].as_f64().unwrap_or(f64::NAN)
}

fn within(d: &Value, truth: f64) -> bool {
    (level(d) - truth).abs() <= 0.05 * truth
}

fn how(d: &Value) -> &str {
    d["enforcement"]["how"].as_str().unwrap_or("")
}

/// The verdict, or the alternative, that names `kind` along `per`.
fn reading<'a>(d: &'a Value, kind: &str, per: Option<&str>) -> Option<&'a Value> {
    std::iter::once(d)
        .chain(d["alternatives"].as_array().into_iter().flatten())
        .find(|x| x["kind"] == kind && x["per"].as_str() == per)
}

/// Runs `p` through the gateway; records it (when asked to) and returns the diagnosis.
async fn run(app: &App, name: &str, source: &str, p: Value, label: Label<'_>) -> Value {
    let id = app.launch(p).await;
    let (_, done) = app.follow(&id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (_, r) = app.get(&format!("/api/runs/{id}")).await;
    record_fixture(app, &id, name, source, label).await;
    r["diagnosis"].clone()
}

fn probe(target: &str) -> Value {
    json!({
        "name": "probe",
        "target": target,
        "stages": [],
        "probe": {"max_connections": 300, "max_connect_rate": 60, "max_duration": "30s"}
    })
}

/// The first verdict of a probe.
fn first_verdict(d: &Value) -> Value {
    d["verdicts"]
        .as_array()
        .and_then(|v| v.first())
        .cloned()
        .unwrap_or_else(|| panic!("no verdict: {d}"))
}

const NGINX_RATE: &str = "nginx 1.22 limit_req rate=20r/s burst=5 nodelay, 429";
const HAPROXY_LOCKOUT: &str =
    "HAProxy 2.6 stick-table http_req_rate(1s) tracked before deny if > 20, 429";
const HAPROXY_STALL: &str = "HAProxy 2.6 frontend maxconn 150 (stops accepting)";
const NGINX_PERIP: &str = "nginx 1.22 limit_conn $binary_remote_addr 50, 429";
const NGINX_PERKEY: &str = "nginx 1.22 limit_conn $http_x_api_key 50, 429";
const HAPROXY_QUEUE: &str = "HAProxy 2.6 server maxconn 150, timeout queue 2s (503)";
const NGINX_CAP: &str = "nginx 1.22 limit_conn $server_name 150, 429";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_rate_limit() {
    if skip() {
        return;
    }
    let app = spawn_app().await;
    let gw = start("rate", &app.sandbox);
    let label = Label {
        kind: "handshake_rate_limit",
        level: Some(20.0),
        per: None,
        how: Some("rejected"),
    };
    let p = plan("nginx rate", &gw.url("/echo?tag=gw-rate"), 200, "4s", "3s");
    let d = run(&app, "gw-nginx-rate-20", NGINX_RATE, p, label).await;
    assert_eq!(d["kind"], "handshake_rate_limit", "{d}");
    assert!(within(&d, 20.0), "{d}");
    assert_eq!(how(&d), "rejected", "{d}");
    assert_eq!(d["enforcement"]["status"], 429, "{d}");
    let label = Label {
        kind: "handshake_rate_limit",
        level: Some(20.0),
        per: None,
        how: Some("rejected"),
    };
    let p = probe(&gw.url("/echo?tag=gw-rate-probe"));
    let d = run_probe(&app, "gw-nginx-rate-20-probe", NGINX_RATE, p, label).await;
    assert_eq!(d["kind"], "handshake_rate_limit", "{d}");
    assert!(within(&d, 20.0), "{d}");
}

/// Runs the probe `p`; records it (when asked to) and returns its first verdict.
async fn run_probe(app: &App, name: &str, source: &str, p: Value, label: Label<'_>) -> Value {
    first_verdict(&run(app, name, source, p, label).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_lockout_limiter() {
    if skip() {
        return;
    }
    let app = spawn_app().await;
    let gw = start("lockout", &app.sandbox);
    let label = Label {
        kind: "lockout_rate_limit",
        level: Some(20.0),
        per: None,
        how: Some("rejected"),
    };
    let p = plan(
        "haproxy lockout",
        &gw.url("/echo?tag=gw-lock"),
        200,
        "4s",
        "3s",
    );
    let d = run(
        &app,
        "gw-haproxy-lockout-20-ramp",
        HAPROXY_LOCKOUT,
        p,
        label,
    )
    .await;
    assert!(
        d["confidence"].as_f64().unwrap() < 0.6,
        "two readings fit: {d}"
    );
    let lockout = reading(&d, "lockout_rate_limit", None).unwrap_or_else(|| panic!("{d}"));
    assert!(within(lockout, 20.0), "{d}");
    let mut p = plan(
        "haproxy lockout pause",
        &gw.url("/echo?tag=gw-lock-p"),
        50,
        "1s",
        "4s",
    );
    p["stages"] = json!([
        {"duration": "1s", "connections": 50}, {"duration": "4s", "connections": 50},
        {"duration": "1s", "connections": 100}, {"duration": "2s", "connections": 100}
    ]);
    let d = run(
        &app,
        "gw-haproxy-lockout-20-pause",
        HAPROXY_LOCKOUT,
        p,
        label,
    )
    .await;
    assert_eq!(d["kind"], "lockout_rate_limit", "{d}");
    assert!(within(&d, 20.0), "{d}");
    assert!(d["confidence"].as_f64().unwrap() >= 0.8, "{d}");
    let p = probe(&gw.url("/echo?tag=gw-lock-probe"));
    let v = run_probe(
        &app,
        "gw-haproxy-lockout-20-probe",
        HAPROXY_LOCKOUT,
        p,
        label,
    )
    .await;
    assert_eq!(v["kind"], "lockout_rate_limit", "{v}");
    assert!(within(&v, 20.0), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_cap_that_stops_answering() {
    if skip() {
        return;
    }
    let app = spawn_app().await;
    let gw = start("stall", &app.sandbox);
    let label = Label {
        kind: "concurrency_cap",
        level: Some(150.0),
        per: None,
        how: Some("stalled"),
    };
    let mut p = plan(
        "haproxy stall",
        &gw.url("/echo?tag=gw-stall"),
        300,
        "6s",
        "5s",
    );
    p["connect_timeout"] = json!("3s");
    let d = run(&app, "gw-haproxy-stall-150", HAPROXY_STALL, p, label).await;
    assert_eq!(d["kind"], "concurrency_cap", "{d}");
    assert!(within(&d, 150.0), "{d}");
    assert_eq!(how(&d), "stalled", "{d}");
    assert!(d["confidence"].as_f64().unwrap() >= 0.8, "{d}");
    let p = probe(&gw.url("/echo?tag=gw-stall-probe"));
    let v = run_probe(&app, "gw-haproxy-stall-150-probe", HAPROXY_STALL, p, label).await;
    assert_eq!(v["kind"], "concurrency_cap", "{v}");
    assert!(within(&v, 150.0), "{v}");
    assert_eq!(how(&v), "stalled", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_cap_per_client_address() {
    if skip() {
        return;
    }
    let app = spawn_app().await;
    let gw = start("perip", &app.sandbox);
    let label = Label {
        kind: "concurrency_cap",
        level: Some(50.0),
        per: Some("source_addr"),
        how: Some("rejected"),
    };
    let addrs = json!(["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    let mut p = plan(
        "nginx per address",
        &gw.url("/echo?tag=gw-ip"),
        300,
        "6s",
        "4s",
    );
    p["source_addrs"] = addrs.clone();
    let d = run(&app, "gw-nginx-addr-50x3", NGINX_PERIP, p, label).await;
    let per = reading(&d, "concurrency_cap", Some("source_addr")).unwrap_or_else(|| panic!("{d}"));
    assert!(within(per, 50.0), "{d}");
    assert!(
        d["confidence"].as_f64().unwrap() < 0.6,
        "one run cannot tell: {d}"
    );
    let mut p = probe(&gw.url("/echo?tag=gw-ip-probe"));
    p["source_addrs"] = addrs;
    let v = run_probe(&app, "gw-nginx-addr-50x3-probe", NGINX_PERIP, p, label).await;
    assert_eq!(v["kind"], "concurrency_cap", "{v}");
    assert_eq!(v["per"], "source_addr", "{v}");
    assert!(within(&v, 50.0), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_cap_per_api_key() {
    if skip() {
        return;
    }
    let app = spawn_app().await;
    let gw = start("perkey", &app.sandbox);
    let label = Label {
        kind: "concurrency_cap",
        level: Some(50.0),
        per: Some("header:X-Api-Key"),
        how: Some("rejected"),
    };
    let mut p = plan(
        "nginx per key",
        &gw.url("/echo?tag=gw-key"),
        300,
        "6s",
        "4s",
    );
    p["headers"] = json!({"X-Api-Key": "k-{{vu % 3}}"});
    let d = run(&app, "gw-nginx-key-50x3", NGINX_PERKEY, p, label).await;
    let per =
        reading(&d, "concurrency_cap", Some("header:X-Api-Key")).unwrap_or_else(|| panic!("{d}"));
    assert!(within(per, 50.0), "{d}");
    let mut p = probe(&gw.url("/echo?tag=gw-key-probe"));
    p["headers"] = json!({"X-Api-Key": "k-{{vu % 3}}"});
    let v = run_probe(&app, "gw-nginx-key-50x3-probe", NGINX_PERKEY, p, label).await;
    assert_eq!(v["per"], "header:X-Api-Key", "{v}");
    assert!(within(&v, 50.0), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_queue_then_503() {
    if skip() {
        return;
    }
    let app = spawn_app().await;
    let gw = start("queue", &app.sandbox);
    let label = Label {
        kind: "concurrency_cap",
        level: Some(150.0),
        per: None,
        how: Some("queued"),
    };
    let p = plan(
        "haproxy queue",
        &gw.url("/echo?tag=gw-queue"),
        300,
        "6s",
        "4s",
    );
    let d = run(&app, "gw-haproxy-queue-150", HAPROXY_QUEUE, p, label).await;
    assert_eq!(d["kind"], "concurrency_cap", "{d}");
    assert!(within(&d, 150.0), "{d}");
    assert_eq!(how(&d), "queued", "{d}");
    assert_eq!(d["enforcement"]["status"], 503, "{d}");
    let p = probe(&gw.url("/echo?tag=gw-queue-probe"));
    let v = run_probe(&app, "gw-haproxy-queue-150-probe", HAPROXY_QUEUE, p, label).await;
    assert_eq!(v["kind"], "concurrency_cap", "{v}");
    assert!(within(&v, 150.0), "{v}");
    assert_eq!(how(&v), "queued", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_global_cap_and_open_gateways() {
    if skip() {
        return;
    }
    let app = spawn_app().await;
    let gw = start("cap", &app.sandbox);
    let label = Label {
        kind: "concurrency_cap",
        level: Some(150.0),
        per: None,
        how: Some("rejected"),
    };
    let p = plan("nginx cap", &gw.url("/echo?tag=gw-cap"), 300, "6s", "4s");
    let d = run(&app, "gw-nginx-cap-150", NGINX_CAP, p, label).await;
    assert_eq!(d["kind"], "concurrency_cap", "{d}");
    assert!(d["per"].is_null(), "{d}");
    assert!(within(&d, 150.0), "{d}");
    assert!(d["confidence"].as_f64().unwrap() >= 0.8, "{d}");
    drop(gw);
    for (case, name, source) in [
        ("open", "gw-nginx-open", "nginx 1.22 proxy, no limits"),
        (
            "open-haproxy",
            "gw-haproxy-open",
            "HAProxy 2.6 proxy, no limits",
        ),
    ] {
        let gw = start(case, &app.sandbox);
        let mut p = plan(name, &gw.url(&format!("/echo?tag={name}")), 150, "3s", "2s");
        p["script"] =
            json!([{"repeat": {"every": "200ms", "steps": [{"send": "x"}, {"expect": {}}]}}]);
        let label = Label {
            kind: "none",
            level: None,
            per: None,
            how: None,
        };
        let d = run(&app, name, source, p, label).await;
        assert_eq!(d["kind"], "none", "{name}: {d}");
    }
}
