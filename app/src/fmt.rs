//! Formatting for views: durations, microsecond latencies, timestamps, counts. Pure.

/// `1234` -> `1.2 s`, `450` -> `450 ms`.
pub fn ms(ms: u64) -> String {
    if ms >= 60_000 {
        format!("{}m {:02}s", ms / 60_000, (ms % 60_000) / 1000)
    } else if ms >= 1000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{ms} ms")
    }
}

/// Microseconds as a latency: `850 µs`, `12.3 ms`, `1.20 s`.
pub fn us(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2} s", us as f64 / 1e6)
    } else if us >= 1000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
}

/// Unix milliseconds as `2026-11-25 19:50:01 UTC`.
/// A duration as a clock: `0:12`, `12:05`, `1:02:03`.
pub fn clock(ms: u64) -> String {
    let s = ms / 1000;
    match s / 3600 {
        0 => format!("{}:{:02}", s / 60, s % 60),
        h => format!("{h}:{:02}:{:02}", s / 60 % 60, s % 60),
    }
}

pub fn timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// `12345` -> `12,345`.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A metric value by unit (`count`, `per_s`, `pct`, `ms`, `s`).
pub fn metric(v: f64, unit: &str) -> String {
    match unit {
        "count" => count(v.max(0.0).round() as u64),
        "per_s" => format!("{v:.1}/s"),
        "pct" => format!("{v:.2} %"),
        "ms" if v < 10.0 => format!("{v:.2} ms"),
        "ms" => format!("{v:.1} ms"),
        "s" => format!("{v:.1} s"),
        _ => format!("{v}"),
    }
}

/// A change: `+38 %`, `−4.1 %`, or the absolute difference when there is no base.
pub fn change(abs: f64, rel: Option<f64>, unit: &str) -> String {
    match rel {
        Some(r) => format!("{:+.1} %", r * 100.0),
        None if abs == 0.0 => "±0".into(),
        None => {
            let sign = if abs > 0.0 { "+" } else { "−" };
            format!("{sign}{}", metric(abs.abs(), unit))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(ms(450), "450 ms");
        assert_eq!(ms(1234), "1.2 s");
        assert_eq!(ms(125_000), "2m 05s");
        assert_eq!(us(850), "850 µs");
        assert_eq!(us(12_345), "12.3 ms");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(12), "12");
        assert_eq!(clock(12_400), "0:12");
        assert_eq!(clock(725_000), "12:05");
        assert_eq!(clock(3_723_000), "1:02:03");
        assert_eq!(timestamp(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(timestamp(1_795_636_201_000), "2026-11-25 19:50:01 UTC");
        assert_eq!(metric(1234.0, "count"), "1,234");
        assert_eq!(metric(3.14759, "ms"), "3.15 ms");
        assert_eq!(change(38.0, Some(0.38), "ms"), "+38.0 %");
        assert_eq!(change(4.0, None, "count"), "+4");
    }
}
