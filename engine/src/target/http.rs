//! The sandbox's minimal HTTP/1.1: the request head parser (`parse_head` -> `Head`,
//! one request per connection) and the responses (`respond`, and `refuse_429`, the
//! one way a handshake is refused with `429` + `Retry-After`, counted on the profile).

use tokio::io::AsyncWriteExt;

use super::counters::ProfileStats;
use crate::tls::MaybeTls;

pub(super) async fn respond(
    stream: &mut MaybeTls,
    status: u16,
    reason: &str,
    extra: &str,
    ctype: &str,
    body: &str,
) {
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\nAccess-Control-Allow-Origin: *\r\n{extra}\r\n",
        body.len()
    );
    let _ = stream.write_all(format!("{head}{body}").as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A parsed request head.
pub(super) struct Head {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) query: String,
    pub(super) upgrade: bool,
    pub(super) key: Option<String>,
    /// The bearer token of an `Authorization: Bearer ...` header.
    pub(super) bearer: Option<String>,
    /// Every header, names lowercased (for `key=header:NAME`).
    pub(super) headers: Vec<(String, String)>,
    pub(super) content_length: usize,
    pub(super) head_len: usize,
}

pub(super) fn parse_head(buf: &[u8]) -> Result<Option<Head>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => {
            let target = req.path.unwrap_or("/");
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let h = |name: &str| {
                req.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).to_string())
            };
            let auth = h("authorization").unwrap_or_default();
            Ok(Some(Head {
                method: req.method.unwrap_or("GET").to_string(),
                bearer: auth.strip_prefix("Bearer ").map(|t| t.trim().to_string()),
                content_length: h("content-length")
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0),
                path: path.to_string(),
                query: query.to_string(),
                upgrade: h("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
                headers: req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).trim().to_string(),
                        )
                    })
                    .collect(),
                key: h("sec-websocket-key"),
                head_len: n,
            }))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(()),
    }
}

/// Refuses a handshake with 429 + `Retry-After` (and `extra` headers), counted on the
/// profile and, with bearer auth, on the token.
pub(super) async fn refuse_429(
    stream: &mut MaybeTls,
    stats: &ProfileStats,
    token: Option<&str>,
    retry_after: u64,
    extra: &str,
    error: &str,
) {
    stats.reject(429);
    if let Some(t) = token {
        stats.token_event(t, |c| c.rejected_429 += 1);
    }
    let head = format!("Retry-After: {retry_after}\r\n{extra}");
    let body = serde_json::json!({ "error": error }).to_string();
    respond(
        stream,
        429,
        "Too Many Requests",
        &head,
        "application/json",
        &body,
    )
    .await
}
