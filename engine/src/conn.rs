//! One virtual user's life: connect (phases timed), run the script, hold, close — and
//! reconnect by policy. Every attempt ends in exactly one outcome, recorded as data:
//! `attempted == opened + failed` and, once all VUs finished, `opened == closed`.
//!
//! Layout: this file (the compiled script `Op`, the run's `Shared` view, `Ctx`,
//! `run_vu` and the backoff), `conn/connect.rs` (one attempt: token, HTTP steps, TCP,
//! TLS, upgrade), `conn/session.rs` (an open session's steps and replies),
//! `conn/socket.rs` (send, normal close, error kinds, `Timer`: the leaf `session.rs`
//! and `rotation.rs` share), `conn/rotation.rs`, `conn/matcher.rs`, `conn/stop.rs`.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tokio::net::TcpSocket;
use tokio::time::{sleep_until, timeout_at};
use tokio_tungstenite::tungstenite::protocol::{
    frame::coding::CloseCode, CloseFrame, Role, WebSocketConfig,
};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::aggregate::Gauges;
use crate::handshake::{upgrade, Rejection, UpgradeError};
use crate::outcome::{CloseKind, FailClass, FailKind};
use crate::plan::Reconnect;
use crate::report::{AT_ONCE_MS, MAX_IDENTITIES};
use crate::stats::{IdentityKey, Metric, Partial, Recorder};
use crate::template::{Template, Vars};
use crate::tls::MaybeTls;
use std::sync::atomic::Ordering;

/// A compiled script instruction (repeat blocks flattened into `LoopStart..LoopEnd`).
pub(crate) enum Op {
    Send {
        tpl: Template,
        binary: bool,
    },
    Expect {
        matcher: Matcher,
        timeout: Duration,
        captures: Vec<CaptureRule>,
    },
    Wait {
        base: Duration,
        jitter: Duration,
    },
    Ping {
        timeout: Duration,
    },
    Close,
    LoopStart {
        every: Duration,
        times: Option<u32>,
    },
    LoopEnd,
}

/// Everything VUs of one run share (read-only).
pub(crate) struct Shared {
    /// `Host` header value.
    pub(crate) host_header: String,
    /// Path and query, templated.
    pub(crate) resource: Template,
    /// Resolved target addresses (resolved once at start; DNS is not per connection).
    pub(crate) addrs: Vec<SocketAddr>,
    /// Local addresses to bind, round-robin over this agent's connections.
    pub(crate) sources: Vec<IpAddr>,
    /// This agent's part of the run: its connections' `{{vu}}` are global slots, and
    /// round robins (sources, target addresses) go by its own ordinal of them.
    pub(crate) share: crate::schedule::Share,
    pub(crate) headers: Vec<(String, Template)>,
    pub(crate) protocols: Vec<String>,
    pub(crate) connect_timeout: Duration,
    pub(crate) ops: Vec<Op>,
    /// Per-session variables, rendered once per attempt (after its token).
    pub(crate) vars: Vec<(String, Template)>,
    /// Responders, offered every received message in order.
    pub(crate) responders: Vec<AutoReply>,
    pub(crate) reconnect: Reconnect,
    pub(crate) flush_every: Duration,
    /// Partials channel to the aggregator; it closes when the last VU drops its `Shared`.
    pub(crate) tx: tokio::sync::mpsc::Sender<Partial>,
    /// HTTP steps before each handshake, and the client that makes them (and is shared).
    pub(crate) http_steps: Vec<HttpCall>,
    pub(crate) http: Option<reqwest::Client>,
    /// The hosts HTTP requests may go to, pinned to allowed addresses.
    pub(crate) pinned: crate::outbound::Pinned,
    /// Secret values the run knows, scrubbed from evidence a target sends back (a body
    /// may echo a header or a query value).
    pub(crate) secrets: crate::secrets::Secrets,
    /// Tokens, when the plan has `auth` (its header is in `headers`).
    pub(crate) tokens: Option<crate::tokens::TokenPool>,
    /// What a live connection does when its token is due for refresh (`auth.rotation`).
    pub(crate) rotation: Option<Rotor>,
    /// For `wss://`: the connector and the server name to present and verify.
    pub(crate) tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    /// Gauges shared with the aggregator (VUs count their attempts in flight).
    pub(crate) gauges: Arc<Gauges>,
    /// The process's budget for bytes held for targets (messages, answers).
    pub(crate) budget: &'static crate::budget::Budget,
    /// The identity dimensions the plan varies, in the order of the aggregator's
    /// `Dimension`s.
    pub(crate) identities: Vec<IdentitySource>,
}

/// How a VU finds its identity along one dimension.
pub(crate) enum IdentitySource {
    /// Its token slot.
    Token,
    /// Its source address (round-robin by VU, as `connect` binds).
    Source,
    /// A header or query value that depends on the connection only (`{{vu % 3}}`):
    /// rendered once per VU, numbered in order of first use (values never leave here).
    Rendered(
        Template,
        std::sync::Mutex<std::collections::HashMap<String, u32>>,
    ),
}

/// The VU's identity along each dimension (bounded: identities past `MAX_IDENTITIES`
/// are not counted).
fn identities_of(sh: &Shared, vu: u64) -> Vec<IdentityKey> {
    let mut out = Vec::new();
    for (d, src) in sh.identities.iter().enumerate() {
        let id = match src {
            IdentitySource::Token => sh.tokens.as_ref().map(|t| t.slot_of(vu)),
            IdentitySource::Source => (!sh.sources.is_empty())
                .then(|| (sh.share.ordinal(vu) % sh.sources.len() as u64) as u32),
            IdentitySource::Rendered(tpl, seen) => {
                let value = render(tpl, vu, 1, &Ctx::default());
                seen.lock().ok().and_then(|mut m| {
                    let n = m.len() as u32;
                    match m.get(&value) {
                        Some(i) => Some(*i),
                        None if (n as usize) < MAX_IDENTITIES => {
                            m.insert(value, n);
                            Some(n)
                        }
                        None => None,
                    }
                })
            }
        };
        if let Some(id) = id {
            out.push((d as u16, id));
        }
    }
    out
}

/// Largest frame and message the engine accepts from a target. A longer one ends the
/// session as `protocol` as soon as its header arrives (nothing of it is buffered), so
/// a broken or hostile target cannot make thousands of VUs hold huge messages.
pub(crate) const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// How long a closing VU waits for its close frame to go out and the target's reply.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

fn ws_config() -> WebSocketConfig {
    // Buffers sized for mostly idle sockets: a 512-byte read buffer (bigger messages just
    // take more reads) and no write buffering.
    WebSocketConfig::default()
        .read_buffer_size(512)
        .write_buffer_size(0)
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
        .max_message_size(Some(MAX_MESSAGE_BYTES))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A session's values: its token, its variables (`vars`, then captures from HTTP steps
/// and messages) and a responder's reply waiting to go out. Lives in the boxed `Conn`,
/// so it costs the VU's future nothing.
#[derive(Debug, Default)]
pub(crate) struct Ctx {
    pub(crate) token: String,
    pub(crate) vars: Vec<(String, String)>,
    /// A responder's reply and when the message it answers arrived (sent right after
    /// the message is handled).
    pub(crate) reply: Option<(String, Instant)>,
    /// When its token is due for rotation, and a re-authentication awaiting its reply.
    pub(crate) rotation: rotation::RotationState,
}

impl Ctx {
    /// Sets a variable; a later value replaces an earlier one (a capture in a repeat
    /// block does not grow the session's state).
    pub(crate) fn set(&mut self, name: &str, value: String) {
        match self.vars.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = value,
            None => self.vars.push((name.to_string(), value)),
        }
    }

    #[cfg(test)]
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn render(t: &Template, vu: u64, attempt: u32, ctx: &Ctx) -> String {
    let uuid = || uuid::Uuid::new_v4().to_string();
    t.render(&Vars {
        vu,
        attempt,
        uuid: &uuid,
        now_ms: now_ms(),
        token: &ctx.token,
        vars: &ctx.vars,
    })
}

/// A failed TLS handshake: certificate or protocol trouble is `tls`, the rest is I/O.
fn tls_kind(e: &std::io::Error) -> FailKind {
    let is_tls = e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
        || e.kind() == std::io::ErrorKind::InvalidData;
    if is_tls {
        FailKind::Tls
    } else {
        io_kind(e)
    }
}

/// Maps an I/O error to the outcome it stands for.
pub(crate) fn io_kind(e: &std::io::Error) -> FailKind {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => FailKind::Refused,
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
            FailKind::Reset
        }
        K::TimedOut => FailKind::Timeout,
        K::AddrNotAvailable | K::AddrInUse => FailKind::ClientLimit,
        _ => match e.raw_os_error() {
            // EMFILE, ENFILE: out of file descriptors on our side.
            Some(23) | Some(24) => FailKind::ClientLimit,
            _ => FailKind::Io,
        },
    }
}

/// A connection: its socket's reads counted against the process's budget (the session
/// settles after each message it handled).
type Ws = WebSocketStream<crate::budget::Metered<MaybeTls>>;

/// An open connection and what its attempt gathered. Boxed where it is returned, so the
/// VU's task future holds a pointer to it rather than a copy of the stream in every
/// state that could hold one (a future is as big as its largest await state, and moved
/// values keep their slots).
pub(crate) struct Conn {
    ws: Ws,
    ctx: Ctx,
    /// When the session started.
    opened: Instant,
}

/// A failed attempt: its kind and, for a refused handshake, the evidence (boxed: the
/// attempt's result is small either way).
type Failed = (FailKind, Option<Box<Rejection>>);

/// Runs one VU until its script ends, it gives up, or `cancel` is stopped.
///
/// Not an `async fn`: rustc keeps an async fn's arguments twice in its future (as
/// captured values and as the locals they are moved to), and this future is the bulk of
/// every held connection's task.
#[allow(clippy::manual_async_fn)]
pub(crate) fn run_vu(
    sh: Arc<Shared>,
    vu: u64,
    scheduled: Instant,
    cancel: Stop,
) -> impl std::future::Future<Output = ()> + Send {
    async move {
        let mut rec = Recorder::new(sh.tx.clone(), sh.flush_every);
        let mut attempt = 0u32;
        let mut streak = 0u32;
        let mut sched = scheduled;
        if cancel.is_guest() {
            rec.arrived();
        }
        // A boxed slice: 8 bytes less than a `Vec` in every VU's future.
        let ids = identities_of(&sh, vu).into_boxed_slice();
        loop {
            attempt += 1;
            streak += 1;
            rec.attempt();
            sh.gauges.connecting.fetch_add(1, Ordering::Relaxed);
            // Boxed: the handshake's buffers live on the heap only while connecting, so an
            // idle VU's task stays small (a future is as big as its largest await state).
            let res = tokio::select! {
                r = Box::pin(token_and_connect(&sh, vu, attempt, sched, cancel.take_rotating(), &mut rec)) => r,
                _ = cancel.stopped() => Err((FailKind::Aborted, None)),
            };
            sh.gauges.connecting.fetch_sub(1, Ordering::Relaxed);
            for key in &ids {
                rec.identity(*key, |t| {
                    t.attempted += 1;
                    match &res {
                        Ok(_) => t.opened += 1,
                        Err((k, _)) if k.is_refusal() => t.rejected += 1,
                        Err((k, _)) if matches!(k.class(), FailClass::AuthRefused(_)) => {
                            t.auth_failed += 1
                        }
                        Err(_) => t.other_failed += 1,
                    }
                });
            }
            let retry_after = match res {
                Ok(mut conn) => {
                    rec.opened();
                    // Report the open now (connects are bounded by the connect rate), so live
                    // counts and per-identity levels are not a flush interval behind.
                    rec.try_flush();
                    streak = 0;
                    conn.opened = Instant::now();
                    let Conn { ws, ctx, .. } = &mut *conn;
                    let end = session(ws, &sh, &mut rec, &cancel, vu, attempt, ctx).await;
                    let lived = conn.opened.elapsed();
                    drop(conn);
                    rec.sample(Metric::Session, lived);
                    rec.closed(
                        end,
                        end.is_drop() && lived < Duration::from_millis(AT_ONCE_MS),
                    );
                    for key in &ids {
                        rec.identity(*key, |t| t.closed += 1);
                    }
                    if end == CloseKind::Rotated && !cancel.is_stopped() {
                        // Reconnect with the new token at once: not a retry.
                        cancel.set_rotating();
                    } else if !end.is_drop() {
                        break;
                    }
                    None
                }
                Err((kind, rejection)) => {
                    let ra = rejection
                        .as_ref()
                        .and_then(|r| r.retry_after.as_deref())
                        .and_then(parse_retry_after);
                    rec.failed(kind, rejection.map(|r| *r));
                    if kind == FailKind::Aborted {
                        break;
                    }
                    ra
                }
            };
            // Report the session's end or the failed attempt now, as the open above: the VU
            // may sleep a backoff next, and a drop reported late while its replacement's open
            // (another VU's) is reported at once makes the open count run ahead of the
            // target's. One flush per attempt, like the open's.
            rec.try_flush();
            let delay = if cancel.is_rotating() {
                Some(Duration::ZERO)
            } else {
                next_delay(&sh.reconnect, streak.max(1), retry_after)
            };
            let Some(delay) = delay else {
                // Out of attempts: a reconnecting client that stopped trying is counted
                // (without reconnect, ending here is the plan, not giving up).
                if sh.reconnect != Reconnect::Never {
                    rec.gave_up();
                }
                break;
            };
            let wake = Instant::now() + delay;
            tokio::select! {
                _ = sleep_until(wake.into()) => {}
                _ = cancel.stopped() => break,
            }
            sched = wake;
        }
        if cancel.is_departing() {
            rec.departed();
        }
        // Boxed: the final send's state (a whole partial) is on the heap only while it waits.
        Box::pin(rec.finish()).await;
    }
}

/// `Retry-After` as seconds (HTTP dates are not honoured; they are rare on 429s).
fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 86_400.0)
        .map(Duration::from_secs_f64)
}

/// Backoff before retry number `streak` (1 = first retry), or `None` to give up.
fn next_delay(policy: &Reconnect, streak: u32, retry_after: Option<Duration>) -> Option<Duration> {
    match policy {
        Reconnect::Never => None,
        Reconnect::Backoff {
            max_attempts,
            initial,
            max,
            honor_retry_after,
        } => {
            if max_attempts.exhausted(streak) {
                return None;
            }
            let exp = initial
                .0
                .saturating_mul(1u32 << (streak - 1).min(20))
                .min(max.0);
            // Full jitter (AWS architecture blog): uniform in [0, exp].
            let mut d = exp.mul_f64(rand::rng().random::<f64>());
            if *honor_retry_after {
                if let Some(ra) = retry_after {
                    d = d.max(ra);
                }
            }
            Some(d)
        }
    }
}

mod connect;
mod matcher;
mod rotation;
mod session;
mod socket;
mod stop;
#[cfg(test)]
mod tests;
use connect::token_and_connect;
pub(crate) use connect::HttpCall;
pub(crate) use matcher::{AutoReply, CaptureRule, Matcher};
pub(crate) use rotation::Rotor;
use session::*;
pub(crate) use stop::{guest, Stop};
