//! Statistics on stored whole-run histograms (`(value_us, count)` pairs): the
//! distribution-free percentile confidence interval ([`quantile_ci`]), Mann–Whitney U
//! ([`mann_whitney`] -> [`Shift`]) and the display buckets ([`histogram_view`]). Pure;
//! re-exported from [`crate::compare`].

use serde::{Deserialize, Serialize};

/// Mann–Whitney result for one metric between the first run and run `run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shift {
    pub metric: String,
    pub run: usize,
    pub p_value: f64,
    /// P(sample of run `run` > sample of the first run) (+½ ties).
    pub prob_slower: f64,
    pub n_a: u64,
    pub n_b: u64,
    /// `slower`, `faster` or `same`: shifted when p < 0.01 and P(slower) is at least
    /// 0.05 away from even.
    pub verdict: String,
}

/// The value at 1-based rank `k` of a histogram.
fn value_at_rank(h: &[(u64, u64)], k: u64) -> Option<u64> {
    let mut seen = 0;
    for &(v, c) in h {
        seen += c;
        if seen >= k {
            return Some(v);
        }
    }
    h.last().map(|x| x.0)
}

/// Distribution-free 95 % confidence interval of the `q` quantile (order statistics,
/// normal approximation of the binomial). `None` unless at least 5 samples lie on each
/// side of the quantile (n·min(q, 1−q) ≥ 5: p50 needs 10 samples, p95 100, p99 500) —
/// below that the approximation does not hold and no claim is made.
pub fn quantile_ci(h: &[(u64, u64)], q: f64) -> Option<(u64, u64)> {
    let n: u64 = h.iter().map(|x| x.1).sum();
    if (n as f64) * q.min(1.0 - q) < 5.0 {
        return None;
    }
    let nf = n as f64;
    let half = 1.96 * (nf * q * (1.0 - q)).sqrt();
    let lo = (nf * q - half).floor().max(1.0) as u64;
    let hi = ((nf * q + half).ceil() as u64 + 1).min(n);
    Some((value_at_rank(h, lo)?, value_at_rank(h, hi)?))
}

/// Mann–Whitney U of `b` against `a`, with tie correction and the normal
/// approximation. `None` when either side is empty.
pub fn mann_whitney(a: &[(u64, u64)], b: &[(u64, u64)]) -> Option<Shift> {
    let na: u64 = a.iter().map(|x| x.1).sum();
    let nb: u64 = b.iter().map(|x| x.1).sum();
    if na == 0 || nb == 0 {
        return None;
    }
    let (mut i, mut j) = (0, 0);
    let mut rank_before = 0f64;
    let mut rank_sum_b = 0f64;
    let mut tie_term = 0f64;
    while i < a.len() || j < b.len() {
        let va = a.get(i).map(|x| x.0);
        let vb = b.get(j).map(|x| x.0);
        let v = match (va, vb) {
            (Some(x), Some(y)) => x.min(y),
            (Some(x), None) => x,
            (None, Some(y)) => y,
            (None, None) => break,
        };
        let ca = if va == Some(v) {
            i += 1;
            a[i - 1].1
        } else {
            0
        };
        let cb = if vb == Some(v) {
            j += 1;
            b[j - 1].1
        } else {
            0
        };
        let t = (ca + cb) as f64;
        let avg = rank_before + (t + 1.0) / 2.0;
        rank_sum_b += cb as f64 * avg;
        rank_before += t;
        tie_term += t * t * t - t;
    }
    let (naf, nbf) = (na as f64, nb as f64);
    let n = naf + nbf;
    let u_b = rank_sum_b - nbf * (nbf + 1.0) / 2.0;
    let mean = naf * nbf / 2.0;
    let var = naf * nbf / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)).max(1.0));
    let p_value = if var <= 0.0 {
        1.0
    } else {
        let z = (u_b - mean).abs() / var.sqrt();
        erfc(z / std::f64::consts::SQRT_2).clamp(0.0, 1.0)
    };
    let prob_slower = u_b / (naf * nbf);
    let shifted = p_value < 0.01 && (prob_slower - 0.5).abs() >= 0.05;
    let verdict = match (shifted, prob_slower > 0.5) {
        (false, _) => "same",
        (true, true) => "slower",
        (true, false) => "faster",
    };
    Some(Shift {
        metric: String::new(),
        run: 1,
        p_value,
        prob_slower,
        n_a: na,
        n_b: nb,
        verdict: verdict.into(),
    })
}

/// Complementary error function (W. J. Cody's rational approximation via
/// Numerical Recipes' `erfcc`, |error| < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// A latency distribution for display: sample counts in 1-1.5-2-3-5-7 buckets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HistogramView {
    pub metric: String,
    /// Upper bound of each bucket, in ms (a bucket holds `(previous bound, bound]`).
    pub le_ms: Vec<f64>,
    pub counts: Vec<u64>,
}

/// Buckets a stored histogram (`(value_us, count)`) into 1-1.5-2-3-5-7 steps from 0.1 ms,
/// from one bucket below the fastest sample to one above the slowest.
pub fn histogram_view(metric: &str, h: &[(u64, u64)]) -> HistogramView {
    let mut bounds_us = Vec::new();
    let mut decade = 100u64;
    while decade <= 100_000_000 {
        for m in [10, 15, 20, 30, 50, 70] {
            bounds_us.push(decade * m / 10);
        }
        decade *= 10;
    }
    // The last bucket also takes anything slower than its bound (700 s).
    let mut counts = vec![0u64; bounds_us.len()];
    for &(v, c) in h {
        let i = bounds_us
            .partition_point(|b| *b < v)
            .min(bounds_us.len() - 1);
        counts[i] += c;
    }
    let le_ms: Vec<f64> = bounds_us.iter().map(|b| *b as f64 / 1000.0).collect();
    // One empty bucket either side keeps a lone bucket readable as a bar.
    let first = counts
        .iter()
        .position(|c| *c > 0)
        .unwrap_or(0)
        .saturating_sub(1);
    let last = (counts.iter().rposition(|c| *c > 0).unwrap_or(0) + 1).min(counts.len() - 1);
    HistogramView {
        metric: metric.into(),
        le_ms: le_ms[first..=last].to_vec(),
        counts: counts[first..=last].to_vec(),
    }
}
