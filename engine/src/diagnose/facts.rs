//! Per-tick facts, derived once from a run's series (and its summary when finished):
//! what was attempted, admitted and turned away each second, and how. Every outcome key
//! is read through `outcome::{FailKind, CloseKind}` — the one classifier — never by
//! matching strings here.

use std::collections::BTreeMap;

use crate::outcome::{CloseKind, FailClass, FailKind};
use crate::report::{metric, Series, Summary};

/// How the target turned attempts away in one tick, by way of enforcement.
#[derive(Debug, Clone, Default)]
pub(crate) struct Refusals {
    /// Refused with a status (429/503), per status.
    pub(crate) status: BTreeMap<u16, f64>,
    /// No answer within `connect_timeout`.
    pub(crate) stalled: f64,
    /// TCP refused or reset.
    pub(crate) reset: f64,
    /// Accepted, then closed by the target within a second.
    pub(crate) at_once: f64,
}

impl Refusals {
    pub(crate) fn total(&self) -> f64 {
        self.status.values().sum::<f64>() + self.stalled + self.reset + self.at_once
    }
}

pub(crate) struct Facts<'a> {
    pub(crate) s: &'a Series,
    pub(crate) n: usize,
    /// Tick lengths in seconds.
    pub(crate) dt: Vec<f64>,
    /// The usual tick length (the median), to tell full ticks from slivers.
    pub(crate) tick: f64,
    /// Per second: admitted, attempted (opened + failed, runs' ends aside).
    pub(crate) opened: Vec<f64>,
    pub(crate) attempts: Vec<f64>,
    /// Attempts plus new ones left hanging (growth of `connecting`): what was asked for.
    pub(crate) demand: Vec<f64>,
    /// Per second, by enforcement.
    pub(crate) refusals: Vec<Refusals>,
    /// Per second: the sum of `refusals`.
    pub(crate) refused: Vec<f64>,
    pub(crate) auth: Vec<f64>,
    pub(crate) client_limit: Vec<f64>,
    /// All failures per second (runs' ends aside).
    pub(crate) failed: Vec<f64>,
    /// Sessions ended by the target per second; `late_drops` leaves out those closed at
    /// once (a cap's way of saying no, read as refusals).
    pub(crate) drops: Vec<f64>,
    pub(crate) late_drops: Vec<f64>,
    /// Sessions we ended (ramp-down, `close` steps) per second.
    pub(crate) own_closes: Vec<f64>,
    /// Attempts in flight at each tick (0 for runs stored before it was measured).
    pub(crate) connecting: Vec<f64>,
    /// Per tick: ws_connecting p95 and ws_refused p50 (ms).
    pub(crate) connecting_p95: Vec<Option<f64>>,
    pub(crate) refused_wait_p50: Vec<Option<f64>>,
    /// Exact counts by outcome key when the run has finished, else from the series.
    pub(crate) totals: BTreeMap<String, u64>,
    pub(crate) peak_open: f64,
    pub(crate) has_retry_after: bool,
}

fn col(v: &[f64], i: usize) -> f64 {
    v.get(i).copied().unwrap_or(0.0)
}

impl<'a> Facts<'a> {
    pub(crate) fn new(s: &'a Series, summary: Option<&Summary>) -> Facts<'a> {
        let n = s.t.len().min(s.open.len()).min(s.opened_rate.len());
        let dt: Vec<f64> = (0..n)
            .map(|i| if i == 0 { s.t[0] } else { s.t[i] - s.t[i - 1] }.max(0.001))
            .collect();
        let tick = {
            let mut d = dt.clone();
            d.sort_by(|a, b| a.total_cmp(b));
            d.get(d.len() / 2).copied().unwrap_or(1.0)
        };
        let fails: Vec<(FailKind, &Vec<f64>)> = s
            .failed_rate
            .iter()
            .filter_map(|(k, v)| Some((FailKind::parse(k)?, v)))
            .collect();
        let closes: Vec<(CloseKind, &Vec<f64>)> = s
            .drop_rate
            .iter()
            .filter_map(|(k, v)| Some((CloseKind::parse(k)?, v)))
            .collect();
        let sum = |keep: &dyn Fn(FailKind) -> bool, i: usize| -> f64 {
            fails
                .iter()
                .filter(|(k, _)| keep(*k))
                .map(|(_, v)| col(v, i))
                .sum()
        };
        let mut refusals = Vec::with_capacity(n);
        let (mut auth, mut client_limit, mut failed) = (vec![], vec![], vec![]);
        let (mut drops, mut late_drops, mut attempts, mut own_closes) =
            (vec![], vec![], vec![], vec![]);
        // One pass over the ticks fills every column (several per tick).
        #[allow(clippy::needless_range_loop)]
        for i in 0..n {
            let at_once = col(&s.closed_at_once_rate, i);
            let mut r = Refusals {
                at_once,
                ..Default::default()
            };
            for (k, v) in &fails {
                let x = col(v, i);
                match k.class() {
                    FailClass::Rejected(st) => *r.status.entry(st).or_default() += x,
                    FailClass::Stalled => r.stalled += x,
                    FailClass::Reset => r.reset += x,
                    _ => {}
                }
            }
            refusals.push(r);
            auth.push(sum(&|k| k.is_auth(), i));
            client_limit.push(sum(&|k| k.class() == FailClass::ClientLimit, i));
            let f = sum(&|k| k.class() != FailClass::Aborted, i);
            failed.push(f);
            attempts.push(col(&s.opened_rate, i) + f);
            let d: f64 = closes
                .iter()
                .filter(|(k, _)| k.is_drop())
                .map(|(_, v)| col(v, i))
                .sum();
            drops.push(d);
            late_drops.push((d - at_once).max(0.0));
            // Our own closes are not in the series; the open count tells them.
            let prev = if i == 0 { 0.0 } else { s.open[i - 1] };
            let own = prev + col(&s.opened_rate, i) * dt[i] - d * dt[i] - s.open[i];
            own_closes.push((own / dt[i]).max(0.0));
        }
        let refused = refusals.iter().map(Refusals::total).collect();
        let connecting: Vec<f64> = (0..n).map(|i| col(&s.connecting, i)).collect();
        let demand = (0..n)
            .map(|i| {
                let before = if i == 0 { 0.0 } else { connecting[i - 1] };
                attempts[i] + (connecting[i] - before).max(0.0) / dt[i]
            })
            .collect();
        let quantile = |m: &str, q: &str| -> Vec<Option<f64>> {
            let v = s.latency_ms.get(m).and_then(|by_q| by_q.get(q));
            (0..n)
                .map(|i| v.and_then(|v| v.get(i).copied().flatten()))
                .collect()
        };
        let mut totals = BTreeMap::new();
        for (k, v) in s.failed_rate.iter().chain(s.drop_rate.iter()) {
            let total: f64 = v.iter().zip(&dt).map(|(r, d)| r * d).sum();
            if total.round() > 0.0 {
                totals.insert(k.clone(), total.round() as u64);
            }
        }
        if let Some(sum) = summary {
            // Exact counts when the run has finished.
            totals = sum
                .totals
                .failures
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            totals.extend(
                sum.totals
                    .closes
                    .iter()
                    .filter(|(k, _)| CloseKind::parse(k).is_some_and(|c| c.is_drop()))
                    .map(|(k, v)| (k.clone(), *v)),
            );
        }
        let peak_open = summary
            .map(|x| x.peak_open as f64)
            .unwrap_or_else(|| s.open.iter().copied().fold(0.0, f64::max));
        let has_retry_after = summary.is_some_and(|x| !x.evidence.retry_after.is_empty());
        Facts {
            s,
            n,
            dt,
            tick,
            opened: s.opened_rate[..n].to_vec(),
            attempts,
            demand,
            refusals,
            refused,
            auth,
            client_limit,
            failed,
            drops,
            late_drops,
            own_closes,
            connecting,
            connecting_p95: quantile(metric::WS_CONNECTING, "p95"),
            refused_wait_p50: quantile(metric::WS_REFUSED, "p50"),
            totals,
            peak_open,
            has_retry_after,
        }
    }

    /// Sum of a per-second column over its ticks: a count.
    pub(crate) fn total(&self, v: &[f64]) -> f64 {
        v.iter().zip(&self.dt).map(|(r, d)| r * d).sum()
    }

    /// Count over the given ticks.
    pub(crate) fn count(&self, v: &[f64], idx: &[usize]) -> f64 {
        idx.iter().map(|&i| v[i] * self.dt[i]).sum()
    }

    /// Open connections during tick `i`: the higher of its two ends. The end alone can be
    /// low when connections closed within the tick (drops, or the run's end draining them).
    pub(crate) fn open_during(&self, i: usize) -> f64 {
        match i.checked_sub(1) {
            Some(prev) => self.s.open[prev].max(self.s.open[i]),
            None => self.s.open[i],
        }
    }

    /// True for a tick of normal length (not the sliver a run can end with).
    pub(crate) fn full(&self, i: usize) -> bool {
        self.dt[i] >= 0.9 * self.tick
    }

    /// Attempts left hanging at tick `i`: many in flight while (almost) none got in. A
    /// target that stops answering shows here before `connect_timeout` turns them into
    /// `timeout`s.
    pub(crate) fn stalling(&self, i: usize) -> bool {
        let c = self.connecting[i];
        let before = if i == 0 { 0.0 } else { self.connecting[i - 1] };
        c >= 2.0 && before >= 2.0 && self.opened[i] * self.dt[i] <= 0.2 * c
    }

    /// Ticks where the target turned attempts away (or left them hanging).
    pub(crate) fn pressed(&self) -> Vec<usize> {
        (0..self.n)
            .filter(|&i| self.refused[i] * self.dt[i] >= 0.5 || self.stalling(i))
            .collect()
    }

    /// Elapsed seconds at tick `i`.
    pub(crate) fn t(&self, i: usize) -> f64 {
        self.s.t[i]
    }
}

/// Median of `v` (`None` when empty).
pub(crate) fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// A level read robustly from several readings: their median, and its uncertainty — the
/// standard error of a median (1.2533 σ/√n, σ from the median absolute deviation), never
/// below what the readings' resolution (`quantum`, e.g. one connection) allows.
pub(crate) fn level_of(v: &[f64], quantum: f64) -> Option<(f64, f64)> {
    let m = median(v)?;
    let dev: Vec<f64> = v.iter().map(|x| (x - m).abs()).collect();
    let mad = median(&dev).unwrap_or(0.0);
    let n = v.len() as f64;
    let se = 1.2533 * 1.4826 * mad / n.sqrt();
    let floor = quantum / (12.0 * n).sqrt();
    Some((m, se.max(floor)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_is_the_median_with_its_uncertainty() {
        let (m, u) = level_of(&[20.0, 20.0, 20.0], 1.0).unwrap();
        assert_eq!(m, 20.0);
        assert!((u - 1.0 / 6.0).abs() < 1e-9, "resolution only: {u}");
        let (m, u) = level_of(&[19.0, 20.0, 21.0, 20.0, 35.0], 1.0).unwrap();
        assert_eq!(m, 20.0, "an outlier does not move the median");
        assert!(u > 0.5 && u < 1.5, "{u}");
        assert_eq!(level_of(&[], 1.0), None);
    }
}
