//! A run's ticks as chart columns ([`Series`], built from `Snapshot`s, one `push` a
//! tick) and its CSV export (`Series::to_csv`, each text cell through [`csv_cell`]).
//! Re-exported from [`crate::report`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{metric, Snapshot};

/// A run's ticks as columns, ready for charts. Rates are per second (interval counts
/// divided by the tick's actual length), latencies in milliseconds.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Series {
    /// Last `seq` included (live updates append only newer ticks).
    pub last_seq: u64,
    /// Elapsed seconds at each tick.
    pub t: Vec<f64>,
    pub target: Vec<f64>,
    pub open: Vec<f64>,
    /// Connects per second that opened.
    pub opened_rate: Vec<f64>,
    /// Connect failures per second, by outcome key.
    pub failed_rate: BTreeMap<String, Vec<f64>>,
    /// Session ends per second not caused by us, by outcome key.
    pub drop_rate: BTreeMap<String, Vec<f64>>,
    pub sent_rate: Vec<f64>,
    pub received_rate: Vec<f64>,
    /// Per-tick percentiles (ms) by metric and quantile name (`p50`, `p95`, `p99`).
    pub latency_ms: BTreeMap<String, BTreeMap<String, Vec<Option<f64>>>>,
    /// Attempts in flight at each tick (started, not yet open or failed).
    pub connecting: Vec<f64>,
    /// Sessions the target closed within `AT_ONCE_MS` of opening, per second.
    pub closed_at_once_rate: Vec<f64>,
    /// Per identity dimension (`token`, `source_addr`, `header:NAME`, `query:NAME`) and
    /// identity (at most `SERIES_IDENTITIES` per dimension): open connections, and
    /// cumulative rejections.
    pub identity_open: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
    pub identity_rejected: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
}

/// Identities per dimension kept as series columns (the summary keeps more).
pub const SERIES_IDENTITIES: usize = 64;

impl Series {
    /// Builds the series of `snaps` (in seq order).
    pub fn from_snapshots(snaps: &[Snapshot]) -> Series {
        let mut s = Series::default();
        for snap in snaps {
            s.push(snap);
        }
        s
    }

    /// The series as CSV, one row per tick: `t_s,target,open,opened_per_s`, then
    /// `failed_<kind>_per_s`, `dropped_<kind>_per_s`, `sent_per_s`, `received_per_s`
    /// and `<metric>_<q>_ms` columns (empty cell = no sample that second). Header cells
    /// carry outcome names, which an imported run can set to anything, so each goes
    /// through [`csv_cell`]; the other cells are numbers we format.
    pub fn to_csv(&self) -> String {
        let mut head = vec![
            "t_s".to_string(),
            "target".into(),
            "open".into(),
            "opened_per_s".into(),
        ];
        let mut cols: Vec<Vec<Option<f64>>> = vec![
            self.t.iter().map(|v| Some(*v)).collect(),
            self.target.iter().map(|v| Some(*v)).collect(),
            self.open.iter().map(|v| Some(*v)).collect(),
            self.opened_rate.iter().map(|v| Some(*v)).collect(),
        ];
        for (k, v) in &self.failed_rate {
            head.push(format!("failed_{k}_per_s"));
            cols.push(v.iter().map(|v| Some(*v)).collect());
        }
        for (k, v) in &self.drop_rate {
            head.push(format!("dropped_{k}_per_s"));
            cols.push(v.iter().map(|v| Some(*v)).collect());
        }
        head.push("sent_per_s".into());
        cols.push(self.sent_rate.iter().map(|v| Some(*v)).collect());
        head.push("received_per_s".into());
        cols.push(self.received_rate.iter().map(|v| Some(*v)).collect());
        for (m, qs) in &self.latency_ms {
            for (q, v) in qs {
                head.push(format!("{m}_{q}_ms"));
                cols.push(v.clone());
            }
        }
        let head: Vec<String> = head.iter().map(|h| csv_cell(h).into_owned()).collect();
        let mut out = head.join(",");
        out.push('\n');
        for i in 0..self.t.len() {
            let row: Vec<String> = cols
                .iter()
                .map(|c| match c.get(i).copied().flatten() {
                    Some(v) if v.fract() == 0.0 => format!("{v:.0}"),
                    Some(v) => format!("{v:.3}"),
                    None => String::new(),
                })
                .collect();
            out.push_str(&row.join(","));
            out.push('\n');
        }
        out
    }

    /// Appends one tick (ignored if not newer than the last one).
    pub fn push(&mut self, snap: &Snapshot) {
        if snap.seq <= self.last_seq && !self.t.is_empty() {
            return;
        }
        let n = self.t.len();
        let prev_ms = self
            .t
            .last()
            .map(|t| (t * 1000.0).round() as u64)
            .unwrap_or(0);
        let mut secs = (snap.elapsed_ms.saturating_sub(prev_ms) as f64 / 1000.0).max(0.001);
        // The final tick can be a sliver (the run ended just after a tick): rate it over
        // a normal tick's length so a few late replies do not look like a spike.
        if let [.., a, b] = self.t[..] {
            secs = secs.max(b - a);
        }
        let rate = |v: u64| v as f64 / secs;
        self.last_seq = snap.seq;
        self.t.push(snap.elapsed_ms as f64 / 1000.0);
        self.target.push(f64::from(snap.target));
        self.open.push(snap.open as f64);
        self.opened_rate.push(rate(snap.interval.opened));
        self.sent_rate.push(rate(snap.interval.msgs_sent));
        self.received_rate.push(rate(snap.interval.msgs_received));
        let grow = |map: &mut BTreeMap<String, Vec<f64>>,
                    from: &BTreeMap<String, u64>,
                    keep: &dyn Fn(&str) -> bool| {
            for k in from.keys().filter(|k| keep(k)) {
                map.entry(k.clone()).or_insert_with(|| vec![0.0; n]);
            }
            for (k, col) in map.iter_mut() {
                col.push(rate(from.get(k).copied().unwrap_or(0)));
            }
        };
        grow(&mut self.failed_rate, &snap.interval.failures, &|_| true);
        self.connecting.push(snap.connecting as f64);
        self.closed_at_once_rate
            .push(rate(snap.interval.closed_at_once));
        let ids = snap.identities();
        for (dim, by_id) in ids.iter() {
            let open = self.identity_open.entry(dim.clone()).or_default();
            for id in by_id.keys() {
                if open.len() < SERIES_IDENTITIES || open.contains_key(id) {
                    open.entry(id.clone()).or_insert_with(|| vec![0.0; n]);
                }
            }
            let rejected = self.identity_rejected.entry(dim.clone()).or_default();
            for id in open.keys() {
                rejected.entry(id.clone()).or_insert_with(|| vec![0.0; n]);
            }
        }
        for (dim, cols) in self.identity_open.iter_mut() {
            for (id, col) in cols.iter_mut() {
                let t = ids.get(dim).and_then(|m| m.get(id));
                col.push(t.map(|t| t.open() as f64).unwrap_or(0.0));
            }
        }
        for (dim, cols) in self.identity_rejected.iter_mut() {
            for (id, col) in cols.iter_mut() {
                let t = ids.get(dim).and_then(|m| m.get(id));
                col.push(
                    t.map(|t| t.rejected as f64)
                        .or_else(|| col.last().copied())
                        .unwrap_or(0.0),
                );
            }
        }
        // The one drop rule (`CloseKind::is_drop`); a key this build does not know
        // stays a drop, as `Totals::dropped` counts it.
        grow(&mut self.drop_rate, &snap.interval.closes, &|k| {
            crate::outcome::CloseKind::parse(k).is_none_or(|c| c.is_drop())
        });
        for metric in [
            metric::WS_CONNECTING,
            metric::WS_RTT,
            metric::WS_PING,
            metric::WS_REFUSED,
        ] {
            let l = snap.latency.get(metric);
            if l.is_none() && !self.latency_ms.contains_key(metric) {
                continue;
            }
            let by_q = self.latency_ms.entry(metric.to_string()).or_default();
            for (q, v) in [
                ("p50", l.map(|l| l.p50_us)),
                ("p95", l.map(|l| l.p95_us)),
                ("p99", l.map(|l| l.p99_us)),
            ] {
                let col = by_q.entry(q.to_string()).or_insert_with(|| vec![None; n]);
                col.push(v.map(|us| us as f64 / 1000.0));
            }
        }
    }
}

/// One CSV cell (RFC 4180): quoted when it holds `,`, `"`, CR or LF (quotes doubled),
/// so a name never spills into other cells or rows; and a cell that a spreadsheet would
/// read as a formula (starting with `=`, `+`, `-`, `@`, tab or CR) gets a leading `'`
/// (OWASP "CSV injection"). Only for text cells: numbers stay as they are.
pub fn csv_cell(text: &str) -> std::borrow::Cow<'_, str> {
    let formula = text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = text.contains([',', '"', '\n', '\r']);
    if !formula && !quote {
        return std::borrow::Cow::Borrowed(text);
    }
    let cell = if formula {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if quote {
        std::borrow::Cow::Owned(format!("\"{}\"", cell.replace('"', "\"\"")))
    } else {
        std::borrow::Cow::Owned(cell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::LatencyStats;

    fn snap(seq: u64, ms: u64, opened: u64, f429: u64) -> Snapshot {
        let mut s = Snapshot {
            seq,
            elapsed_ms: ms,
            target: 10,
            open: opened,
            ..Default::default()
        };
        s.interval.opened = opened;
        if f429 > 0 {
            s.interval.failures.insert("http_429".into(), f429);
        }
        s
    }

    #[test]
    fn csv_has_one_row_per_tick_and_a_column_per_class() {
        let s = Series::from_snapshots(&[snap(1, 1000, 5, 0), snap(2, 2000, 3, 4)]);
        let csv = s.to_csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "t_s,target,open,opened_per_s,failed_http_429_per_s,sent_per_s,received_per_s"
        );
        assert_eq!(lines[1], "1,10,5,5,0,0,0");
        assert_eq!(lines[2], "2,10,3,3,4,0,0");
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn csv_quotes_header_cells_so_names_stay_in_their_column() {
        let mut a = snap(1, 1000, 5, 0);
        for name in ["a,=HYPERLINK(\"x\"),b", "i\n=2+3\nj", "plain"] {
            a.interval.failures.insert(name.into(), 1);
        }
        a.interval.closes.insert("=1+2".into(), 1);
        assert_eq!(
            Series::from_snapshots(&[a]).to_csv(),
            "t_s,target,open,opened_per_s,\"failed_a,=HYPERLINK(\"\"x\"\"),b_per_s\",\
             \"failed_i\n=2+3\nj_per_s\",failed_plain_per_s,\
             dropped_=1+2_per_s,sent_per_s,received_per_s\n1,10,5,5,1,1,1,1,0,0\n"
        );
    }

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(csv_cell("t_s"), "t_s");
        assert_eq!(csv_cell("=1+2"), "'=1+2");
        assert_eq!(csv_cell("+1"), "'+1");
        assert_eq!(csv_cell("-1"), "'-1");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("\tx"), "'\tx");
        assert_eq!(csv_cell("\r=x"), "\"'\r=x\"");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=a,b"), "\"'=a,b\"");
        assert_eq!(csv_cell("a\nb"), "\"a\nb\"");
    }

    #[test]
    fn columns_stay_aligned_and_rates_use_tick_length() {
        let mut a = snap(1, 500, 5, 0);
        a.latency.insert(
            metric::WS_CONNECTING.into(),
            LatencyStats {
                p50_us: 2000,
                p95_us: 3000,
                p99_us: 4000,
                ..Default::default()
            },
        );
        let snaps = [
            a,
            snap(2, 1000, 5, 2),
            snap(3, 2000, 0, 4),
            snap(4, 2010, 2, 0),
        ];
        let s = Series::from_snapshots(&snaps);
        assert_eq!(s.t, vec![0.5, 1.0, 2.0, 2.01]);
        assert_eq!(
            s.opened_rate,
            vec![10.0, 10.0, 0.0, 2.0],
            "the 10 ms sliver is rated over 1 s"
        );
        assert_eq!(s.failed_rate["http_429"], vec![0.0, 4.0, 4.0, 0.0]);
        let c = &s.latency_ms["ws_connecting"];
        assert_eq!(c["p50"], vec![Some(2.0), None, None, None]);
        assert!(s
            .latency_ms
            .values()
            .all(|q| q.values().all(|v| v.len() == 4)));
        let mut again = s.clone();
        again.push(&snaps[2]);
        assert_eq!(again, s, "an old tick is ignored");
    }
}
