//! A probe's bounds, as the plan states them ("find my limit" within these). The
//! experiments themselves are planned in `crate::probe`, read in `crate::diagnose::probe`.

use serde::{Deserialize, Serialize};

use super::{Dur, FieldError, Limits};

/// The user's bounds for a probe.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    pub max_connections: u32,
    /// New connections per second, at most.
    pub max_connect_rate: f64,
    /// The whole probe, all phases.
    #[serde(default = "default_probe_duration")]
    pub max_duration: Dur,
}

fn default_probe_duration() -> Dur {
    Dur::secs(60)
}

impl Probe {
    pub fn validate(&self, limits: &Limits) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let mut err = |f: &str, m: String| {
            errs.push(FieldError {
                field: format!("probe.{f}"),
                message: m,
            })
        };
        if self.max_connections == 0 || self.max_connections > limits.max_connections {
            err(
                "max_connections",
                format!(
                    "{} must be between 1 and {}",
                    self.max_connections, limits.max_connections
                ),
            );
        }
        if !(self.max_connect_rate.is_finite()
            && self.max_connect_rate >= 1.0
            && self.max_connect_rate <= limits.max_connect_rate)
        {
            err(
                "max_connect_rate",
                format!(
                    "{} must be between 1 and {} per second",
                    self.max_connect_rate, limits.max_connect_rate
                ),
            );
        }
        if self.max_duration.0 < std::time::Duration::from_secs(8)
            || self.max_duration.0 > limits.max_duration.0
        {
            err(
                "max_duration",
                format!(
                    "{} must be between 8s and {}",
                    self.max_duration, limits.max_duration
                ),
            );
        }
        errs
    }
}
