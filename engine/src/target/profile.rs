//! Sandbox target profiles, chosen by the URL's query so one process serves them all:
//! `/echo`, `?cap=150`, `?rate=20&burst=5`, `?drop_after=30s`, `?drop_prob=0.01`,
//! `?delay=50ms`, `?reply_delay=20ms`, `?status=503`, combinations allowed. `tag=` only
//! separates counters. Parsing is strict: an unknown key is a 400 naming it.
//!
//! Besides rejecting with a status, limits show themselves in the ways real gateways
//! enforce them (issue: "right about the limit on gateways we did not write"):
//! `lockout=R` (a sliding window that counts refused attempts too), `stall_cap=N` (stop
//! answering), `queue_cap=N&queue_wait=T` (queue the upgrade, then 503), `close_cap=N`
//! (accept, then close at once), `addr_cap=N` (per client address), `key_cap=N&key=…`
//! (per header or query value) and `knee=N&knee_slope=D` (handshakes slow down past N).

use std::time::Duration;

use crate::plan::parse_duration;

/// The limiters live in `limits.rs` (a leaf `webmessaging` uses too); re-exported so
/// `target::profile::{Lockout, TokenBucket}` keeps naming them.
pub use super::limits::{Lockout, TokenBucket};

/// How the server ends connections it drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropMode {
    /// Send a close frame with this code.
    Close(u16),
    /// Reset the TCP connection without a close frame (the client sees 1006).
    Abort,
}

/// What one target URL asks the sandbox to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// At most this many open at once; the next handshake gets 429 + Retry-After.
    pub cap: Option<u64>,
    /// Handshakes per second (token bucket) and its burst.
    pub rate: Option<f64>,
    pub burst: Option<f64>,
    /// Close every connection after this long.
    pub drop_after: Option<Duration>,
    /// Each second, close a connection with this probability (code 1011).
    pub drop_prob: Option<f64>,
    pub drop_mode: DropMode,
    /// Wait before answering the handshake.
    pub delay: Option<Duration>,
    /// Wait before echoing each message.
    pub reply_delay: Option<Duration>,
    /// Refuse every handshake with this status.
    pub status: Option<u16>,
    /// Retry-After sent with 429s, in seconds.
    pub retry_after: u64,
    /// `auth=bearer`: require a token from `/oauth/token` (or `static-*`), else 401.
    pub auth: bool,
    /// At most this many open connections per token (429 beyond).
    pub token_cap: Option<u64>,
    /// `/oauth/token` only: lifetime of minted tokens.
    pub ttl: Option<Duration>,
    /// `need_session=1`: require `session=<id>` from `POST /session` (else 403).
    pub need_session: bool,
    /// The `session` query value (not part of the counter key).
    pub session: Option<String>,
    /// A lockout rate limiter: refuse (429) while more than this many handshake attempts
    /// (refused ones included) arrived within the last `lockout_window`.
    pub lockout: Option<u64>,
    pub lockout_window: Duration,
    /// Past this many open, stop answering: the upgrade hangs until the client gives up.
    pub stall_cap: Option<u64>,
    /// Past this many open, queue the upgrade up to `queue_wait` for a free slot, then 503.
    pub queue_cap: Option<u64>,
    pub queue_wait: Duration,
    /// `/oauth/token` only: accept just the client secret `SANDBOX_CLIENT_SECRET`
    /// (others get 401 `invalid_client`, RFC 6749 §5.2), as a registered client would.
    pub strict_client: bool,
    /// Past this many open, accept the upgrade and close at once with `close_code`.
    pub close_cap: Option<u64>,
    pub close_code: u16,
    /// At most this many open per client address (429 beyond).
    pub addr_cap: Option<u64>,
    /// At most this many open per value of `key` (a `header:NAME` or `query:NAME`).
    pub key_cap: Option<u64>,
    pub key: Option<KeySource>,
    /// Past this many open, each handshake waits `knee_slope` per connection over it.
    pub knee: Option<u64>,
    pub knee_slope: Duration,
    /// A `/webmessaging` path: the guest flow and its limits (`webmessaging.rs`).
    pub webmessaging: Option<super::webmessaging::Options>,
}

/// Where a per-key limit reads its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Header(String),
    Query(String),
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            cap: None,
            rate: None,
            burst: None,
            drop_after: None,
            drop_prob: None,
            drop_mode: DropMode::Close(1001),
            delay: None,
            reply_delay: None,
            status: None,
            retry_after: 1,
            auth: false,
            token_cap: None,
            ttl: None,
            need_session: false,
            session: None,
            lockout: None,
            lockout_window: Duration::from_secs(1),
            stall_cap: None,
            queue_cap: None,
            queue_wait: Duration::from_secs(2),
            strict_client: false,
            close_cap: None,
            close_code: 1013,
            addr_cap: None,
            key_cap: None,
            key: None,
            knee: None,
            knee_slope: Duration::from_millis(1),
            webmessaging: None,
        }
    }
}

fn num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("query `{key}={v}`: not a number"))
}

fn dur(key: &str, v: &str) -> Result<Duration, String> {
    parse_duration(v).map_err(|e| format!("query `{key}`: {e}"))
}

impl Profile {
    /// Parses a query string (without `?`). Returns the profile and its counter key
    /// (`path?sorted query`).
    pub fn parse(path: &str, query: &str) -> Result<(Profile, String), String> {
        let mut p = Profile::default();
        if super::webmessaging::selected(path) {
            p.webmessaging = Some(super::webmessaging::Options::default());
        }
        let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        pairs.sort();
        // A per-key limit by a query value: that parameter is the key, not a setting.
        let key_param = pairs
            .iter()
            .find(|(k, _)| k == "key")
            .and_then(|(_, v)| v.strip_prefix("query:"))
            .map(str::to_string);
        for (k, v) in &pairs {
            if Some(k) == key_param.as_ref() {
                continue;
            }
            match k.as_str() {
                "cap" => p.cap = Some(num(k, v)?),
                "rate" => {
                    let r: f64 = num(k, v)?;
                    if !(r > 0.0 && r.is_finite()) {
                        return Err(format!("query `rate={v}`: must be above 0"));
                    }
                    p.rate = Some(r)
                }
                "burst" => p.burst = Some(num(k, v)?),
                "drop_after" => p.drop_after = Some(dur(k, v)?),
                "drop_prob" => {
                    let x: f64 = num(k, v)?;
                    if !(0.0..=1.0).contains(&x) {
                        return Err(format!("query `drop_prob={v}`: must be between 0 and 1"));
                    }
                    p.drop_prob = Some(x)
                }
                "drop_code" => p.drop_mode = DropMode::Close(num(k, v)?),
                "drop_mode" => {
                    p.drop_mode = match v.as_str() {
                        "abort" => DropMode::Abort,
                        "close" => p.drop_mode,
                        _ => return Err(format!("query `drop_mode={v}`: use close or abort")),
                    }
                }
                "delay" => p.delay = Some(dur(k, v)?),
                "reply_delay" => p.reply_delay = Some(dur(k, v)?),
                "status" => {
                    let s: u16 = num(k, v)?;
                    if !(200..=599).contains(&s) || s == 101 {
                        return Err(format!("query `status={v}`: must be an HTTP status 200-599"));
                    }
                    p.status = Some(s)
                }
                "retry_after" => p.retry_after = num(k, v)?,
                "auth" => {
                    if v != "bearer" {
                        return Err(format!("query `auth={v}`: only `bearer` is supported"));
                    }
                    p.auth = true
                }
                "token_cap" => p.token_cap = Some(num(k, v)?),
                "ttl" => p.ttl = Some(dur(k, v)?),
                "need_session" => p.need_session = v == "1" || v == "true",
                "session" => p.session = Some(v.clone()),
                "lockout" => p.lockout = Some(num(k, v)?),
                "lockout_window" => p.lockout_window = dur(k, v)?,
                "stall_cap" => p.stall_cap = Some(num(k, v)?),
                "queue_cap" => p.queue_cap = Some(num(k, v)?),
                "queue_wait" => p.queue_wait = dur(k, v)?,
                "close_cap" => p.close_cap = Some(num(k, v)?),
                "strict_client" => p.strict_client = v == "1" || v == "true",
                "close_code" => {
                    let c: u16 = num(k, v)?;
                    if !(1000..=4999).contains(&c) {
                        return Err(format!("query `close_code={v}`: must be 1000-4999"));
                    }
                    p.close_code = c
                }
                "addr_cap" => p.addr_cap = Some(num(k, v)?),
                "key_cap" => p.key_cap = Some(num(k, v)?),
                "key" => {
                    p.key = Some(match v.split_once(':') {
                        Some(("header", n)) if !n.is_empty() => KeySource::Header(n.to_ascii_lowercase()),
                        Some(("query", n)) if !n.is_empty() => KeySource::Query(n.to_string()),
                        _ => return Err(format!("query `key={v}`: use header:NAME or query:NAME")),
                    })
                }
                "knee" => p.knee = Some(num(k, v)?),
                "knee_slope" => p.knee_slope = dur(k, v)?,
                "tag" => {}
                other
                    if match p.webmessaging.as_mut() {
                        Some(w) => w.set(other, v)?,
                        None => false,
                    } => {}
                other => {
                    return Err(format!(
                        "unknown query parameter `{other}`; known: cap, rate, burst, drop_after, drop_prob, drop_code, drop_mode, delay, reply_delay, status, retry_after, auth, token_cap, ttl, need_session, session, lockout, lockout_window, stall_cap, queue_cap, queue_wait, close_cap, close_code, strict_client, addr_cap, key_cap, key, knee, knee_slope, tag; on a /webmessaging path also {}",
                        super::webmessaging::KEYS
                    ))
                }
            }
        }
        if p.key_cap.is_some() != p.key.is_some() {
            return Err(
                "query `key_cap` and `key` go together (e.g. key_cap=50&key=header:X-Api-Key)"
                    .into(),
            );
        }
        // Per-connection values stay out of the key, so counters group by behaviour: the
        // session, and the value a per-key limit counts by.
        let per_key = match &p.key {
            Some(KeySource::Query(n)) => Some(n.as_str()),
            _ => None,
        };
        let sorted: Vec<String> = pairs
            .iter()
            .filter(|(k, _)| k != "session" && Some(k.as_str()) != per_key)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let key = if sorted.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{}", sorted.join("&"))
        };
        Ok((p, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_profiles_and_sorted_key() {
        let (p, key) = Profile::parse("/echo", "rate=20&cap=150&burst=5&tag=t1").unwrap();
        assert_eq!(p.cap, Some(150));
        assert_eq!(p.rate, Some(20.0));
        assert_eq!(p.burst, Some(5.0));
        assert_eq!(key, "/echo?burst=5&cap=150&rate=20&tag=t1");
        let (p, key) = Profile::parse("/echo", "").unwrap();
        assert_eq!((p, key.as_str()), (Profile::default(), "/echo"));
        let (p, _) =
            Profile::parse("/x", "drop_after=30s&drop_mode=abort&reply_delay=20ms").unwrap();
        assert_eq!(p.drop_after, Some(Duration::from_secs(30)));
        assert_eq!(p.drop_mode, DropMode::Abort);
        assert_eq!(p.reply_delay, Some(Duration::from_millis(20)));
    }

    #[test]
    fn bad_queries_name_the_key() {
        assert!(Profile::parse("/", "cpa=1").unwrap_err().contains("`cpa`"));
        assert!(Profile::parse("/", "cap=x").unwrap_err().contains("cap=x"));
        assert!(Profile::parse("/", "drop_prob=2")
            .unwrap_err()
            .contains("between 0 and 1"));
    }

    #[test]
    fn new_profiles_parse_and_keep_per_connection_values_out_of_the_key() {
        let (p, key) = Profile::parse("/e", "key_cap=5&key=query:tenant&tenant=7").unwrap();
        assert_eq!(p.key, Some(KeySource::Query("tenant".into())));
        assert_eq!(key, "/e?key=query:tenant&key_cap=5");
        let (p, _) = Profile::parse("/e", "lockout=20&stall_cap=3&queue_cap=4&queue_wait=500ms&close_cap=9&close_code=4008&addr_cap=2&knee=10&knee_slope=2ms").unwrap();
        assert_eq!(
            (
                p.lockout,
                p.stall_cap,
                p.queue_cap,
                p.close_cap,
                p.addr_cap,
                p.knee
            ),
            (Some(20), Some(3), Some(4), Some(9), Some(2), Some(10))
        );
        assert_eq!(p.close_code, 4008);
        assert_eq!(p.queue_wait, Duration::from_millis(500));
        assert!(Profile::parse("/e", "key_cap=5")
            .unwrap_err()
            .contains("go together"));
        assert!(Profile::parse("/e", "key=cookie:x&key_cap=1")
            .unwrap_err()
            .contains("header:NAME"));
        assert!(Profile::parse("/e", "close_code=7")
            .unwrap_err()
            .contains("1000-4999"));
    }
}
