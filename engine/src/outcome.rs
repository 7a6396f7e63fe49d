//! The closed set of things that can happen to a connection.
//!
//! A failed connection is a measurement, not an error: every attempt ends in exactly one
//! `Outcome`, and every open session ends in exactly one `CloseKind`. Each variant becomes
//! a JSON key (`key()`), a table row and a chart series, so the set stays small
//! (k6 warns about metric cardinality). To add a kind: 1. add the variant, 2. give it a
//! key in `key()`, 3. map it in `conn.rs`, 4. document it in the README's glossary.

/// Why a connection attempt did not reach an open WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailKind {
    /// The handshake answered with an HTTP status other than 101 (429, 401, 503, ...).
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
}

impl FailKind {
    /// Stable key used in JSON, the database and the UI.
    pub fn key(&self) -> String {
        match self {
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
        }
    }
}

/// How an established session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CloseKind {
    /// The server sent a close frame with this code (1005 when it carried none).
    Server(u16),
    /// The connection ended without a close frame (EOF or reset): 1006 in RFC 6455 terms.
    Abnormal,
    /// The client closed it: end of run, ramp-down or a `close` step.
    Client,
    /// The peer broke the protocol (bad frame, invalid UTF-8, bad masking).
    Protocol,
    /// The peer sent a frame or message over the 16 MiB limit.
    TooLarge,
}

impl CloseKind {
    /// Stable key used in JSON, the database and the UI.
    pub fn key(&self) -> String {
        match self {
            CloseKind::Server(code) => format!("server_{code}"),
            CloseKind::Abnormal => "abnormal_1006".into(),
            CloseKind::Client => "client".into(),
            CloseKind::Protocol => "protocol".into(),
            CloseKind::TooLarge => "too_large".into(),
        }
    }

    /// True when the target (or the network) ended the session, not us.
    pub fn is_drop(&self) -> bool {
        !matches!(self, CloseKind::Client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable() {
        assert_eq!(FailKind::Status(429).key(), "http_429");
        assert_eq!(FailKind::ClientLimit.key(), "client_limit");
        assert_eq!(CloseKind::Server(1001).key(), "server_1001");
        assert_eq!(CloseKind::Abnormal.key(), "abnormal_1006");
        assert!(!CloseKind::Client.is_drop());
        assert!(CloseKind::Server(1011).is_drop());
    }
}
