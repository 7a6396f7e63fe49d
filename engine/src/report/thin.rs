//! A long run's series for a page ([`Series::thinned`]): at most `MAX_VIEW_POINTS`
//! points a column, so a page, a share view or a report of a run with 100,000 ticks is
//! as large as one of an hour, not thirty times that. Consecutive ticks are merged into
//! one point: rates are averaged, gauges (target, open, in flight) keep their highest
//! value, cumulative counts their last, latency percentiles their highest (a point shows
//! the worst of what it merges), and its time is the last tick's. Diagnoses, comparisons
//! and the CSV read the full series; only what is sent to be drawn is thinned.

use std::collections::BTreeMap;

use super::Series;

/// Points a column of a series sent to a page has at most: an hour of one-second ticks
/// (the longest run by default) is sent whole.
pub const MAX_VIEW_POINTS: usize = 3600;

fn buckets(n: usize, k: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    (0..n.div_ceil(k)).map(move |b| b * k..((b + 1) * k).min(n))
}

fn mean(col: &[f64], k: usize) -> Vec<f64> {
    buckets(col.len(), k)
        .map(|r| {
            let part = &col[r];
            part.iter().sum::<f64>() / part.len().max(1) as f64
        })
        .collect()
}

fn max(col: &[f64], k: usize) -> Vec<f64> {
    buckets(col.len(), k)
        .map(|r| col[r].iter().copied().fold(f64::MIN, f64::max))
        .collect()
}

fn last(col: &[f64], k: usize) -> Vec<f64> {
    buckets(col.len(), k).map(|r| col[r.end - 1]).collect()
}

fn max_opt(col: &[Option<f64>], k: usize) -> Vec<Option<f64>> {
    buckets(col.len(), k)
        .map(|r| {
            col[r]
                .iter()
                .flatten()
                .copied()
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
        })
        .collect()
}

fn each(
    cols: &BTreeMap<String, Vec<f64>>,
    f: impl Fn(&[f64]) -> Vec<f64>,
) -> BTreeMap<String, Vec<f64>> {
    cols.iter().map(|(k, v)| (k.clone(), f(v))).collect()
}

impl Series {
    /// This series with at most `max_points` points a column (itself when it has no
    /// more).
    pub fn thinned(&self, max_points: usize) -> Series {
        let n = self.t.len();
        if n <= max_points || max_points == 0 {
            return self.clone();
        }
        let k = n.div_ceil(max_points);
        let ids = |m: &BTreeMap<String, BTreeMap<String, Vec<f64>>>,
                   f: &dyn Fn(&[f64], usize) -> Vec<f64>| {
            m.iter()
                .map(|(d, cols)| (d.clone(), each(cols, |c| f(c, k))))
                .collect()
        };
        Series {
            last_seq: self.last_seq,
            t: last(&self.t, k),
            target: max(&self.target, k),
            open: max(&self.open, k),
            opened_rate: mean(&self.opened_rate, k),
            failed_rate: each(&self.failed_rate, |c| mean(c, k)),
            drop_rate: each(&self.drop_rate, |c| mean(c, k)),
            sent_rate: mean(&self.sent_rate, k),
            received_rate: mean(&self.received_rate, k),
            latency_ms: self
                .latency_ms
                .iter()
                .map(|(m, qs)| {
                    (
                        m.clone(),
                        qs.iter().map(|(q, c)| (q.clone(), max_opt(c, k))).collect(),
                    )
                })
                .collect(),
            connecting: max(&self.connecting, k),
            closed_at_once_rate: mean(&self.closed_at_once_rate, k),
            identity_open: ids(&self.identity_open, &max),
            identity_rejected: ids(&self.identity_rejected, &last),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_series_is_merged_into_points_that_keep_its_shape() {
        let n = 10_000;
        let mut s = Series {
            last_seq: n as u64,
            t: (1..=n).map(|i| i as f64).collect(),
            open: (0..n).map(|i| (i % 100) as f64).collect(),
            opened_rate: vec![2.0; n],
            ..Default::default()
        };
        s.failed_rate
            .insert("http_429".into(), (0..n).map(|i| (i % 2) as f64).collect());
        s.latency_ms.insert(
            "ws_connecting".into(),
            [(
                "p99".to_string(),
                (0..n)
                    .map(|i| (i % 7 == 0).then_some(i as f64))
                    .collect::<Vec<_>>(),
            )]
            .into(),
        );
        let v = s.thinned(3600);
        assert_eq!(v.t.len(), 3334, "10,000 ticks in threes");
        assert!(v.t.len() <= 3600);
        assert_eq!(v.t[0], 3.0);
        assert_eq!(*v.t.last().unwrap(), n as f64);
        assert!(v.open.contains(&99.0), "peaks survive");
        assert!(
            v.opened_rate.iter().all(|r| *r == 2.0),
            "rates are averaged"
        );
        let rate = &v.failed_rate["http_429"];
        assert!((rate[0] - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(v.latency_ms["ws_connecting"]["p99"][0], Some(0.0));
        assert_eq!(v.latency_ms["ws_connecting"]["p99"][1], None);
        assert_eq!(s.thinned(n), s, "short enough: unchanged");
    }
}
