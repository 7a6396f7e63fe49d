//! The sandbox's rate limiters, shared by every profile that limits a rate: a token
//! bucket (`rate`/`burst` on any profile, `session_rate` on `/webmessaging`) and a
//! sliding-window lockout (`lockout=R`). A leaf: it knows nothing of profiles or
//! counters, so [`super::profile`] and [`super::webmessaging`] can both use it.

use std::time::{Duration, Instant};

/// A sliding-window limiter that counts every attempt, refused ones too (as proxies
/// that track a request rate before deciding do): once attempts outrun `limit` per
/// `window`, every attempt is refused until they slow down.
#[derive(Debug)]
pub struct Lockout {
    limit: u64,
    window: Duration,
    seen: std::collections::VecDeque<Instant>,
}

impl Lockout {
    pub fn new(limit: u64, window: Duration) -> Self {
        Lockout {
            limit,
            window,
            seen: std::collections::VecDeque::new(),
        }
    }

    /// Counts an attempt at `now`; true when it may pass.
    pub fn admit(&mut self, now: Instant) -> bool {
        while self
            .seen
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            self.seen.pop_front();
        }
        // Bounded: past 4x the limit nothing more is learnt by remembering more.
        if (self.seen.len() as u64) < self.limit.saturating_mul(4).max(16) {
            self.seen.push_back(now);
        }
        self.seen.len() as u64 <= self.limit
    }
}

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        let burst = burst.max(1.0);
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes a token, or says how long until one is available.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lockout_counts_refused_attempts_and_admits_after_a_pause() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut l = Lockout::new(3, Duration::from_secs(1));
        // 10 attempts/s: the first 3 pass, then every one is refused while they go on.
        let passed: Vec<bool> = (0..20).map(|i| l.admit(ms(i * 100))).collect();
        assert_eq!(passed.iter().filter(|p| **p).count(), 3, "{passed:?}");
        // A pause longer than the window lets attempts in again.
        assert!(l.admit(ms(3100)));
    }

    #[test]
    fn token_bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3.0, t0);
        assert!(b.take(t0).is_ok());
        assert!(b.take(t0).is_ok());
        assert!(b.take(t0).is_ok());
        let wait = b.take(t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6);
        assert!(b.take(t0 + Duration::from_millis(100)).is_ok());
        assert!(b.take(t0 + Duration::from_millis(100)).is_err());
    }
}
