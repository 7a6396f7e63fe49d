//! Sandbox target profiles, chosen by the URL's query so one process serves them all:
//! `/echo`, `?cap=150`, `?rate=20&burst=5`, `?drop_after=30s`, `?drop_prob=0.01`,
//! `?delay=50ms`, `?reply_delay=20ms`, `?status=503`, combinations allowed. `tag=` only
//! separates counters. Parsing is strict: an unknown key is a 400 naming it.

use std::time::{Duration, Instant};

use crate::plan::parse_duration;

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
        let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        pairs.sort();
        for (k, v) in &pairs {
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
                "tag" => {}
                other => {
                    return Err(format!(
                        "unknown query parameter `{other}`; known: cap, rate, burst, drop_after, drop_prob, drop_code, drop_mode, delay, reply_delay, status, retry_after, auth, token_cap, ttl, need_session, session, tag"
                    ))
                }
            }
        }
        // Per-connection values stay out of the key, so counters group by behaviour.
        let sorted: Vec<String> = pairs
            .iter()
            .filter(|(k, _)| k != "session")
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

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        let burst = burst.max(1.0);
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes a token, or says how long until one is available.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
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
    fn token_bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3.0, t0);
        assert!(b.take(t0).is_ok());
        assert!(b.take(t0).is_ok());
        assert!(b.take(t0).is_ok());
        let wait = b.take(t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6);
        assert!(b.take(t0 + Duration::from_millis(100)).is_ok());
        assert!(b.take(t0 + Duration::from_millis(100)).is_err());
    }
}
