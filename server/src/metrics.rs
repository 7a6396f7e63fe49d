//! `/metrics` as data and text: what the Prometheus exposition shows of the process and
//! of each live (or just finished) run, and the one pure function that writes it in the
//! text exposition format 0.0.4
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>).
//!
//! Invariants: every series comes from the run's own `Totals`, gauges and whole-run HDR
//! histograms (the same numbers the run page and the summary show); failure kinds and
//! their classes come from the engine's one classifier (`FailKind::parse` →
//! `class()`), drops from `CloseKind::is_drop`, latency names from `metric::ALL`: no
//! name table of our own. Latency histograms are the HDR histograms read through a fixed
//! bucket ladder ([`LADDER_US`]): `_count` is exact, a bucket counts each recorded
//! value by its HDR bucket (3 significant digits, so a value within 0.1 % of a bound
//! may land on either side) and `_sum` adds those values.
//!
//! To add a series: 1. add its family to [`render`] (name `socketswarm_run_*` for a
//! run, `socketswarm_*` for the process; counters end in `_total`), 2. if it needs a
//! figure no run carries yet, add it to [`RunFigures`] and both its constructors,
//! 3. list it in the README's *Metrics* table, 4. use it in
//! `docs/grafana-dashboard.json` if it deserves a panel (the dashboard test checks every
//! name it uses is exposed).

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};

use app::api::RunStatus;
use engine::outcome::{CloseKind, FailKind};
use engine::report::{metric, Totals};
use engine::{Snapshot, Summary};

/// Upper bounds of the latency histograms' buckets, in microseconds (`+Inf` follows):
/// from loopback connects (tens of µs) to stalled handshakes (a minute).
pub const LADDER_US: [u64; 20] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the exposition shows of one run at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFigures {
    /// Connections the schedule wants open now (0 once finished).
    pub target: u32,
    pub open: u64,
    pub peak_open: u64,
    /// Attempts in flight.
    pub connecting: u64,
    pub totals: Totals,
    /// Whole-run HDR histograms by metric (`Summary::histograms`' encoding).
    pub histograms: BTreeMap<String, String>,
}

impl RunFigures {
    /// A live run, as of its latest tick.
    pub fn of_snapshot(s: &Snapshot) -> RunFigures {
        RunFigures {
            target: s.target,
            open: s.open,
            peak_open: s.peak_open,
            connecting: s.connecting,
            totals: s.totals.clone(),
            histograms: s.histograms.clone(),
        }
    }

    /// A finished run, from its summary (nothing open, nothing wanted).
    pub fn of_summary(s: &Summary) -> RunFigures {
        RunFigures {
            target: 0,
            open: s.totals.open(),
            peak_open: s.peak_open,
            connecting: 0,
            totals: s.totals.clone(),
            histograms: s.histograms.clone(),
        }
    }
}

/// One run in the exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEntry {
    pub id: String,
    /// The plan's name (may be empty).
    pub plan: String,
    pub status: RunStatus,
    /// `None` while queued or before its first tick: only `socketswarm_run_info`.
    pub figures: Option<RunFigures>,
}

/// Everything `/metrics` shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    pub running: usize,
    pub queued: usize,
    /// Runs ended since this process started, by final status.
    pub ended: Vec<(RunStatus, u64)>,
    /// Live runs, then runs that finished a short while ago (their final values).
    pub runs: Vec<RunEntry>,
    /// The process's budget for bytes held for targets (`engine::budget`).
    pub inflight: engine::budget::BudgetUse,
}

/// A label value with `\`, `"` and line feeds escaped (the format's only escapes).
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Microseconds as seconds (`0.000025`, `1`, `2.5`).
fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

/// The text being written; families first declare themselves, then their samples.
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// Cumulative counts at each bound of [`LADDER_US`] and the sum (in µs) of
/// `(value_us, count)` pairs (an HDR histogram's recorded buckets).
pub fn buckets(pairs: &[(u64, u64)]) -> ([u64; LADDER_US.len()], u64, u128) {
    let mut at = [0u64; LADDER_US.len()];
    let (mut count, mut sum) = (0u64, 0u128);
    for &(v, n) in pairs {
        count += n;
        sum += u128::from(v) * u128::from(n);
        for (slot, bound) in at.iter_mut().zip(LADDER_US) {
            if v <= bound {
                *slot += n;
            }
        }
    }
    (at, count, sum)
}

/// A family with one value per run: (name, type, help, the value).
type Simple = (
    &'static str,
    &'static str,
    &'static str,
    fn(&RunFigures) -> u64,
);

/// A gauge or counter per run with figures.
fn per_run(
    out: &mut Out,
    runs: &[(&RunEntry, &RunFigures)],
    (name, kind, help): (&str, &str, &str),
    value: impl Fn(&RunFigures) -> u64,
) {
    out.family(name, kind, help);
    for (r, f) in runs {
        out.sample(name, &[("run", &r.id), ("plan", &r.plan)], value(f));
    }
}

/// The exposition as text (format 0.0.4).
pub fn render(e: &Exposition) -> String {
    let mut out = Out(String::new());
    out.family(
        "socketswarm_runs_active",
        "gauge",
        "Runs live in this process, by state.",
    );
    for (state, n) in [("running", e.running), ("queued", e.queued)] {
        out.sample("socketswarm_runs_active", &[("state", state)], n);
    }
    out.family(
        "socketswarm_runs_finished_total",
        "counter",
        "Runs ended since this process started, by final status.",
    );
    for status in RunStatus::ALL.into_iter().filter(|s| !s.is_live()) {
        let n = e
            .ended
            .iter()
            .filter(|(s, _)| *s == status)
            .map(|(_, n)| n)
            .sum::<u64>();
        out.sample(
            "socketswarm_runs_finished_total",
            &[("status", status.as_str())],
            n,
        );
    }
    let b = &e.inflight;
    for (name, kind, help, value) in [
        (
            "socketswarm_inflight_bytes",
            "gauge",
            "Bytes held now for targets: messages arriving and answers being read (past 4 KiB of each).",
            b.used as u64,
        ),
        (
            "socketswarm_inflight_bytes_limit",
            "gauge",
            "The most that may be held (--max-inflight-bytes).",
            b.limit as u64,
        ),
        (
            "socketswarm_inflight_peak_bytes",
            "gauge",
            "The most held at once since this process started.",
            b.peak as u64,
        ),
        (
            "socketswarm_inflight_refused_total",
            "counter",
            "Messages and answers cut off because the budget was full.",
            b.refused,
        ),
    ] {
        out.family(name, kind, help);
        out.sample(name, &[], value);
    }
    out.family(
        "socketswarm_run_info",
        "gauge",
        "1 for each run shown: live runs and runs finished in the last minutes.",
    );
    for r in &e.runs {
        out.sample(
            "socketswarm_run_info",
            &[
                ("run", &r.id),
                ("plan", &r.plan),
                ("status", r.status.as_str()),
            ],
            1,
        );
    }
    let runs: Vec<(&RunEntry, &RunFigures)> = e
        .runs
        .iter()
        .filter_map(|r| r.figures.as_ref().map(|f| (r, f)))
        .collect();
    let simple: [Simple; 15] = [
        (
            "socketswarm_run_target_connections",
            "gauge",
            "Connections the schedule wants open now.",
            |f| u64::from(f.target),
        ),
        (
            "socketswarm_run_open_connections",
            "gauge",
            "Connections open now.",
            |f| f.open,
        ),
        (
            "socketswarm_run_peak_open_connections",
            "gauge",
            "Most connections open at once so far.",
            |f| f.peak_open,
        ),
        (
            "socketswarm_run_connecting",
            "gauge",
            "Connection attempts in flight now.",
            |f| f.connecting,
        ),
        (
            "socketswarm_run_connect_attempts_total",
            "counter",
            "Connection attempts started (every retry counts).",
            |f| f.totals.attempted,
        ),
        (
            "socketswarm_run_connections_opened_total",
            "counter",
            "Handshakes that reached an open WebSocket.",
            |f| f.totals.opened,
        ),
        (
            "socketswarm_run_connect_failed_total",
            "counter",
            "Connection attempts that failed, all kinds.",
            |f| f.totals.failed,
        ),
        (
            "socketswarm_run_sessions_closed_total",
            "counter",
            "Open sessions that ended, by anyone.",
            |f| f.totals.closed,
        ),
        (
            "socketswarm_run_closed_at_once_total",
            "counter",
            "Sessions the target ended within a second of opening.",
            |f| f.totals.closed_at_once,
        ),
        (
            "socketswarm_run_messages_sent_total",
            "counter",
            "WebSocket messages sent.",
            |f| f.totals.msgs_sent,
        ),
        (
            "socketswarm_run_messages_received_total",
            "counter",
            "WebSocket messages received.",
            |f| f.totals.msgs_received,
        ),
        (
            "socketswarm_run_sent_bytes_total",
            "counter",
            "Payload bytes sent.",
            |f| f.totals.bytes_sent,
        ),
        (
            "socketswarm_run_received_bytes_total",
            "counter",
            "Payload bytes received.",
            |f| f.totals.bytes_received,
        ),
        (
            "socketswarm_run_expect_timeouts_total",
            "counter",
            "`expect` steps that timed out.",
            |f| f.totals.expect_timeouts,
        ),
        (
            "socketswarm_run_ping_timeouts_total",
            "counter",
            "`ping` steps that got no pong in time.",
            |f| f.totals.ping_timeouts,
        ),
    ];
    for (name, kind, help, value) in simple {
        per_run(&mut out, &runs, (name, kind, help), value);
    }
    let failures = "socketswarm_run_connect_failures_total";
    out.family(
        failures,
        "counter",
        "Failed connection attempts by kind (`http_429`, `timeout`, ...) and class (`rejected`, `stalled`, ...).",
    );
    for (r, f) in &runs {
        for (key, n) in &f.totals.failures {
            // A kind this version does not know (an agent of a newer one) is `other`.
            let class = FailKind::parse(key).map_or("other", |k| k.class().key());
            let labels = [
                ("run", r.id.as_str()),
                ("plan", &r.plan),
                ("kind", key),
                ("class", class),
            ];
            out.sample(failures, &labels, n);
        }
    }
    let drops = "socketswarm_run_drops_total";
    out.family(
        drops,
        "counter",
        "Sessions ended by the target or the network, by kind (`server_1001`, `abnormal_1006`, ...).",
    );
    for (r, f) in &runs {
        for (key, n) in &f.totals.closes {
            if CloseKind::parse(key).is_none_or(|k| k.is_drop()) {
                out.sample(
                    drops,
                    &[("run", &r.id), ("plan", &r.plan), ("kind", key)],
                    n,
                );
            }
        }
    }
    latency(&mut out, &runs);
    out.0
}

/// `socketswarm_run_latency_seconds`: one histogram per run and metric with samples.
fn latency(out: &mut Out, runs: &[(&RunEntry, &RunFigures)]) {
    let name = "socketswarm_run_latency_seconds";
    out.family(
        name,
        "histogram",
        "Latency by metric (ws_connecting, tcp_connect, ws_upgrade, ws_rtt, ...), whole run so far.",
    );
    let (bucket, sum, count) = (
        format!("{name}_bucket"),
        format!("{name}_sum"),
        format!("{name}_count"),
    );
    for (r, f) in runs {
        for m in metric::ALL {
            let Some(pairs) = f
                .histograms
                .get(m)
                .and_then(|h| engine::histogram_counts(h))
            else {
                continue;
            };
            let (at, n, sum_us) = buckets(&pairs);
            let base = [("run", r.id.as_str()), ("plan", &r.plan), ("metric", m)];
            for (bound, c) in LADDER_US.iter().zip(at) {
                let le = seconds(*bound).to_string();
                let labels = [base[0], base[1], base[2], ("le", le.as_str())];
                out.sample(&bucket, &labels, c);
            }
            let labels = [base[0], base[1], base[2], ("le", "+Inf")];
            out.sample(&bucket, &labels, n);
            out.sample(&sum, &base, sum_us as f64 / 1e6);
            out.sample(&count, &base, n);
        }
    }
}

#[cfg(test)]
mod tests;
