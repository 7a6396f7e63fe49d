//! Small servers for the attacks: an HTTP listener that records what reaches it and
//! answers as told, and a raw TCP listener that keeps the bytes it got.
#![allow(dead_code)]

use std::net::SocketAddr;
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
