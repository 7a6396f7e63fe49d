//! Throttling of wrong tokens per client address (attack 8b: 300 wrong tokens in 0.2 s
//! were all answered), for every secret a client shows: the access token (the `/login`
//! form, a Bearer header, the session cookie), the agent pool token and a run's agent
//! secret. [`LoginThrottle::judge`] is the one decision:
//! - **the right token always passes**, locked out or not, and leaves the record as it
//!   is. A lockout that refused the right token let anyone who shares the user's address
//!   (a reverse proxy, a NAT, this machine) lock the user out: 1.3 wrong guesses a
//!   second made 3 of 6 right requests fail. The price: while locked out, answers still
//!   tell a right guess from a wrong one, so what stops guessing is the tokens' strength
//!   (the start-up rules: at least 24 characters, 10 different, no pattern), not the
//!   lockout;
//! - the first [`FREE_FAILURES`] wrong tokens from an address are answered as usual;
//! - each further one locks the address out for [`FIRST_LOCKOUT`], doubling with every
//!   failure up to [`MAX_LOCKOUT`] (1 s, 2 s, 4 s, … 15 min): wrong tokens are then
//!   answered with 429 and `Retry-After` (a misconfigured client backs off, and a guesser
//!   costs a table lookup), and such answers do not count as failures;
//! - a record is forgotten [`FORGET_AFTER`] after its last lockout ended (or its last
//!   failure).
//!
//! Memory is bounded: at most [`MAX_TRACKED`] addresses (≈ 1 MB). When full, expired
//! records go first, then the one whose lockout ended longest ago. IPv6 clients are
//! counted per /64 (one host usually owns a whole /64). Behind a reverse proxy every
//! client has the proxy's address, so all of them share one record: `X-Forwarded-For`
//! is not trusted, since any client can write it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong tokens an address may send before lockouts start.
pub const FREE_FAILURES: u32 = 5;
/// The lockout after the first failure past [`FREE_FAILURES`]; doubles with each one.
pub const FIRST_LOCKOUT: Duration = Duration::from_secs(1);
/// The longest lockout.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// How long a record outlives its last lockout (or failure).
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Most addresses tracked at once.
pub const MAX_TRACKED: usize = 10_000;

/// One address's recent failures.
#[derive(Debug, Clone, Copy)]
struct Record {
    /// Wrong tokens since the record was created.
    failures: u32,
    /// Until when tokens from this address are refused unchecked (the time of the last
    /// failure while it had free ones left).
    locked_until: Instant,
}

impl Record {
    fn expired(&self, now: Instant) -> bool {
        now > self.locked_until + FORGET_AFTER
    }
}

/// The failure records, shared by every request (one short lock per request that offers
/// a token; never held across an await).
#[derive(Debug, Default)]
pub struct LoginThrottle {
    records: Mutex<HashMap<IpAddr, Record>>,
}

/// What to answer a token offered by a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The right token: serve the request.
    Right,
    /// Wrong, answered as usual (401, the login form again).
    Wrong,
    /// Wrong, from an address locked out for this long more: 429 with `Retry-After`.
    LockedOut(Duration),
}

impl LoginThrottle {
    /// The one decision for a token from `client` that is `right` or not (see the
    /// module doc): the right one always passes; wrong ones are counted until the
    /// address is locked out, then answered with the lockout.
    pub fn judge(&self, client: IpAddr, right: bool, now: Instant) -> Verdict {
        if right {
            return Verdict::Right;
        }
        if let Some(wait) = self.locked(client, now) {
            return Verdict::LockedOut(wait);
        }
        match self.failed(client, now) {
            Some(wait) => Verdict::LockedOut(wait),
            None => Verdict::Wrong,
        }
    }

    /// How long `client` is still locked out; `None` when it is not.
    pub fn locked(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let record = records.get(&key(client))?;
        (record.locked_until > now).then(|| record.locked_until - now)
    }

    /// Records a wrong token from `client`; the lockout it now serves, if any.
    pub fn failed(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let client = key(client);
        if !records.contains_key(&client) {
            make_room(&mut records, now);
        }
        let record = records
            .entry(client)
            .and_modify(|r| {
                if r.expired(now) {
                    r.failures = 0;
                }
            })
            .or_insert(Record {
                failures: 0,
                locked_until: now,
            });
        record.failures = record.failures.saturating_add(1);
        let lockout = lockout_after(record.failures);
        record.locked_until = now + lockout.unwrap_or_default();
        lockout
    }

    /// Addresses tracked now (for tests).
    pub fn tracked(&self) -> usize {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The lockout after the `failures`-th wrong token: none for the free ones, then
/// [`FIRST_LOCKOUT`] doubling up to [`MAX_LOCKOUT`].
fn lockout_after(failures: u32) -> Option<Duration> {
    let past_free = failures.checked_sub(FREE_FAILURES + 1)?;
    let factor = 1u32.checked_shl(past_free.min(20)).unwrap_or(u32::MAX);
    Some(FIRST_LOCKOUT.saturating_mul(factor).min(MAX_LOCKOUT))
}

/// Frees a slot when [`MAX_TRACKED`] addresses are tracked: expired records first, then
/// the one whose lockout ended longest ago.
fn make_room(records: &mut HashMap<IpAddr, Record>, now: Instant) {
    if records.len() < MAX_TRACKED {
        return;
    }
    records.retain(|_, r| !r.expired(now));
    if records.len() < MAX_TRACKED {
        return;
    }
    if let Some(oldest) = records
        .iter()
        .min_by_key(|(_, r)| r.locked_until)
        .map(|(ip, _)| *ip)
    {
        records.remove(&oldest);
    }
}

/// The record an address counts under: IPv4 as is (also when IPv4-mapped), IPv6 per
/// /64 network.
fn key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = a.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn lockouts_start_after_the_free_failures_and_double() {
        let t = LoginThrottle::default();
        let (a, now) = (ip("192.0.2.1"), Instant::now());
        for _ in 0..FREE_FAILURES {
            assert_eq!(t.failed(a, now), None);
            assert_eq!(t.locked(a, now), None);
        }
        let mut at = now;
        for want in [1, 2, 4, 8] {
            assert_eq!(t.failed(a, at), Some(Duration::from_secs(want)));
            assert_eq!(t.locked(a, at), Some(Duration::from_secs(want)));
            at += Duration::from_secs(want);
            assert_eq!(t.locked(a, at), None, "the lockout ends");
        }
        assert_eq!(
            t.locked(ip("192.0.2.2"), at),
            None,
            "other addresses are free"
        );
        for _ in 0..30 {
            t.failed(a, at);
        }
        assert_eq!(t.locked(a, at), Some(MAX_LOCKOUT));
        assert_eq!(
            t.judge(a, true, at),
            Verdict::Right,
            "the right token passes"
        );
        assert_eq!(
            t.judge(a, false, at),
            Verdict::LockedOut(MAX_LOCKOUT),
            "the record stays"
        );
    }

    #[test]
    fn records_expire_and_memory_is_bounded() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for i in 0..MAX_TRACKED + 50 {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i as u32));
            t.failed(a, now);
        }
        assert_eq!(t.tracked(), MAX_TRACKED);
        let a = ip("192.0.2.1");
        for _ in 0..=FREE_FAILURES {
            t.failed(a, now);
        }
        let later = now + FIRST_LOCKOUT + FORGET_AFTER + Duration::from_secs(1);
        assert_eq!(t.failed(a, later), None, "failures are forgotten");
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    }
}
