//! Bearer profiles' in-band token refresh (`auth=bearer`, issue 14): a connection whose
//! token expires is closed with 4401, unless it sends `{"action":"refresh","token":T}`
//! with a valid token T first — then its expiry becomes T's. Answered with
//! `{"action":"refreshed","expires_in":S}` (or `{"action":"refresh","error":
//! "invalid_token"}`, the expiry unchanged), never echoed; counted per profile
//! (`refreshed`, `refresh_refused`) so tests compare the engine's rotations with what
//! the sandbox saw. Pure parsing; the session loop is `mod.rs`'s.

use std::time::Instant;

/// The token of a refresh message, if `text` is one.
pub(super) fn refresh_token(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    if v.get("action")?.as_str()? != "refresh" {
        return None;
    }
    Some(v.get("token")?.as_str()?.to_string())
}

/// The answer to a refresh: accepted with the new expiry (`Some(None)`: a `static-*`
/// token, which never expires), or refused (`None`).
pub(super) fn answer(verdict: Option<Option<Instant>>, now: Instant) -> String {
    match verdict {
        Some(None) => r#"{"action":"refreshed"}"#.to_string(),
        Some(Some(exp)) => serde_json::json!({
            "action": "refreshed",
            "expires_in": exp.saturating_duration_since(now).as_secs_f64()
        })
        .to_string(),
        None => r#"{"action":"refresh","error":"invalid_token"}"#.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_messages_are_recognised_and_answered() {
        assert_eq!(
            refresh_token(r#"{"action":"refresh","token":"tok-1"}"#).as_deref(),
            Some("tok-1")
        );
        for other in [
            "hello",
            r#"{"action":"echo","token":"t"}"#,
            r#"{"action":"refresh"}"#,
            r#"{"action":"refresh","token":5}"#,
        ] {
            assert_eq!(refresh_token(other), None, "{other}");
        }
        let now = Instant::now();
        let ok = answer(Some(Some(now + std::time::Duration::from_secs(2))), now);
        assert_eq!(ok, r#"{"action":"refreshed","expires_in":2.0}"#);
        assert_eq!(answer(Some(None), now), r#"{"action":"refreshed"}"#);
        assert!(answer(None, now).contains("invalid_token"));
    }
}
