//! Durations as plans and thresholds write them: `"250ms"`, `"2s"`, `"5m"`, `"1h"` or a
//! bare number of seconds. A leaf: it imports nothing of the crate.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A duration written as `"250ms"`, `"2s"`, `"5m"`, `"1h"` (or a bare number of seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
    pub const fn millis(ms: u64) -> Self {
        Dur(Duration::from_millis(ms))
    }
    pub fn as_duration(self) -> Duration {
        self.0
    }
}

/// Parses `"250ms"`, `"2s"`, `"1.5s"`, `"5m"`, `"1h"`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (use e.g. 250ms, 2s, 5m, 1h)"))?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{text}` (use ms, s, m or h)"
            ))
        }
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 365.0 * 86_400.0 {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(3_600_000) && ms > 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) && ms > 0 {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for Dur {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration: \"250ms\", \"2s\", \"1.5s\", \"5m\", \"1h\", or a number of seconds.",
            "anyOf": [{"type": "string", "pattern": "^\\s*[0-9.]+\\s*(ms|s|m|h)?\\s*$"}, {"type": "number", "minimum": 0}]
        })
    }
}

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// Plan durations have millisecond resolution (tokio's timers have no finer one, and a
/// `Dur` prints whole milliseconds): a sub-millisecond part is rounded to the nearest
/// millisecond, and a positive duration stays at least 1 ms. So a stored plan reads
/// back exactly as it ran (`1.001ms` used to be stored as `1ms`).
fn whole_millis(d: Duration) -> Duration {
    let ms = (d.as_nanos() + 500_000) / 1_000_000;
    let ms = if ms == 0 && !d.is_zero() { 1 } else { ms };
    Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Secs(f64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(t) => parse_duration(&t)
                .map(|d| Dur(whole_millis(d)))
                .map_err(serde::de::Error::custom),
            Raw::Secs(s) if s.is_finite() && (0.0..=31_536_000.0).contains(&s) => {
                Ok(Dur(whole_millis(Duration::from_secs_f64(s))))
            }
            Raw::Secs(s) => Err(serde::de::Error::custom(format!(
                "{s} is not a duration in seconds"
            ))),
        }
    }
}
