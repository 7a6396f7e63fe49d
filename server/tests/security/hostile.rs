//! A hostile target and a server process to aim it at: HTTP answers of any size
//! (generated as they are sent, never held by the test), WebSocket targets that send
//! huge messages or close every connection with a code of their own, and the real
//! `socketswarm` binary started as a child process whose memory (`/proc/PID/status`)
//! the attacks measure.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::common::KillOnDrop;

/// `socketswarm serve` as a child process (killed when dropped), with its log.
pub(crate) struct Server {
    pub child: KillOnDrop,
    pub base: String,
    pub sandbox: String,
    pub log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts the binary on port 0 with a fresh database and `extra` flags: this
    /// build's, or `SOCKETSWARM_BIN` (to run an attack against another build).
    pub(crate) fn start(extra: &[&str]) -> Server {
        engine::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let bin = std::env::var("SOCKETSWARM_BIN")
            .ok()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_socketswarm").to_string());
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--sandbox", "127.0.0.1:0"])
            .args(["--sandbox-tls", "off", "--tick-ms", "250", "--log", "info"])
            .arg("--database")
            .arg(dir.path().join("hostile.db"))
            .args(extra)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().unwrap();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                l.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut base, mut sandbox) = (None, None);
        while base.is_none() || sandbox.is_none() {
            let line = lines
                .next()
                .expect("server exited before listening")
                .unwrap();
            log.lock().unwrap().push_str(&format!("{line}\n"));
            if let Some(i) = line.find("socketswarm on http://") {
                base = Some(line[i + "socketswarm on ".len()..].trim().to_string());
            }
            if let Some(i) = line.find("sandbox target on ws://") {
                let rest = &line[i + "sandbox target on ".len()..];
                let url = rest.split("/echo").next().unwrap();
                sandbox = Some(url.trim_start_matches("ws://").to_string());
            }
        }
        let l = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                l.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        Server {
            child: KillOnDrop(child),
            base: base.unwrap(),
            sandbox: sandbox.unwrap(),
            log,
            _dir: dir,
        }
    }

    /// A field of `/proc/PID/status` in bytes (`VmRSS`, `VmHWM`: the peak).
    pub(crate) fn mem(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.0.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or_else(|| panic!("{field} not in /proc status"))
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Starts a new peak: `VmHWM` is `VmRSS` from now on (Linux `clear_refs`, as root).
    pub(crate) fn reset_peak(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.0.id()), "5").unwrap();
    }

    /// Its database file.
    pub(crate) fn db(&self) -> std::path::PathBuf {
        self._dir.path().join("hostile.db")
    }
}

/// Mebibytes, for messages.
pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A listener on 127.0.0.1:0 running `serve` for every connection; the test's tasks end
/// with the test's runtime.
async fn listen<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(TcpStream, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = Arc::new(serve);
    let n = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let i = n.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(tcp, i));
        }
    });
    addr
}

/// Reads a request head (and drops whatever body follows with it).
async fn read_head(tcp: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// An HTTP server answering every request `200` with a JSON object of `bytes` bytes,
/// `{"access_token":"aaaa…","expires_in":3600}`, made as it is written (64 KiB at a
/// time): what a hostile token endpoint or HTTP step answers. A request whose path
/// holds `chunked` gets it without a `Content-Length` (chunked: its size is not known
/// before it is read).
pub(crate) async fn huge_json(bytes: u64) -> SocketAddr {
    listen(move |mut tcp, _| async move {
        let Some(head) = read_head(&mut tcp).await else {
            return;
        };
        let chunked = head.lines().next().is_some_and(|l| l.contains("chunked"));
        let (open, close) = (r#"{"access_token":""#, r#"","expires_in":3600}"#);
        let fill = bytes.saturating_sub((open.len() + close.len()) as u64);
        let length = if chunked {
            "Transfer-Encoding: chunked".to_string()
        } else {
            format!("Content-Length: {}", fill + (open.len() + close.len()) as u64)
        };
        let frame = |part: &[u8]| -> Vec<u8> {
            if !chunked {
                return part.to_vec();
            }
            let mut v = format!("{:x}\r\n", part.len()).into_bytes();
            v.extend_from_slice(part);
            v.extend_from_slice(b"\r\n");
            v
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}\r\nConnection: close\r\n\r\n"
        );
        if tcp.write_all(head.as_bytes()).await.is_err()
            || tcp.write_all(&frame(open.as_bytes())).await.is_err()
        {
            return;
        }
        let block = frame(&vec![b'a'; 64 * 1024]);
        let mut left = fill;
        while left > 0 {
            let n = left.min(64 * 1024);
            let part = if n == 64 * 1024 {
                block.clone()
            } else {
                frame(&vec![b'a'; n as usize])
            };
            if tcp.write_all(&part).await.is_err() {
                return;
            }
            left -= n;
        }
        let _ = tcp.write_all(&frame(close.as_bytes())).await;
        if chunked {
            let _ = tcp.write_all(b"0\r\n\r\n").await;
        }
        let _ = tcp.shutdown().await;
    })
    .await
}

/// Reads an upgrade request and answers 101; `None` if the client went away.
async fn upgrade(tcp: &mut TcpStream) -> Option<()> {
    let head = read_head(tcp).await?;
    let key = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("sec-websocket-key")
            .then(|| v.trim().to_string())
    })?;
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    tcp.write_all(answer.as_bytes()).await.ok()
}

/// Holds a connection, reading and dropping what arrives, until the client leaves.
async fn hold(tcp: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
}

/// A WebSocket target that sends every connection one binary message of `bytes` bytes
/// (one frame, written 64 KiB at a time), then holds it.
pub(crate) async fn huge_messages(bytes: u64) -> SocketAddr {
    listen(move |mut tcp, _| async move {
        if upgrade(&mut tcp).await.is_none() {
            return;
        }
        let mut frame = vec![0x82u8, 127];
        frame.extend_from_slice(&bytes.to_be_bytes());
        if tcp.write_all(&frame).await.is_err() {
            return;
        }
        let block = vec![0x5au8; 64 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            if tcp.write_all(&block[..n]).await.is_err() {
                return;
            }
            left -= n as u64;
        }
        hold(&mut tcp).await;
    })
    .await
}

/// A WebSocket target that closes the n-th connection at once with close code
/// `3000 + n % codes` (a code of its own for each, up to `codes`).
pub(crate) async fn inventive_closer(codes: u64) -> SocketAddr {
    listen(move |mut tcp, n| async move {
        if upgrade(&mut tcp).await.is_none() {
            return;
        }
        let code = (3000 + n % codes) as u16;
        let mut frame = vec![0x88u8, 2];
        frame.extend_from_slice(&code.to_be_bytes());
        let _ = tcp.write_all(&frame).await;
        hold(&mut tcp).await;
    })
    .await
}

/// A target whose every word carries terminal escapes: odd connections are refused
/// with 429 and a body full of them, even ones open and are closed with such a reason.
pub(crate) async fn escaping_target() -> SocketAddr {
    listen(move |mut tcp, n| async move {
        if n % 2 == 1 {
            if read_head(&mut tcp).await.is_none() {
                return;
            }
            let body = ESCAPES;
            let answer = format!(
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tcp.write_all(answer.as_bytes()).await;
            let _ = tcp.shutdown().await;
            return;
        }
        if upgrade(&mut tcp).await.is_none() {
            return;
        }
        let reason = CLOSE_ESCAPES.as_bytes();
        let mut frame = vec![0x88u8, (2 + reason.len()) as u8];
        frame.extend_from_slice(&4000u16.to_be_bytes());
        frame.extend_from_slice(reason);
        let _ = tcp.write_all(&frame).await;
        hold(&mut tcp).await;
    })
    .await
}

/// What the escaping target says in its 429 bodies: colours, a title change, a screen
/// clear, a bell, a C1 control and a bidi override.
pub(crate) const ESCAPES: &str =
    "busy \x1b[31mRED\x1b[0m \x1b]0;owned\x07 \x1b[2J\r\nnext\u{9b}31m \u{202e}evil";
/// Its close reason (at most 123 bytes).
pub(crate) const CLOSE_ESCAPES: &str = "bye \x1b[1;31mBOLD\x1b[0m\x08\x08\x7f";
