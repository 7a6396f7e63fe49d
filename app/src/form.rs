//! The "New run" form as data, and its translation into a `Plan`. Every field arrives as
//! text so a typo becomes a field error ("connections: `5o` is not a whole number"),
//! never a failed deserialization.
//!
//! One submit reports every problem (issue 16 item 8): each field is parsed on its own
//! and a field that fails leaves a placeholder in the plan, so the plan's own
//! validation still runs on the rest ([`RunForm::to_valid_plan`]); its errors are
//! mapped back onto form fields by [`form_errors`]. The optional sections (session
//! model, variables, message and reply, token rotation) map onto the engine's
//! `sessions`, `vars`, `script` and `auth.rotation`; left empty, the form builds the
//! same ramp-and-hold echo plan it always did.

mod lines;
mod prefill;
#[cfg(test)]
mod tests;

use std::time::Duration;

use engine::plan::{
    ArrivalStage, Auth, Dur, Expect, Reconnect, Repeat, Rotation, Secret, Sessions, Stay, Step,
    TokenPolicy, TokenSource,
};
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
    /// Before a token expires: empty or `off` = nothing, `reauth` = send
    /// `rotation_message` on the open socket, `reconnect` = close and reconnect.
    #[serde(default)]
    pub rotation: String,
    /// The re-authentication message (templated; `{{token}}` is the new token).
    #[serde(default)]
    pub rotation_message: String,
    /// The session model: empty or `closed` = ramp and hold `connections`; `open` =
    /// guests arrive at `arrival_rate` for `arrivals_secs`, each staying for a draw
    /// from `stay`.
    #[serde(default)]
    pub model: String,
    /// Guests per second (open model).
    #[serde(default)]
    pub arrival_rate: String,
    /// How long guests keep arriving, in seconds: the run's length (open model).
    #[serde(default)]
    pub arrivals_secs: String,
    /// The stay distribution: `fixed` (default), `uniform`, `exponential`, `log_normal`.
    #[serde(default)]
    pub stay: String,
    /// Seconds: the fixed stay, the exponential mean or the log-normal median.
    #[serde(default)]
    pub stay_secs: String,
    /// Uniform stay bounds, in seconds.
    #[serde(default)]
    pub stay_min_secs: String,
    #[serde(default)]
    pub stay_max_secs: String,
    /// The log-normal spread (sigma of the log).
    #[serde(default)]
    pub stay_sigma: String,
    /// Per-session variables, one `name = template` a line.
    #[serde(default)]
    pub vars: String,
    /// The message sent every `message_every_secs` (templated); empty = the echo
    /// heartbeat `hello from vu {{vu}} at {{now_ms}}`.
    #[serde(default)]
    pub message: String,
    /// The reply to wait for: a JSON path in it ...
    #[serde(default)]
    pub expect_json_field: String,
    /// ... equal to this (templated, e.g. `{{var.guest}}`); empty = any value there.
    #[serde(default)]
    pub expect_equals: String,
    /// Values kept from the reply, one `name = $.json.path` or `name = /regex(group)/`
    /// a line, usable as `{{var.name}}` in later messages.
    #[serde(default)]
    pub captures: String,
}

/// Collects field errors while the form is read.
fn push(errs: &mut Vec<FieldError>, field: &str, message: String) {
    errs.push(FieldError {
        field: field.into(),
        message,
    });
}

fn number(field: &str, text: &str, errs: &mut Vec<FieldError>) -> Option<f64> {
    let t = text.trim();
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Some(v),
        _ => {
            push(errs, field, format!("`{t}` is not a number of 0 or more"));
            None
        }
    }
}

/// Seconds as a plan duration (whole milliseconds; absurd values are capped and left
/// for the plan's limits to reject).
fn secs(s: f64) -> Dur {
    Dur(Duration::from_millis((s.min(1e7) * 1000.0).round() as u64))
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

/// The message the form sends when none is given, and the part of its echo that proves
/// the echo is this connection's.
const DEFAULT_MESSAGE: &str = "hello from vu {{vu}} at {{now_ms}}";
const DEFAULT_ECHO: &str = "hello from vu {{vu}}";

impl RunForm {
    /// The tokens part of the plan: none, a static bearer token, or OAuth2.
    fn auth(&self, errs: &mut Vec<FieldError>) -> Option<Auth> {
        let bearer = self.bearer_token.trim();
        let token_url = self.token_url.trim();
        let source = match (bearer.is_empty(), token_url.is_empty()) {
            (true, true) => {
                for (name, text) in [
                    ("client_id", &self.client_id),
                    ("client_secret", &self.client_secret),
                    ("connections_per_token", &self.connections_per_token),
                ] {
                    if !text.trim().is_empty() {
                        push(
                            errs,
                            name,
                            "needs a token URL (or a bearer token) to apply to".into(),
                        );
                    }
                }
                return None;
            }
            (false, false) => {
                push(
                    errs,
                    "bearer_token",
                    "give either a bearer token or an OAuth token URL, not both".into(),
                );
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
                push(
                    errs,
                    "connections_per_token",
                    format!("`{per}` is not a whole number of 1 or more"),
                );
                return None;
            }
        };
        Some(Auth::new(source, policy))
    }

    /// What a live connection does before its token expires (only OAuth tokens do).
    fn rotation(&self, errs: &mut Vec<FieldError>) -> Option<Rotation> {
        let rotation = match self.rotation.trim() {
            "" | "off" => return None,
            "reconnect" => Rotation::Reconnect,
            "reauth" => {
                let message = self.rotation_message.trim();
                if message.is_empty() {
                    push(
                        errs,
                        "rotation_message",
                        "give the message to send, e.g. {\"action\":\"refresh\",\"token\":\"{{token}}\"}".into(),
                    );
                    return None;
                }
                Rotation::Reauth {
                    message: message.to_string(),
                    expect: None,
                }
            }
            other => {
                push(
                    errs,
                    "rotation",
                    format!("`{other}` is not off, reauth or reconnect"),
                );
                return None;
            }
        };
        if self.token_url.trim().is_empty() {
            push(
                errs,
                "rotation",
                "needs an OAuth token URL: only OAuth tokens expire".into(),
            );
            return None;
        }
        Some(rotation)
    }

    /// The open model: one arrival stage and a stay distribution. Failed fields leave
    /// placeholders (1 guest/s, 1 s).
    fn sessions(&self, errs: &mut Vec<FieldError>) -> Sessions {
        let num = |field: &str, text: &str, errs: &mut Vec<FieldError>| {
            number(field, text, errs).unwrap_or(1.0)
        };
        let rate = num("arrival_rate", &self.arrival_rate, errs);
        let duration = secs(num("arrivals_secs", &self.arrivals_secs, errs));
        let stay_secs =
            |field: &str, text: &str, errs: &mut Vec<FieldError>| secs(num(field, text, errs));
        let stay = match self.stay.trim() {
            "" | "fixed" => Stay::Fixed {
                duration: stay_secs("stay_secs", &self.stay_secs, errs),
            },
            "uniform" => Stay::Uniform {
                min: stay_secs("stay_min_secs", &self.stay_min_secs, errs),
                max: stay_secs("stay_max_secs", &self.stay_max_secs, errs),
            },
            "exponential" => Stay::Exponential {
                mean: stay_secs("stay_secs", &self.stay_secs, errs),
            },
            "log_normal" => Stay::LogNormal {
                median: stay_secs("stay_secs", &self.stay_secs, errs),
                sigma: num("stay_sigma", &self.stay_sigma, errs),
            },
            other => {
                push(
                    errs,
                    "stay",
                    format!("`{other}` is not fixed, uniform, exponential or log_normal"),
                );
                Stay::Fixed {
                    duration: Dur::secs(1),
                }
            }
        };
        Sessions {
            arrivals: vec![ArrivalStage {
                duration,
                rate,
                to: None,
            }],
            stay,
            seed: 1,
        }
    }

    /// The script: every `every` seconds send the message and wait for its reply. With
    /// nothing given it is today's echo heartbeat; `every` of 0 is an idle connection.
    fn script(&self, every: f64, errs: &mut Vec<FieldError>) -> Vec<Step> {
        let message = self.message.trim();
        let json_field = self.expect_json_field.trim();
        let equals = self.expect_equals.trim();
        let captures = lines::captures(&self.captures, errs);
        let chatty = !message.is_empty()
            || !json_field.is_empty()
            || !equals.is_empty()
            || !self.captures.trim().is_empty();
        if every <= 0.0 {
            if chatty {
                push(
                    errs,
                    "message_every_secs",
                    "0 sends nothing: say how often to send the message".into(),
                );
            }
            return Vec::new();
        }
        if !equals.is_empty() && json_field.is_empty() {
            push(
                errs,
                "expect_equals",
                "needs the reply's JSON field to compare".into(),
            );
        }
        let expect = if !json_field.is_empty() {
            Some(Expect {
                json_field: Some(json_field.to_string()),
                equals: (!equals.is_empty()).then(|| serde_json::Value::String(equals.into())),
                capture: captures,
                timeout: Dur::secs(5),
                ..Default::default()
            })
        } else if message.is_empty() {
            Some(Expect {
                contains: Some(DEFAULT_ECHO.into()),
                capture: captures,
                timeout: Dur::secs(5),
                ..Default::default()
            })
        } else {
            if !captures.is_empty() {
                push(
                    errs,
                    "captures",
                    "need a reply to capture from: give the reply's JSON field".into(),
                );
            }
            None
        };
        let send = if message.is_empty() {
            DEFAULT_MESSAGE
        } else {
            message
        };
        let mut steps = vec![Step::Send(send.into())];
        steps.extend(expect.map(Step::Expect));
        vec![Step::Repeat(Repeat {
            every: secs(every),
            times: None,
            steps,
        })]
    }

    /// The plan with every field read, and every problem found reading them. A field
    /// that fails leaves a harmless placeholder, so the plan can still be validated.
    fn read(&self) -> (Plan, Vec<FieldError>) {
        let mut errs = Vec::new();
        let open = match self.model.trim() {
            "" | "closed" => false,
            "open" => true,
            other => {
                push(
                    &mut errs,
                    "model",
                    format!("`{other}` is not closed or open"),
                );
                false
            }
        };
        let (stages, sessions) = if open {
            (Vec::new(), Some(self.sessions(&mut errs)))
        } else {
            let connections = match self.connections.trim().parse::<u32>() {
                Ok(n) if n > 0 => n,
                _ => {
                    push(
                        &mut errs,
                        "connections",
                        format!(
                            "`{}` is not a whole number of 1 or more",
                            self.connections.trim()
                        ),
                    );
                    1
                }
            };
            let ramp = number("ramp_secs", &self.ramp_secs, &mut errs).unwrap_or(1.0);
            let hold = number("hold_secs", &self.hold_secs, &mut errs).unwrap_or(1.0);
            let stage = |s: f64| Stage {
                duration: secs(s),
                connections,
            };
            (vec![stage(ramp), stage(hold)], None)
        };
        let every = if self.message_every_secs.trim().is_empty() {
            0.0
        } else {
            number("message_every_secs", &self.message_every_secs, &mut errs).unwrap_or(1.0)
        };
        let max_connect_rate = if self.max_connect_rate.trim().is_empty() {
            None
        } else {
            number("max_connect_rate", &self.max_connect_rate, &mut errs)
        };
        let mut auth = self.auth(&mut errs);
        let rotation = self.rotation(&mut errs);
        if let Some(a) = auth.as_mut() {
            a.rotation = rotation;
        }
        let vars = lines::vars(&self.vars, &mut errs);
        let script = self.script(every, &mut errs);
        let name = if self.name.trim().is_empty() {
            "unnamed".to_string()
        } else {
            self.name.trim().to_string()
        };
        let plan = Plan {
            name,
            target: self.target.trim().to_string(),
            stages,
            max_connect_rate,
            connect_timeout: Dur::secs(10),
            headers: Default::default(),
            subprotocols: Vec::new(),
            vars,
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
            abort_grace: Dur::secs(5),
            sessions,
            public: Vec::new(),
            steering: Vec::new(),
        };
        (plan, errs)
    }

    /// Builds the plan, or every field the form could not read; limits are checked
    /// afterwards by `Plan::validate` (see [`RunForm::to_valid_plan`]).
    pub fn to_plan(&self) -> Result<Plan, Vec<FieldError>> {
        match self.read() {
            (plan, errs) if errs.is_empty() => Ok(plan),
            (_, errs) => Err(errs),
        }
    }

    /// Builds the plan and checks it with `validate` (the service's limits), reporting
    /// every problem at once on form fields: what the form could not read, then what
    /// the plan's validation says about the rest (its errors on a field that already
    /// failed to read are about the placeholder, and are dropped).
    pub fn to_valid_plan(
        &self,
        validate: impl FnOnce(&Plan) -> Result<(), Vec<FieldError>>,
    ) -> Result<Plan, Vec<FieldError>> {
        let (plan, mut errs) = self.read();
        let unread: Vec<String> = errs.iter().map(|e| e.field.clone()).collect();
        if let Err(more) = validate(&plan) {
            for e in form_errors(more) {
                if !unread.contains(&e.field) && !errs.contains(&e) {
                    errs.push(e);
                }
            }
        }
        if errs.is_empty() {
            Ok(plan)
        } else {
            Err(errs)
        }
    }
}

/// Which form field shows a plan validation error (`stages[1].connections` -> `connections`).
pub fn form_field_of(plan_field: &str) -> &str {
    if plan_field.starts_with("auth.source.tokens") {
        "bearer_token"
    } else if let Some(f) = plan_field.strip_prefix("auth.source.") {
        f
    } else if plan_field.starts_with("auth.rotation.message") {
        "rotation_message"
    } else if plan_field.starts_with("auth.rotation") {
        "rotation"
    } else if plan_field.starts_with("auth.policy") {
        "connections_per_token"
    } else if let Some(f) = plan_field.strip_prefix("sessions") {
        sessions_field_of(f)
    } else if plan_field.starts_with("vars") {
        "vars"
    } else if plan_field.ends_with(".connections") || plan_field == "source_addrs" {
        "connections"
    } else if plan_field == "stages" {
        "hold_secs"
    } else if plan_field.starts_with("script") {
        script_field_of(plan_field)
    } else {
        plan_field
    }
}

/// The form field of a `sessions…` error (`rest` is what follows `sessions`).
fn sessions_field_of(rest: &str) -> &'static str {
    if rest.ends_with(".rate") || rest.ends_with(".to") || rest.is_empty() {
        "arrival_rate"
    } else if rest.starts_with(".arrivals") {
        "arrivals_secs"
    } else if rest == ".stay.min" {
        "stay_min_secs"
    } else if rest == ".stay.max" {
        "stay_max_secs"
    } else if rest == ".stay.sigma" {
        "stay_sigma"
    } else {
        "stay_secs"
    }
}

/// The form field of a `script…` error: the form's script is one repeat block of a send
/// (`steps[0]`) and maybe an expect (`steps[1]`).
fn script_field_of(plan_field: &str) -> &'static str {
    if plan_field.contains(".capture") {
        "captures"
    } else if plan_field.contains(".expect.equals") {
        "expect_equals"
    } else if plan_field.contains(".expect") {
        "expect_json_field"
    } else if plan_field.contains(".steps[0]") {
        "message"
    } else {
        "message_every_secs"
    }
}

/// Plan validation errors as form errors: each on its form field, and where one form
/// field holds several plan entries (a variable, a capture), the message names the
/// entry (`guest: …`).
pub fn form_errors(errs: Vec<FieldError>) -> Vec<FieldError> {
    errs.into_iter()
        .map(|e| {
            let field = form_field_of(&e.field).to_string();
            let entry = e
                .field
                .strip_prefix("vars.")
                .or_else(|| e.field.split_once(".capture.").map(|(_, c)| c))
                .map(|c| c.split('.').next().unwrap_or(c));
            let message = match entry {
                Some(name) => format!("{name}: {}", e.message),
                None => e.message,
            };
            FieldError { field, message }
        })
        .collect()
}
