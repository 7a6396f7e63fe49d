//! The closed set of things that can happen to a connection, and the one place that
//! classifies them.
//!
//! A failed connection is a measurement, not an error: every attempt ends in exactly one
//! `FailKind` (or opens), and every open session ends in exactly one `CloseKind`. Each
//! variant becomes a JSON key (`key()`), a table row and a chart series, so the set stays
//! small (k6 warns about metric cardinality). Keys are strings only at the edges (JSON,
//! SQLite, CSV): every consumer — the diagnosis, the probe, compare, the charts, the
//! tables, the CLI — turns a key back into its kind with `parse` and asks the kind what
//! it means (`class()`, `is_drop()`), so no consumer matches key strings of its own.
//!
//! # Adding an outcome kind (a newcomer's checklist)
//!
//! Most consumers never name a kind: they ask its class or `is_drop()`, so a kind that
//! fits an existing [`FailClass`] reaches the diagnosis, the probe, compare, the charts,
//! the tables, the CSV and `/metrics` by itself. What you must touch:
//!
//! 1. **The variant** on [`FailKind`] (an attempt that did not open) or [`CloseKind`]
//!    (how an open session ended).
//! 2. **Its string name, defined once**, in `FailKind::key()` / `CloseKind::key()`.
//!    *Compiler-enforced*: both are exhaustive `match`es, so the build fails until the
//!    new variant has a key. The key is what JSON, SQLite, the CSV columns
//!    (`failed_<key>_per_s`, `dropped_<key>_per_s` from `report::Series::to_csv`),
//!    the failures table and the `/metrics` `kind` label carry.
//! 3. **Reading the name back** in `FailKind::parse()` / `CloseKind::parse()`. *Not
//!    enforced*: both match strings with a fallback, so a forgotten arm compiles, and
//!    then the diagnosis silently skips the key (`diagnose/facts.rs` keeps only keys
//!    that parse), `/metrics` labels it class `other`, and `POST /api/runs/import`
//!    (`server/src/runs/import.rs`) refuses every run that has it. The round-trip test
//!    `every_key_parses_back_to_its_kind` (below) catches it only once the new kind is
//!    listed in `every_fail_kind()` / `every_close_kind()` — add it there.
//! 4. **What it means** — the one classifier. For a `FailKind`, its [`FailClass`] in
//!    `FailKind::class()`: *compiler-enforced* (exhaustive, no `_` arm); `is_refusal()`
//!    and `is_auth()` follow from the class. A new `FailClass` needs a name in
//!    `FailClass::key()` (*compiler-enforced*; it is the `/metrics` `class` label), the
//!    class count in the `classes` test, and a decision in `diagnose/facts.rs`'s
//!    `match k.class()` (it has a `_` arm: *not enforced*). For a `CloseKind`,
//!    `is_drop()` (a drop unless it is `Client`), `is_auth_end()` and `code()` all have
//!    defaults: *not enforced*, decide each.
//! 5. **Where it is produced** (*not enforced*): `engine/src/conn.rs` (`io_kind`,
//!    `tls_kind`), `engine/src/conn/connect.rs` (the handshake and HTTP-step paths),
//!    `engine/src/conn/socket.rs` (`end_of`), `engine/src/conn/session.rs` (the
//!    session loop), `engine/src/tokens.rs` (token fetches). Each
//!    records through `Recorder::failed` / `Recorder::closed` (`stats.rs`); the
//!    aggregator's `RunStats::merge` turns the kind into its key and counts
//!    `Totals::dropped` by `is_drop()`.
//! 6. **The few consumers that still read key strings** (*not enforced*):
//!    `report::Series::push` counts per-tick drops as every close key but `"client"`
//!    (a new non-drop `CloseKind` must be excluded there too, or the drops chart and
//!    CSV disagree with `Totals::dropped`); `app/src/charts.rs`'s `color_of` gives
//!    known keys their colour (others are grey); `compare/behaviour.rs`'s sentences pick
//!    out `FailKind::Status` for "first 429 at …".
//! 7. **Docs** (*not enforced*): the outcome-key list in the README's *What is
//!    measured*, and the class list of `socketswarm_run_connect_failures_total` in its
//!    *Metrics for Prometheus and Grafana* when a class is added.

/// The code of a family's `other` key (`http_other`, `token_http_other`,
/// `step_http_other`, `server_other`): every code a run did not keep a key of its own
/// for, once it kept `MAX_CODES_PER_FAMILY` of that family. No status or close code is 0.
pub const OTHER_CODE: u16 = 0;

/// Distinct codes a run keeps per family of keys whose code the target picks (see
/// [`KeyFamily`] and `report::OutcomeKeys`).
pub const MAX_CODES_PER_FAMILY: usize = 8;

/// Why a connection attempt did not reach an open WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailKind {
    /// The handshake answered with an HTTP status other than 101 (429, 401, 503, ...);
    /// `OTHER_CODE` for statuses a run keeps no key of their own for.
    Status(u16),
    /// TCP connect refused (nothing listening, or a full backlog).
    Refused,
    /// Connection reset by the peer during connect or handshake.
    Reset,
    /// The connect or handshake did not finish within `connect_timeout`.
    Timeout,
    /// No local address/port available (ephemeral ports exhausted) or too many open files:
    /// a client-side limit, never the target's fault.
    ClientLimit,
    /// Name resolution failed.
    Dns,
    /// TLS handshake failed.
    Tls,
    /// The peer answered something that is not a valid WebSocket upgrade.
    Protocol,
    /// Any other I/O error.
    Io,
    /// The run ended (or the VU was retired) while the attempt was still in flight.
    Aborted,
    /// The token endpoint answered this HTTP status (no token, so no handshake).
    TokenStatus(u16),
    /// The token endpoint could not be reached or answered nonsense.
    TokenError,
    /// An HTTP step before the handshake answered this status.
    StepStatus(u16),
    /// An HTTP step failed otherwise (unreachable, not JSON, a captured field missing).
    StepError,
    /// A rendered header or URL value held a line break (CR/LF, e.g. from a token or a
    /// captured value): the request was not sent.
    BadValue,
    /// An HTTP step's answer was longer than `budget::MAX_STEP_ANSWER` (1 MiB).
    StepTooLarge,
    /// The token endpoint's answer was longer than `budget::MAX_TOKEN_ANSWER` (64 KiB).
    TokenTooLarge,
    /// A token or HTTP-step answer could not be held: this process's budget for bytes
    /// in flight from targets was full (`budget`). Our limit, not the target's.
    MemoryBudget,
}

/// What a failed attempt means for the diagnosis: how (or whether) the target said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailClass {
    /// "Not now": 429 or 503 (the statuses limits answer with).
    Rejected(u16),
    /// The handshake refused the credentials: 401 or 403.
    AuthRefused(u16),
    /// The token endpoint said "not now" (429/503): token exhaustion.
    TokenRefused(u16),
    /// The token endpoint failed otherwise (an error, another 4xx/5xx).
    TokenFailed,
    /// No answer within `connect_timeout`: a stall.
    Stalled,
    /// TCP refused or reset: the target (or a proxy) turned the connection away.
    Reset,
    /// Our own ports or file descriptors ran out.
    ClientLimit,
    /// In flight when the run ended: says nothing about the target.
    Aborted,
    /// Anything else (other statuses, DNS, TLS, broken upgrades, HTTP steps).
    Other,
}

impl FailClass {
    /// Stable name of the class, for labels at the edges (`/metrics`); the status a
    /// `Rejected`/`AuthRefused`/`TokenRefused` carries is in the kind's key.
    pub fn key(&self) -> &'static str {
        match self {
            FailClass::Rejected(_) => "rejected",
            FailClass::AuthRefused(_) => "auth_refused",
            FailClass::TokenRefused(_) => "token_refused",
            FailClass::TokenFailed => "token_failed",
            FailClass::Stalled => "stalled",
            FailClass::Reset => "reset",
            FailClass::ClientLimit => "client_limit",
            FailClass::Aborted => "aborted",
            FailClass::Other => "other",
        }
    }
}

impl FailKind {
    /// Stable key used in JSON, the database and the UI.
    pub fn key(&self) -> String {
        match self {
            FailKind::Status(OTHER_CODE) => "http_other".into(),
            FailKind::TokenStatus(OTHER_CODE) => "token_http_other".into(),
            FailKind::StepStatus(OTHER_CODE) => "step_http_other".into(),
            FailKind::Status(code) => format!("http_{code}"),
            FailKind::Refused => "refused".into(),
            FailKind::Reset => "reset".into(),
            FailKind::Timeout => "timeout".into(),
            FailKind::ClientLimit => "client_limit".into(),
            FailKind::Dns => "dns".into(),
            FailKind::Tls => "tls".into(),
            FailKind::Protocol => "protocol".into(),
            FailKind::Io => "io".into(),
            FailKind::Aborted => "aborted".into(),
            FailKind::TokenStatus(code) => format!("token_http_{code}"),
            FailKind::TokenError => "token_error".into(),
            FailKind::StepStatus(code) => format!("step_http_{code}"),
            FailKind::StepError => "step_error".into(),
            FailKind::BadValue => "bad_value".into(),
            FailKind::StepTooLarge => "step_too_large".into(),
            FailKind::TokenTooLarge => "token_too_large".into(),
            FailKind::MemoryBudget => "memory_budget".into(),
        }
    }

    /// The kind a stored key stands for (`None` for a key no version ever wrote).
    pub fn parse(key: &str) -> Option<FailKind> {
        let status = |s: &str| s.parse::<u16>().ok().filter(|c| (100..=999).contains(c));
        Some(match key {
            "refused" => FailKind::Refused,
            "reset" => FailKind::Reset,
            "timeout" => FailKind::Timeout,
            "client_limit" => FailKind::ClientLimit,
            "dns" => FailKind::Dns,
            "tls" => FailKind::Tls,
            "protocol" => FailKind::Protocol,
            "io" => FailKind::Io,
            "aborted" => FailKind::Aborted,
            "token_error" => FailKind::TokenError,
            "step_error" => FailKind::StepError,
            "bad_value" => FailKind::BadValue,
            "step_too_large" => FailKind::StepTooLarge,
            "token_too_large" => FailKind::TokenTooLarge,
            "memory_budget" => FailKind::MemoryBudget,
            "http_other" => FailKind::Status(OTHER_CODE),
            "token_http_other" => FailKind::TokenStatus(OTHER_CODE),
            "step_http_other" => FailKind::StepStatus(OTHER_CODE),
            k => {
                if let Some(c) = k.strip_prefix("token_http_") {
                    FailKind::TokenStatus(status(c)?)
                } else if let Some(c) = k.strip_prefix("step_http_") {
                    FailKind::StepStatus(status(c)?)
                } else if let Some(c) = k.strip_prefix("http_") {
                    FailKind::Status(status(c)?)
                } else {
                    return None;
                }
            }
        })
    }

    /// What this failure means (the one classifier every consumer uses).
    pub fn class(&self) -> FailClass {
        match *self {
            FailKind::Status(s @ (429 | 503)) => FailClass::Rejected(s),
            FailKind::Status(s @ (401 | 403)) => FailClass::AuthRefused(s),
            FailKind::TokenStatus(s @ (429 | 503)) => FailClass::TokenRefused(s),
            FailKind::TokenStatus(_) | FailKind::TokenError | FailKind::TokenTooLarge => {
                FailClass::TokenFailed
            }
            FailKind::Timeout => FailClass::Stalled,
            FailKind::Refused | FailKind::Reset => FailClass::Reset,
            FailKind::ClientLimit | FailKind::MemoryBudget => FailClass::ClientLimit,
            FailKind::Aborted => FailClass::Aborted,
            FailKind::Status(_)
            | FailKind::Dns
            | FailKind::Tls
            | FailKind::Protocol
            | FailKind::Io
            | FailKind::StepStatus(_)
            | FailKind::StepError
            | FailKind::StepTooLarge
            | FailKind::BadValue => FailClass::Other,
        }
    }

    /// The target turned the attempt away (a status that means "not now", a stall, or a
    /// TCP refusal/reset): the symptom caps and rate limits share.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self.class(),
            FailClass::Rejected(_) | FailClass::Stalled | FailClass::Reset
        )
    }

    /// Credentials or tokens were the trouble (handshake 401/403 or the token endpoint).
    pub fn is_auth(&self) -> bool {
        matches!(
            self.class(),
            FailClass::AuthRefused(_) | FailClass::TokenRefused(_) | FailClass::TokenFailed
        )
    }
}

/// How an established session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CloseKind {
    /// The server sent a close frame with this code (1005 when it carried none);
    /// `OTHER_CODE` for codes a run keeps no key of their own for.
    Server(u16),
    /// The connection ended without a close frame (EOF or reset): 1006 in RFC 6455 terms.
    Abnormal,
    /// The client closed it: end of run, ramp-down or a `close` step.
    Client,
    /// The peer broke the protocol (bad frame, invalid UTF-8, bad masking).
    Protocol,
    /// The peer sent a frame or message over the 16 MiB limit.
    TooLarge,
    /// We closed it (1000) to reconnect with a new token (`auth.rotation` `reconnect`):
    /// neither a drop nor the session's end.
    Rotated,
    /// A message arriving would have taken this process past its budget for bytes in
    /// flight from targets (`budget`): the connection was dropped without holding it.
    /// The target's messages caused it, so it counts as a drop (and reconnects).
    MemoryBudget,
}

impl CloseKind {
    /// Stable key used in JSON, the database and the UI. A broken session is
    /// `protocol_violation`, apart from a broken *handshake* (`protocol`, a `FailKind`),
    /// so the two never share a key.
    pub fn key(&self) -> String {
        match self {
            CloseKind::Server(OTHER_CODE) => "server_other".into(),
            CloseKind::Server(code) => format!("server_{code}"),
            CloseKind::Abnormal => "abnormal_1006".into(),
            CloseKind::Client => "client".into(),
            CloseKind::Protocol => "protocol_violation".into(),
            CloseKind::TooLarge => "too_large".into(),
            CloseKind::Rotated => "rotation".into(),
            CloseKind::MemoryBudget => "session_memory_budget".into(),
        }
    }

    /// The kind a stored key stands for. Runs stored before the rename wrote a broken
    /// session as `protocol`; it still reads as `Protocol`.
    pub fn parse(key: &str) -> Option<CloseKind> {
        Some(match key {
            "abnormal_1006" => CloseKind::Abnormal,
            "client" => CloseKind::Client,
            "protocol_violation" | "protocol" => CloseKind::Protocol,
            "too_large" => CloseKind::TooLarge,
            "rotation" => CloseKind::Rotated,
            "session_memory_budget" => CloseKind::MemoryBudget,
            "server_other" => CloseKind::Server(OTHER_CODE),
            k => CloseKind::Server(
                k.strip_prefix("server_")?
                    .parse::<u16>()
                    .ok()
                    .filter(|c| (1000..=4999).contains(c))?,
            ),
        })
    }

    /// True when the target (or the network) ended the session, not us.
    pub fn is_drop(&self) -> bool {
        !matches!(self, CloseKind::Client | CloseKind::Rotated)
    }

    /// Close codes that mean "your credentials ended" (token expiry), not capacity:
    /// 4401/4403 (the 4000 range mirroring 401/403) and 1008 (policy violation).
    pub fn is_auth_end(&self) -> bool {
        matches!(self, CloseKind::Server(4401 | 4403 | 1008))
    }

    /// The close code, when the target sent one (1006 for an abrupt end).
    pub fn code(&self) -> Option<u16> {
        match self {
            CloseKind::Server(OTHER_CODE) => None,
            CloseKind::Server(c) => Some(*c),
            CloseKind::Abnormal => Some(1006),
            _ => None,
        }
    }
}

/// A family of outcome keys that differ only by a code the target picks: a run keeps
/// `MAX_CODES_PER_FAMILY` codes of each and counts the rest in the family's `other` key
/// (`report::OutcomeKeys`). Keys outside every family are a fixed set (`timeout`, the
/// refusals `http_429`/`http_503`, `http_401`/`http_403`, `token_http_429`, RFC 6455's
/// close codes 1000–1015, the auth-end codes): they are always kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyFamily {
    /// Handshake statuses that are not a refusal or an auth failure (`http_500`, …).
    Status,
    /// Token endpoint statuses other than 429/503.
    TokenStatus,
    /// HTTP-step statuses.
    StepStatus,
    /// Close codes outside RFC 6455's registered range and the auth-end codes.
    Close,
    /// Keys this version does not know (an agent of another version): folded into
    /// `other`, which no version writes.
    Unknown,
}

impl KeyFamily {
    /// The key that counts the family's codes a run keeps no key of their own for.
    pub fn other_key(self) -> &'static str {
        match self {
            KeyFamily::Status => "http_other",
            KeyFamily::TokenStatus => "token_http_other",
            KeyFamily::StepStatus => "step_http_other",
            KeyFamily::Close => "server_other",
            KeyFamily::Unknown => "other",
        }
    }

    /// The family of a failure key (`None`: one of the fixed set, always kept).
    pub fn of_failure(key: &str) -> Option<KeyFamily> {
        let Some(k) = FailKind::parse(key) else {
            return Some(KeyFamily::Unknown);
        };
        match (k, k.class()) {
            (FailKind::Status(_), FailClass::Other) => Some(KeyFamily::Status),
            (FailKind::TokenStatus(_), FailClass::TokenFailed) => Some(KeyFamily::TokenStatus),
            (FailKind::StepStatus(_), _) => Some(KeyFamily::StepStatus),
            _ => None,
        }
    }

    /// The family of a session-end key (`None`: always kept).
    pub fn of_close(key: &str) -> Option<KeyFamily> {
        match CloseKind::parse(key) {
            None => Some(KeyFamily::Unknown),
            Some(k @ CloseKind::Server(c)) if !(1000..=1015).contains(&c) && !k.is_auth_end() => {
                Some(KeyFamily::Close)
            }
            Some(_) => None,
        }
    }
}

/// Either end of an attempt that did not stay open: every key the series, tables and
/// charts carry is one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Fail(FailKind),
    Close(CloseKind),
}

impl Outcome {
    pub fn key(&self) -> String {
        match self {
            Outcome::Fail(k) => k.key(),
            Outcome::Close(k) => k.key(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_fail_kind() -> Vec<FailKind> {
        let mut v = vec![
            FailKind::Refused,
            FailKind::Reset,
            FailKind::Timeout,
            FailKind::ClientLimit,
            FailKind::Dns,
            FailKind::Tls,
            FailKind::Protocol,
            FailKind::Io,
            FailKind::Aborted,
            FailKind::TokenError,
            FailKind::StepError,
            FailKind::BadValue,
            FailKind::StepTooLarge,
            FailKind::TokenTooLarge,
            FailKind::MemoryBudget,
        ];
        for s in [OTHER_CODE, 200, 400, 401, 403, 404, 429, 500, 502, 503, 599] {
            v.extend([
                FailKind::Status(s),
                FailKind::TokenStatus(s),
                FailKind::StepStatus(s),
            ]);
        }
        v
    }

    fn every_close_kind() -> Vec<CloseKind> {
        let mut v = vec![
            CloseKind::Abnormal,
            CloseKind::Client,
            CloseKind::Protocol,
            CloseKind::TooLarge,
            CloseKind::Rotated,
            CloseKind::MemoryBudget,
        ];
        for c in [
            OTHER_CODE, 1000, 1001, 1005, 1008, 1011, 1013, 4000, 4401, 4999,
        ] {
            v.push(CloseKind::Server(c));
        }
        v
    }

    #[test]
    fn keys_are_stable() {
        assert_eq!(FailKind::Status(429).key(), "http_429");
        assert_eq!(FailKind::ClientLimit.key(), "client_limit");
        assert_eq!(CloseKind::Server(1001).key(), "server_1001");
        assert_eq!(CloseKind::Abnormal.key(), "abnormal_1006");
        assert!(!CloseKind::Client.is_drop());
        assert!(CloseKind::Server(1011).is_drop());
    }

    #[test]
    fn every_key_parses_back_to_its_kind() {
        for k in every_fail_kind() {
            assert_eq!(FailKind::parse(&k.key()), Some(k), "{}", k.key());
        }
        for k in every_close_kind() {
            assert_eq!(CloseKind::parse(&k.key()), Some(k), "{}", k.key());
        }
        // Failure and session-end keys never collide (`protocol` reads as a session end
        // only in the closes of runs stored before the rename).
        for f in every_fail_kind()
            .into_iter()
            .filter(|f| *f != FailKind::Protocol)
        {
            assert_eq!(CloseKind::parse(&f.key()), None, "{}", f.key());
        }
        for c in every_close_kind() {
            assert_eq!(FailKind::parse(&c.key()), None, "{}", c.key());
        }
    }

    #[test]
    fn families_bound_the_codes_a_target_picks_and_nothing_else() {
        assert_eq!(KeyFamily::of_failure("http_500"), Some(KeyFamily::Status));
        assert_eq!(KeyFamily::of_failure("http_other"), Some(KeyFamily::Status));
        assert_eq!(KeyFamily::of_failure("http_429"), None);
        assert_eq!(KeyFamily::of_failure("http_401"), None);
        assert_eq!(KeyFamily::of_failure("token_http_503"), None);
        assert_eq!(
            KeyFamily::of_failure("token_http_500"),
            Some(KeyFamily::TokenStatus)
        );
        assert_eq!(
            KeyFamily::of_failure("step_http_429"),
            Some(KeyFamily::StepStatus)
        );
        assert_eq!(KeyFamily::of_failure("timeout"), None);
        assert_eq!(KeyFamily::of_failure("memory_budget"), None);
        assert_eq!(KeyFamily::of_failure("surprise"), Some(KeyFamily::Unknown));
        assert_eq!(KeyFamily::of_close("server_4000"), Some(KeyFamily::Close));
        assert_eq!(KeyFamily::of_close("server_other"), Some(KeyFamily::Close));
        assert_eq!(KeyFamily::of_close("server_1013"), None);
        assert_eq!(KeyFamily::of_close("server_4401"), None);
        assert_eq!(KeyFamily::of_close("abnormal_1006"), None);
        assert_eq!(CloseKind::Server(OTHER_CODE).code(), None);
        assert!(CloseKind::MemoryBudget.is_drop());
        assert_eq!(FailKind::MemoryBudget.class(), FailClass::ClientLimit);
        assert_eq!(FailKind::TokenTooLarge.class(), FailClass::TokenFailed);
        for f in [
            KeyFamily::Status,
            KeyFamily::TokenStatus,
            KeyFamily::StepStatus,
        ] {
            assert_eq!(KeyFamily::of_failure(f.other_key()), Some(f));
        }
    }

    #[test]
    fn old_and_unknown_keys() {
        // A broken session was stored as `protocol` before the rename.
        assert_eq!(CloseKind::parse("protocol"), Some(CloseKind::Protocol));
        assert_eq!(FailKind::parse("normal_1000"), None);
        assert_eq!(FailKind::parse("http_x"), None);
        assert_eq!(CloseKind::parse("server_"), None);
        assert_eq!(CloseKind::parse("server_99999"), None);
    }

    #[test]
    fn classes() {
        assert_eq!(FailKind::Status(429).class(), FailClass::Rejected(429));
        assert_eq!(FailKind::Status(503).class(), FailClass::Rejected(503));
        assert_eq!(FailKind::Status(500).class(), FailClass::Other);
        assert!(FailKind::Timeout.is_refusal());
        assert!(FailKind::Reset.is_refusal());
        assert!(!FailKind::Aborted.is_refusal());
        assert!(FailKind::TokenStatus(429).is_auth());
        assert!(FailKind::Status(401).is_auth());
        assert!(!FailKind::Status(429).is_auth());
        assert!(CloseKind::Server(4401).is_auth_end());
        assert_eq!(CloseKind::Abnormal.code(), Some(1006));
        assert_eq!(
            Outcome::Close(CloseKind::Protocol).key(),
            "protocol_violation"
        );
        assert_eq!(FailKind::Status(429).class().key(), "rejected");
        assert_eq!(FailKind::Aborted.class().key(), "aborted");
        let mut names: Vec<&str> = every_fail_kind().iter().map(|k| k.class().key()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(
            names.len(),
            9,
            "every class has a name of its own: {names:?}"
        );
    }
}
