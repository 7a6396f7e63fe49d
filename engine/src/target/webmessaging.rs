//! The sandbox's web-messaging profile (issue 14): a contact-center guest API, as a
//! guest sees it, so the "500 guests against a deployment capped at 150" scenario runs
//! offline. Selected by the path: `ws://HOST/webmessaging?deploymentId=D&session_cap=150`.
//!
//! The protocol (JSON text messages):
//! - the first message must be `{"action":"configureSession","deploymentId":D,"token":T}`
//!   (T: the guest's token, kept for the whole session). Answered with
//!   `{"type":"response","class":"SessionResponse","code":200,"body":{...}}`, then a
//!   `Presence` `Join` push. Any other first message gets a `400` error response and a
//!   close (1008).
//! - `{"action":"echo","message":{"type":"Text","text":"ping"}}`: a heartbeat, answered
//!   at once with a `StructuredMessage` response carrying the same text.
//! - `{"action":"onMessage","token":T,"message":{"type":"Text","text":…,
//!   "metadata":{"customMessageId":C}}}`: echoed at once (`direction: Inbound`), then a
//!   `Typing` push, then — `reply_delay` later (default 200 ms) — the agent's reply
//!   (`direction: Outbound`, `metadata.inReplyTo` = C, or the inbound message's id).
//!   Replies to different guests and messages interleave with other pushes, so a client
//!   must correlate (the emulator's `inReplyTo` is what it correlates on).
//! - a session that sends nothing for `idle` (default 60 s) is closed (1001, "idle").
//!
//! Limits, each selectable, are checked when the session is configured — as the real
//! service does: the upgrade is always accepted (the deployment and the guest's token
//! are only known from `configureSession`), and a refusal is an error response
//! `{"type":"response","class":"TooManyRequestsErrorEvent","code":429,"body":{
//! "retryAfter":1,"errorCode":4029,"errorMessage":"too many concurrent sessions"}}`
//! followed by a close (`refuse_code`, default 1008 policy violation):
//! - `session_cap=N`: at most N configured sessions at once (per deployment and profile);
//! - `session_rate=R` (`session_burst=B`): session starts per second, a token bucket;
//! - `token_limit=N`: at most N sessions at once configured with the same guest token.
//!
//! Counters (`WmCounters`, in `/stats` under each profile's `webmessaging`): sessions
//! configured and open, refusals by limit, heartbeats answered, guest messages, agent
//! replies and typing pushes sent, idle closes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::counters::ProfileStats;
/// Its counters live in `counters.rs` beside the `Counters` that carries them;
/// re-exported so `target::webmessaging::WmCounters` keeps naming them.
pub use super::counters::WmCounters;
use super::limits::TokenBucket;
use crate::tls::MaybeTls;

/// Agent replies waiting for their time, per session (more are refused with a 429).
const MAX_PENDING: usize = 64;
/// Longest guest token accepted.
const MAX_TOKEN_BYTES: usize = 256;

/// The web-messaging options of a profile (query keys of a `/webmessaging` path).
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The deployment this endpoint serves (`deploymentId`); `configureSession` must name it.
    pub deployment: Option<String>,
    /// At most this many configured sessions at once.
    pub session_cap: Option<u64>,
    /// Session starts per second (token bucket) and its burst.
    pub session_rate: Option<f64>,
    pub session_burst: Option<f64>,
    /// At most this many sessions at once per guest token.
    pub token_limit: Option<u64>,
    /// Close a session that sent nothing for this long.
    pub idle: Duration,
    /// The close code that follows a refusal.
    pub refuse_code: u16,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            deployment: None,
            session_cap: None,
            session_rate: None,
            session_burst: None,
            token_limit: None,
            idle: Duration::from_secs(60),
            refuse_code: 1008,
        }
    }
}

/// The query keys this profile adds (for the unknown-key message).
pub const KEYS: &str = "deploymentId, session_cap, session_rate, session_burst, token_limit, idle, refuse_code (and reply_delay)";

/// Whether `path` selects this profile.
pub fn selected(path: &str) -> bool {
    path.trim_end_matches('/').ends_with("/webmessaging")
}

impl Options {
    /// Takes one query pair; `Ok(false)` when the key is not this profile's.
    pub fn set(&mut self, k: &str, v: &str) -> Result<bool, String> {
        let num = |v: &str| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| format!("query `{k}={v}`: not a number"))
        };
        match k {
            "deploymentId" => self.deployment = Some(v.to_string()),
            "session_cap" => self.session_cap = Some(num(v)? as u64),
            "session_rate" => {
                let r = num(v)?;
                if r <= 0.0 {
                    return Err(format!("query `session_rate={v}`: must be above 0"));
                }
                self.session_rate = Some(r)
            }
            "session_burst" => self.session_burst = Some(num(v)?),
            "token_limit" => self.token_limit = Some(num(v)? as u64),
            "idle" => {
                self.idle =
                    crate::plan::parse_duration(v).map_err(|e| format!("query `idle`: {e}"))?
            }
            "refuse_code" => {
                let c = num(v)? as u16;
                if !(1000..=4999).contains(&c) {
                    return Err(format!("query `refuse_code={v}`: must be 1000-4999"));
                }
                self.refuse_code = c
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Live state of one web-messaging profile: its limits' bookkeeping and counters. Hot
/// counters are atomics; maps are behind mutexes never held across an await.
#[derive(Debug, Default)]
pub struct WmState {
    configured: AtomicU64,
    sessions_open: AtomicU64,
    peak_sessions: AtomicU64,
    heartbeats: AtomicU64,
    guest_messages: AtomicU64,
    token_mismatch: AtomicU64,
    replies_pushed: AtomicU64,
    typing_pushed: AtomicU64,
    idle_closed: AtomicU64,
    refused: Mutex<BTreeMap<String, u64>>,
    /// Session-start bucket (`session_rate`), created on first use.
    bucket: Mutex<Option<TokenBucket>>,
    /// Sessions open per guest token (`token_limit`).
    per_token: Mutex<HashMap<String, u64>>,
}

/// Why a session was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    SessionCap,
    SessionRate,
    TokenLimit,
}

impl Refusal {
    fn key(self) -> &'static str {
        match self {
            Refusal::SessionCap => "session_cap",
            Refusal::SessionRate => "session_rate",
            Refusal::TokenLimit => "token_limit",
        }
    }
    fn message(self) -> &'static str {
        match self {
            Refusal::SessionCap => "too many concurrent sessions",
            Refusal::SessionRate => "too many session starts",
            Refusal::TokenLimit => "too many sessions for this token",
        }
    }
}

impl WmState {
    fn refuse(&self, why: &str) {
        if let Ok(mut m) = self.refused.lock() {
            *m.entry(why.to_string()).or_default() += 1;
        }
    }

    /// Admits a session for `token` at `now` under `o`'s limits (rate, then cap, then
    /// per token), taking its slots; [`WmState::release`] gives them back.
    pub fn admit(&self, o: &Options, token: &str, now: Instant) -> Result<(), Refusal> {
        if let Some(rate) = o.session_rate {
            let ok = match self.bucket.lock() {
                Ok(mut b) => b
                    .get_or_insert_with(|| {
                        TokenBucket::new(rate, o.session_burst.unwrap_or(rate), now)
                    })
                    .take(now)
                    .is_ok(),
                Err(_) => true,
            };
            if !ok {
                return Err(Refusal::SessionRate);
            }
        }
        let cap = o.session_cap;
        let taken = self
            .sessions_open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| match cap {
                Some(c) if n >= c => None,
                _ => Some(n + 1),
            });
        let Ok(before) = taken else {
            return Err(Refusal::SessionCap);
        };
        if let Some(limit) = o.token_limit {
            let ok = match self.per_token.lock() {
                Ok(mut m) => {
                    let n = m.entry(token.to_string()).or_default();
                    if *n < limit {
                        *n += 1;
                        true
                    } else {
                        false
                    }
                }
                Err(_) => true,
            };
            if !ok {
                self.sessions_open.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::TokenLimit);
            }
        }
        self.configured.fetch_add(1, Ordering::Relaxed);
        self.peak_sessions.fetch_max(before + 1, Ordering::Relaxed);
        Ok(())
    }

    /// Gives back an admitted session's slots.
    pub fn release(&self, o: &Options, token: &str) {
        self.sessions_open.fetch_sub(1, Ordering::AcqRel);
        if o.token_limit.is_some() {
            if let Ok(mut m) = self.per_token.lock() {
                if let Some(n) = m.get_mut(token) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        m.remove(token);
                    }
                }
            }
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> WmCounters {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WmCounters {
            configured: g(&self.configured),
            sessions_open: g(&self.sessions_open),
            peak_sessions: g(&self.peak_sessions),
            refused: self.refused.lock().map(|m| m.clone()).unwrap_or_default(),
            heartbeats: g(&self.heartbeats),
            guest_messages: g(&self.guest_messages),
            token_mismatch: g(&self.token_mismatch),
            replies_pushed: g(&self.replies_pushed),
            typing_pushed: g(&self.typing_pushed),
            idle_closed: g(&self.idle_closed),
        }
    }
}

/// The web-messaging states of a sandbox, by profile key.
#[derive(Debug, Default)]
pub struct Registry(Mutex<HashMap<String, Arc<WmState>>>);

impl Registry {
    /// The state of profile `key` (created on first use).
    pub fn state(&self, key: &str) -> Arc<WmState> {
        let mut m = match self.0.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.entry(key.to_string()).or_default().clone()
    }

    /// The counters of profile `key`, if it is a web-messaging one.
    pub fn counters(&self, key: &str) -> Option<WmCounters> {
        let m = self.0.lock().ok()?;
        m.get(key).map(|s| s.snapshot())
    }
}

/// What a guest's message asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Configure {
        deployment: String,
        token: String,
    },
    Echo {
        text: String,
    },
    OnMessage {
        token: String,
        text: String,
        custom_id: Option<String>,
    },
    /// Anything else (not JSON, an unknown action, a field missing), with why.
    Invalid(String),
}

/// Reads one guest message.
pub fn parse_action(text: &str) -> Action {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Action::Invalid("not JSON".into());
    };
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
    match s("/action").as_deref() {
        Some("configureSession") => match (s("/deploymentId"), s("/token")) {
            (Some(d), Some(t)) if !t.is_empty() && t.len() <= MAX_TOKEN_BYTES => {
                Action::Configure {
                    deployment: d,
                    token: t,
                }
            }
            _ => Action::Invalid("configureSession needs deploymentId and token".into()),
        },
        Some("echo") => Action::Echo {
            text: s("/message/text").unwrap_or_default(),
        },
        Some("onMessage") => match (s("/token"), s("/message/text")) {
            (Some(token), Some(text)) => Action::OnMessage {
                token,
                text,
                custom_id: s("/message/metadata/customMessageId"),
            },
            _ => Action::Invalid("onMessage needs token and message.text".into()),
        },
        Some(other) => Action::Invalid(format!("unknown action `{other}`")),
        None => Action::Invalid("no action".into()),
    }
}

/// An error response (`class` as the real API names them).
pub fn error_response(code: u16, class: &str, message: &str) -> String {
    let body = if code == 429 {
        json!({"retryAfter": 1, "errorCode": 4029, "errorMessage": message})
    } else {
        json!(message)
    };
    json!({"type": "response", "class": class, "code": code, "body": body}).to_string()
}

/// The answer to a configured session.
pub fn session_response() -> String {
    json!({"type": "response", "class": "SessionResponse", "code": 200,
        "body": {"connected": true, "newSession": true, "readOnly": false, "maxCustomDataBytes": 2048}})
    .to_string()
}

/// A `StructuredMessage` (`kind` "response" for heartbeats, "message" for pushes).
fn structured(kind: &str, body: Value) -> String {
    let mut m = json!({"type": kind, "class": "StructuredMessage", "code": 200});
    m["body"] = body;
    m.to_string()
}

/// An event push (`Typing` On, `Presence` Join).
pub fn event_push(event: &str) -> String {
    let e = match event {
        "Typing" => json!({"eventType": "Typing", "typing": {"type": "On", "duration": 5000}}),
        _ => json!({"eventType": "Presence", "presence": {"type": "Join"}}),
    };
    structured(
        "message",
        json!({"type": "Event", "direction": "Outbound", "events": [e]}),
    )
}

/// The heartbeat's answer.
pub fn echo_response(text: &str) -> String {
    structured(
        "response",
        json!({"type": "Text", "text": text, "direction": "Inbound", "metadata": {"echo": true}}),
    )
}

/// A guest message as the service echoes it, and the agent's reply to it.
pub fn inbound_and_reply(id: &str, text: &str, custom_id: Option<&str>) -> (String, String) {
    let in_reply_to = custom_id.unwrap_or(id);
    let mut meta = json!({});
    if let Some(c) = custom_id {
        meta["customMessageId"] = json!(c);
    }
    let inbound = structured(
        "message",
        json!({"id": id, "type": "Text", "text": text, "direction": "Inbound", "metadata": meta}),
    );
    let reply = structured(
        "message",
        json!({"id": format!("{id}-r"), "type": "Text", "direction": "Outbound",
            "text": format!("Agent: thanks, we got \"{text}\""),
            "originatingEntity": "Human", "metadata": {"inReplyTo": in_reply_to}}),
    );
    (inbound, reply)
}

type Ws = WebSocketStream<MaybeTls>;

/// Sends a close with `code` and waits briefly for the client's; returns the
/// `Counters::closed` key.
async fn close_with(ws: &mut Ws, code: u16, reason: &str) -> &'static str {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_string().into(),
    };
    let _ = ws.close(Some(frame)).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    match code {
        1001 => "server_1001",
        1008 => "server_1008",
        _ => "server_other",
    }
}

/// One guest session; returns how it ended (a `Counters::closed` key).
pub(super) async fn session(
    mut ws: Ws,
    o: &Options,
    reply_delay: Duration,
    wm: &WmState,
    stats: &ProfileStats,
    shutdown: &CancellationToken,
) -> &'static str {
    // The guest's token once configured (its slots are held until the session ends).
    let mut token: Option<String> = None;
    let mut pending: VecDeque<(tokio::time::Instant, String, bool)> = VecDeque::new();
    let mut last_heard = tokio::time::Instant::now();
    let mut sent_ids = 0u64;
    let how = loop {
        let next_push = pending.front().map(|p| p.0);
        let mut out: Vec<String> = Vec::new();
        let mut close: Option<(u16, &'static str)> = None;
        tokio::select! {
            _ = shutdown.cancelled() => close = Some((1001, "shutting down")),
            _ = tokio::time::sleep_until(last_heard + o.idle) => {
                wm.idle_closed.fetch_add(1, Ordering::Relaxed);
                close = Some((1001, "idle timeout"));
            }
            _ = async { match next_push { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => {
                if let Some((_, msg, is_reply)) = pending.pop_front() {
                    let counter = if is_reply { &wm.replies_pushed } else { &wm.typing_pushed };
                    counter.fetch_add(1, Ordering::Relaxed);
                    out.push(msg);
                }
            }
            m = ws.next() => match m {
                Some(Ok(Message::Close(_))) => {
                    let _ = ws.close(None).await;
                    break "client";
                }
                Some(Ok(Message::Text(t))) => {
                    stats.msgs_in.fetch_add(1, Ordering::Relaxed);
                    last_heard = tokio::time::Instant::now();
                    match (parse_action(t.as_str()), token.as_deref()) {
                        (Action::Configure { deployment, token: t }, None) => {
                            if o.deployment.as_ref().is_some_and(|d| *d != deployment) {
                                wm.refuse("bad_request");
                                out.push(error_response(400, "string", "deployment not found"));
                                close = Some((o.refuse_code, "deployment not found"));
                            } else {
                                match wm.admit(o, &t, Instant::now()) {
                                    Ok(()) => {
                                        token = Some(t);
                                        out.push(session_response());
                                        out.push(event_push("Presence"));
                                    }
                                    Err(why) => {
                                        wm.refuse(why.key());
                                        out.push(error_response(429, "TooManyRequestsErrorEvent", why.message()));
                                        close = Some((o.refuse_code, why.message()));
                                    }
                                }
                            }
                        }
                        (_, None) => {
                            wm.refuse("not_configured");
                            out.push(error_response(400, "string", "session not configured: send configureSession first"));
                            close = Some((o.refuse_code, "session not configured"));
                        }
                        (Action::Echo { text }, Some(_)) => {
                            wm.heartbeats.fetch_add(1, Ordering::Relaxed);
                            out.push(echo_response(&text));
                        }
                        (Action::OnMessage { token: t, text, custom_id }, Some(mine)) => {
                            wm.guest_messages.fetch_add(1, Ordering::Relaxed);
                            if t != mine {
                                wm.token_mismatch.fetch_add(1, Ordering::Relaxed);
                                out.push(error_response(403, "string", "token does not match the session"));
                            } else if pending.len() + 2 > MAX_PENDING {
                                out.push(error_response(429, "TooManyRequestsErrorEvent", "too many messages in flight"));
                            } else {
                                sent_ids += 1;
                                let id = format!("m{sent_ids}-{:x}", rand::random::<u32>());
                                let (inbound, reply) = inbound_and_reply(&id, &text, custom_id.as_deref());
                                out.push(inbound);
                                let now = tokio::time::Instant::now();
                                // The typing indicator halfway, the reply at `reply_delay`.
                                pending.push_back((now + reply_delay / 2, event_push("Typing"), false));
                                pending.push_back((now + reply_delay, reply, true));
                                pending.make_contiguous().sort_by_key(|p| p.0);
                            }
                        }
                        (Action::Configure { .. }, Some(_)) => {
                            out.push(error_response(400, "string", "session already configured"));
                        }
                        (Action::Invalid(why), Some(_)) => {
                            out.push(error_response(400, "string", &why));
                        }
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    stats.msgs_in.fetch_add(1, Ordering::Relaxed);
                    out.push(error_response(400, "string", "binary messages are not supported"));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break "client_abnormal",
            },
        }
        let mut failed = false;
        for msg in out {
            if ws.send(Message::text(msg)).await.is_err() {
                failed = true;
                break;
            }
            stats.msgs_out.fetch_add(1, Ordering::Relaxed);
        }
        if failed {
            break "client_abnormal";
        }
        if let Some((code, reason)) = close {
            break close_with(&mut ws, code, reason).await;
        }
    };
    if let Some(t) = &token {
        wm.release(o, t);
    }
    how
}

#[cfg(test)]
mod tests;
