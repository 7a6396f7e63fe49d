//! Small servers for the attacks: an HTTP listener that records what reaches it and
//! answers as told, and a raw TCP listener that keeps the bytes it got.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request that reached a recorder.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub method: String,
    pub path: String,
    pub head: String,
    pub body: String,
}

/// What reached a listener.
#[derive(Clone, Default)]
pub(crate) struct Hits(Arc<Mutex<Vec<Hit>>>);

impl Hits {
    pub(crate) fn all(&self) -> Vec<Hit> {
        self.0.lock().unwrap().clone()
    }
    pub(crate) fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// The answer to a request: status, extra headers, body.
pub(crate) type Answer = (u16, Vec<(String, String)>, String);

/// An HTTP/1.1 listener on `ip:0` answering each request with `answer(path)`; every
/// request is recorded.
pub(crate) async fn http_recorder(
    ip: &str,
    answer: impl Fn(&str) -> Answer + Send + Sync + 'static,
) -> (SocketAddr, Hits) {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Hits::default();
    let (h, answer) = (hits.clone(), Arc::new(answer));
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (h, answer) = (h.clone(), answer.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Head, then as much body as Content-Length says.
                let (head, mut body) = loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_string();
                        break (head, buf[i + 4..].to_vec());
                    }
                };
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                while body.len() < len {
                    match s.read(&mut chunk).await {
                        Ok(n) if n > 0 => body.extend_from_slice(&chunk[..n]),
                        _ => break,
                    }
                }
                let mut words = head.split_whitespace();
                let method = words.next().unwrap_or_default().to_string();
                let path = words.next().unwrap_or_default().to_string();
                let (status, headers, text) = answer(&path);
                h.0.lock().unwrap().push(Hit {
                    method,
                    path,
                    head: head.clone(),
                    body: String::from_utf8_lossy(&body).to_string(),
                });
                let mut resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    text.len()
                );
                for (k, v) in headers {
                    resp.push_str(&format!("{k}: {v}\r\n"));
                }
                resp.push_str("\r\n");
                resp.push_str(&text);
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, hits)
}

/// A JSON answer.
pub(crate) fn json(status: u16, body: &str) -> Answer {
    (
        status,
        vec![("Content-Type".into(), "application/json".into())],
        body.into(),
    )
}

/// The real binary serving on loopback (ended when dropped), and everything it logged.
pub(crate) struct Proc {
    pub child: crate::common::KillOnDrop,
    pub base: String,
    pub sandbox: String,
    pub log: Arc<Mutex<String>>,
}

/// Starts `socketswarm` (UI and sandbox on port 0, debug log) with `args` added and
/// `env` set, and waits until it listens.
pub(crate) fn start_binary(db: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_socketswarm"));
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--sandbox",
        "127.0.0.1:0",
        "--sandbox-tls",
        "off",
    ])
    .arg("--database")
    .arg(db)
    .args(["--log", "debug", "--tick-ms", "250"])
    .args(args)
    .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let err = child.stderr.take().unwrap();
    let l = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let mut l = l.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut base, mut sandbox) = (None, None);
    while base.is_none() || sandbox.is_none() {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("server exited before listening: {}", log.lock().unwrap()))
            .unwrap();
        log.lock().unwrap().push_str(&line);
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
            let mut l = l.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    Proc {
        child: crate::common::KillOnDrop(child),
        base: base.unwrap(),
        sandbox: sandbox.unwrap(),
        log,
    }
}

/// A "target" on `ip:0` that refuses every WebSocket upgrade with 401 and echoes what it
/// was sent: `body(head)` as the body, the `Authorization` value in `X-RateLimit-Echo`
/// and the `Cookie` value in `Retry-After` (evidence socketswarm keeps).
pub(crate) async fn echo_refuser(
    ip: &str,
    body: impl Fn(&str) -> String + Send + Sync + 'static,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = Arc::new(body);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head = loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break String::from_utf8_lossy(&buf[..i]).to_string();
                    }
                };
                let header = |name: &str| {
                    head.lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.trim()
                                .eq_ignore_ascii_case(name)
                                .then(|| v.trim().to_string())
                        })
                        .unwrap_or_default()
                };
                let text = body(&head);
                let resp = format!(
                    "HTTP/1.1 401 Unauthorized\r\nX-RateLimit-Echo: {}\r\nRetry-After: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    header("authorization"),
                    header("cookie"),
                    text.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}
