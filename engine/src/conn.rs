//! One virtual user's life: connect (phases timed), run the script, hold, close — and
//! reconnect by policy. Every attempt ends in exactly one outcome, recorded as data:
//! `attempted == opened + failed` and, once all VUs finished, `opened == closed`.

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

type Ws = WebSocketStream<MaybeTls>;

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

/// One attempt: the token (if the plan has `auth`), the HTTP steps (if any), then the
/// connection. A `rotating` attempt reconnects for a token rotation started at `sched`:
/// its outcome is also the rotation's (measured here, not in the VU's loop: a `sched`
/// live after the attempt would grow every VU's task by 16 bytes).
async fn token_and_connect(
    sh: &Shared,
    vu: u64,
    attempt: u32,
    sched: Instant,
    rotating: bool,
    rec: &mut Recorder,
) -> Result<Box<Conn>, Failed> {
    let res = attempt_once(sh, vu, attempt, sched, rec).await;
    if rotating {
        match &res {
            Ok(_) => rec.rotated(sched.elapsed()),
            Err(_) => rec.rotation_failed(),
        }
    }
    res
}

async fn attempt_once(
    sh: &Shared,
    vu: u64,
    attempt: u32,
    sched: Instant,
    rec: &mut Recorder,
) -> Result<Box<Conn>, Failed> {
    let mut ctx = Ctx::default();
    if let Some(pool) = &sh.tokens {
        let lease = pool.get(vu, rec).await.map_err(|k| (k, None))?;
        ctx.token = lease.token;
        if sh.rotation.is_some() {
            ctx.rotation.due = rotation::next_due(lease.refresh_at, Instant::now());
        }
    }
    // Per-session variables: rendered once, before anything that may use them.
    for (name, tpl) in &sh.vars {
        let value = render(tpl, vu, attempt, &ctx);
        ctx.set(name, value);
    }
    for step in &sh.http_steps {
        run_http_step(sh, step, vu, attempt, &mut ctx, rec)
            .await
            .map_err(|k| (k, None))?;
    }
    let ws = connect(sh, vu, attempt, sched, rec, &ctx).await?;
    Ok(Box::new(Conn {
        ws,
        ctx,
        opened: Instant::now(),
    }))
}

/// A compiled `HttpStep`.
pub(crate) struct HttpCall {
    pub(crate) method: reqwest::Method,
    pub(crate) url: Template,
    pub(crate) headers: Vec<(String, Template)>,
    pub(crate) body: Option<Template>,
    pub(crate) capture: Vec<(String, crate::capture::JsonPath)>,
}

/// Makes one request and captures values from its JSON reply into `ctx.vars`.
async fn run_http_step(
    sh: &Shared,
    step: &HttpCall,
    vu: u64,
    attempt: u32,
    ctx: &mut Ctx,
    rec: &mut Recorder,
) -> Result<(), FailKind> {
    let Some(http) = &sh.http else {
        return Err(FailKind::StepError);
    };
    let url = render(&step.url, vu, attempt, ctx);
    // Its host was checked and pinned at the start; a rendered value cannot move it.
    if !sh.pinned.covers(&url) {
        return Err(FailKind::StepError);
    }
    let mut req = http.request(step.method.clone(), url);
    for (k, v) in &step.headers {
        req = req.header(k.as_str(), render(v, vu, attempt, ctx));
    }
    if let Some(b) = &step.body {
        let body = render(b, vu, attempt, ctx);
        if serde_json::from_str::<serde_json::Value>(&body).is_ok() {
            req = req.header("content-type", "application/json");
        }
        req = req.body(body);
    }
    let t0 = Instant::now();
    let resp = req.send().await;
    let outcome = match resp {
        Err(_) => Err(FailKind::StepError),
        Ok(r) if !r.status().is_success() => Err(FailKind::StepStatus(r.status().as_u16())),
        Ok(r) => r
            .json::<serde_json::Value>()
            .await
            .map_err(|_| FailKind::StepError),
    };
    rec.sample(Metric::HttpStep, t0.elapsed());
    let json = outcome?;
    for (var, path) in &step.capture {
        let text = crate::capture::capture_json(&json, path).ok_or(FailKind::StepError)?;
        ctx.set(var, text);
    }
    Ok(())
}

async fn connect(
    sh: &Shared,
    vu: u64,
    attempt: u32,
    sched: Instant,
    rec: &mut Recorder,
    ctx: &Ctx,
) -> Result<Ws, Failed> {
    // By this agent's own ordinal: by `{{vu}}` (i + kN), an agent of an even-sized run
    // would bind one of two sources only.
    let k = sh.share.ordinal(vu) as usize;
    let addr = sh.addrs[k % sh.addrs.len()];
    let deadline = Instant::now() + sh.connect_timeout;
    let fut = async {
        let sock = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| (io_kind(&e), None))?;
        if !sh.sources.is_empty() {
            let src = sh.sources[k % sh.sources.len()];
            sock.bind(SocketAddr::new(src, 0))
                .map_err(|e| (io_kind(&e), None))?;
        }
        let t0 = Instant::now();
        let tcp = sock.connect(addr).await.map_err(|e| (io_kind(&e), None))?;
        rec.sample(Metric::TcpConnect, t0.elapsed());
        let _ = tcp.set_nodelay(true);
        let mut tcp = match &sh.tls {
            None => MaybeTls::Plain(tcp),
            Some((connector, name)) => {
                let t1 = Instant::now();
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| (tls_kind(&e), None))?;
                rec.sample(Metric::TlsHandshake, t1.elapsed());
                MaybeTls::Client(Box::new(tls))
            }
        };
        let headers: Vec<(String, String)> = sh
            .headers
            .iter()
            .map(|(k, t)| (k.clone(), render(t, vu, attempt, ctx)))
            .collect();
        let resource = render(&sh.resource, vu, attempt, ctx);
        // A line break in a rendered value (a token or a captured value from a peer)
        // would add header lines of its own: such a request is not sent.
        let broken = |v: &str| v.contains(['\r', '\n']);
        if broken(&resource) || headers.iter().any(|(_, v)| broken(v)) {
            return Err((FailKind::BadValue, None));
        }
        match upgrade(
            &mut tcp,
            &sh.host_header,
            &resource,
            &headers,
            &sh.protocols,
        )
        .await
        {
            Ok((left, took)) => {
                rec.sample(Metric::Upgrade, took);
                Ok((tcp, left))
            }
            Err(UpgradeError::Rejected(mut r)) => {
                rec.sample(Metric::Refused, r.waited);
                scrub_rejection(&mut r, &sh.secrets, &ctx.token);
                Err((FailKind::Status(r.status), Some(r)))
            }
            Err(UpgradeError::Protocol) => Err((FailKind::Protocol, None)),
            Err(UpgradeError::Io(e)) => Err((io_kind(&e), None)),
        }
    };
    match timeout_at(deadline.into(), fut).await {
        Err(_) => Err((FailKind::Timeout, None)),
        Ok(Err(e)) => Err(e),
        Ok(Ok((tcp, left))) => {
            // Measured from the scheduled start: free of coordinated omission.
            rec.sample(Metric::Connecting, sched.elapsed());
            Ok(
                WebSocketStream::from_partially_read(tcp, left, Role::Client, Some(ws_config()))
                    .await,
            )
        }
    }
}

/// Evidence is kept only once the run's secrets (and this attempt's token) are out of it.
fn scrub_rejection(r: &mut Rejection, secrets: &crate::secrets::Secrets, token: &str) {
    let mut this = crate::secrets::Secrets::default();
    this.add(token);
    for known in [secrets, &this] {
        if known.is_empty() {
            continue;
        }
        r.body = known.scrub(&r.body);
        if let Some(ra) = r.retry_after.as_mut() {
            *ra = known.scrub(ra);
        }
        for (_, v) in r.rate_limit_headers.iter_mut() {
            *v = known.scrub(v);
        }
    }
}

mod matcher;
mod rotation;
mod session;
mod stop;
pub(crate) use matcher::{AutoReply, CaptureRule, Matcher};
pub(crate) use rotation::Rotor;
use session::*;
pub(crate) use stop::{guest, Stop};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Dur;

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        let p = Reconnect::Backoff {
            max_attempts: crate::plan::MaxAttempts::Count(4),
            initial: Dur::millis(100),
            max: Dur::millis(300),
            honor_retry_after: true,
        };
        for streak in 1..4 {
            let d = next_delay(&p, streak, None).unwrap();
            assert!(d <= Duration::from_millis(300));
        }
        assert!(next_delay(&p, 4, None).is_none());
        assert!(next_delay(&p, 1, Some(Duration::from_secs(2))).unwrap() >= Duration::from_secs(2));
        assert!(next_delay(&Reconnect::Never, 1, None).is_none());
    }

    #[test]
    fn io_errors_map_to_kinds() {
        use std::io::{Error, ErrorKind};
        assert_eq!(
            io_kind(&Error::from(ErrorKind::ConnectionRefused)),
            FailKind::Refused
        );
        assert_eq!(
            io_kind(&Error::from(ErrorKind::AddrNotAvailable)),
            FailKind::ClientLimit
        );
        assert_eq!(
            io_kind(&Error::from_raw_os_error(24)),
            FailKind::ClientLimit
        );
        assert_eq!(hex_decode("00ff10"), vec![0, 255, 16]);
    }
}

#[cfg(test)]
mod stall_tests {
    use super::*;
    use tokio::net::{TcpListener, TcpSocket};

    /// A client `Ws` to a peer that accepts and then never reads (small socket buffers
    /// on both sides, so a 1 MiB message cannot fit). Returns the peer to keep it open.
    async fn stalled_pair() -> (Ws, tokio::net::TcpStream) {
        let ls = TcpSocket::new_v4().unwrap();
        ls.set_recv_buffer_size(4096).unwrap();
        ls.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener: TcpListener = ls.listen(8).unwrap();
        let cs = TcpSocket::new_v4().unwrap();
        cs.set_send_buffer_size(4096).unwrap();
        let (client, accepted) = tokio::join!(
            cs.connect(listener.local_addr().unwrap()),
            listener.accept()
        );
        let ws = WebSocketStream::from_raw_socket(
            MaybeTls::Plain(client.unwrap()),
            Role::Client,
            Some(ws_config()),
        )
        .await;
        (ws, accepted.unwrap().0)
    }

    #[tokio::test]
    async fn a_send_to_a_peer_that_stopped_reading_still_flushes_and_obeys_cancel() {
        let (mut ws, _peer) = stalled_pair().await;
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let cancel = Stop::default();
        let vu_cancel = cancel.clone();
        let vu = tokio::spawn(async move {
            let mut rec = Recorder::new(tx, Duration::from_millis(1));
            rec.expect_timeout();
            let msg = Message::binary(vec![0u8; 1 << 20]);
            let end = send_message(&mut ws, msg, &mut rec, &mut Timer::default(), &vu_cancel).await;
            // The close cannot get out either: it gives up after CLOSE_WAIT.
            close_normally(&mut ws, &mut rec).await;
            end
        });
        // The data recorded before the send reaches the aggregator while it is stuck...
        let p = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("flushed while the send is blocked")
            .unwrap();
        assert_eq!(p.expect_timeouts, 1);
        assert!(!vu.is_finished(), "1 MiB cannot fit in 8 KiB of buffers");
        // ...and a cancel ends the send (and the bounded close) as ours.
        cancel.stop();
        let end = tokio::time::timeout(Duration::from_secs(5), vu)
            .await
            .expect("a cancelled send returns")
            .unwrap();
        assert_eq!(end, Err(CloseKind::Client));
    }

    #[tokio::test]
    async fn frames_over_the_size_limit_end_the_session_as_protocol() {
        let (mut ws, mut peer) = stalled_pair().await;
        use tokio::io::AsyncWriteExt;
        // A binary frame header announcing one byte more than the limit, and no payload.
        let mut head = vec![0x82u8, 127];
        head.extend_from_slice(&(MAX_MESSAGE_BYTES as u64 + 1).to_be_bytes());
        peer.write_all(&head).await.unwrap();
        let err = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("the header alone is enough")
            .expect("an error, not the end")
            .unwrap_err();
        assert!(matches!(err, WsError::Capacity(_)), "{err:?}");
        assert_eq!(end_of(&err), CloseKind::TooLarge);
        assert_eq!(end_of(&err).key(), "too_large");
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    #[test]
    fn idle_vu_task_stays_small() {
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let sh = Arc::new(Shared {
            host_header: "h".into(),
            resource: Template::parse("/").unwrap(),
            addrs: vec!["127.0.0.1:1".parse().unwrap()],
            sources: Vec::new(),
            share: crate::schedule::Share::ALL,
            headers: Vec::new(),
            protocols: Vec::new(),
            connect_timeout: Duration::from_secs(1),
            ops: Vec::new(),
            vars: Vec::new(),
            responders: Vec::new(),
            reconnect: Reconnect::Never,
            flush_every: Duration::from_millis(250),
            tx,
            tls: None,
            tokens: None,
            rotation: None,
            http_steps: Vec::new(),
            http: None,
            pinned: Default::default(),
            secrets: Default::default(),
            gauges: Default::default(),
            identities: Vec::new(),
        });
        let fut = run_vu(sh, 0, Instant::now(), Stop::default());
        let size = std::mem::size_of_val(&fut);
        println!(
            "run_vu future: {size} bytes; Ws: {}",
            std::mem::size_of::<Ws>()
        );
        // tokio rounds a task up to 128 bytes and adds ~120 of its own: a future of at
        // most 392 bytes makes a 512-byte task (it was 1,792). Every held connection
        // pays this (bench/LEAN.md).
        assert!(size <= 392, "run_vu future is {size} bytes");
    }
}
