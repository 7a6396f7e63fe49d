//! The "New run" form as data, and its translation into a `Plan`. Every field arrives as
//! text so a typo becomes a field error ("connections: `5o` is not a whole number"),
//! never a failed deserialization.

use std::time::Duration;

use engine::plan::{Dur, Expect, Repeat, Step};
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

impl RunForm {
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
            script,
            reconnect: Default::default(),
            source_addrs: Vec::new(),
            insecure_tls: false,
            auth: None,
            probe: None,
            http_steps: Vec::new(),
            thresholds: Default::default(),
            abort_on_fail: false,
            abort_grace: engine::plan::Dur::secs(5),
        })
    }
}

/// Which form field shows a plan validation error (`stages[1].connections` -> `connections`).
pub fn form_field_of(plan_field: &str) -> &str {
    if plan_field.ends_with(".connections") || plan_field == "source_addrs" {
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
        }
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
