//! The bound on a run's distinct outcome keys ([`OutcomeKeys`]): every key becomes a
//! table row, a chart series, a CSV column and `/metrics` series, and a target picks
//! the codes (a close code of its own per connection made 2,000 keys in 26 s). Keys of a
//! fixed set (`timeout`, `http_429`, `server_1008`, …) are always kept; of each family
//! whose code the target chooses (`outcome::KeyFamily`) a run keeps the first
//! `MAX_CODES_PER_FAMILY` and counts the rest in the family's `other` key
//! (`http_other`, `server_other`, …). Counts are moved, never dropped: `failed` is still
//! the sum of `failures`.
//!
//! One `OutcomeKeys` per run, fed every interval in order (the agent's aggregator, the
//! coordinator's merger, the stream of a whole run, an import), so a run's ticks, its
//! totals and its summary keep the same keys. Re-exported from [`crate::report`].

use std::collections::{BTreeMap, BTreeSet};

use crate::outcome::{KeyFamily, MAX_CODES_PER_FAMILY};

use super::Totals;

/// The keys a run has kept so far, per map.
#[derive(Debug, Clone, Default)]
pub struct OutcomeKeys {
    failures: Kept,
    closes: Kept,
}

#[derive(Debug, Clone, Default)]
struct Kept {
    keys: BTreeSet<String>,
    /// Codes kept per family (its `other` key not counted).
    per_family: BTreeMap<KeyFamily, usize>,
}

impl Kept {
    /// Where `key`'s counts go: itself, or its family's `other` key.
    fn place(&mut self, key: &str, family: fn(&str) -> Option<KeyFamily>) -> Option<String> {
        if self.keys.contains(key) {
            return None;
        }
        let Some(f) = family(key) else {
            self.keys.insert(key.to_string());
            return None;
        };
        if key == f.other_key() {
            self.keys.insert(key.to_string());
            return None;
        }
        let n = self.per_family.entry(f).or_default();
        if *n < MAX_CODES_PER_FAMILY {
            *n += 1;
            self.keys.insert(key.to_string());
            return None;
        }
        self.keys.insert(f.other_key().to_string());
        Some(f.other_key().to_string())
    }

    fn bound(&mut self, map: &mut BTreeMap<String, u64>, family: fn(&str) -> Option<KeyFamily>) {
        if map.keys().all(|k| self.keys.contains(k)) {
            return;
        }
        for (key, n) in std::mem::take(map) {
            let to = self.place(&key, family).unwrap_or(key);
            *map.entry(to).or_default() += n;
        }
    }
}

impl OutcomeKeys {
    pub fn new() -> OutcomeKeys {
        OutcomeKeys::default()
    }

    /// Folds the keys of `t` the run has no room for into their family's `other` key,
    /// and remembers the ones it keeps.
    pub fn bound(&mut self, t: &mut Totals) {
        self.failures.bound(&mut t.failures, KeyFamily::of_failure);
        self.closes.bound(&mut t.closes, KeyFamily::of_close);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(fails: &[&str], closes: &[&str]) -> Totals {
        let mut t = Totals::default();
        for k in fails {
            *t.failures.entry(k.to_string()).or_default() += 1;
            t.failed += 1;
        }
        for k in closes {
            *t.closes.entry(k.to_string()).or_default() += 1;
            t.closed += 1;
        }
        t
    }

    #[test]
    fn a_target_choosing_codes_fills_one_bucket_per_family() {
        let mut keys = OutcomeKeys::new();
        let mut whole = Totals::default();
        for i in 0..2000u32 {
            let code = format!("server_{}", 3000 + i);
            let status = format!("http_{}", 500 + i % 400);
            let mut t = with(&[&status], &[&code]);
            keys.bound(&mut t);
            whole.merge(&t);
        }
        // 4401 and 4403 (credentials ended) and 503 (a refusal) are always kept.
        assert_eq!(whole.closes.len(), MAX_CODES_PER_FAMILY + 1 + 2);
        assert_eq!(
            whole.closes["server_other"],
            2000 - MAX_CODES_PER_FAMILY as u64 - 2
        );
        assert!(whole.closes.contains_key("server_4401"));
        assert_eq!(whole.failures.len(), MAX_CODES_PER_FAMILY + 1 + 1);
        assert!(whole.failures.contains_key("http_503"));
        assert_eq!(whole.failures.values().sum::<u64>(), whole.failed);
        assert_eq!(whole.closes.values().sum::<u64>(), whole.closed);
    }

    #[test]
    fn keys_that_mean_something_are_never_folded() {
        let mut keys = OutcomeKeys::new();
        let mut t = with(
            &(100..200)
                .map(|c| format!("http_{c}"))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            &(3000..3100)
                .map(|c| format!("server_{c}"))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        keys.bound(&mut t);
        let mut late = with(
            &[
                "http_429",
                "http_401",
                "token_http_503",
                "timeout",
                "reset",
                "memory_budget",
            ],
            &[
                "server_1013",
                "server_4401",
                "abnormal_1006",
                "client",
                "protocol",
            ],
        );
        let before = late.clone();
        keys.bound(&mut late);
        assert_eq!(late, before, "fixed keys and meaningful codes stay");
    }

    #[test]
    fn families_are_bounded_apart_and_unknown_keys_too() {
        let mut keys = OutcomeKeys::new();
        let names: Vec<String> = ["http_", "token_http_", "step_http_"]
            .iter()
            .flat_map(|p| (600..700).map(move |c| format!("{p}{c}")))
            .chain((0..50).map(|i| format!("from_a_newer_version_{i}")))
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut t = with(&refs, &[]);
        keys.bound(&mut t);
        for other in ["http_other", "token_http_other", "step_http_other", "other"] {
            assert!(
                t.failures.contains_key(other),
                "{other}: {:?}",
                t.failures.keys()
            );
        }
        assert_eq!(t.failures.len(), 4 * (MAX_CODES_PER_FAMILY + 1));
        // A kept key keeps counting; the bucket too.
        let mut again = with(&refs, &[]);
        keys.bound(&mut again);
        assert_eq!(again.failures, t.failures);
    }
}
