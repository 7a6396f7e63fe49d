//! A probe run as its user follows it (issue 16): the experiment running now and what
//! each finished experiment showed. Built by `probe::follow` from the run's own series,
//! carried on every `Snapshot` of a probe and kept in its `Summary`; the pages, the
//! HTML report and the export only render it.

use serde::{Deserialize, Serialize};

/// Where a probe stands.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ProbeProgress {
    /// The experiment running now (`None` once the probe is over).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<Experiment>,
    /// How many experiments the probe runs. Until the rate experiments end it counts the
    /// pause-retry bursts, which run only when something was refused.
    pub planned: u32,
    /// The finished experiments, in order, with what each showed.
    pub done: Vec<ExperimentResult>,
}

/// One experiment: a phase of the probe, or one step of its rate phase.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Experiment {
    /// 1-based, in the order they run.
    pub index: u32,
    /// The probe phase it belongs to (`concurrency`, `rate`, `pause_retry`, `one_<dim>`).
    pub phase: String,
    /// What it does, in words ("40 connects/s for 5 s").
    pub what: String,
    /// When it starts and (as planned) ends, elapsed ms of the run.
    pub start_ms: u64,
    pub end_ms: u64,
}

/// What one finished experiment showed.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ExperimentResult {
    pub experiment: Experiment,
    /// What it asked for and what the target took, in `unit`.
    pub offered: f64,
    pub accepted: f64,
    /// `connections` (open at once) or `connects_per_second`.
    pub unit: String,
    /// Attempts that failed during it.
    pub failures: u64,
    /// Its reading in words ("no limit", "concurrency cap ≈ 50").
    pub verdict: String,
    /// The level it found (in `unit`), drawn on the chart it comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<f64>,
}

/// Units of `ExperimentResult::unit`.
pub const UNIT_CONNECTIONS: &str = "connections";
pub const UNIT_CONNECTS_PER_SECOND: &str = "connects_per_second";
