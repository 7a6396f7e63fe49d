//! Measurement plumbing: what a VU accumulates (`Partial`) and how the aggregator merges
//! it (`RunStats`, HDR histograms).
//!
//! Invariants: a VU owns its `Recorder` and never blocks on it. A flush `try_send`s the
//! partial; when the channel is full the data stays in the recorder and is retried at the
//! next flush, so nothing is lost and measuring never waits. Idle VUs hold an empty
//! recorder (no histograms per connection: samples travel as raw values).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use tokio::sync::mpsc;

use crate::handshake::Rejection;
use crate::outcome::{CloseKind, FailKind};
use crate::report::{
    metric, AgentTick, Evidence, Identities, IdentityTotals, LatencyStats, Totals, MAX_IDENTITIES,
};

/// Index of a latency metric in `metric::ALL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Metric {
    Connecting = 0,
    TcpConnect = 1,
    Upgrade = 2,
    Rtt = 3,
    Ping = 4,
    FirstMsg = 5,
    Session = 6,
    TlsHandshake = 7,
    TokenFetch = 8,
    HttpStep = 9,
    Refused = 10,
    AutoReply = 11,
    Rotation = 12,
}

const METRICS: usize = metric::ALL.len();

/// Results a VU sends to the aggregator. Counters are deltas since the last flush.
#[derive(Debug, Default)]
pub(crate) struct Partial {
    pub(crate) attempted: u32,
    pub(crate) opened: u32,
    pub(crate) failures: Vec<(FailKind, u32)>,
    pub(crate) closes: Vec<(CloseKind, u32)>,
    /// Of `closes`, ended by the target within `AT_ONCE_MS` of opening.
    pub(crate) closed_at_once: u32,
    /// VUs whose reconnect policy ran out of attempts.
    pub(crate) gave_up: u32,
    pub(crate) msgs_sent: u32,
    pub(crate) msgs_received: u32,
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_received: u64,
    pub(crate) expect_timeouts: u32,
    pub(crate) ping_timeouts: u32,
    /// Messages an `expect` passed over (unrelated pushes no responder took).
    pub(crate) msgs_skipped: u32,
    /// Captures that found nothing in their matching message.
    pub(crate) capture_misses: u32,
    /// Messages a responder matched, and replies responders sent.
    pub(crate) auto_matched: u32,
    pub(crate) auto_replies: u32,
    /// Guests that arrived and left by their own choice (`Totals::arrivals`).
    pub(crate) arrivals: u32,
    pub(crate) departures: u32,
    /// Token rotations done and failed on live connections.
    pub(crate) rotations: u32,
    pub(crate) rotation_failures: u32,
    /// Raw latency samples (metric, microseconds).
    pub(crate) samples: Vec<(Metric, u32)>,
    /// Evidence from rejected handshakes.
    pub(crate) rejections: Vec<Rejection>,
    /// Close frames the target sent with a reason: ((code, reason), count), scrubbed of
    /// secrets and cut to `MAX_CLOSE_REASON_BYTES`; 4 distinct per flush at most.
    pub(crate) close_reasons: Vec<((u16, String), u32)>,
    /// Per identity deltas: ((dimension index, identity index), counts).
    pub(crate) identities: Vec<(IdentityKey, IdentityTotals)>,
}

/// An identity as the engine counts it: (index into the run's dimensions, identity
/// index within that dimension). Labels are given once, by the aggregator.
pub(crate) type IdentityKey = (u16, u32);

fn bump<K: PartialEq>(v: &mut Vec<(K, u32)>, k: K) {
    match v.iter_mut().find(|(x, _)| *x == k) {
        Some((_, n)) => *n += 1,
        None => v.push((k, 1)),
    }
}

/// A VU's side of the partials channel.
pub(crate) struct Recorder {
    /// Data not yet handed to the aggregator; on the heap only while there is some, so
    /// an idle VU carries a pointer, not a partial.
    p: Option<Box<Partial>>,
    last_flush: Instant,
    tx: mpsc::Sender<Partial>,
    every: Duration,
}

impl Recorder {
    pub(crate) fn new(tx: mpsc::Sender<Partial>, every: Duration) -> Self {
        Recorder {
            p: None,
            last_flush: Instant::now(),
            tx,
            every,
        }
    }
    fn p(&mut self) -> &mut Partial {
        self.p.get_or_insert_with(Default::default)
    }
    pub(crate) fn attempt(&mut self) {
        self.p().attempted += 1;
    }
    pub(crate) fn opened(&mut self) {
        self.p().opened += 1;
    }
    pub(crate) fn failed(&mut self, kind: FailKind, rejection: Option<Rejection>) {
        let p = self.p();
        bump(&mut p.failures, kind);
        if let Some(r) = rejection {
            // Keep evidence bounded: the aggregator keeps only a few per status anyway.
            if p.rejections.len() < 4 {
                p.rejections.push(r);
            }
        }
    }
    /// The VU's reconnect policy ran out of attempts; it stops trying.
    pub(crate) fn gave_up(&mut self) {
        self.p().gave_up += 1;
    }
    /// The target's close frame said why (`reason`, already scrubbed of secrets). Kept
    /// bounded: 4 distinct per flush, each cut to `MAX_CLOSE_REASON_BYTES`.
    pub(crate) fn close_reason(&mut self, code: u16, reason: &str) {
        let reason = crate::report::bounded_reason(reason);
        if reason.is_empty() {
            return;
        }
        let kept = &mut self.p().close_reasons;
        if let Some((_, n)) = kept
            .iter_mut()
            .find(|((c, r), _)| *c == code && *r == reason)
        {
            *n += 1;
        } else if kept.len() < 4 {
            kept.push(((code, reason.into_owned()), 1));
        }
    }
    /// A session ended; `at_once` when the target ended it within `AT_ONCE_MS`.
    pub(crate) fn closed(&mut self, kind: CloseKind, at_once: bool) {
        let p = self.p();
        bump(&mut p.closes, kind);
        if at_once {
            p.closed_at_once += 1;
        }
    }
    /// Counts a handshake event against one identity.
    pub(crate) fn identity(&mut self, key: IdentityKey, f: impl FnOnce(&mut IdentityTotals)) {
        let p = self.p();
        match p.identities.iter_mut().find(|(k, _)| *k == key) {
            Some((_, t)) => f(t),
            None => {
                let mut t = IdentityTotals::default();
                f(&mut t);
                p.identities.push((key, t));
            }
        }
    }
    pub(crate) fn sent(&mut self, bytes: usize) {
        let p = self.p();
        p.msgs_sent += 1;
        p.bytes_sent += bytes as u64;
    }
    pub(crate) fn received(&mut self, bytes: usize) {
        let p = self.p();
        p.msgs_received += 1;
        p.bytes_received += bytes as u64;
    }
    pub(crate) fn expect_timeout(&mut self) {
        self.p().expect_timeouts += 1;
    }
    pub(crate) fn ping_timeout(&mut self) {
        self.p().ping_timeouts += 1;
    }
    /// A message an `expect` waited past (see `Totals::msgs_skipped`).
    pub(crate) fn skipped(&mut self) {
        self.p().msgs_skipped += 1;
    }
    pub(crate) fn capture_misses(&mut self, n: u32) {
        if n > 0 {
            self.p().capture_misses += n;
        }
    }
    pub(crate) fn auto_matched(&mut self) {
        self.p().auto_matched += 1;
    }
    /// A responder's reply of `bytes` went out `took` after the message it answers.
    pub(crate) fn auto_replied(&mut self, bytes: usize, took: Duration) {
        self.sent(bytes);
        self.p().auto_replies += 1;
        self.sample(Metric::AutoReply, took);
    }
    /// A guest arrived (the open model for sessions).
    pub(crate) fn arrived(&mut self) {
        self.p().arrivals += 1;
    }
    /// A guest left by its own choice: its stay was over.
    pub(crate) fn departed(&mut self) {
        self.p().departures += 1;
    }
    /// A live connection's token rotation, `took` from when it was due.
    pub(crate) fn rotated(&mut self, took: Duration) {
        self.p().rotations += 1;
        self.sample(Metric::Rotation, took);
    }
    pub(crate) fn rotation_failed(&mut self) {
        self.p().rotation_failures += 1;
    }
    pub(crate) fn sample(&mut self, m: Metric, d: Duration) {
        let us = u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        self.p().samples.push((m, us));
    }

    /// When the next periodic flush is due, if there is anything to flush.
    pub(crate) fn next_flush(&self) -> Option<Instant> {
        self.p.as_ref().map(|_| self.last_flush + self.every)
    }

    /// Flushes if due (or if many samples piled up). Never waits.
    pub(crate) fn maybe_flush(&mut self) {
        let many = self.p.as_ref().is_some_and(|p| p.samples.len() >= 256);
        if self.p.is_some() && (self.last_flush.elapsed() >= self.every || many) {
            self.try_flush();
        }
    }

    /// Hands the partial over without waiting; keeps it if the channel is full.
    pub(crate) fn try_flush(&mut self) {
        let Some(p) = self.p.take() else { return };
        self.last_flush = Instant::now();
        match self.tx.try_send(*p) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(p)) => self.p = Some(Box::new(p)),
        }
    }

    /// Final flush at the end of a VU's life: waits for room so nothing is lost.
    pub(crate) async fn finish(mut self) {
        if let Some(p) = self.p.take() {
            let _ = self.tx.send(*p).await;
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 1 h at 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

/// Merged results of a run (or of one tick).
pub(crate) struct RunStats {
    pub(crate) totals: Totals,
    hist: Vec<Histogram<u64>>,
    pub(crate) evidence: Evidence,
    /// Per identity (bounded: `MAX_IDENTITIES` per dimension).
    identities: BTreeMap<IdentityKey, IdentityTotals>,
}

fn merge_identity(
    into: &mut BTreeMap<IdentityKey, IdentityTotals>,
    key: IdentityKey,
    t: &IdentityTotals,
) {
    if let Some(mine) = into.get_mut(&key) {
        mine.merge(t);
    } else if (key.1 as usize) < MAX_IDENTITIES {
        into.insert(key, t.clone());
    }
}

/// How the aggregator names identities: per dimension, its key and how identity indices
/// read (a token's slot, a source address, `#n` for header and query values).
#[derive(Debug, Clone)]
pub(crate) struct Dimension {
    pub(crate) key: String,
    /// Labels by index, when they are not `#n` (source addresses).
    pub(crate) labels: Option<Vec<String>>,
    /// Token slots are numbered from 0 and shown as such.
    pub(crate) zero_based: bool,
}

impl Dimension {
    fn label(&self, i: u32) -> String {
        match &self.labels {
            Some(l) => l.get(i as usize).cloned().unwrap_or_else(|| i.to_string()),
            None if self.zero_based => i.to_string(),
            None => format!("#{}", i + 1),
        }
    }
}

impl RunStats {
    pub(crate) fn new() -> Self {
        RunStats {
            totals: Totals::default(),
            hist: (0..METRICS).map(|_| new_histogram()).collect(),
            evidence: Evidence::default(),
            identities: BTreeMap::new(),
        }
    }

    /// Identities with their labels.
    pub(crate) fn identities(&self, dims: &[Dimension]) -> Identities {
        let mut out = Identities::new();
        for ((d, i), t) in &self.identities {
            if let Some(dim) = dims.get(*d as usize) {
                out.entry(dim.key.clone())
                    .or_default()
                    .insert(dim.label(*i), t.clone());
            }
        }
        out
    }

    pub(crate) fn merge(&mut self, p: &Partial) {
        let t = &mut self.totals;
        t.attempted += u64::from(p.attempted);
        t.opened += u64::from(p.opened);
        for (k, n) in &p.failures {
            t.failed += u64::from(*n);
            *t.failures.entry(k.key()).or_default() += u64::from(*n);
        }
        for (k, n) in &p.closes {
            t.closed += u64::from(*n);
            if k.is_drop() {
                t.dropped += u64::from(*n);
            }
            *t.closes.entry(k.key()).or_default() += u64::from(*n);
        }
        t.closed_at_once += u64::from(p.closed_at_once);
        t.gave_up += u64::from(p.gave_up);
        t.msgs_sent += u64::from(p.msgs_sent);
        t.msgs_received += u64::from(p.msgs_received);
        t.bytes_sent += p.bytes_sent;
        t.bytes_received += p.bytes_received;
        t.expect_timeouts += u64::from(p.expect_timeouts);
        t.ping_timeouts += u64::from(p.ping_timeouts);
        t.msgs_skipped += u64::from(p.msgs_skipped);
        t.capture_misses += u64::from(p.capture_misses);
        t.auto_matched += u64::from(p.auto_matched);
        t.auto_replies += u64::from(p.auto_replies);
        t.arrivals += u64::from(p.arrivals);
        t.departures += u64::from(p.departures);
        t.rotations += u64::from(p.rotations);
        t.rotation_failures += u64::from(p.rotation_failures);
        for (m, us) in &p.samples {
            let h = &mut self.hist[*m as usize];
            h.saturating_record(u64::from(*us).max(1));
        }
        for (key, t) in &p.identities {
            merge_identity(&mut self.identities, *key, t);
        }
        for r in &p.rejections {
            let ev = &mut self.evidence;
            if let Some(ra) = &r.retry_after {
                ev.add_retry_after(ra, 1);
            }
            for (k, v) in &r.rate_limit_headers {
                ev.add_rate_limit_header(k, v);
            }
            ev.add_body(r.status, &r.body);
        }
        for ((code, reason), n) in &p.close_reasons {
            self.evidence.add_close_reason(*code, reason, u64::from(*n));
        }
    }

    /// Percentiles of every metric that has samples.
    #[cfg(test)]
    pub(crate) fn latency(&self) -> BTreeMap<String, LatencyStats> {
        latency_of(&self.hist)
    }

    /// Whole histograms, V2-deflate serialized and base64-encoded, by metric.
    pub(crate) fn encoded_histograms(&self) -> BTreeMap<String, String> {
        encode_histograms(&self.hist)
    }

    /// This tick's deltas as agent `agent` sends them (see `report::AgentTick`).
    pub(crate) fn tick(&self, dims: &[Dimension]) -> AgentTick {
        AgentTick {
            interval: self.totals.clone(),
            identities: self.identities(dims),
            evidence: self.evidence.clone(),
            histograms: self.encoded_histograms(),
            ..AgentTick::default()
        }
    }
}

/// Percentiles of every metric (in `metric::ALL` order) that has samples.
fn latency_of(hist: &[Histogram<u64>]) -> BTreeMap<String, LatencyStats> {
    let mut out = BTreeMap::new();
    for (i, h) in hist.iter().enumerate() {
        if h.is_empty() {
            continue;
        }
        out.insert(
            metric::ALL[i].to_string(),
            LatencyStats {
                count: h.len(),
                mean_us: h.mean(),
                p50_us: h.value_at_quantile(0.50),
                p90_us: h.value_at_quantile(0.90),
                p95_us: h.value_at_quantile(0.95),
                p99_us: h.value_at_quantile(0.99),
                p999_us: h.value_at_quantile(0.999),
                max_us: h.max(),
            },
        );
    }
    out
}

/// Histograms (in `metric::ALL` order), V2-deflate serialized and base64-encoded, by
/// metric; empty ones are left out.
fn encode_histograms(hist: &[Histogram<u64>]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut ser = V2DeflateSerializer::new();
    for (i, h) in hist.iter().enumerate() {
        if h.is_empty() {
            continue;
        }
        let mut bytes = Vec::new();
        if ser.serialize(h, &mut bytes).is_ok() {
            out.insert(metric::ALL[i].to_string(), BASE64.encode(&bytes));
        }
    }
    out
}

fn decode_histogram(encoded: &str) -> Option<Histogram<u64>> {
    use hdrhistogram::serialization::Deserializer;
    let bytes = BASE64.decode(encoded).ok()?;
    Deserializer::new()
        .deserialize(&mut std::io::Cursor::new(bytes))
        .ok()
}

/// What the coordinator has merged of all agents' ticks: totals, exact histograms,
/// evidence and identities, as one process would have recorded them.
pub(crate) struct Merged {
    pub(crate) totals: Totals,
    hist: Vec<Histogram<u64>>,
    pub(crate) evidence: Evidence,
    pub(crate) identities: Identities,
}

impl Merged {
    pub(crate) fn new() -> Self {
        Merged {
            totals: Totals::default(),
            hist: (0..METRICS).map(|_| new_histogram()).collect(),
            evidence: Evidence::default(),
            identities: Identities::new(),
        }
    }

    /// Adds one agent tick's deltas. A histogram that does not decode (or a metric this
    /// version does not know) is skipped, not fatal: counters still add up.
    pub(crate) fn add(&mut self, t: &AgentTick) {
        self.totals.merge(&t.interval);
        self.evidence.merge(&t.evidence);
        crate::report::merge_identities(&mut self.identities, &t.identities);
        self.add_histograms(&t.histograms);
    }

    /// Adds encoded histograms (`Summary::histograms` / `AgentTick::histograms`),
    /// skipping any that does not decode or names a metric this version does not know.
    pub(crate) fn add_histograms(&mut self, encoded: &BTreeMap<String, String>) {
        for (name, enc) in encoded {
            let Some(i) = metric::ALL.iter().position(|m| m == name) else {
                continue;
            };
            if let Some(h) = decode_histogram(enc) {
                let _ = self.hist[i].add(&h);
            }
        }
    }

    /// Adds another merged interval (a tick into the whole run).
    pub(crate) fn absorb(&mut self, other: &Merged) {
        self.totals.merge(&other.totals);
        self.evidence.merge(&other.evidence);
        crate::report::merge_identities(&mut self.identities, &other.identities);
        for (a, b) in self.hist.iter_mut().zip(&other.hist) {
            let _ = a.add(b);
        }
    }

    pub(crate) fn latency(&self) -> BTreeMap<String, LatencyStats> {
        latency_of(&self.hist)
    }

    pub(crate) fn encoded_histograms(&self) -> BTreeMap<String, String> {
        encode_histograms(&self.hist)
    }
}

/// A stored histogram (`Summary::histograms` value) as `(value_us, count)` pairs in
/// ascending value order; `None` if it does not decode.
pub fn histogram_counts(encoded: &str) -> Option<Vec<(u64, u64)>> {
    let h = decode_histogram(encoded)?;
    Some(
        h.iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_counts_and_percentiles() {
        let mut s = RunStats::new();
        let mut p = Partial {
            attempted: 3,
            opened: 2,
            gave_up: 1,
            ..Default::default()
        };
        bump(&mut p.failures, FailKind::Status(429));
        bump(&mut p.closes, CloseKind::Server(1001));
        bump(&mut p.closes, CloseKind::Client);
        for ms in 1..=100u32 {
            p.samples.push((Metric::Connecting, ms * 1000));
        }
        p.rejections.push(Rejection {
            status: 429,
            retry_after: Some("1".into()),
            body: "busy".into(),
            ..Default::default()
        });
        s.merge(&p);
        s.merge(&p);
        let t = &s.totals;
        assert_eq!(
            (t.attempted, t.opened, t.failed, t.closed, t.dropped),
            (6, 4, 2, 4, 2)
        );
        assert_eq!(t.failures["http_429"], 2);
        assert_eq!(t.closes["server_1001"], 2);
        assert_eq!(t.gave_up, 2);
        let lat = s.latency();
        let c = &lat["ws_connecting"];
        assert_eq!(c.count, 200);
        assert!((49_900..=50_100).contains(&c.p50_us), "{}", c.p50_us);
        assert!((98_900..=99_100).contains(&c.p99_us), "{}", c.p99_us);
        assert_eq!(s.evidence.retry_after["1"], 2);
        assert_eq!(s.evidence.bodies[&429], vec!["busy".to_string()]);
        let enc = s.encoded_histograms();
        let counts = histogram_counts(&enc["ws_connecting"]).expect("decodes");
        assert_eq!(
            counts.iter().map(|c| c.1).sum::<u64>(),
            s.latency()["ws_connecting"].count
        );
        assert_eq!(histogram_counts("not base64!"), None);
        assert_eq!(
            histogram_counts("Zm9v"),
            None,
            "base64, but not a histogram"
        );
    }

    #[tokio::test]
    async fn full_channel_keeps_data_for_next_flush() {
        let (tx, mut rx) = mpsc::channel(1);
        let mut a = Recorder::new(tx.clone(), Duration::ZERO);
        let mut b = Recorder::new(tx, Duration::ZERO);
        a.attempt();
        a.try_flush();
        b.attempt();
        b.opened();
        b.try_flush(); // channel full: kept
        assert!(b.next_flush().is_some());
        assert_eq!(rx.recv().await.unwrap().attempted, 1);
        b.try_flush();
        let p = rx.recv().await.unwrap();
        assert_eq!((p.attempted, p.opened), (1, 1));
        assert!(b.next_flush().is_none());
    }
}
