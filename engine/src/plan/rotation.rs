//! Token rotation on live connections (issue 14): what a plan says a connection does
//! when its token is about to expire — nothing (today's behaviour: the target may close
//! it), send a templated re-authentication message on the open socket, or close
//! normally and reconnect with the new token. When to rotate is a pure function of the
//! token's fetch time, its `expires_in` and `auth.refresh_before`
//! (`tokens::refresh_at`); the session loop that does it is `conn/rotation.rs`.

use super::*;

/// Longest wait for a re-authentication reply.
pub const MAX_ROTATION_TIMEOUT: Dur = Dur::secs(60);

/// How a live connection takes its next token (`auth.rotation`).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rotation {
    /// Send `message` (templated; `{{token}}` is the new token) on the open socket,
    /// e.g. `{"action":"refresh","token":"{{token}}"}`. With `expect`, the rotation is
    /// done when a matching reply arrives within its timeout (else it is a failure);
    /// without, when the message is sent.
    Reauth {
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expect: Option<Box<Expect>>,
    },
    /// Close normally (1000) and reconnect at once with the new token. The close is a
    /// `rotation` close (not a drop) and the new attempt is not a retry.
    Reconnect,
}

impl Rotation {
    /// The re-authentication message, for `reauth`.
    pub fn message(&self) -> Option<&str> {
        match self {
            Rotation::Reauth { message, .. } => Some(message),
            Rotation::Reconnect => None,
        }
    }

    /// The reply matcher, for `reauth` with `expect`.
    pub fn expect(&self) -> Option<&Expect> {
        match self {
            Rotation::Reauth { expect, .. } => expect.as_deref(),
            Rotation::Reconnect => None,
        }
    }

    /// Its templated texts with their fields (for the variable checks).
    pub(super) fn templates(&self) -> Vec<(String, &str)> {
        let mut out = Vec::new();
        if let Some(m) = self.message() {
            out.push(("auth.rotation.message".to_string(), m));
        }
        if let Some(e) = self.expect() {
            for (name, t) in e.match_spec().templates() {
                out.push((format!("auth.rotation.expect.{name}"), t));
            }
        }
        out
    }

    /// Checks the rotation of `auth`; fields are named under `auth.rotation`.
    pub(super) fn validate(&self, auth: &Auth, limits: &Limits, errs: &mut Vec<FieldError>) {
        let mut err = |field: &str, message: String| {
            errs.push(FieldError {
                field: field.into(),
                message,
            })
        };
        if let TokenSource::Static { .. } = auth.source {
            err(
                "auth.rotation",
                "static tokens never expire: rotation needs auth.source of type oauth2".into(),
            );
        }
        if let Some(message) = self.message() {
            if message.is_empty() {
                err("auth.rotation.message", "must not be empty".into());
            } else if message.len() > limits.max_message_bytes {
                err(
                    "auth.rotation.message",
                    format!(
                        "is {} bytes; the limit is {}",
                        message.len(),
                        limits.max_message_bytes
                    ),
                );
            }
            if let Err(e) = Template::parse(message) {
                err("auth.rotation.message", e);
            }
        }
        if let Some(e) = self.expect() {
            let at = "auth.rotation.expect";
            if e.timeout.0.is_zero() || e.timeout > MAX_ROTATION_TIMEOUT {
                err(
                    &format!("{at}.timeout"),
                    format!(
                        "{}; the limit is above 0s up to {MAX_ROTATION_TIMEOUT}",
                        e.timeout
                    ),
                );
            }
            session::validate_match(&e.match_spec(), at, false, errs);
            session::validate_captures(&e.capture, at, errs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_with(rotation: &str) -> Plan {
        serde_json::from_str(&format!(
            r#"{{"target":"ws://127.0.0.1:1/","stages":[{{"duration":"1s","connections":1}}],
               "auth":{{"source":{{"type":"oauth2","token_url":"http://127.0.0.1:2/t","client_id":"c","client_secret":"s"}},
                        "rotation":{rotation}}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn both_modes_parse_round_trip_and_default_to_none() {
        for text in [
            r#"{"mode":"reconnect"}"#,
            r#"{"mode":"reauth","message":"{\"action\":\"refresh\",\"token\":\"{{token}}\"}"}"#,
            r#"{"mode":"reauth","message":"r {{token}}","expect":{"json_field":"action","equals":"refreshed","timeout":"2s"}}"#,
        ] {
            let p = plan_with(text);
            assert!(p.validate(&Limits::default()).is_ok(), "{text}");
            let again: Plan = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
            assert_eq!(p, again);
        }
        let p: Auth =
            serde_json::from_str(r#"{"source":{"type":"static","tokens":["a"]}}"#).unwrap();
        assert_eq!(p.rotation, None);
        assert!(!serde_json::to_string(&p).unwrap().contains("rotation"));
    }

    #[test]
    fn bad_rotations_name_the_field_and_the_limit() {
        let p = plan_with(
            r#"{"mode":"reauth","message":"","expect":{"contains":"{{var.nope}}","timeout":"90s"}}"#,
        );
        let errs = p.validate(&Limits::default()).unwrap_err();
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        for (field, says) in [
            ("auth.rotation.message", "must not be empty"),
            (
                "auth.rotation.expect.timeout",
                "the limit is above 0s up to 1m",
            ),
            ("auth.rotation.expect.contains", "nope"),
        ] {
            assert!(
                text.iter()
                    .any(|t| t.starts_with(field) && t.contains(says)),
                "{field} / {says}: {text:#?}"
            );
        }
        assert!(serde_json::from_str::<Rotation>(r#"{"mode":"sometimes"}"#).is_err());
        let mut p = plan_with(r#"{"mode":"reconnect"}"#);
        if let Some(a) = p.auth.as_mut() {
            a.source = TokenSource::Static {
                tokens: vec![Secret::Value("t".into())],
            };
        }
        let errs = p.validate(&Limits::default()).unwrap_err();
        assert_eq!(errs[0].field, "auth.rotation", "{errs:?}");
    }
}
