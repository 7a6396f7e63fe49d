//! Test harness: a whole socketswarm (HTTP on port 0, sandbox on port 0, temp SQLite)
//! per test, plus small clients for the JSON API, the sandbox's `/stats` and SSE.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::path::PathBuf;

use serde_json::Value;
use server::config::ServeArgs;

/// A child process ended (killed and reaped) when dropped: a test never leaves one
/// behind, even when an assertion fails half-way.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct App {
    pub base: String,
    pub sandbox: String,
    pub sandbox_tls: String,
    pub running: Option<server::Running>,
    pub db: PathBuf,
    pub _dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

pub fn args(db: PathBuf) -> ServeArgs {
    ServeArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        database: db,
        sandbox: "127.0.0.1:0".into(),
        sandbox_tls: "127.0.0.1:0".into(),
        site_root: None,
        max_concurrent_runs: 2,
        max_connections: 200_000,
        max_duration: "1h".into(),
        tick_ms: 250,
        allow_remote: false,
        max_message_bytes: 1 << 20,
        access_token: None,
        allow_target: Vec::new(),
        allow_env: Vec::new(),
        agent_exe: Some(env!("CARGO_BIN_EXE_socketswarm").into()),
        max_process_connections: None,
        starter_plan: false,
        public_url: None,
        header_timeout_ms: 10_000,
        max_http_connections: 1024,
        max_event_streams: 256,
        max_streams_per_share: 8,
        max_concurrent_exports: 2,
        max_queued_runs: 32,
        max_import_bytes: 64 << 20,
        max_import_ticks: 100_000,
        max_inflight_bytes: engine::budget::DEFAULT_LIMIT,
        k8s: Default::default(),
    }
}

pub async fn spawn_app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("test.db");
    spawn_with(args(db.clone()), dir).await
}

pub async fn spawn_with(args: ServeArgs, dir: tempfile::TempDir) -> App {
    let db = args.database.clone();
    let running = server::start(args).await.expect("server starts");
    App {
        base: format!("http://{}", running.addr),
        sandbox: format!("{}", running.sandbox.expect("sandbox enabled")),
        sandbox_tls: format!("{}", running.sandbox_tls.expect("sandbox TLS enabled")),
        running: Some(running),
        db,
        _dir: dir,
        http: reqwest::Client::new(),
    }
}

/// Sends the request; its status and JSON answer (`Null` when not JSON).
async fn json_answer(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

impl App {
    pub fn ws(&self, path_and_query: &str) -> String {
        format!("ws://{}{path_and_query}", self.sandbox)
    }

    pub async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        json_answer(
            self.http
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    /// `method path` with `body` as it is (no content type).
    pub async fn send(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        json_answer(
            self.http
                .request(method.parse().unwrap(), format!("{}{path}", self.base))
                .body(body.to_string()),
        )
        .await
    }

    /// `GET path`, the whole answer (status, headers, body to read).
    pub async fn fetch(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        json_answer(self.http.get(format!("{}{path}", self.base))).await
    }

    /// Launches a plan and returns its id.
    pub async fn launch(&self, plan: Value) -> String {
        let (status, body) = self.post("/api/runs", &plan.to_string()).await;
        assert_eq!(status, 201, "launch failed: {body}");
        body["id"].as_str().unwrap().to_string()
    }

    /// Follows the run's SSE stream to its end; returns (snapshots, done payload).
    pub async fn follow(&self, id: &str) -> (Vec<Value>, Value) {
        follow_sse(
            &self.http,
            &format!("{}/api/runs/{id}/events", self.base),
            None,
        )
        .await
    }

    /// The sandbox's counters for one profile key (e.g. `/echo?cap=20`).
    pub async fn sandbox_profile(&self, key: &str) -> Value {
        let stats: Value = self
            .http
            .get(format!("http://{}/stats", self.sandbox))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stats["profiles"][key].clone()
    }

    /// The agent listener as agents dial it (`wss://127.0.0.1:PORT`).
    pub fn agents_url(&self) -> String {
        format!("wss://{}", self.running.as_ref().unwrap().agents_addr)
    }

    /// The pin agents are given for this server's certificate.
    pub fn agent_pin(&self) -> String {
        self.running.as_ref().unwrap().agent_pin.clone()
    }

    /// The status of a WebSocket upgrade of `path` on the agent listener with
    /// `authorization` (over TLS; its self-signed certificate is not checked here).
    pub async fn agent_upgrade(&self, path: &str, authorization: &str) -> u16 {
        engine::install_crypto_provider();
        let https = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .no_proxy()
            .build()
            .unwrap();
        let url = format!(
            "https://{}{path}",
            self.running.as_ref().unwrap().agents_addr
        );
        https
            .get(url)
            .header("authorization", authorization)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }
}

/// Reads an SSE stream until it ends; returns the `snapshot` payloads and the `done` one.
pub async fn follow_sse(
    http: &reqwest::Client,
    url: &str,
    last_event_id: Option<u64>,
) -> (Vec<Value>, Value) {
    use futures_util::StreamExt;
    let mut req = http.get(url);
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id.to_string());
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut snaps = Vec::new();
    let mut done = Value::Null;
    while let Some(chunk) = stream.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut event = "message";
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = if e.trim() == "snapshot" {
                        "snapshot"
                    } else if e.trim() == "done" {
                        "done"
                    } else {
                        "other"
                    };
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            match event {
                "snapshot" => snaps.push(serde_json::from_str(&data).unwrap()),
                "done" => done = serde_json::from_str(&data).unwrap(),
                _ => {}
            }
        }
    }
    (snaps, done)
}

/// A two-stage plan: ramp to `n` over `ramp`, hold for `hold`.
pub fn plan(name: &str, target: &str, n: u32, ramp: &str, hold: &str) -> Value {
    serde_json::json!({
        "name": name,
        "target": target,
        "stages": [{"duration": ramp, "connections": n}, {"duration": hold, "connections": n}]
    })
}

/// What a labelled run truly hit (the corpus's answer key).
#[derive(Clone, Copy)]
pub struct Label<'a> {
    pub kind: &'a str,
    pub level: Option<f64>,
    pub per: Option<&'a str>,
    pub how: Option<&'a str>,
}

/// With `SOCKETSWARM_RECORD_FIXTURES=DIR`, stores the run as a labelled fixture for the
/// diagnosis corpus (`engine/tests/corpus.rs`): its summary and ticks (as exported) with
/// the true answer and where it came from. Without the variable it does nothing.
pub async fn record_fixture(app: &App, id: &str, name: &str, source: &str, label: Label<'_>) {
    let Ok(dir) = std::env::var("SOCKETSWARM_RECORD_FIXTURES") else {
        return;
    };
    let (status, export) = app.get(&format!("/api/runs/{id}/export.json")).await;
    assert_eq!(status, 200, "{export}");
    let mut summary = export["summary"].clone();
    // Histograms are not read by the diagnosis; they would triple the fixture's size.
    summary["histograms"] = serde_json::json!({});
    let doc = serde_json::json!({
        "name": name,
        "source": source,
        "label": {"kind": label.kind, "level": label.level, "per": label.per, "how": label.how},
        "plan": export["plan"],
        "summary": summary,
        "ticks": export["ticks"],
    });
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        std::path::Path::new(&dir).join(format!("{name}.json")),
        serde_json::to_string(&doc).unwrap(),
    )
    .unwrap();
}

/// Sends one request by hand on a fresh TCP connection and reads the answer to its end:
/// `(status, head and body as text)`. For what reqwest refuses or repairs: raw paths with
/// `..` or `//`, a foreign `Host`. `headers` may set `Host`; the app's own address is used
/// otherwise. The connection is closed after the answer (`Connection: close`).
pub async fn raw(
    app: &App,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://");
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("the server answers and closes within 20 s")
    .unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    (status, text)
}

/// A whole socketswarm with the test settings changed by `tune` (small limits).
pub async fn spawn_tuned(tune: impl FnOnce(&mut ServeArgs)) -> App {
    let dir = tempfile::tempdir().unwrap();
    let mut a = args(dir.path().join("test.db"));
    tune(&mut a);
    spawn_with(a, dir).await
}

/// An HTTP client that sends `token` as a bearer token on every request.
pub fn bearer_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// A raw TCP connection to the app that has sent `bytes` (and nothing more).
pub async fn raw_connection(app: &App, bytes: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let addr = app.base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s
}

/// Reads until the server closes the connection (`Ok` with what it sent; a reset counts
/// as closed) or `deadline` passes (`Err` with what arrived so far: still open).
pub async fn read_until_closed(
    s: &mut tokio::net::TcpStream,
    deadline: tokio::time::Instant,
) -> Result<Vec<u8>, Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return Err(got),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Asserts that `export` (a run's JSON export) follows the documented
/// `docs/export.schema.json`, listing every violation with its path.
pub fn assert_export_schema(export: &serde_json::Value) {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/export.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(export)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}
