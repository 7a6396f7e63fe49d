//! What a VU does when its handshake fails or its connection drops: `Reconnect`
//! (never, or with backoff and jitter) and `MaxAttempts` (a number or `"unlimited"`),
//! with their serde defaults.

use super::*;

/// What a VU does when its handshake fails or its connection drops.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reconnect {
    /// Never retry: measure raw behaviour.
    #[default]
    Never,
    /// Retry with exponential backoff and full jitter.
    Backoff {
        /// Attempts in a row (since the last open) before the VU gives up and counts in
        /// `Totals::gave_up`: a number, or `"unlimited"` to retry for as long as the run
        /// lasts, as real clients do.
        #[serde(default = "default_max_attempts")]
        max_attempts: MaxAttempts,
        #[serde(default = "default_backoff_initial")]
        initial: Dur,
        #[serde(default = "default_backoff_max")]
        max: Dur,
        /// Wait at least what a 429/503's `Retry-After` asks for.
        #[serde(default = "default_true")]
        honor_retry_after: bool,
    },
}

/// How many attempts in a row a reconnecting VU makes.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MaxAttempts {
    /// This many, then give up.
    Count(u32),
    /// `"unlimited"`: never give up while the run lasts.
    Unlimited(UnlimitedWord),
}

/// The word `"unlimited"`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnlimitedWord {
    Unlimited,
}

impl MaxAttempts {
    /// `"unlimited"`.
    pub const UNLIMITED: MaxAttempts = MaxAttempts::Unlimited(UnlimitedWord::Unlimited);

    /// The VU gives up after `streak` attempts in a row.
    pub fn exhausted(self, streak: u32) -> bool {
        match self {
            MaxAttempts::Count(n) => streak >= n,
            MaxAttempts::Unlimited(_) => false,
        }
    }
}

impl fmt::Display for MaxAttempts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxAttempts::Count(n) => write!(f, "{n}"),
            MaxAttempts::Unlimited(_) => f.write_str("unlimited"),
        }
    }
}

impl Reconnect {
    /// Backoff with the defaults a plan file gets from `{ mode = "backoff" }`.
    pub fn backoff() -> Self {
        Reconnect::Backoff {
            max_attempts: default_max_attempts(),
            initial: default_backoff_initial(),
            max: default_backoff_max(),
            honor_retry_after: true,
        }
    }

    /// Backoff that never gives up (the New-run form's reconnect): what chat and
    /// messaging clients do while their user waits.
    pub fn unlimited() -> Self {
        Reconnect::Backoff {
            max_attempts: MaxAttempts::UNLIMITED,
            initial: default_backoff_initial(),
            max: default_backoff_max(),
            honor_retry_after: true,
        }
    }
}

fn default_max_attempts() -> MaxAttempts {
    MaxAttempts::Count(5)
}
fn default_backoff_initial() -> Dur {
    Dur::millis(500)
}
fn default_backoff_max() -> Dur {
    Dur::secs(30)
}
fn default_true() -> bool {
    true
}
