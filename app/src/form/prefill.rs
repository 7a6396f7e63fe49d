//! The other way round: a plan as the "New run" form's fields, for "Edit and run again"
//! (issue 16 item 5). Only plans the form builds exactly are offered this way: the
//! candidate is read back with [`RunForm::to_plan`] and must give the same plan, so a
//! plan with anything the form has no field for (headers, scripts of several steps,
//! TLS, probes, variables …) goes to the JSON plan editor instead.

use engine::plan::Dur;
use engine::plan::{Expect, Reconnect, Secret, Sessions, Stay, Step, TokenPolicy, TokenSource};
use engine::Plan;

use super::{RunForm, DEFAULT_ECHO, DEFAULT_MESSAGE};

/// Seconds as the form writes them (`1.5`, `10`).
fn secs_text(d: Dur) -> String {
    let s = d.0.as_secs_f64();
    format!("{s}")
}

/// A secret as the form's text: `env:NAME`, or the value (`<redacted>` when the run
/// did not keep it; the page shows that field empty, to be typed again).
fn secret_text(s: &Secret) -> String {
    match s {
        Secret::Env { env } => format!("env:{env}"),
        Secret::Value(v) => v.clone(),
    }
}

impl RunForm {
    /// The form that builds exactly `plan`, or `None` when the form cannot show it all.
    pub fn from_plan(plan: &Plan) -> Option<RunForm> {
        let mut f = RunForm {
            name: plan.name.clone(),
            target: plan.target.clone(),
            max_connect_rate: plan
                .max_connect_rate
                .map(|r| r.to_string())
                .unwrap_or_default(),
            reconnect: if plan.reconnect == Reconnect::Never {
                String::new()
            } else {
                "on".into()
            },
            ..RunForm::default()
        };
        match (&plan.sessions, plan.stages.as_slice()) {
            (None, [ramp, hold]) => {
                f.model = "closed".into();
                f.connections = hold.connections.to_string();
                f.ramp_secs = secs_text(ramp.duration);
                f.hold_secs = secs_text(hold.duration);
            }
            (Some(Sessions { arrivals, stay, .. }), []) => {
                let [stage] = arrivals.as_slice() else {
                    return None;
                };
                f.model = "open".into();
                f.arrival_rate = stage.rate.to_string();
                f.arrivals_secs = secs_text(stage.duration);
                match stay {
                    Stay::Fixed { duration } => {
                        f.stay = "fixed".into();
                        f.stay_secs = secs_text(*duration);
                    }
                    Stay::Uniform { min, max } => {
                        f.stay = "uniform".into();
                        f.stay_min_secs = secs_text(*min);
                        f.stay_max_secs = secs_text(*max);
                    }
                    Stay::Exponential { mean } => {
                        f.stay = "exponential".into();
                        f.stay_secs = secs_text(*mean);
                    }
                    Stay::LogNormal { median, sigma } => {
                        f.stay = "log_normal".into();
                        f.stay_secs = secs_text(*median);
                        f.stay_sigma = sigma.to_string();
                    }
                }
            }
            _ => return None,
        }
        match plan.script.as_slice() {
            [] => f.message_every_secs = "0".into(),
            [Step::Repeat(r)] if r.times.is_none() => {
                f.message_every_secs = secs_text(r.every);
                match r.steps.as_slice() {
                    [Step::Send(m), rest @ ..] => {
                        if m != DEFAULT_MESSAGE {
                            f.message = m.clone();
                        }
                        match rest {
                            [] => {}
                            [Step::Expect(Expect {
                                json_field: Some(field),
                                equals,
                                capture,
                                ..
                            })] if capture.is_empty() => {
                                f.expect_json_field = field.clone();
                                if let Some(serde_json::Value::String(e)) = equals {
                                    f.expect_equals = e.clone();
                                }
                            }
                            [Step::Expect(Expect {
                                contains: Some(c), ..
                            })] if c == DEFAULT_ECHO => {}
                            _ => return None,
                        }
                    }
                    _ => return None,
                }
            }
            _ => return None,
        }
        if let Some(auth) = &plan.auth {
            match &auth.source {
                TokenSource::Static { tokens } => match tokens.as_slice() {
                    [t] => f.bearer_token = secret_text(t),
                    _ => return None,
                },
                TokenSource::Oauth2 {
                    token_url,
                    client_id,
                    client_secret,
                    ..
                } => {
                    f.token_url = token_url.clone();
                    f.client_id = client_id.clone();
                    f.client_secret = secret_text(client_secret);
                }
            }
            f.connections_per_token = match auth.policy {
                TokenPolicy::Shared => String::new(),
                TokenPolicy::PerConnection => "1".into(),
                TokenPolicy::PerConnections { connections } => connections.to_string(),
                TokenPolicy::Pool { .. } => return None,
            };
            match &auth.rotation {
                None => {}
                Some(engine::plan::Rotation::Reconnect) => f.rotation = "reconnect".into(),
                Some(engine::plan::Rotation::Reauth { message, .. }) => {
                    f.rotation = "reauth".into();
                    f.rotation_message = message.clone();
                }
            }
        }
        (f.to_plan().ok().as_ref() == Some(plan)).then_some(f)
    }
}
