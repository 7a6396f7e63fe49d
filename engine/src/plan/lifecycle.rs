//! The open model for sessions (issue 14): instead of `stages` of connection counts, a
//! plan can say "guests arrive at λ per second (constant or staged) and each stays for a
//! duration drawn from a distribution". Pure: the arrival schedule ([`Sessions::arrived_by`])
//! and the seeded stay of each guest ([`Sessions::stay_of`]) are functions the control
//! loop calls, unit-tested here; validation names the field and the limit.
//!
//! A guest that leaves when its stay is over ends its session itself (a `client` close:
//! a departure, never a drop). Guests still inside when the arrivals end are closed by
//! the run's end like any other connection.

use super::*;

/// Most arrival stages.
pub const MAX_ARRIVAL_STAGES: usize = 64;

/// Guests arriving at a rate, each staying for a drawn duration.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sessions {
    /// Arrival stages, one after the other; the run lasts as long as they do.
    pub arrivals: Vec<ArrivalStage>,
    /// How long each guest stays.
    pub stay: Stay,
    /// Seed of the stay draws: the same seed gives every guest the same stay again
    /// (guest n's stay depends on the seed and n only, so agents agree).
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_seed() -> u64 {
    1
}

/// `rate` guests per second for `duration`; with `to`, the rate goes linearly from
/// `rate` to `to` over the stage.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrivalStage {
    pub duration: Dur,
    pub rate: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<f64>,
}

/// A distribution of time in the system.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dist", rename_all = "snake_case", deny_unknown_fields)]
pub enum Stay {
    /// Every guest stays this long.
    Fixed { duration: Dur },
    /// Uniform between `min` and `max`.
    Uniform { min: Dur, max: Dur },
    /// Exponential with this mean (memoryless: most leave early, a few stay long).
    Exponential { mean: Dur },
    /// Log-normal with this median and `sigma` (the spread of the log; 0.5 to 1.5 is
    /// typical of time on a site).
    LogNormal { median: Dur, sigma: f64 },
}

/// SplitMix64: a tiny, well-mixed, seedable generator (pure; no state kept).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `k`-th uniform draw in (0, 1) for guest `n` under `seed`.
fn unit(seed: u64, n: u64, k: u64) -> f64 {
    let bits = mix(mix(seed ^ mix(n)) ^ k) >> 11;
    (bits as f64 + 0.5) / (1u64 << 53) as f64
}

impl Stay {
    /// Guest `n`'s stay under `seed` (whole milliseconds, as plan durations are).
    pub fn draw(&self, seed: u64, n: u64) -> Duration {
        let u = unit(seed, n, 0);
        let secs = match self {
            Stay::Fixed { duration } => duration.0.as_secs_f64(),
            Stay::Uniform { min, max } => {
                let (a, b) = (min.0.as_secs_f64(), max.0.as_secs_f64());
                a + (b - a).max(0.0) * u
            }
            Stay::Exponential { mean } => -mean.0.as_secs_f64() * (1.0 - u).ln(),
            Stay::LogNormal { median, sigma } => {
                // Box-Muller: a standard normal from two uniforms.
                let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * unit(seed, n, 1)).cos();
                median.0.as_secs_f64() * (sigma * z).exp()
            }
        };
        let ms = (secs * 1000.0).round();
        Duration::from_millis(if ms.is_finite() {
            ms.clamp(0.0, 3.6e9) as u64
        } else {
            0
        })
    }

    /// A stay few guests exceed (the 99th percentile), to size the run.
    pub fn high(&self) -> Duration {
        let secs = match self {
            Stay::Fixed { duration } => duration.0.as_secs_f64(),
            Stay::Uniform { max, .. } => max.0.as_secs_f64(),
            Stay::Exponential { mean } => mean.0.as_secs_f64() * 4.605,
            Stay::LogNormal { median, sigma } => median.0.as_secs_f64() * (2.326 * sigma).exp(),
        };
        Duration::from_secs_f64(secs.clamp(0.0, 3.6e6))
    }
}

impl Sessions {
    /// How long guests arrive (the run's length).
    pub fn duration(&self) -> Duration {
        self.arrivals.iter().map(|s| s.duration.0).sum()
    }

    /// The highest arrival rate.
    pub fn peak_rate(&self) -> f64 {
        self.arrivals
            .iter()
            .map(|s| s.rate.max(s.to.unwrap_or(s.rate)))
            .fold(0.0, f64::max)
    }

    /// Expected arrivals by `elapsed`: the integral of the rate (fractional).
    fn expected_by(&self, elapsed: Duration) -> f64 {
        let mut total = 0.0;
        let mut start = Duration::ZERO;
        for s in &self.arrivals {
            let d = s.duration.0.as_secs_f64();
            let end = start + s.duration.0;
            let within = if elapsed >= end {
                d
            } else {
                elapsed.saturating_sub(start).as_secs_f64()
            };
            let to = s.to.unwrap_or(s.rate);
            // The rate at `within`, linear from `rate` to `to`; the area is a trapezoid.
            let at = if d > 0.0 {
                s.rate + (to - s.rate) * within / d
            } else {
                s.rate
            };
            total += (s.rate + at) / 2.0 * within;
            if elapsed < end {
                break;
            }
            start = end;
        }
        total
    }

    /// How many guests have arrived by `elapsed`: arrivals paced evenly along the rate,
    /// guest n (counted from 0) when the expected count reaches n — so the first comes
    /// at once when the rate starts above 0, and `rate × duration` guests come within
    /// the stages. A small tolerance keeps 10 s at 0.1/s one guest, not 0.999….
    pub fn arrived_by(&self, elapsed: Duration) -> u64 {
        let x = self.expected_by(elapsed.min(self.duration()));
        let idle_start = self.arrivals.first().is_none_or(|s| s.rate <= 0.0);
        if x <= 1e-9 && idle_start {
            return 0;
        }
        ((x + 1e-9).floor() as u64 + 1).min(self.total_arrivals())
    }

    /// Every guest the stages bring.
    pub fn total_arrivals(&self) -> u64 {
        let x = self.expected_by(self.duration());
        (x + 1e-9).floor() as u64
    }

    /// Guest `n`'s stay.
    pub fn stay_of(&self, n: u64) -> Duration {
        self.stay.draw(self.seed, n)
    }

    /// Most guests inside at once, roughly (Little's law at the peak rate with the high
    /// stay, bounded by all arrivals): sizes token pools and agents.
    pub fn peak_guests(&self) -> u32 {
        let inside = self.peak_rate() * self.stay.high().min(self.duration()).as_secs_f64();
        let n = inside.ceil().min(self.total_arrivals() as f64).max(0.0);
        n.min(f64::from(u32::MAX)) as u32
    }

    /// Checks the model against `limits`; fields are named under `sessions`.
    pub(super) fn validate(&self, limits: &Limits, errs: &mut Vec<FieldError>) {
        let mut err = |field: String, message: String| errs.push(FieldError { field, message });
        if self.arrivals.is_empty() {
            err(
                "sessions.arrivals".into(),
                "needs at least one stage, e.g. {\"duration\":\"60s\",\"rate\":5}".into(),
            );
        }
        if self.arrivals.len() > MAX_ARRIVAL_STAGES {
            err(
                "sessions.arrivals".into(),
                format!(
                    "has {} stages; the limit is {MAX_ARRIVAL_STAGES}",
                    self.arrivals.len()
                ),
            );
        }
        for (i, s) in self.arrivals.iter().enumerate() {
            if s.duration.0.is_zero() {
                err(
                    format!("sessions.arrivals[{i}].duration"),
                    "0s: a stage must last".into(),
                );
            }
            for (name, r) in [("rate", Some(s.rate)), ("to", s.to)] {
                let Some(r) = r else { continue };
                if !r.is_finite() || r < 0.0 || r > limits.max_connect_rate {
                    err(
                        format!("sessions.arrivals[{i}].{name}"),
                        format!(
                            "{r} guests per second; the limit is 0 to {}",
                            limits.max_connect_rate
                        ),
                    );
                }
            }
        }
        if self.duration() > limits.max_duration.0 {
            err(
                "sessions.arrivals".into(),
                format!(
                    "last {}; the limit is {}",
                    Dur(self.duration()),
                    limits.max_duration
                ),
            );
        }
        let positive = |d: &Dur| !d.0.is_zero();
        match &self.stay {
            Stay::Fixed { duration } if !positive(duration) => {
                err("sessions.stay.duration".into(), "must be above 0s".into())
            }
            Stay::Uniform { min, max } if min > max => err(
                "sessions.stay.min".into(),
                format!("{min} is above max {max}; the limit is max"),
            ),
            Stay::Uniform { max, .. } if !positive(max) => {
                err("sessions.stay.max".into(), "must be above 0s".into())
            }
            Stay::Exponential { mean } if !positive(mean) => {
                err("sessions.stay.mean".into(), "must be above 0s".into())
            }
            Stay::LogNormal { median, .. } if !positive(median) => {
                err("sessions.stay.median".into(), "must be above 0s".into())
            }
            Stay::LogNormal { sigma, .. }
                if !(sigma.is_finite() && *sigma > 0.0 && *sigma <= 3.0) =>
            {
                err(
                    "sessions.stay.sigma".into(),
                    format!("{sigma}; the limit is above 0 up to 3"),
                )
            }
            _ => {}
        }
        let peak = self.peak_guests();
        if peak > limits.max_connections {
            err(
                "sessions".into(),
                format!(
                    "about {peak} guests would be inside at once (peak rate × a long stay); the limit is {}",
                    limits.max_connections
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(json: &str) -> Sessions {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn constant_and_staged_arrivals_are_paced_along_the_rate() {
        let s = sessions(
            r#"{"arrivals":[{"duration":"10s","rate":5}],"stay":{"dist":"fixed","duration":"3s"}}"#,
        );
        let at = |ms| s.arrived_by(Duration::from_millis(ms));
        assert_eq!(
            (
                at(0),
                at(199),
                at(200),
                at(1000),
                at(9_800),
                at(10_000),
                at(60_000)
            ),
            (1, 1, 2, 6, 50, 50, 50)
        );
        assert_eq!(s.total_arrivals(), 50);
        // Staged: 0 -> 10/s over 10 s (50 guests), then 10/s for 5 s (50 more).
        let s = sessions(
            r#"{"arrivals":[{"duration":"10s","rate":0,"to":10},{"duration":"5s","rate":10}],
                "stay":{"dist":"exponential","mean":"2s"}}"#,
        );
        assert_eq!(
            s.arrived_by(Duration::ZERO),
            0,
            "a ramp from 0 starts empty"
        );
        assert_eq!(s.arrived_by(Duration::from_secs(10)), 51);
        assert_eq!(
            s.arrived_by(Duration::from_secs(5)),
            13,
            "half the ramp: 5 s × 5/s / 2"
        );
        assert_eq!(s.total_arrivals(), 100);
        assert_eq!(s.duration(), Duration::from_secs(15));
        // Never backwards.
        let mut last = 0;
        for ms in (0..16_000).step_by(7) {
            let n = s.arrived_by(Duration::from_millis(ms));
            assert!(n >= last, "{ms}");
            last = n;
        }
    }

    #[test]
    fn stays_are_seeded_per_guest_and_follow_their_distribution() {
        let draws = |stay: Stay, seed| -> Vec<f64> {
            (0..20_000)
                .map(|n| stay.draw(seed, n).as_secs_f64())
                .collect()
        };
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let median = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let fixed = Stay::Fixed {
            duration: Dur::secs(3),
        };
        assert!(draws(fixed, 1).iter().all(|d| *d == 3.0));
        let u = draws(
            Stay::Uniform {
                min: Dur::secs(2),
                max: Dur::secs(4),
            },
            1,
        );
        assert!(u.iter().all(|d| (2.0..=4.0).contains(d)));
        assert!((mean(&u) - 3.0).abs() < 0.05, "{}", mean(&u));
        let e = draws(
            Stay::Exponential {
                mean: Dur::secs(10),
            },
            7,
        );
        assert!((mean(&e) - 10.0).abs() < 0.3, "{}", mean(&e));
        assert!(
            (median(&e) - 10.0 * 2f64.ln()).abs() < 0.3,
            "{}",
            median(&e)
        );
        let l = draws(
            Stay::LogNormal {
                median: Dur::secs(30),
                sigma: 0.8,
            },
            3,
        );
        assert!((median(&l) - 30.0).abs() < 1.0, "{}", median(&l));
        assert!(
            (mean(&l) - 30.0 * (0.32f64).exp()).abs() < 1.5,
            "{}",
            mean(&l)
        );
        // Same seed, same guest: same stay; another seed: others.
        let ex = Stay::Exponential {
            mean: Dur::secs(10),
        };
        assert_eq!(ex.draw(7, 42), ex.draw(7, 42));
        assert_ne!(draws(ex.clone(), 7)[..10], draws(ex, 8)[..10]);
    }

    #[test]
    fn validation_names_the_field_and_the_limit() {
        let s = sessions(
            r#"{"arrivals":[{"duration":"0s","rate":-1},{"duration":"10s","rate":1,"to":1e9}],
                "stay":{"dist":"log_normal","median":"30s","sigma":9}}"#,
        );
        let mut errs = Vec::new();
        s.validate(&Limits::default(), &mut errs);
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        for (field, says) in [
            ("sessions.arrivals[0].duration", "0s"),
            ("sessions.arrivals[0].rate", "the limit is 0 to 50000"),
            ("sessions.arrivals[1].to", "the limit is 0 to 50000"),
            ("sessions.stay.sigma", "the limit is above 0 up to 3"),
            ("sessions:", "the limit is 19000"),
        ] {
            assert!(
                text.iter()
                    .any(|t| t.starts_with(field) && t.contains(says)),
                "{field} / {says}: {text:#?}"
            );
        }
        let s = sessions(
            r#"{"arrivals":[{"duration":"10s","rate":5}],"stay":{"dist":"uniform","min":"5s","max":"2s"}}"#,
        );
        let mut errs = Vec::new();
        s.validate(&Limits::default(), &mut errs);
        assert_eq!(errs[0].field, "sessions.stay.min", "{errs:?}");
    }

    /// The template with every commented example switched on (lines that are TOML
    /// after the `# `: tables, keys and inline steps), `stages` switched off.
    fn template_all_on() -> String {
        let mut out = String::new();
        let mut in_stages = false;
        for line in TEMPLATE.lines() {
            if line.starts_with("[[stages]]") {
                in_stages = true;
            } else if line.starts_with('[') || line.starts_with("# ") {
                in_stages = false;
            }
            if in_stages {
                continue;
            }
            let text = line.trim_start();
            let indent = &line[..line.len() - text.len()];
            let code = text.strip_prefix("# ").is_some_and(|rest| {
                rest.starts_with('[')
                    || rest.starts_with("{ ")
                    || rest.split_once(" = ").is_some_and(|(k, _)| {
                        !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    })
            });
            if code {
                out.push_str(indent);
                out.push_str(&text[2..]);
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn the_template_with_every_example_uncommented_is_a_valid_open_model_plan() {
        let text = template_all_on();
        let p: Plan = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(p.stages.is_empty(), "{text}");
        let s = p.sessions.clone().expect("sessions");
        assert_eq!(s.arrivals[0].rate, 5.0);
        assert!(matches!(s.stay, Stay::Exponential { .. }));
        assert!(p.vars.contains_key("guest"));
        assert_eq!(p.responders.len(), 1);
        assert!(p.max_connect_rate.is_some());
        let auth = p.auth.clone().expect("auth");
        assert!(matches!(auth.rotation, Some(Rotation::Reauth { .. })));
        let Step::Repeat(r) = &p.script[0] else {
            panic!("{:?}", p.script)
        };
        let Some(Step::Expect(e)) = r.steps.last() else {
            panic!("{:?}", r.steps)
        };
        assert_eq!(e.capture["reply_id"].json.as_deref(), Some("$.id"));
        // Valid but for the secret the example reads from the environment (which the
        // user sets; tests do not touch the process environment).
        let errs = p.validate(&Limits::default()).err().unwrap_or_default();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["auth.source.client_secret"], "{errs:?}\n{text}");
        assert!(errs[0].message.contains("CLIENT_SECRET"), "{errs:?}");
        // And commented out, the default plan is what it was: closed model, no tokens.
        let d: Plan = toml::from_str(TEMPLATE).unwrap();
        assert_eq!((&d.sessions, &d.auth, d.stages.len()), (&None, &None, 2));
        assert_eq!(d.validate(&Limits::default()), Ok(()));
    }
}
