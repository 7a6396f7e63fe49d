//! The "New run" form as data, and its translation into a `Plan`. Every field arrives as
//! text so a typo becomes a field error ("connections: `5o` is not a whole number"),
//! never a failed deserialization.

use std::time::Duration;

use engine::plan::{Auth, Dur, Expect, Reconnect, Repeat, Secret, Step, TokenPolicy, TokenSource};
use engine::{FieldError, Plan, Stage};
use serde::{Deserialize, Serialize};

/// Fields of the form, named `form[...]` in HTML.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunForm {
    pub name: String,
    pub target: String,
    /// Connections to ramp up to and hold.
    pub connections: String,
    pub ramp_secs: String,
    pub hold_secs: String,
    /// Seconds between messages per connection; empty or 0 = idle connections.
    #[serde(default)]
    pub message_every_secs: String,
    /// Cap on new connections per second; empty = no cap.
    #[serde(default)]
    pub max_connect_rate: String,
    /// "on" (a checked box): refused handshakes and dropped sessions retry with backoff,
    /// for as long as the run lasts (as real clients do).
    #[serde(default)]
    pub reconnect: String,
    /// A static bearer token for every connection; empty = none.
    #[serde(default)]
    pub bearer_token: String,
    /// OAuth2 client credentials: the token URL (empty = no OAuth), client id and secret.
    #[serde(default)]
    pub token_url: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub client_secret: String,
    /// Connections sharing one token: empty = all share one, 1 = a token each, N = every N.
    #[serde(default)]
    pub connections_per_token: String,
}

fn number(field: &str, text: &str, errs: &mut Vec<FieldError>) -> Option<f64> {
    let t = text.trim();
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Some(v),
        _ => {
            errs.push(FieldError {
                field: field.into(),
                message: format!("`{t}` is not a number of 0 or more"),
            });
            None
        }
    }
}

/// A secret as typed: `env:NAME` reads the server's environment, anything else is the value.
fn secret(text: &str) -> Secret {
    match text.trim().strip_prefix("env:") {
        Some(name) => Secret::Env {
            env: name.trim().to_string(),
        },
        None => Secret::Value(text.trim().to_string()),
    }
}

impl RunForm {
    /// The tokens part of the plan: none, a static bearer token, or OAuth2.
    fn auth(&self, errs: &mut Vec<FieldError>) -> Option<Auth> {
        let bearer = self.bearer_token.trim();
        let token_url = self.token_url.trim();
        let field = |field: &str, message: &str| FieldError {
            field: field.into(),
            message: message.into(),
        };
        let source = match (bearer.is_empty(), token_url.is_empty()) {
            (true, true) => {
                for (name, text) in [
                    ("client_id", &self.client_id),
                    ("client_secret", &self.client_secret),
                    ("connections_per_token", &self.connections_per_token),
                ] {
                    if !text.trim().is_empty() {
                        errs.push(field(
                            name,
                            "needs a token URL (or a bearer token) to apply to",
                        ));
                    }
                }
                return None;
            }
            (false, false) => {
                errs.push(field(
                    "bearer_token",
                    "give either a bearer token or an OAuth token URL, not both",
                ));
                return None;
            }
            (false, true) => TokenSource::Static {
                tokens: vec![secret(bearer)],
            },
            (true, false) => TokenSource::Oauth2 {
                token_url: token_url.to_string(),
                client_id: self.client_id.trim().to_string(),
                client_secret: secret(&self.client_secret),
                scope: None,
                audience: None,
            },
        };
        let per = self.connections_per_token.trim();
        let policy = match per.parse::<u32>() {
            _ if per.is_empty() => TokenPolicy::Shared,
            Ok(1) => TokenPolicy::PerConnection,
            Ok(n) if n > 1 => TokenPolicy::PerConnections { connections: n },
            _ => {
                errs.push(FieldError {
                    field: "connections_per_token".into(),
                    message: format!("`{per}` is not a whole number of 1 or more"),
                });
                return None;
            }
        };
        Some(Auth::new(source, policy))
    }

    /// Builds the plan; limits are checked afterwards by `Plan::validate`.
    pub fn to_plan(&self) -> Result<Plan, Vec<FieldError>> {
        let mut errs = Vec::new();
        let connections = match self.connections.trim().parse::<u32>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                errs.push(FieldError {
                    field: "connections".into(),
                    message: format!(
                        "`{}` is not a whole number of 1 or more",
                        self.connections.trim()
                    ),
                });
                None
            }
        };
        let ramp = number("ramp_secs", &self.ramp_secs, &mut errs);
        let hold = number("hold_secs", &self.hold_secs, &mut errs);
        let every = if self.message_every_secs.trim().is_empty() {
            Some(0.0)
        } else {
            number("message_every_secs", &self.message_every_secs, &mut errs)
        };
        let rate = if self.max_connect_rate.trim().is_empty() {
            None
        } else {
            number("max_connect_rate", &self.max_connect_rate, &mut errs)
        };
        let auth = self.auth(&mut errs);
        let (Some(connections), Some(ramp), Some(hold), Some(every)) =
            (connections, ramp, hold, every)
        else {
            return Err(errs);
        };
        if !errs.is_empty() {
            return Err(errs);
        }
        let secs = |s: f64| Dur(Duration::from_millis((s.min(1e7) * 1000.0).round() as u64));
        let script = if every > 0.0 {
            vec![Step::Repeat(Repeat {
                every: secs(every),
                times: None,
                steps: vec![
                    Step::Send("hello from vu {{vu}} at {{now_ms}}".into()),
                    Step::Expect(Expect {
                        contains: Some("hello from vu {{vu}}".into()),
                        timeout: Dur::secs(5),
                        ..Default::default()
                    }),
                ],
            })]
        } else {
            Vec::new()
        };
        let name = if self.name.trim().is_empty() {
            "unnamed".to_string()
        } else {
            self.name.trim().to_string()
        };
        Ok(Plan {
            name,
            target: self.target.trim().to_string(),
            stages: vec![
                Stage {
                    duration: secs(ramp),
                    connections,
                },
                Stage {
                    duration: secs(hold),
                    connections,
                },
            ],
            max_connect_rate: rate,
            connect_timeout: Dur::secs(10),
            headers: Default::default(),
            subprotocols: Vec::new(),
            vars: Default::default(),
            script,
            responders: Vec::new(),
            reconnect: if self.reconnect.trim().is_empty() {
                Reconnect::Never
            } else {
                Reconnect::unlimited()
            },
            source_addrs: Vec::new(),
            agents: None,
            insecure_tls: false,
            auth,
            probe: None,
            http_steps: Vec::new(),
            thresholds: Default::default(),
            abort_on_fail: false,
            abort_grace: engine::plan::Dur::secs(5),
            sessions: None,
        })
    }
}

/// Which form field shows a plan validation error (`stages[1].connections` -> `connections`).
pub fn form_field_of(plan_field: &str) -> &str {
    if plan_field.starts_with("auth.source.tokens") {
        "bearer_token"
    } else if let Some(f) = plan_field.strip_prefix("auth.source.") {
        f
    } else if plan_field.starts_with("auth.policy") {
        "connections_per_token"
    } else if plan_field.ends_with(".connections") || plan_field == "source_addrs" {
        "connections"
    } else if plan_field == "stages" {
        "hold_secs"
    } else if plan_field.starts_with("script") {
        "message_every_secs"
    } else {
        plan_field
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> RunForm {
        RunForm {
            name: "smoke".into(),
            target: "ws://127.0.0.1:9001/echo".into(),
            connections: "50".into(),
            ramp_secs: "2".into(),
            hold_secs: "3".into(),
            message_every_secs: "1".into(),
            max_connect_rate: "".into(),
            ..Default::default()
        }
    }

    #[test]
    fn oauth_fields_become_tokens_and_reconnect_an_unlimited_backoff() {
        let mut f = form();
        f.token_url = "http://127.0.0.1:9001/oauth/token".into();
        f.client_id = "loadtest".into();
        f.client_secret = "env:HOME".into();
        f.connections_per_token = "10".into();
        f.reconnect = "on".into();
        let p = f.to_plan().unwrap();
        let auth = p.auth.clone().unwrap();
        assert_eq!(
            auth.source,
            TokenSource::Oauth2 {
                token_url: "http://127.0.0.1:9001/oauth/token".into(),
                client_id: "loadtest".into(),
                client_secret: Secret::Env { env: "HOME".into() },
                scope: None,
                audience: None,
            }
        );
        assert_eq!(auth.policy, TokenPolicy::PerConnections { connections: 10 });
        assert_eq!(auth.header, "Authorization");
        assert_eq!(p.reconnect, Reconnect::unlimited());
        assert!(p.validate(&engine::Limits::default()).is_ok());
        f.connections_per_token = "1".into();
        assert_eq!(
            f.to_plan().unwrap().auth.unwrap().policy,
            TokenPolicy::PerConnection
        );
        f.connections_per_token = "".into();
        assert_eq!(
            f.to_plan().unwrap().auth.unwrap().policy,
            TokenPolicy::Shared
        );
    }

    #[test]
    fn a_bearer_token_is_a_pool_of_one_and_no_tokens_no_auth() {
        let mut f = form();
        assert_eq!(f.to_plan().unwrap().auth, None);
        assert_eq!(f.to_plan().unwrap().reconnect, Reconnect::Never);
        f.bearer_token = "abc".into();
        let auth = f.to_plan().unwrap().auth.unwrap();
        assert_eq!(
            auth.source,
            TokenSource::Static {
                tokens: vec![Secret::Value("abc".into())]
            }
        );
    }

    #[test]
    fn token_fields_that_cannot_apply_name_themselves() {
        let mut f = form();
        f.client_id = "x".into();
        f.connections_per_token = "2".into();
        let fields: Vec<String> = f
            .to_plan()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["client_id", "connections_per_token"]);
        let mut f = form();
        f.bearer_token = "a".into();
        f.token_url = "http://127.0.0.1:1/t".into();
        assert_eq!(f.to_plan().unwrap_err()[0].field, "bearer_token");
        let mut f = form();
        f.token_url = "http://127.0.0.1:1/t".into();
        f.connections_per_token = "0".into();
        let errs = f.to_plan().unwrap_err();
        assert_eq!(errs[0].field, "connections_per_token");
        assert!(errs[0].message.contains("`0`"), "{errs:?}");
        // Plan validation's auth fields land on the form's.
        assert_eq!(form_field_of("auth.source.client_id"), "client_id");
        assert_eq!(form_field_of("auth.source.token_url"), "token_url");
        assert_eq!(form_field_of("auth.source.tokens[0]"), "bearer_token");
        assert_eq!(
            form_field_of("auth.policy.connections"),
            "connections_per_token"
        );
    }

    #[test]
    fn form_becomes_ramp_and_hold_with_heartbeat() {
        let p = form().to_plan().unwrap();
        assert_eq!(
            p.stages,
            vec![
                Stage {
                    duration: Dur::secs(2),
                    connections: 50
                },
                Stage {
                    duration: Dur::secs(3),
                    connections: 50
                }
            ]
        );
        assert_eq!(p.script.len(), 1);
        assert!(p.validate(&engine::Limits::default()).is_ok());
    }

    #[test]
    fn idle_when_no_message_interval() {
        let mut f = form();
        f.message_every_secs = "0".into();
        assert!(f.to_plan().unwrap().script.is_empty());
    }

    #[test]
    fn typos_name_their_field() {
        let mut f = form();
        f.connections = "5o".into();
        f.hold_secs = "-1".into();
        let errs = f.to_plan().unwrap_err();
        assert_eq!(
            errs.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(),
            vec!["connections", "hold_secs"]
        );
        assert!(errs[0].message.contains("`5o`"));
    }

    #[test]
    fn plan_errors_land_on_form_fields() {
        assert_eq!(form_field_of("stages[1].connections"), "connections");
        assert_eq!(form_field_of("target"), "target");
        assert_eq!(form_field_of("stages"), "hold_secs");
    }
}
