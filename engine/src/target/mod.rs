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
//! Layout: this file (the HTTP head parser, `/stats`, `/health`, the mock `POST
//! /session` and `/oauth/token` endpoints, `handle`'s admission checks, the echo
//! `session`, the counters), [`profile`] (what a URL asks for: `Profile::parse`),
//! [`webmessaging`] (a profile with its own protocol and counters).
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
//!    `token_cap`), refusing through `refuse_429` or `ProfileStats::reject` + `respond`;
//!    or, after the 101, a session loop of its own chosen where `handle` picks
//!    `close_now`, `webmessaging::session` or `session`. *Not enforced*: every slot
//!    taken (`try_open`, `ProfileStats::try_take`, `try_token_open`) must be given back
//!    on every path out (`release_open`, `ProfileStats::give_back`,
//!    `release_token_open`); a leak shows only as a wrong `open` in `/stats`.
//! 4. **Its counters in `/stats`**: a field on [`Counters`] (`#[serde(default)]`, so
//!    older readers and reports still parse). *Compiler-enforced*: `ProfileStats::snapshot`
//!    builds `Counters` with a struct literal. *Not enforced*: [`Counters::merge`] adds
//!    field by field, and `socketswarm target --processes N` merges the helpers'
//!    [`StatsReport`]s through it (`target_helpers` in `server/src/lib.rs`), so a field
//!    left out of `merge` reads 0 there. A profile with many counters of its own keeps
//!    them apart like `webmessaging::WmCounters` (its own `merge`, kept per profile key
//!    in `Sandbox`'s `webmessaging::Registry`, attached in [`Sandbox::report`]).
//! 5. **A test that compares both sides** in `server/tests/`: a real swarm against
//!    `app.ws("/echo?…")` whose summary must equal `app.sandbox_profile("/echo?…")`
//!    (the target's `/stats` for that counter key); `server/tests/profiles.rs` has one
//!    per profile, `server/tests/webmessaging.rs` the path-selected example. If the
//!    profile imitates a limit the diagnosis should name, also a test in
//!    `server/tests/diagnosis.rs` recorded with `record_fixture` for the corpus (see
//!    `engine::diagnose`'s checklist). *Not enforced*.
//! 6. **Docs**: the list at the top of `profile.rs` (or the new module's own doc), and
//!    the README's *The sandbox target*. *Not enforced*.

pub mod profile;
mod refresh;
pub mod webmessaging;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::tls::MaybeTls;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{
    frame::coding::CloseCode, CloseFrame, Role, WebSocketConfig,
};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use profile::{DropMode, KeySource, Lockout, Profile, TokenBucket};

/// Counters of one profile (or of all of them), as served by `/stats`.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Counters {
    /// Handshakes answered with 101.
    pub accepted: u64,
    /// Handshakes refused, by HTTP status.
    pub rejected: BTreeMap<u16, u64>,
    /// Connections open now, and the most at once.
    pub open: u64,
    pub peak_open: u64,
    pub msgs_in: u64,
    pub msgs_out: u64,
    /// Sessions ended, by who and how: `server_1001`, `server_abort`, `client`,
    /// `client_abnormal` (EOF without a close frame).
    pub closed: BTreeMap<String, u64>,
    /// Upgrades left unanswered (`stall_cap`) until the client gave up.
    #[serde(default)]
    pub stalled: u64,
    /// Per bearer token (profiles with `auth=bearer`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_token: BTreeMap<String, TokenCounters>,
    /// In-band token refreshes (`{"action":"refresh","token":T}` on `auth=bearer`
    /// profiles, see `refresh.rs`): accepted, and refused (T not valid).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refreshed: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refresh_refused: u64,
    /// The guest flow's own counters (`/webmessaging` profiles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webmessaging: Option<webmessaging::WmCounters>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Handshakes of one bearer token.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct TokenCounters {
    pub accepted: u64,
    pub rejected_401: u64,
    pub rejected_429: u64,
    /// Open now with this token.
    pub open: u64,
}

/// Live counters of one profile. Hot counters are atomics; maps are behind a mutex
/// that is never held across an await.
#[derive(Debug, Default)]
struct ProfileStats {
    accepted: AtomicU64,
    open: AtomicU64,
    peak_open: AtomicU64,
    msgs_in: AtomicU64,
    msgs_out: AtomicU64,
    refreshed: AtomicU64,
    refresh_refused: AtomicU64,
    maps: Mutex<(BTreeMap<u16, u64>, BTreeMap<String, u64>)>,
    /// Per bearer token counters (bounded to 10,000 tokens).
    tokens: Mutex<BTreeMap<String, TokenCounters>>,
    /// Handshake-rate bucket, created on first use with this profile's rate.
    bucket: Mutex<Option<TokenBucket>>,
    /// Lockout window (`lockout=R`), created on first use.
    lockout: Mutex<Option<Lockout>>,
    /// Upgrades left unanswered (`stall_cap`).
    stalled: AtomicU64,
    /// Open connections per client address (`addr_cap`) and per key (`key_cap`).
    per_addr: Mutex<HashMap<std::net::IpAddr, u64>>,
    per_key: Mutex<HashMap<String, u64>>,
}

impl ProfileStats {
    fn reject(&self, status: u16) {
        if let Ok(mut m) = self.maps.lock() {
            *m.0.entry(status).or_default() += 1;
        }
    }
    fn closed(&self, how: &str) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        if let Ok(mut m) = self.maps.lock() {
            *m.1.entry(how.to_string()).or_default() += 1;
        }
    }
    fn token_event(&self, token: &str, f: impl FnOnce(&mut TokenCounters)) {
        if let Ok(mut m) = self.tokens.lock() {
            if m.len() < 10_000 || m.contains_key(token) {
                f(m.entry(token.to_string()).or_default());
            }
        }
    }
    /// Takes a handshake token from this profile's bucket (created on first use), or
    /// says how long until one is free.
    fn take_rate(&self, rate: f64, burst: Option<f64>) -> Result<(), Duration> {
        match self.bucket.lock() {
            Ok(mut b) => b
                .get_or_insert_with(|| {
                    TokenBucket::new(rate, burst.unwrap_or(rate), Instant::now())
                })
                .take(Instant::now()),
            Err(_) => Ok(()),
        }
    }
    /// Counts an attempt against the lockout window; true when it may pass.
    fn lockout_admit(&self, limit: u64, window: Duration) -> bool {
        match self.lockout.lock() {
            Ok(mut l) => l
                .get_or_insert_with(|| Lockout::new(limit, window))
                .admit(Instant::now()),
            Err(_) => true,
        }
    }
    /// Takes a slot for `key` in `map` if under `cap`.
    fn try_take<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, u64>>, key: K, cap: u64) -> bool {
        match map.lock() {
            Ok(mut m) => {
                let n = m.entry(key).or_default();
                if *n >= cap {
                    false
                } else {
                    *n += 1;
                    true
                }
            }
            Err(_) => true,
        }
    }
    fn give_back<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, u64>>, key: &K) {
        if let Ok(mut m) = map.lock() {
            if let Some(n) = m.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(key);
                }
            }
        }
    }
    /// Takes an open slot for `token` if under `cap`.
    fn try_token_open(&self, token: &str, cap: u64) -> bool {
        match self.tokens.lock() {
            Ok(mut m) => {
                let c = m.entry(token.to_string()).or_default();
                if c.open >= cap {
                    false
                } else {
                    c.open += 1;
                    true
                }
            }
            Err(_) => true,
        }
    }
    fn release_token_open(&self, token: &str) {
        if let Ok(mut m) = self.tokens.lock() {
            if let Some(c) = m.get_mut(token) {
                c.open = c.open.saturating_sub(1);
            }
        }
    }
    /// Gives back a slot taken by `try_open` whose handshake was refused later.
    fn release_open(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.accepted.fetch_sub(1, Ordering::Relaxed);
    }
    /// Takes an open slot if under `cap`.
    fn try_open(&self, cap: Option<u64>) -> bool {
        let ok = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| match cap {
                Some(c) if n >= c => None,
                _ => Some(n + 1),
            })
            .is_ok();
        if ok {
            self.accepted.fetch_add(1, Ordering::Relaxed);
            self.peak_open
                .fetch_max(self.open.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        ok
    }
    fn snapshot(&self) -> Counters {
        let (rejected, closed) = self
            .maps
            .lock()
            .map(|m| (m.0.clone(), m.1.clone()))
            .unwrap_or_default();
        Counters {
            accepted: self.accepted.load(Ordering::Relaxed),
            rejected,
            open: self.open.load(Ordering::Relaxed),
            peak_open: self.peak_open.load(Ordering::Relaxed),
            stalled: self.stalled.load(Ordering::Relaxed),
            msgs_in: self.msgs_in.load(Ordering::Relaxed),
            msgs_out: self.msgs_out.load(Ordering::Relaxed),
            refreshed: self.refreshed.load(Ordering::Relaxed),
            refresh_refused: self.refresh_refused.load(Ordering::Relaxed),
            closed,
            per_token: self.tokens.lock().map(|m| m.clone()).unwrap_or_default(),
            webmessaging: None,
        }
    }
}

/// `/stats` body: totals over all profiles, and each profile by key.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct StatsReport {
    pub total: Counters,
    pub profiles: BTreeMap<String, Counters>,
}

impl Counters {
    /// Adds another process's counters (peaks add up too: an upper bound of the whole).
    pub fn merge(&mut self, o: &Counters) {
        self.accepted += o.accepted;
        self.open += o.open;
        self.peak_open += o.peak_open;
        self.msgs_in += o.msgs_in;
        self.msgs_out += o.msgs_out;
        self.stalled += o.stalled;
        self.refreshed += o.refreshed;
        self.refresh_refused += o.refresh_refused;
        for (k, v) in &o.rejected {
            *self.rejected.entry(*k).or_default() += v;
        }
        for (k, v) in &o.closed {
            *self.closed.entry(k.clone()).or_default() += v;
        }
        for (k, t) in &o.per_token {
            let mine = self.per_token.entry(k.clone()).or_default();
            mine.accepted += t.accepted;
            mine.rejected_401 += t.rejected_401;
            mine.rejected_429 += t.rejected_429;
            mine.open += t.open;
        }
        if let Some(w) = &o.webmessaging {
            self.webmessaging
                .get_or_insert_with(Default::default)
                .merge(w);
        }
    }
}

impl StatsReport {
    /// The counters of several target processes sharing one port, as one.
    pub fn merge(&mut self, o: &StatsReport) {
        self.total.merge(&o.total);
        for (k, c) in &o.profiles {
            self.profiles.entry(k.clone()).or_default().merge(c);
        }
    }
}

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

/// A running embedded sandbox.
pub struct TargetHandle {
    /// Where it listens (useful with port 0).
    pub addr: SocketAddr,
    /// Where its `wss://` listener (self-signed certificate) listens, if enabled.
    pub tls_addr: Option<SocketAddr>,
    pub sandbox: Arc<Sandbox>,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TargetHandle {
    /// Stops accepting and ends open connections.
    pub fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TargetHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A listener with a deep accept queue (8,192, capped by `net.core.somaxconn`): a swarm
/// opening 10,000 connections a second overflows tokio's usual 1,024 and the kernel
/// drops SYNs, each costing the client a 1 s retry. Call inside a tokio runtime.
pub fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    listen_with(addr, false)
}

/// As [`listen`]; with `shared`, several processes listen on the same port
/// (`SO_REUSEPORT`) and the kernel spreads new connections over them.
pub fn listen_with(addr: SocketAddr, shared: bool) -> std::io::Result<tokio::net::TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    #[cfg(unix)]
    if shared {
        sock.set_reuseport(true)?;
    }
    #[cfg(not(unix))]
    let _ = shared;
    sock.bind(addr)?;
    sock.listen(8192)
}

/// Which of the sandbox's listeners a [`SpawnError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// The plain `ws://` listener.
    Plain,
    /// The `wss://` listener.
    Tls,
}

/// Why [`spawn_thread`] could not start the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// A listener could not bind (address in use, not on this machine, privileged port).
    #[error("could not listen on {addr}: {source}")]
    Listen {
        kind: ListenerKind,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The runtime, thread or TLS certificate could not be set up.
    #[error("could not start the sandbox target: {0}")]
    Setup(#[source] std::io::Error),
}

/// Binds `addr` (and `tls_addr`) and serves the sandbox on a dedicated thread with its
/// own runtime. Returns once both listen, or fails without panicking when one cannot
/// bind; the error names which. The runtime is built, used and dropped on that thread
/// only: dropping a runtime from async code (as `serve` calls this) panics.
pub fn spawn_thread(
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
) -> Result<TargetHandle, SpawnError> {
    let sandbox = Arc::new(Sandbox::default());
    let shutdown = CancellationToken::new();
    let (sb, sd) = (sandbox.clone(), shutdown.clone());
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name("sandbox-target".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(SpawnError::Setup(e)));
                    return;
                }
            };
            rt.block_on(async move {
                let (plain, tls) = match bind_sandbox(addr, tls_addr) {
                    Ok(bound) => bound,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let addrs = plain
                    .local_addr()
                    .map(|a| (a, tls.as_ref().map(|t| t.0)))
                    .map_err(SpawnError::Setup);
                let _ = ready_tx.send(addrs);
                if let Some((_, l, acceptor)) = tls {
                    tokio::spawn(serve_with(l, Some(acceptor), sb.clone(), sd.clone()));
                }
                serve(plain, sb, sd).await;
            });
        })
        .map_err(SpawnError::Setup)?;
    match ready_rx.recv() {
        Ok(Ok((addr, tls_addr))) => Ok(TargetHandle {
            addr,
            tls_addr,
            sandbox,
            shutdown,
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            // The thread has sent its error and is ending.
            let _ = thread.join();
            Err(e)
        }
        Err(_) => Err(SpawnError::Setup(std::io::Error::other(
            "the sandbox thread ended before it listened",
        ))),
    }
}

/// A bound `wss://` listener, with the address it got, and its TLS acceptor.
type TlsListener = (SocketAddr, TcpListener, tokio_rustls::TlsAcceptor);

/// Binds the sandbox's listeners (inside the runtime that will serve them).
fn bind_sandbox(
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
) -> Result<(TcpListener, Option<TlsListener>), SpawnError> {
    let bind = |kind: ListenerKind, a: SocketAddr| {
        listen(a).map_err(|source| SpawnError::Listen {
            kind,
            addr: a,
            source,
        })
    };
    let plain = bind(ListenerKind::Plain, addr)?;
    let tls = match tls_addr {
        Some(a) => {
            let l = bind(ListenerKind::Tls, a)?;
            let config = crate::tls::self_signed_server()
                .map_err(|e| SpawnError::Setup(std::io::Error::other(e)))?;
            let at = l.local_addr().map_err(SpawnError::Setup)?;
            Some((at, l, tokio_rustls::TlsAcceptor::from(config)))
        }
        None => None,
    };
    Ok((plain, tls))
}

/// Accepts plain connections until `shutdown` fires.
pub async fn serve(listener: TcpListener, sandbox: Arc<Sandbox>, shutdown: CancellationToken) {
    serve_with(listener, None, sandbox, shutdown).await
}

/// Accepts `wss://` connections with a fresh self-signed certificate until `shutdown`.
pub async fn serve_tls(
    listener: TcpListener,
    sandbox: Arc<Sandbox>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let acceptor = tokio_rustls::TlsAcceptor::from(crate::tls::self_signed_server()?);
    serve_with(listener, Some(acceptor), sandbox, shutdown).await;
    Ok(())
}

/// Accepts connections (TLS first, with `acceptor`) until `shutdown` fires.
async fn serve_with(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    sandbox: Arc<Sandbox>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    let (sandbox, shutdown, acceptor) = (sandbox.clone(), shutdown.clone(), acceptor.clone());
                    tokio::spawn(async move {
                        let stream = match acceptor {
                            None => MaybeTls::Plain(tcp),
                            Some(a) => match tokio::time::timeout(Duration::from_secs(10), a.accept(tcp)).await {
                                Ok(Ok(s)) => MaybeTls::Server(Box::new(s)),
                                _ => return,
                            },
                        };
                        handle(stream, sandbox, shutdown, peer.ip()).await
                    });
                }
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tracing::warn!("sandbox accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn respond(
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
struct Head {
    method: String,
    path: String,
    query: String,
    upgrade: bool,
    key: Option<String>,
    /// The bearer token of an `Authorization: Bearer ...` header.
    bearer: Option<String>,
    /// Every header, names lowercased (for `key=header:NAME`).
    headers: Vec<(String, String)>,
    content_length: usize,
    head_len: usize,
}

fn parse_head(buf: &[u8]) -> Result<Option<Head>, ()> {
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
        // A pre-handshake HTTP step target: creates a session for `need_session=1`.
        let id = sandbox
            .mint_token(Duration::from_secs(3600))
            .replacen("tok-", "sess-", 1);
        if let Ok(mut m) = sandbox.issued.lock() {
            m.insert(id.clone(), Instant::now() + Duration::from_secs(3600));
        }
        sandbox
            .profile("/session")
            .accepted
            .fetch_add(1, Ordering::Relaxed);
        let body = serde_json::json!({"session_id": id, "ok": true}).to_string();
        return respond(&mut stream, 201, "Created", "", "application/json", &body).await;
    }
    if head.path.ends_with("/oauth/token") {
        return oauth_token(&mut stream, &sandbox, &head).await;
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
            return stall(&mut stream, &stats, &shutdown).await;
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
        close_now(ws, profile.close_code).await
    } else if let Some(o) = &profile.webmessaging {
        let wm = sandbox.webmessaging.state(&pkey);
        let reply_delay = profile.reply_delay.unwrap_or(Duration::from_millis(200));
        webmessaging::session(ws, o, reply_delay, &wm, &stats, &shutdown).await
    } else {
        let refresh = profile.auth.then_some(&*sandbox);
        session(ws, &profile, &stats, &shutdown, expires, refresh).await
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

/// `stall_cap`: the upgrade is read and never answered; the connection stays until the
/// client gives up (or the sandbox stops).
async fn stall(stream: &mut MaybeTls, stats: &ProfileStats, shutdown: &CancellationToken) {
    stats.stalled.fetch_add(1, Ordering::Relaxed);
    let mut sink = [0u8; 256];
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = async {
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        } => {}
    }
}

/// `close_cap`: an upgrade accepted over the cap is closed at once with `code`.
async fn close_now(mut ws: WebSocketStream<MaybeTls>, code: u16) -> &'static str {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: "over capacity".into(),
    };
    let _ = ws.close(Some(frame)).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    "server_at_once"
}

/// Refuses a handshake with 429 + `Retry-After` (and `extra` headers), counted on the
/// profile and, with bearer auth, on the token.
async fn refuse_429(
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

/// The mock OAuth2 token endpoint: `POST /oauth/token?ttl=60s&rate=R&burst=B`. Any
/// client id and secret are accepted; tokens expire after `ttl` (default 60 s).
async fn oauth_token(stream: &mut MaybeTls, sandbox: &Sandbox, head: &Head) -> () {
    if head.method != "POST" {
        return respond(
            stream,
            405,
            "Method Not Allowed",
            "Allow: POST\r\n",
            "application/json",
            r#"{"error":"use POST"}"#,
        )
        .await;
    }
    let (profile, key) = match Profile::parse(&head.path, &head.query) {
        Ok(p) => p,
        Err(msg) => {
            return respond(
                stream,
                400,
                "Bad Request",
                "",
                "application/json",
                &serde_json::json!({"error": msg}).to_string(),
            )
            .await
        }
    };
    let stats = sandbox.profile(&key);
    if let Some(rate) = profile.rate {
        let verdict = stats.take_rate(rate, profile.burst);
        if verdict.is_err() {
            stats.reject(429);
            return respond(
                stream,
                429,
                "Too Many Requests",
                "Retry-After: 1\r\n",
                "application/json",
                r#"{"error":"slow_down"}"#,
            )
            .await;
        }
    }
    let ttl = profile.ttl.unwrap_or(Duration::from_secs(60));
    let token = sandbox.mint_token(ttl);
    stats.accepted.fetch_add(1, Ordering::Relaxed);
    let body = serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": ttl.as_secs_f64()}).to_string();
    respond(
        stream,
        200,
        "OK",
        "Cache-Control: no-store\r\n",
        "application/json",
        &body,
    )
    .await
}

/// Echo loop; returns how the session ended (a `Counters::closed` key).
async fn session(
    mut ws: WebSocketStream<MaybeTls>,
    p: &Profile,
    stats: &ProfileStats,
    shutdown: &CancellationToken,
    token_expires: Option<Instant>,
    refresh: Option<&Sandbox>,
) -> &'static str {
    let drop_at = p.drop_after.map(|d| tokio::time::Instant::now() + d);
    // A token that expires mid-connection ends it with 4401 (as token-checking gateways
    // do), unless a refresh message gave the connection a new one (`refresh.rs`).
    let mut expire_at = token_expires.map(tokio::time::Instant::from_std);
    // Only connections of a `drop_prob` profile carry a timer for the dice.
    let mut dice = match p.drop_prob {
        Some(_) => {
            let mut d = tokio::time::interval(Duration::from_secs(1));
            d.tick().await;
            Some(d)
        }
        None => None,
    };
    loop {
        let dropping = tokio::select! {
            _ = shutdown.cancelled() => Some(DropMode::Close(1001)),
            _ = async { match expire_at { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => Some(DropMode::Close(4401)),
            _ = async { match drop_at { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => Some(p.drop_mode),
            _ = async { match dice.as_mut() { Some(d) => { d.tick().await; } None => std::future::pending().await } } => {
                let hit = rand::rng().random::<f64>() < p.drop_prob.unwrap_or(0.0);
                hit.then_some(match p.drop_mode { DropMode::Abort => DropMode::Abort, DropMode::Close(_) => DropMode::Close(1011) })
            }
            m = ws.next() => match m {
                Some(Ok(Message::Close(_))) => {
                    let _ = ws.close(None).await;
                    return "client";
                }
                Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => {
                    stats.msgs_in.fetch_add(1, Ordering::Relaxed);
                    let renewal = match (refresh, msg.to_text().ok().and_then(refresh::refresh_token)) {
                        (Some(sandbox), Some(token)) => Some(sandbox.check_token(&token)),
                        _ => None,
                    };
                    if let Some(verdict) = renewal {
                        match verdict {
                            Some(exp) => {
                                stats.refreshed.fetch_add(1, Ordering::Relaxed);
                                expire_at = exp.map(tokio::time::Instant::from_std);
                            }
                            None => { stats.refresh_refused.fetch_add(1, Ordering::Relaxed); }
                        }
                        let answer = refresh::answer(verdict, Instant::now());
                        if ws.send(Message::text(answer)).await.is_err() {
                            return "client_abnormal";
                        }
                        stats.msgs_out.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if let Some(d) = p.reply_delay {
                        tokio::time::sleep(d).await;
                    }
                    if ws.send(msg).await.is_err() {
                        return "client_abnormal";
                    }
                    stats.msgs_out.fetch_add(1, Ordering::Relaxed);
                    None
                }
                Some(Ok(_)) => None,
                Some(Err(_)) | None => return "client_abnormal",
            },
        };
        match dropping {
            None => {}
            Some(DropMode::Abort) => {
                let tcp = ws.into_inner();
                // SO_LINGER 0: the close becomes a reset, as a crashed server would do.
                let _ = socket2_linger_zero(tcp.tcp());
                drop(tcp);
                return "server_abort";
            }
            Some(DropMode::Close(code)) => {
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: "sandbox drop".into(),
                };
                let _ = ws.close(Some(frame)).await;
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    while let Some(Ok(_)) = ws.next().await {}
                })
                .await;
                return match code {
                    1001 => "server_1001",
                    1011 => "server_1011",
                    4401 => "server_4401",
                    _ => "server_other",
                };
            }
        }
    }
}

#[allow(deprecated)]
fn socket2_linger_zero(tcp: &TcpStream) -> std::io::Result<()> {
    tcp.set_linger(Some(Duration::ZERO))
}
