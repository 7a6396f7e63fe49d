//! The sandbox's counters: the wire types `/stats` serves ([`Counters`] per profile,
//! [`TokenCounters`] per bearer token, [`WmCounters`] for `/webmessaging` profiles,
//! [`StatsReport`] for the whole body) with the `merge`s that add several target
//! processes' reports into one, and `ProfileStats`, one profile's live counters and
//! limit slots (atomics and short-held mutexes) that `snapshot` turns into [`Counters`].
//!
//! Every profile's counter types live here, beside the [`Counters`] that carries them,
//! so the profile modules depend on this one and never the other way round.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::limits::{Lockout, TokenBucket};

/// Counters of one profile (or of all of them), as served by `/stats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
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
    pub webmessaging: Option<WmCounters>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Handshakes of one bearer token.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
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
pub(super) struct ProfileStats {
    pub(super) accepted: AtomicU64,
    pub(super) open: AtomicU64,
    pub(super) peak_open: AtomicU64,
    pub(super) msgs_in: AtomicU64,
    pub(super) msgs_out: AtomicU64,
    pub(super) refreshed: AtomicU64,
    pub(super) refresh_refused: AtomicU64,
    pub(super) maps: Mutex<(BTreeMap<u16, u64>, BTreeMap<String, u64>)>,
    /// Per bearer token counters (bounded to 10,000 tokens).
    pub(super) tokens: Mutex<BTreeMap<String, TokenCounters>>,
    /// Handshake-rate bucket, created on first use with this profile's rate.
    pub(super) bucket: Mutex<Option<TokenBucket>>,
    /// Lockout window (`lockout=R`), created on first use.
    pub(super) lockout: Mutex<Option<Lockout>>,
    /// Upgrades left unanswered (`stall_cap`).
    pub(super) stalled: AtomicU64,
    /// Open connections per client address (`addr_cap`) and per key (`key_cap`).
    pub(super) per_addr: Mutex<HashMap<std::net::IpAddr, u64>>,
    pub(super) per_key: Mutex<HashMap<String, u64>>,
}

impl ProfileStats {
    pub(super) fn reject(&self, status: u16) {
        if let Ok(mut m) = self.maps.lock() {
            *m.0.entry(status).or_default() += 1;
        }
    }
    pub(super) fn closed(&self, how: &str) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        if let Ok(mut m) = self.maps.lock() {
            *m.1.entry(how.to_string()).or_default() += 1;
        }
    }
    pub(super) fn token_event(&self, token: &str, f: impl FnOnce(&mut TokenCounters)) {
        if let Ok(mut m) = self.tokens.lock() {
            if m.len() < 10_000 || m.contains_key(token) {
                f(m.entry(token.to_string()).or_default());
            }
        }
    }
    /// Takes a handshake token from this profile's bucket (created on first use), or
    /// says how long until one is free.
    pub(super) fn take_rate(&self, rate: f64, burst: Option<f64>) -> Result<(), Duration> {
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
    pub(super) fn lockout_admit(&self, limit: u64, window: Duration) -> bool {
        match self.lockout.lock() {
            Ok(mut l) => l
                .get_or_insert_with(|| Lockout::new(limit, window))
                .admit(Instant::now()),
            Err(_) => true,
        }
    }
    /// Takes a slot for `key` in `map` if under `cap`.
    pub(super) fn try_take<K: std::hash::Hash + Eq>(
        map: &Mutex<HashMap<K, u64>>,
        key: K,
        cap: u64,
    ) -> bool {
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
    pub(super) fn give_back<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, u64>>, key: &K) {
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
    pub(super) fn try_token_open(&self, token: &str, cap: u64) -> bool {
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
    pub(super) fn release_token_open(&self, token: &str) {
        if let Ok(mut m) = self.tokens.lock() {
            if let Some(c) = m.get_mut(token) {
                c.open = c.open.saturating_sub(1);
            }
        }
    }
    /// Gives back a slot taken by `try_open` whose handshake was refused later.
    pub(super) fn release_open(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.accepted.fetch_sub(1, Ordering::Relaxed);
    }
    /// Takes an open slot if under `cap`.
    pub(super) fn try_open(&self, cap: Option<u64>) -> bool {
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
    pub(super) fn snapshot(&self) -> Counters {
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
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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

/// Counters of one web-messaging profile, as `/stats` serves them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WmCounters {
    /// Sessions configured (a `SessionResponse` sent).
    pub configured: u64,
    /// Configured sessions open now, and the most at once.
    pub sessions_open: u64,
    pub peak_sessions: u64,
    /// Sessions refused, by reason: `session_cap`, `session_rate`, `token_limit`,
    /// `not_configured` (another first message), `bad_request` (a malformed
    /// configureSession or another deployment).
    pub refused: BTreeMap<String, u64>,
    /// `echo` heartbeats answered.
    pub heartbeats: u64,
    /// Guest `onMessage`s received, and those sent with another session's token.
    pub guest_messages: u64,
    pub token_mismatch: u64,
    /// Agent replies and typing indicators pushed.
    pub replies_pushed: u64,
    pub typing_pushed: u64,
    /// Sessions closed for sending nothing for `idle`.
    pub idle_closed: u64,
}

impl WmCounters {
    /// Adds another profile's (or process's) counters.
    pub fn merge(&mut self, o: &WmCounters) {
        self.configured += o.configured;
        self.sessions_open += o.sessions_open;
        self.peak_sessions += o.peak_sessions;
        for (k, v) in &o.refused {
            *self.refused.entry(k.clone()).or_default() += v;
        }
        self.heartbeats += o.heartbeats;
        self.guest_messages += o.guest_messages;
        self.token_mismatch += o.token_mismatch;
        self.replies_pushed += o.replies_pushed;
        self.typing_pushed += o.typing_pushed;
        self.idle_closed += o.idle_closed;
    }
}
