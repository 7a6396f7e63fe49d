//! Client identities in the wire types: handshake outcomes per token slot, source
//! address, header or query value ([`IdentityTotals`], [`Identities`]), the
//! per-dimension bound ([`MAX_IDENTITIES`]) and the one merge that keeps it. Re-exported
//! from [`crate::report`], where the `Snapshot`, `AgentTick` and `Summary` carrying them live.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Handshake outcomes of one client identity (a token slot, a source address, a header
/// or query value the plan varies), cumulative.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct IdentityTotals {
    pub attempted: u64,
    pub opened: u64,
    /// Turned away: 429/503, no answer in time, or TCP refused/reset.
    pub rejected: u64,
    /// Refused with 401/403.
    pub auth_failed: u64,
    /// Any other failure.
    pub other_failed: u64,
    pub closed: u64,
}

impl IdentityTotals {
    pub fn merge(&mut self, o: &IdentityTotals) {
        self.attempted += o.attempted;
        self.opened += o.opened;
        self.rejected += o.rejected;
        self.auth_failed += o.auth_failed;
        self.other_failed += o.other_failed;
        self.closed += o.closed;
    }
    pub fn open(&self) -> u64 {
        self.opened.saturating_sub(self.closed)
    }
}

/// Per client identity, by dimension: `token` (slot number), `source_addr` (the
/// address), `header:NAME` and `query:NAME` (`#1`, `#2`, … in order of first use, so a
/// key's value never leaves the engine). Each dimension tracks at most
/// `MAX_IDENTITIES` identities.
pub type Identities = BTreeMap<String, BTreeMap<String, IdentityTotals>>;

/// Identities tracked per dimension (per-connection values would grow without bound).
pub const MAX_IDENTITIES: usize = 256;

/// Dimensions tracked (a token, a source address, a few headers and query values; an
/// agent's tick or an import naming more is cut here).
pub const MAX_DIMENSIONS: usize = 16;

/// The dimension key of token slots.
pub const DIM_TOKEN: &str = "token";
/// The dimension key of local source addresses.
pub const DIM_SOURCE: &str = "source_addr";

/// Adds `from` into `into`, keeping the bounds (`MAX_DIMENSIONS`, `MAX_IDENTITIES`).
pub fn merge_identities(into: &mut Identities, from: &Identities) {
    for (dim, ids) in from {
        if !into.contains_key(dim) && into.len() >= MAX_DIMENSIONS {
            continue;
        }
        let mine = into.entry(dim.clone()).or_default();
        for (id, t) in ids {
            if mine.len() < MAX_IDENTITIES || mine.contains_key(id) {
                mine.entry(id.clone()).or_default().merge(t);
            }
        }
    }
}

/// Runs stored before identities had dimensions kept per-token totals by slot number:
/// they read as the `token` dimension.
pub(super) fn legacy_tokens(tokens: &BTreeMap<u32, IdentityTotals>, into: &mut Identities) {
    if !tokens.is_empty() && !into.contains_key(DIM_TOKEN) {
        into.insert(
            DIM_TOKEN.into(),
            tokens
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        );
    }
}
