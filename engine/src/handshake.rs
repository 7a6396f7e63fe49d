//! A hand-written client upgrade (RFC 6455 §4.1).
//!
//! Why not the stock client handshake: it keeps a 4 KiB buffer per connection (we keep
//! ~1 KiB), it hides the phases we time, and on a non-101 answer we want the evidence
//! (`Retry-After`, rate-limit headers, a body sample). Bytes read past the 101 are handed
//! to `WebSocketStream::from_partially_read`.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::{client::generate_key, derive_accept_key};

/// Largest response head we accept.
const MAX_HEAD: usize = 16 * 1024;
/// Longest body sample kept from a rejected handshake.
const MAX_BODY_SAMPLE: usize = 256;

/// What a rejected handshake told us.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rejection {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<String>,
    pub(crate) rate_limit_headers: Vec<(String, String)>,
    pub(crate) body: String,
    /// Upgrade request sent -> the refusing status line (a queueing target makes it long).
    pub(crate) waited: Duration,
}

/// How an upgrade attempt ended, when it did not succeed.
#[derive(Debug)]
pub(crate) enum UpgradeError {
    Rejected(Box<Rejection>),
    Protocol,
    Io(std::io::Error),
}

impl From<std::io::Error> for UpgradeError {
    fn from(e: std::io::Error) -> Self {
        UpgradeError::Io(e)
    }
}

/// Builds the request head for `resource` on `host:port`.
pub(crate) fn request_head(
    host_header: &str,
    resource: &str,
    key: &str,
    extra: &[(String, String)],
    protocols: &[String],
) -> String {
    let mut req = format!(
        "GET {resource} HTTP/1.1\r\nHost: {host_header}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if !protocols.is_empty() {
        req.push_str("Sec-WebSocket-Protocol: ");
        req.push_str(&protocols.join(", "));
        req.push_str("\r\n");
    }
    for (k, v) in extra {
        req.push_str(k);
        req.push_str(": ");
        req.push_str(v);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req
}

/// Sends the upgrade and reads the answer. On success returns the bytes read past the
/// response head and the time the head took to arrive.
pub(crate) async fn upgrade<S>(
    stream: &mut S,
    host_header: &str,
    resource: &str,
    extra: &[(String, String)],
    protocols: &[String],
) -> Result<(Vec<u8>, Duration), UpgradeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let key = generate_key();
    let req = request_head(host_header, resource, &key, extra, protocols);
    let sent = Instant::now();
    stream.write_all(req.as_bytes()).await?;
    // Read straight into `buf` (no stack chunk: a 1 KiB array would live in every
    // connecting VU's future, and its freed hole fragments the heap of held ones).
    let mut buf: Vec<u8> = Vec::with_capacity(512);
    loop {
        if buf.capacity() - buf.len() < 256 {
            buf.reserve(512);
        }
        let n = stream.read_buf(&mut buf).await?;
        if n == 0 {
            return Err(UpgradeError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        let mut headers = [httparse::EMPTY_HEADER; 48];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let took = sent.elapsed();
                let status = resp.code.unwrap_or(0);
                if status != 101 {
                    let mut r = rejection(status, resp.headers, &buf[head_len..]);
                    r.waited = took;
                    return Err(UpgradeError::Rejected(Box::new(r)));
                }
                let expected = derive_accept_key(key.as_bytes());
                let header = |name: &str| {
                    resp.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
                };
                let accept_ok =
                    header("Sec-WebSocket-Accept").as_deref() == Some(expected.as_str());
                let upgrade_ok =
                    header("Upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
                if !accept_ok || !upgrade_ok {
                    return Err(UpgradeError::Protocol);
                }
                buf.drain(..head_len);
                buf.shrink_to_fit();
                return Ok((buf, took));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
            _ => return Err(UpgradeError::Protocol),
        }
    }
}

fn rejection(status: u16, headers: &[httparse::Header<'_>], body: &[u8]) -> Rejection {
    let mut r = Rejection {
        status,
        ..Default::default()
    };
    for h in headers {
        let name = h.name.to_ascii_lowercase();
        let value = String::from_utf8_lossy(h.value).trim().to_string();
        if name == "retry-after" {
            r.retry_after = Some(value);
        } else if name.starts_with("x-ratelimit") || name.starts_with("ratelimit") {
            r.rate_limit_headers.push((name, value));
        }
    }
    let end = body.len().min(MAX_BODY_SAMPLE);
    r.body = String::from_utf8_lossy(&body[..end]).into_owned();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_head_has_required_headers() {
        let h = request_head(
            "h:1",
            "/x?y=1",
            "KEY",
            &[("X-A".into(), "b".into())],
            &["chat".into()],
        );
        assert!(h.starts_with("GET /x?y=1 HTTP/1.1\r\nHost: h:1\r\n"));
        assert!(h.contains("Sec-WebSocket-Key: KEY\r\n"));
        assert!(h.contains("Sec-WebSocket-Protocol: chat\r\n"));
        assert!(h.ends_with("X-A: b\r\n\r\n"));
    }

    #[tokio::test]
    async fn rejected_upgrade_keeps_evidence() {
        let (mut client, mut server) = tokio::io::duplex(4096);
        let srv = tokio::spawn(async move {
            let mut b = [0u8; 1024];
            let _ = server.read(&mut b).await.unwrap();
            server
                .write_all(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nX-RateLimit-Limit: 20\r\nContent-Length: 9\r\n\r\ntoo many!")
                .await
                .unwrap();
        });
        let err = upgrade(&mut client, "h", "/", &[], &[]).await.unwrap_err();
        srv.await.unwrap();
        match err {
            UpgradeError::Rejected(r) => {
                assert_eq!(r.status, 429);
                assert_eq!(r.retry_after.as_deref(), Some("3"));
                assert_eq!(
                    r.rate_limit_headers,
                    vec![("x-ratelimit-limit".to_string(), "20".to_string())]
                );
                assert_eq!(r.body, "too many!");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
