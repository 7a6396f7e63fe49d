//! Support for the fault suite (`faults.rs`): a panic watch on the engine's threads,
//! fault servers on raw tokio sockets that count what they did, and helpers that run a
//! plan through the API and check that nothing was lost.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use crate::common::App;
use futures_util::StreamExt;
use serde_json::Value;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------
// Panics on the engine's threads
// ---------------------------------------------------------------------------------

/// Panics seen on the engine's runtime ("swarm" workers) or the sandbox's thread. A
/// panicking VU task would only show up as missing counts; this makes it explicit.
pub(crate) static ENGINE_PANICS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn watch_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current().name().unwrap_or("").to_string();
            if name.starts_with("swarm") || name.starts_with("sandbox") {
                ENGINE_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

pub(crate) fn assert_no_engine_panic() {
    assert_eq!(
        ENGINE_PANICS.load(Ordering::SeqCst),
        0,
        "a task on the engine's threads panicked (see stderr)"
    );
}

// ---------------------------------------------------------------------------------
// Fault servers
// ---------------------------------------------------------------------------------

/// What a fault server did. Each case uses the counters it needs.
#[derive(Default)]
pub(crate) struct Counts {
    /// TCP connections accepted.
    pub(crate) accepted: AtomicU64,
    /// Upgrade requests read to their end.
    pub(crate) requests: AtomicU64,
    /// Valid `101 Switching Protocols` answers written.
    pub(crate) upgraded: AtomicU64,
    /// WebSocket messages read / written.
    pub(crate) msgs_in: AtomicU64,
    pub(crate) msgs_out: AtomicU64,
    /// The case's faults, by variant (reset, garbage, oversized, ...).
    pub(crate) faults: [AtomicU64; 3],
    /// Connections the client ended (EOF or error seen by the server).
    pub(crate) client_gone: AtomicU64,
    /// Notified on every change, so tests wait for counts instead of sleeping.
    pub(crate) changed: Notify,
}

impl Counts {
    pub(crate) fn bump(&self, c: &AtomicU64) {
        c.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Waits until `done(self)` holds, at most `within`; returns whether it does.
    pub(crate) async fn wait_for(&self, within: Duration, done: impl Fn(&Counts) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if done(self) {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return done(self);
            }
        }
    }
}

pub(crate) fn n(c: &AtomicU64) -> u64 {
    c.load(Ordering::SeqCst)
}

/// What a connection handler of a fault server gets.
#[derive(Clone)]
pub(crate) struct Cx {
    pub(crate) counts: Arc<Counts>,
    /// Cancelling it kills the server: listener and every connection are dropped.
    pub(crate) kill: CancellationToken,
}

/// A running fault server; dropping it kills it.
pub(crate) struct Fault {
    pub(crate) addr: SocketAddr,
    pub(crate) counts: Arc<Counts>,
    pub(crate) kill: CancellationToken,
}

impl Fault {
    pub(crate) fn ws(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }
}

impl Drop for Fault {
    fn drop(&mut self) {
        self.kill.cancel();
    }
}

/// Listens on 127.0.0.1:0 and runs `behave` for each accepted connection until killed.
pub(crate) async fn spawn_fault<F, Fut>(behave: F) -> Fault
where
    F: Fn(TcpStream, Cx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cx = Cx {
        counts: Arc::new(Counts::default()),
        kill: CancellationToken::new(),
    };
    let (counts, kill) = (cx.counts.clone(), cx.kill.clone());
    tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                _ = cx.kill.cancelled() => break,
                r = listener.accept() => match r {
                    Ok((tcp, _)) => {
                        cx.counts.bump(&cx.counts.accepted);
                        conns.spawn(behave(tcp, cx.clone()));
                    }
                    Err(_) => break,
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        // The target is gone: the listener closes (later connects are refused) and
        // every connection task is aborted, which closes its socket.
        drop(listener);
        conns.shutdown().await;
    });
    Fault { addr, counts, kill }
}

/// Reads an upgrade request to its blank line; returns its path and key, or `None`
/// when the client went away first (or sent more than 16 KiB of head).
pub(crate) async fn read_upgrade(tcp: &mut TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > 16 * 1024 {
            return None;
        }
        let got = tcp.read(&mut chunk).await.ok()?;
        if got == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..got]);
    }
    let text = String::from_utf8_lossy(&buf);
    let path = text.split_whitespace().nth(1)?.to_string();
    let key = text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("sec-websocket-key")
            .then(|| v.trim().to_string())
    })?;
    Some((path, key))
}

pub(crate) fn switching_protocols(key: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    )
}

/// Reads the request and answers 101; returns the request path.
pub(crate) async fn accept_upgrade(tcp: &mut TcpStream, counts: &Counts) -> Option<String> {
    let (path, key) = read_upgrade(tcp).await?;
    counts.bump(&counts.requests);
    tcp.write_all(switching_protocols(&key).as_bytes())
        .await
        .ok()?;
    counts.bump(&counts.upgraded);
    Some(path)
}

/// `accept_upgrade`, then the connection as the server's end of a WebSocket.
pub(crate) async fn accept_ws(
    mut tcp: TcpStream,
    counts: &Counts,
) -> Option<WebSocketStream<TcpStream>> {
    accept_upgrade(&mut tcp, counts).await?;
    Some(WebSocketStream::from_raw_socket(tcp, Role::Server, None).await)
}

/// Holds a connection without writing, reading (and discarding) what arrives, until the
/// client goes away (counted) or the server is killed.
pub(crate) async fn hold_until_client_leaves(tcp: &mut TcpStream, cx: &Cx) {
    let mut sink = [0u8; 4096];
    loop {
        tokio::select! {
            _ = cx.kill.cancelled() => return,
            r = tcp.read(&mut sink) => if matches!(r, Ok(0) | Err(_)) {
                cx.counts.bump(&cx.counts.client_gone);
                return;
            },
        }
    }
}

/// The VU number a fault server reads from a `/{{vu}}` path.
pub(crate) fn vu_of(path: &str) -> u64 {
    path.trim_start_matches('/').parse().unwrap_or(0)
}

// ---------------------------------------------------------------------------------
// Runs through the API
// ---------------------------------------------------------------------------------

/// A finished run: its stored detail and stored ticks.
pub(crate) struct Finished {
    pub(crate) run: Value,
    pub(crate) ticks: Vec<Value>,
}

impl Finished {
    pub(crate) fn totals(&self) -> &Value {
        &self.run["summary"]["totals"]
    }
    pub(crate) fn total(&self, key: &str) -> u64 {
        self.totals()[key].as_u64().unwrap_or(0)
    }
    pub(crate) fn failure(&self, key: &str) -> u64 {
        self.totals()["failures"][key].as_u64().unwrap_or(0)
    }
    pub(crate) fn close(&self, key: &str) -> u64 {
        self.totals()["closes"][key].as_u64().unwrap_or(0)
    }
}

/// Checks that nothing was lost: the run row has a summary, its ticks are stored with
/// seq 1..=last without gaps, the last tick's totals are the summary's, and the books
/// balance (`attempted = opened + failed`, every opened session closed).
pub(crate) async fn stored(app: &App, id: &str, want_status: &str) -> Finished {
    let (status, run) = app.get(&format!("/api/runs/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(run["status"], want_status, "{run}");
    assert!(run["summary"].is_object(), "summary stored: {run}");
    let (status, export) = app.get(&format!("/api/runs/{id}/export.json")).await;
    assert_eq!(status, 200, "{export}");
    let ticks = export["ticks"].as_array().cloned().unwrap_or_default();
    assert!(!ticks.is_empty(), "ticks stored");
    let seqs: Vec<u64> = ticks.iter().map(|t| t["seq"].as_u64().unwrap()).collect();
    let want: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, want, "stored ticks are 1..=last without gaps");
    assert_eq!(run["last"]["seq"], *seqs.last().unwrap());
    let t = &run["summary"]["totals"];
    assert_eq!(ticks.last().unwrap()["totals"], *t, "last tick == summary");
    let (att, op, fail) = (
        t["attempted"].as_u64().unwrap(),
        t["opened"].as_u64().unwrap(),
        t["failed"].as_u64().unwrap(),
    );
    assert_eq!(att, op + fail, "attempted = opened + failed: {t}");
    assert_eq!(t["closed"], t["opened"], "every opened session ended: {t}");
    let kinds: u64 = t["failures"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    assert_eq!(kinds, fail, "failures by kind add up: {t}");
    assert_no_engine_panic();
    Finished { run, ticks }
}

/// Launches `p`, follows its SSE stream to `done` and returns the stored run.
pub(crate) async fn finish(app: &App, p: Value, want_status: &str) -> Finished {
    let id = app.launch(p).await;
    let (_, done) = app.follow(&id).await;
    assert_eq!(done["status"], want_status, "{done}");
    stored(app, &id, want_status).await
}

/// An SSE reader that can stop anywhere (dropping it disconnects).
pub(crate) struct Sse {
    pub(crate) body: futures_util::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>,
    pub(crate) buf: String,
}

impl Sse {
    pub(crate) async fn open(app: &App, id: &str, last_event_id: Option<u64>) -> Sse {
        let mut req = app.http.get(format!("{}/api/runs/{id}/events", app.base));
        if let Some(l) = last_event_id {
            req = req.header("Last-Event-ID", l.to_string());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        Sse {
            body: resp.bytes_stream().map(|r| r.map(|b| b.to_vec())).boxed(),
            buf: String::new(),
        }
    }

    /// The next `snapshot` or `done` event (keep-alives skipped); `None` at the end.
    pub(crate) async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut data) = (String::new(), String::new());
                for line in block.lines() {
                    if let Some(e) = line.strip_prefix("event:") {
                        event = e.trim().to_string();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                if event == "snapshot" || event == "done" {
                    return Some((event, serde_json::from_str(&data).unwrap()));
                }
                continue;
            }
            let chunk = self.body.next().await?.ok()?;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}
