//! "What the target said": every answer the target gave that was not a plain open
//! WebSocket — status lines, TCP refusals and stalls, close codes — with counts, when it
//! was first and last seen, the sample bodies, and the rate-limit headers and
//! `Retry-After` values it sent, and the reason texts of its close frames. One pure function over what a run already keeps (the
//! totals, the kept `Evidence` and the per-second series), so the run page, the share
//! page, the HTML report (all one component tree) and the CLI read it the same way.
//!
//! Kinds are turned back into `FailKind`/`CloseKind` with `parse` (the one classifier);
//! answers that say nothing about the target (our own port limits, attempts the run's
//! end aborted, sessions we closed) are left out.

use serde::{Deserialize, Serialize};

use crate::outcome::{CloseKind, FailClass, FailKind};
use crate::report::{Evidence, Series, Totals};

/// One kind of answer and how often the target gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Answer {
    /// The outcome key (`http_429`, `server_1008`, `timeout`), as in the failure table.
    pub key: String,
    /// What the target said, in words: `HTTP 429 Too Many Requests`, `close 1013 try
    /// again later`.
    pub said: String,
    /// `handshake` (the upgrade or the connect failed) or `session` (an open session
    /// was ended).
    pub stage: String,
    pub count: u64,
    /// Elapsed seconds of the first and last tick that saw it (from the series; `None`
    /// when the series has no column for it).
    pub first_s: Option<f64>,
    pub last_s: Option<f64>,
    /// Sample response bodies (handshake statuses only; secrets already scrubbed).
    pub bodies: Vec<String>,
    /// The reasons the target's close frames gave (server close codes only), with how
    /// often each was sent, most frequent first (secrets already scrubbed).
    #[serde(default)]
    pub reasons: Vec<(String, u64)>,
}

/// Everything the target said over a run (or so far).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TargetSaid {
    /// Most frequent first.
    pub answers: Vec<Answer>,
    /// `Retry-After` values with how often each was kept.
    pub retry_after: Vec<(String, u64)>,
    /// `X-RateLimit-*` / `RateLimit-*` headers (first value of each name).
    pub rate_limit_headers: Vec<(String, String)>,
}

impl TargetSaid {
    /// Nothing to show: every attempt opened and only we closed sessions.
    pub fn is_empty(&self) -> bool {
        self.answers.is_empty() && self.retry_after.is_empty() && self.rate_limit_headers.is_empty()
    }
}

/// The reason phrase of the statuses limits and gateways answer with.
fn reason_phrase(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// RFC 6455 §7.4.1 names of the close codes (and the 4000 range apps use).
fn close_name(code: u16) -> &'static str {
    match code {
        1000 => "normal closure",
        1001 => "going away",
        1002 => "protocol error",
        1003 => "unsupported data",
        1005 => "no status code",
        1007 => "invalid payload",
        1008 => "policy violation",
        1009 => "message too big",
        1011 => "internal error",
        1012 => "service restart",
        1013 => "try again later",
        1014 => "bad gateway",
        4000..=4999 => "application-defined",
        _ => "",
    }
}

fn status_line(prefix: &str, code: u16) -> String {
    if code == crate::outcome::OTHER_CODE {
        return format!("{prefix}HTTP, other statuses");
    }
    let phrase = reason_phrase(code);
    if phrase.is_empty() {
        format!("{prefix}HTTP {code}")
    } else {
        format!("{prefix}HTTP {code} {phrase}")
    }
}

/// A handshake failure in words, or `None` when it says nothing about the target.
fn fail_words(kind: FailKind) -> Option<String> {
    if matches!(kind.class(), FailClass::ClientLimit | FailClass::Aborted) {
        return None;
    }
    Some(match kind {
        FailKind::Status(c) => status_line("", c),
        FailKind::TokenStatus(c) => status_line("token endpoint: ", c),
        FailKind::StepStatus(c) => status_line("HTTP step: ", c),
        FailKind::Refused => "TCP connection refused".into(),
        FailKind::Reset => "connection reset during the handshake".into(),
        FailKind::Timeout => "no answer within the connect timeout".into(),
        FailKind::Dns => "name not resolved".into(),
        FailKind::Tls => "TLS handshake failed".into(),
        FailKind::Protocol => "not a WebSocket upgrade".into(),
        FailKind::TokenError => "token endpoint failed".into(),
        FailKind::StepError => "HTTP step failed".into(),
        FailKind::StepTooLarge => format!(
            "HTTP step: an answer over {} KiB",
            crate::report::MAX_STEP_ANSWER >> 10
        ),
        FailKind::TokenTooLarge => format!(
            "token endpoint: an answer over {} KiB",
            crate::report::MAX_TOKEN_ANSWER >> 10
        ),
        FailKind::Io
        | FailKind::BadValue
        | FailKind::ClientLimit
        | FailKind::Aborted
        | FailKind::MemoryBudget => return None,
    })
}

/// A session end in words, or `None` for the ones we caused.
fn close_words(kind: CloseKind) -> Option<String> {
    Some(match kind {
        CloseKind::Server(crate::outcome::OTHER_CODE) => "close, other codes".into(),
        CloseKind::Server(c) => {
            let name = close_name(c);
            if name.is_empty() {
                format!("close {c}")
            } else {
                format!("close {c} {name}")
            }
        }
        CloseKind::Abnormal => "connection ended without a close frame (1006)".into(),
        CloseKind::Protocol => "broke the WebSocket protocol".into(),
        CloseKind::TooLarge => "sent a message over 16 MiB".into(),
        CloseKind::MemoryBudget => {
            "sent messages past what this process holds at once (its memory budget)".into()
        }
        CloseKind::Client | CloseKind::Rotated => return None,
    })
}

/// First and last elapsed second at which a per-second column is above zero.
fn span(series: &Series, col: Option<&Vec<f64>>) -> (Option<f64>, Option<f64>) {
    let Some(col) = col else {
        return (None, None);
    };
    let seen = || {
        col.iter()
            .zip(&series.t)
            .filter(|(v, _)| **v > 0.0)
            .map(|(_, t)| *t)
    };
    (seen().next(), seen().next_back())
}

/// What the target said, from a run's totals (cumulative), kept evidence and series.
pub fn target_said(totals: &Totals, evidence: &Evidence, series: &Series) -> TargetSaid {
    let mut answers = Vec::new();
    for (key, n) in &totals.failures {
        let Some(kind) = FailKind::parse(key) else {
            continue;
        };
        let Some(said) = fail_words(kind) else {
            continue;
        };
        let (first_s, last_s) = span(series, series.failed_rate.get(key));
        let bodies = match kind {
            FailKind::Status(c) => evidence.bodies.get(&c).cloned().unwrap_or_default(),
            _ => Vec::new(),
        };
        answers.push(Answer {
            key: key.clone(),
            said,
            stage: "handshake".into(),
            count: *n,
            first_s,
            last_s,
            bodies,
            reasons: Vec::new(),
        });
    }
    for (key, n) in &totals.closes {
        let Some(kind) = CloseKind::parse(key) else {
            continue;
        };
        let Some(said) = close_words(kind) else {
            continue;
        };
        let (first_s, last_s) = span(series, series.drop_rate.get(key));
        let mut reasons: Vec<(String, u64)> = match kind {
            CloseKind::Server(c) => evidence
                .close_reasons
                .get(&c)
                .map(|r| r.iter().map(|(k, v)| (k.clone(), *v)).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        answers.push(Answer {
            key: key.clone(),
            said,
            stage: "session".into(),
            count: *n,
            first_s,
            last_s,
            bodies: Vec::new(),
            reasons,
        });
    }
    answers.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    let mut retry_after: Vec<(String, u64)> = evidence
        .retry_after
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    retry_after.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    TargetSaid {
        answers,
        retry_after,
        rate_limit_headers: evidence
            .rate_limit_headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> Series {
        let mut s = Series {
            t: vec![1.0, 2.0, 3.0, 4.0],
            ..Default::default()
        };
        s.failed_rate
            .insert("http_429".into(), vec![0.0, 5.0, 0.0, 2.0]);
        s.failed_rate
            .insert("aborted".into(), vec![0.0, 0.0, 0.0, 9.0]);
        s.drop_rate
            .insert("server_1013".into(), vec![0.0, 0.0, 1.0, 0.0]);
        s
    }

    #[test]
    fn statuses_and_closes_with_counts_times_and_bodies() {
        let mut t = Totals::default();
        t.failures.insert("http_429".into(), 7);
        t.failures.insert("aborted".into(), 9);
        t.failures.insert("client_limit".into(), 3);
        t.closes.insert("server_1013".into(), 1);
        t.closes.insert("client".into(), 40);
        let mut ev = Evidence::default();
        ev.bodies
            .insert(429, vec!["too many concurrent connections".into()]);
        ev.retry_after.insert("1".into(), 2);
        ev.retry_after.insert("5".into(), 4);
        ev.rate_limit_headers
            .insert("x-ratelimit-limit".into(), "150".into());
        let said = target_said(&t, &ev, &series());
        assert_eq!(
            said.answers.len(),
            2,
            "aborted, client limits and our closes are ours"
        );
        let a = &said.answers[0];
        assert_eq!(
            (a.key.as_str(), a.said.as_str(), a.stage.as_str(), a.count),
            ("http_429", "HTTP 429 Too Many Requests", "handshake", 7)
        );
        assert_eq!((a.first_s, a.last_s), (Some(2.0), Some(4.0)));
        assert_eq!(
            a.bodies,
            vec!["too many concurrent connections".to_string()]
        );
        let c = &said.answers[1];
        assert_eq!(c.said, "close 1013 try again later");
        assert_eq!((c.first_s, c.last_s), (Some(3.0), Some(3.0)));
        assert_eq!(said.retry_after, vec![("5".into(), 4), ("1".into(), 2)]);
        assert_eq!(
            said.rate_limit_headers,
            vec![("x-ratelimit-limit".into(), "150".into())]
        );
    }

    #[test]
    fn close_rows_carry_the_reasons_the_target_gave() {
        let mut t = Totals::default();
        t.closes.insert("server_1008".into(), 12);
        t.closes.insert("abnormal_1006".into(), 1);
        let mut ev = Evidence::default();
        ev.add_close_reason(1008, "too many concurrent connections", 10);
        ev.add_close_reason(1008, "  token expired ", 2);
        ev.add_close_reason(1008, "", 5);
        let said = target_said(&t, &ev, &series());
        let a = &said.answers[0];
        assert_eq!(a.said, "close 1008 policy violation");
        assert_eq!(
            a.reasons,
            vec![
                ("too many concurrent connections".to_string(), 10),
                ("token expired".to_string(), 2)
            ]
        );
        assert!(said.answers[1].reasons.is_empty());
    }

    #[test]
    fn close_reasons_stay_bounded_against_a_hostile_target() {
        use crate::report::{MAX_CLOSE_CODES, MAX_CLOSE_REASONS, MAX_CLOSE_REASON_BYTES};
        let mut ev = Evidence::default();
        for i in 0..10_000u32 {
            let code = 4000 + (i % 50) as u16;
            ev.add_close_reason(code, &format!("{i} {}", "é".repeat(200)), 1);
        }
        assert_eq!(ev.close_reasons.len(), MAX_CLOSE_CODES);
        for reasons in ev.close_reasons.values() {
            assert_eq!(reasons.len(), MAX_CLOSE_REASONS);
            assert!(reasons.keys().all(|r| r.len() <= MAX_CLOSE_REASON_BYTES));
        }
        // A kept reason keeps counting; merging keeps the bounds too.
        let kept = ev.close_reasons[&4000].keys().next().unwrap().clone();
        let mut other = Evidence::default();
        other.add_close_reason(4000, &kept, 7);
        other.add_close_reason(4000, "new one", 7);
        other.add_close_reason(1008, "new code", 1);
        let before = ev.close_reasons[&4000][&kept];
        ev.merge(&other);
        assert_eq!(ev.close_reasons[&4000][&kept], before + 7);
        assert!(!ev.close_reasons[&4000].contains_key("new one"));
        assert!(!ev.close_reasons.contains_key(&1008));
        // Old exports have no close reasons: they still read.
        let old: Evidence =
            serde_json::from_str(r#"{"retry_after":{},"rate_limit_headers":{},"bodies":{}}"#)
                .unwrap();
        assert!(old.close_reasons.is_empty());
    }

    #[test]
    fn a_clean_run_said_nothing() {
        let mut t = Totals::default();
        t.closes.insert("client".into(), 10);
        assert!(target_said(&t, &Evidence::default(), &Series::default()).is_empty());
    }

    #[test]
    fn unknown_status_codes_and_missing_columns() {
        let mut t = Totals::default();
        t.failures.insert("http_599".into(), 1);
        t.failures.insert("token_http_429".into(), 2);
        let said = target_said(&t, &Evidence::default(), &Series::default());
        assert_eq!(
            said.answers[0].said,
            "token endpoint: HTTP 429 Too Many Requests"
        );
        assert_eq!(said.answers[1].said, "HTTP 599");
        assert_eq!(said.answers[1].first_s, None);
    }
}
