//! The sandbox target: a WebSocket server that behaves like the limits we diagnose
//! (connection caps, handshake rate limits, drops, slow handshakes and replies), so
//! everything can be tested offline. It keeps its own counters, per profile, served as
//! JSON at `GET /stats`, so tests compare the swarm's view with the server's exactly.
//!
//! It is a minimal HTTP/1.1 responder (one request per connection) plus a hand-written
//! server upgrade, built on tokio + tungstenite only; it is not the product's HTTP server.
//! Embedded in `serve` it runs on its own thread ([`spawn_thread`]), so it never competes
//! with the UI's runtime; `socketswarm target` runs it alone ([`serve`]).
//!
//! Layout, one concern a module: this file (the shared [`Sandbox`] state and `handle`:
//! routing and the upgrade's admission checks, in order), [`profile`] (what a URL asks
//! for: `Profile::parse`), `counters.rs` (the `/stats` wire types [`Counters`],
//! [`StatsReport`] and their `merge`s; `ProfileStats`, one profile's live counters and
//! limit slots), `limits.rs` (the token bucket and the lockout window), `http.rs` (the
//! request head parser, `respond`, `refuse_429`), `oauth.rs` (the mock `POST
//! /oauth/token` and `POST /session` endpoints), `echo.rs` (the echo `session` loop,
//! `close_now`, `stall`), `refresh.rs` (in-band token refresh), `server.rs` (listeners,
//! [`spawn_thread`], the accept loops) and [`webmessaging`] (a profile with its own
//! protocol and counters). Dependencies run one way: `counters` and `limits` are
//! leaves; the profile modules use them, never the reverse.
//!
//! # Adding a sandbox profile (a newcomer's checklist)
//!
//! A profile is chosen per connection by the upgrade's URL: query keys on any path
//! (`/echo?cap=150`), or a path of its own whose keys only it knows
//! (`/webmessaging?session_cap=150`, see [`webmessaging`] as the worked example).
//! [`profile::Profile::parse`] returns the profile and its counter key (`path?sorted
//! query`), so one process serves every profile and counts each apart.
//!
//! 1. **Its settings**: a field on [`profile::Profile`]. *Compiler-enforced*: `impl
//!    Default for Profile` is a struct literal, so it fails to build until the field has
//!    its default there. A profile with its own path instead gets a module like
//!    `webmessaging.rs`: `selected(path)`, an `Options` with `Options::set(key, value)`
//!    returning `Ok(false)` for keys not its own, and `KEYS` for the error message; then
//!    one `Option<…::Options>` field on `Profile`, set in `Profile::parse` when
//!    `selected(path)` holds.
//! 2. **Its query keys**: an arm in `Profile::parse`'s `match k.as_str()`, and the key
//!    in that function's "unknown query parameter … known: …" list. *Not enforced*: a
//!    forgotten arm compiles and the key is refused at run time (400 naming it);
//!    `Profile::parse`'s unit tests (`mod tests` in `profile.rs`) are where to pin it.
//!    Per-connection values (like `session`, or the value a `key=query:NAME` limit
//!    counts by) must be filtered out of the counter key there, or every connection
//!    gets counters of its own.
//! 3. **Its behaviour**: a check in `handle`, in order with the others (delay,
//!    `need_session`, `auth`, `status`, `lockout`, `rate`, `knee`, the open-count limits
//!    `stall_cap`/`queue_cap`/`close_cap`/`cap`, then `addr_cap`, `key_cap`,
//!    `token_cap`), refusing through `refuse_429` (`http.rs`) or through
//!    `ProfileStats::reject` and `respond`; or, after the 101, a session loop of its
//!    own chosen where `handle` picks `echo::close_now`, `webmessaging::session` or
//!    `echo::session` (`echo.rs`).
//!    *Not enforced*: every slot taken (`try_open`, `ProfileStats::try_take`,
//!    `try_token_open`, in `counters.rs`) must be given back on every path out
//!    (`release_open`, `ProfileStats::give_back`, `release_token_open`); a leak shows
//!    only as a wrong `open` in `/stats`.
//! 4. **Its counters in `/stats`**: a field on [`Counters`] in `counters.rs`
//!    (`#[serde(default)]`, so older readers and reports still parse).
//!    *Compiler-enforced*: `ProfileStats::snapshot` (same file) builds `Counters` with a
//!    struct literal. *Not enforced*: [`Counters::merge`] adds
//!    field by field, and `socketswarm target --processes N` merges the helpers'
//!    [`StatsReport`]s through it (`target_helpers` in `server/src/lib.rs`), so a field
//!    left out of `merge` reads 0 there. A profile with many counters of its own keeps
//!    them in a struct of their own like `WmCounters` (in `counters.rs` too, beside the
//!    `Counters` field that carries it, with its own `merge`; re-exported from its
//!    profile's module), its live state kept per profile key like `Sandbox`'s
//!    `webmessaging::Registry` and attached in [`Sandbox::report`].
//! 5. **A test that compares both sides** in `server/tests/`: a real swarm against
//!    `app.ws("/echo?…")` whose summary must equal `app.sandbox_profile("/echo?…")`
//!    (the target's `/stats` for that counter key); `server/tests/profiles.rs` has one
//!    per profile, `server/tests/webmessaging.rs` the path-selected example. If the
//!    profile imitates a limit the diagnosis should name, also a test in
//!    `server/tests/diagnosis.rs` recorded with `record_fixture` for the corpus (see
//!    `engine::diagnose`'s checklist). *Not enforced*.
//! 6. **Docs**: the list at the top of `profile.rs` (or the new module's own doc), and
//!    the README's *The sandbox target*. *Not enforced*.

mod counters;
mod echo;
mod http;
mod limits;
mod oauth;
pub mod profile;
mod refresh;
mod server;
pub mod webmessaging;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use crate::tls::MaybeTls;
use counters::ProfileStats;
use http::{parse_head, refuse_429, respond};
use profile::{KeySource, Profile};

pub use counters::{Counters, StatsReport, TokenCounters};
pub use server::{
    listen, listen_with, serve, serve_tls, spawn_thread, ListenerKind, SpawnError, TargetHandle,
};

/// Shared state of one sandbox server.
#[derive(Debug, Default)]
pub struct Sandbox {
    profiles: Mutex<HashMap<String, Arc<ProfileStats>>>,
    /// Tokens minted by the mock OAuth endpoint, with their expiry.
    issued: Mutex<HashMap<String, Instant>>,
    minted: AtomicU64,
    /// Web-messaging profiles' sessions and counters, by profile key.
    webmessaging: webmessaging::Registry,
}

impl Sandbox {
    /// Mints a token valid for `ttl`.
    fn mint_token(&self, ttl: Duration) -> String {
        let n = self.minted.fetch_add(1, Ordering::Relaxed) + 1;
        let token = format!("tok-{n}-{:08x}", rand::rng().random::<u32>());
        if let Ok(mut m) = self.issued.lock() {
            let now = Instant::now();
            m.retain(|_, exp| *exp > now);
            m.insert(token.clone(), now + ttl);
        }
        token
    }

    /// `Some(expiry)` for a valid token (`Some(None)`: `static-*`, never expires).
    fn check_token(&self, token: &str) -> Option<Option<Instant>> {
        if token.starts_with("static-") && token.len() > 7 {
            return Some(None);
        }
        let exp = *self.issued.lock().ok()?.get(token)?;
        (exp > Instant::now()).then_some(Some(exp))
    }

    fn profile(&self, key: &str) -> Arc<ProfileStats> {
        let mut map = match self.profiles.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(key.to_string()).or_default().clone()
    }

    /// Current counters.
    pub fn report(&self) -> StatsReport {
        let profiles: Vec<(String, Arc<ProfileStats>)> = match self.profiles.lock() {
            Ok(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Err(_) => Vec::new(),
        };
        let mut out = StatsReport::default();
        for (k, p) in profiles {
            let mut c = p.snapshot();
            c.webmessaging = self.webmessaging.counters(&k);
            out.total.merge(&c);
            out.profiles.insert(k, c);
        }
        out
    }
}

/// Routes one connection (`/stats`, `/health`, the mock endpoints, else a WebSocket
/// upgrade) and runs the upgrade's admission checks in order before its session.
async fn handle(
    mut stream: MaybeTls,
    sandbox: Arc<Sandbox>,
    shutdown: CancellationToken,
    peer: std::net::IpAddr,
) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head = loop {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await;
        let n = match read {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        match parse_head(&buf) {
            Ok(Some(h)) => break h,
            Ok(None) if buf.len() < 16 * 1024 => continue,
            _ => {
                return respond(
                    &mut stream,
                    400,
                    "Bad Request",
                    "",
                    "text/plain",
                    "malformed request",
                )
                .await
            }
        }
    };
    if head.path == "/stats" {
        let body = serde_json::to_string(&sandbox.report()).unwrap_or_default();
        return respond(&mut stream, 200, "OK", "", "application/json", &body).await;
    }
    if head.path == "/health" {
        return respond(&mut stream, 200, "OK", "", "text/plain", "ok").await;
    }
    if head.method != "GET" {
        // Read the request body before answering, so closing never resets the reply away.
        let want = head.head_len + head.content_length.min(64 * 1024);
        while buf.len() < want {
            match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
    }
    if head.path.ends_with("/session") && head.method == "POST" {
        return oauth::create_session(&mut stream, &sandbox).await;
    }
    if head.path.ends_with("/oauth/token") {
        let body = buf.get(head.head_len..).unwrap_or_default();
        return oauth::oauth_token(&mut stream, &sandbox, &head, body).await;
    }
    let (Some(key), true) = (head.key.clone(), head.upgrade) else {
        return respond(
            &mut stream,
            400,
            "Bad Request",
            "",
            "text/plain",
            "expected a WebSocket upgrade (or GET /stats)",
        )
        .await;
    };
    let (profile, pkey) = match Profile::parse(&head.path, &head.query) {
        Ok(p) => p,
        Err(msg) => {
            sandbox.profile("invalid").reject(400);
            return respond(&mut stream, 400, "Bad Request", "", "text/plain", &msg).await;
        }
    };
    let stats = sandbox.profile(&pkey);
    if let Some(d) = profile.delay {
        tokio::time::sleep(d).await;
    }
    if profile.need_session
        && profile
            .session
            .as_deref()
            .and_then(|s| sandbox.check_token(s))
            .is_none()
    {
        stats.reject(403);
        return respond(
            &mut stream,
            403,
            "Forbidden",
            "",
            "application/json",
            r#"{"error":"unknown session"}"#,
        )
        .await;
    }
    // Bearer auth (`auth=bearer`): tokens minted by /oauth/token, or `static-*`.
    let mut token: Option<(String, Option<Instant>)> = None;
    if profile.auth {
        match head
            .bearer
            .as_deref()
            .and_then(|t| sandbox.check_token(t).map(|exp| (t.to_string(), exp)))
        {
            Some(t) => token = Some(t),
            None => {
                stats.reject(401);
                stats.token_event(head.bearer.as_deref().unwrap_or("<none>"), |c| {
                    c.rejected_401 += 1
                });
                let extra = "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n";
                return respond(
                    &mut stream,
                    401,
                    "Unauthorized",
                    extra,
                    "application/json",
                    r#"{"error":"invalid or expired token"}"#,
                )
                .await;
            }
        }
    }
    if let Some(status) = profile.status {
        stats.reject(status);
        return respond(
            &mut stream,
            status,
            "Refused",
            "",
            "text/plain",
            "refused by profile",
        )
        .await;
    }
    let tok = token.as_ref().map(|(t, _)| t.as_str());
    if let Some(limit) = profile.lockout {
        if !stats.lockout_admit(limit, profile.lockout_window) {
            let limits = format!("X-RateLimit-Limit: {limit}\r\nX-RateLimit-Remaining: 0\r\n");
            return refuse_429(
                &mut stream,
                &stats,
                tok,
                profile.lockout_window.as_secs().max(1),
                &limits,
                "request rate limit exceeded",
            )
            .await;
        }
    }
    if let Some(rate) = profile.rate {
        if let Err(wait) = stats.take_rate(rate, profile.burst) {
            let ra = wait.as_secs_f64().ceil().max(1.0) as u64;
            let limits = format!("X-RateLimit-Limit: {rate}\r\nX-RateLimit-Remaining: 0\r\n");
            return refuse_429(
                &mut stream,
                &stats,
                tok,
                ra,
                &limits,
                "handshake rate limit exceeded",
            )
            .await;
        }
    }
    if let Some(knee) = profile.knee {
        let over = stats.open.load(Ordering::Relaxed).saturating_sub(knee);
        if over > 0 {
            tokio::time::sleep(profile.knee_slope.saturating_mul(over.min(100_000) as u32)).await;
        }
    }
    // The open-count limit, enforced the way the profile says.
    let mut close_at_once = false;
    if let Some(n) = profile.stall_cap {
        if !stats.try_open(Some(n)) {
            return echo::stall(&mut stream, &stats, &shutdown).await;
        }
    } else if let Some(n) = profile.queue_cap {
        let deadline = tokio::time::Instant::now() + profile.queue_wait;
        while !stats.try_open(Some(n)) {
            if tokio::time::Instant::now() >= deadline || shutdown.is_cancelled() {
                stats.reject(503);
                return respond(
                    &mut stream,
                    503,
                    "Service Unavailable",
                    "",
                    "text/plain",
                    "no server available: queue timeout",
                )
                .await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    } else if let Some(n) = profile.close_cap {
        if !stats.try_open(Some(n)) {
            // Over the cap: accepted, then closed at once (counted open meanwhile).
            stats.try_open(None);
            close_at_once = true;
        }
    } else if !stats.try_open(profile.cap) {
        return refuse_429(
            &mut stream,
            &stats,
            tok,
            profile.retry_after,
            "",
            "too many concurrent connections",
        )
        .await;
    }
    if let Some(cap) = profile.addr_cap {
        if !ProfileStats::try_take(&stats.per_addr, peer, cap) {
            stats.release_open();
            return refuse_429(
                &mut stream,
                &stats,
                tok,
                profile.retry_after,
                "",
                "too many connections from this address",
            )
            .await;
        }
    }
    let key_value = profile.key.as_ref().map(|k| match k {
        KeySource::Header(name) => head
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
        KeySource::Query(name) => url::form_urlencoded::parse(head.query.as_bytes())
            .find(|(k, _)| k == name.as_str())
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default(),
    });
    if let (Some(cap), Some(k)) = (profile.key_cap, &key_value) {
        if !ProfileStats::try_take(&stats.per_key, k.clone(), cap) {
            stats.release_open();
            if profile.addr_cap.is_some() {
                ProfileStats::give_back(&stats.per_addr, &peer);
            }
            return refuse_429(
                &mut stream,
                &stats,
                tok,
                profile.retry_after,
                "",
                "too many connections for this key",
            )
            .await;
        }
    }
    if let (Some(cap), Some(t)) = (profile.token_cap, tok) {
        if !stats.try_token_open(t, cap) {
            stats.release_open();
            if profile.addr_cap.is_some() {
                ProfileStats::give_back(&stats.per_addr, &peer);
            }
            if let Some(k) = &key_value {
                ProfileStats::give_back(&stats.per_key, k);
            }
            return refuse_429(
                &mut stream,
                &stats,
                tok,
                profile.retry_after,
                "",
                "too many connections for this token",
            )
            .await;
        }
    }
    if let Some((t, _)) = &token {
        stats.token_event(t, |c| c.accepted += 1);
    }
    let accept = derive_accept_key(key.as_bytes());
    let resp = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
    if stream.write_all(resp.as_bytes()).await.is_err() {
        stats.closed("client_abnormal");
        return;
    }
    buf.drain(..head.head_len);
    let cfg = WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0);
    let ws = WebSocketStream::from_partially_read(stream, buf, Role::Server, Some(cfg)).await;
    let expires = token.as_ref().and_then(|(_, e)| *e);
    let how = if close_at_once {
        echo::close_now(ws, profile.close_code).await
    } else if let Some(o) = &profile.webmessaging {
        let wm = sandbox.webmessaging.state(&pkey);
        let reply_delay = profile.reply_delay.unwrap_or(Duration::from_millis(200));
        webmessaging::session(ws, o, reply_delay, &wm, &stats, &shutdown).await
    } else {
        let refresh = profile.auth.then_some(&*sandbox);
        echo::session(ws, &profile, &stats, &shutdown, expires, refresh).await
    };
    stats.closed(how);
    if profile.addr_cap.is_some() {
        ProfileStats::give_back(&stats.per_addr, &peer);
    }
    if let (Some(_), Some(k)) = (profile.key_cap, &key_value) {
        ProfileStats::give_back(&stats.per_key, k);
    }
    if let (Some(_), Some((t, _))) = (profile.token_cap, &token) {
        stats.release_token_open(t);
    }
}
