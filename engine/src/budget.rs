//! The process's budget for bytes a target makes us hold: WebSocket messages still
//! arriving, HTTP-step and token answers being read. A per-message cap (16 MiB) bounds
//! one message, not twelve connections each receiving one; this bounds their sum.
//!
//! How it counts: every reader (a connection's socket, an HTTP answer's body) has a
//! [`Hold`]. The first [`FREE_BYTES`] of each item it reads are its own (small messages
//! never touch the shared counter); past them, every byte is taken from the process's
//! [`Budget`] before it is kept, and given back when the item has been handled
//! (`Hold::settle`) or the reader goes away. A read that would take the budget past its
//! limit fails as [`OverBudget`]: the engine records it as an outcome
//! (`memory_budget`, `session_memory_budget`), never as a crash.
//!
//! What it bounds: bytes held for targets ≤ `limit + readers × FREE_BYTES` (plus the
//! allocator's slack: the docs state the measured bound). Answers also have caps of their
//! own ([`MAX_STEP_ANSWER`], [`MAX_TOKEN_ANSWER`]): a single answer past its cap is the
//! target's doing, not the budget's.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes of one item (message or answer) a reader holds without drawing on the budget.
pub const FREE_BYTES: usize = 4 << 10;

/// The budget when none is configured.
pub const DEFAULT_LIMIT: usize = 64 << 20;

pub use crate::report::{MAX_STEP_ANSWER, MAX_TOKEN_ANSWER};

/// Bytes held for targets, process-wide.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
    /// Most bytes in use at once so far.
    peak: AtomicUsize,
    /// Reads refused because the budget was full.
    refused: AtomicU64,
}

/// A read the budget had no room for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget;

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the process's in-flight byte budget is full")
    }
}

impl std::error::Error for OverBudget {}

/// What a budget reports (for `/metrics` and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BudgetUse {
    pub limit: usize,
    pub used: usize,
    pub peak: usize,
    pub refused: u64,
}

static PROCESS: OnceLock<Budget> = OnceLock::new();

impl Budget {
    pub const fn new(limit: usize) -> Budget {
        Budget {
            limit,
            used: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// The process's budget: `DEFAULT_LIMIT` unless `set_process_limit` came first.
    pub fn process() -> &'static Budget {
        PROCESS.get_or_init(|| Budget::new(DEFAULT_LIMIT))
    }

    /// Sets the process's limit; only before anything used the budget (at start-up).
    /// Returns false if it was already set or used.
    pub fn set_process_limit(limit: usize) -> bool {
        PROCESS.set(Budget::new(limit)).is_ok()
    }

    /// Takes `n` bytes, or none if that would pass the limit.
    fn take(&self, n: usize) -> Result<(), OverBudget> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.saturating_add(n);
            if next > self.limit {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(OverBudget);
            }
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.peak.fetch_max(next, Ordering::Relaxed);
                    return Ok(());
                }
                Err(now) => used = now,
            }
        }
    }

    fn give(&self, n: usize) {
        if n > 0 {
            self.used.fetch_sub(n, Ordering::AcqRel);
        }
    }

    pub fn usage(&self) -> BudgetUse {
        BudgetUse {
            limit: self.limit,
            used: self.used.load(Ordering::Relaxed),
            peak: self.peak.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

/// One reader's claim on a budget: bytes of the item being read, and what of them was
/// taken from the budget (everything past `FREE_BYTES`). Given back on `settle` and
/// on drop.
#[derive(Debug)]
pub struct Hold {
    budget: &'static Budget,
    read: usize,
    taken: usize,
}

impl Hold {
    pub fn new(budget: &'static Budget) -> Hold {
        Hold {
            budget,
            read: 0,
            taken: 0,
        }
    }

    /// Counts `n` more bytes of the current item; takes what passes `FREE_BYTES` from the
    /// budget first.
    pub fn add(&mut self, n: usize) -> Result<(), OverBudget> {
        let read = self.read.saturating_add(n);
        let need = read.saturating_sub(FREE_BYTES);
        if need > self.taken {
            self.budget.take(need - self.taken)?;
            self.taken = need;
        }
        self.read = read;
        Ok(())
    }

    /// The current item was handled: its bytes are no longer held.
    pub fn settle(&mut self) {
        self.budget.give(self.taken);
        self.read = 0;
        self.taken = 0;
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.budget.give(self.taken);
    }
}

/// A stream whose reads are counted against a budget (a WebSocket connection's socket:
/// the session settles after each message it handled). A read past the budget fails
/// with an `io::Error` wrapping [`OverBudget`] (see [`is_over_budget`]).
pub struct Metered<S> {
    inner: S,
    hold: Hold,
}

impl<S> Metered<S> {
    pub fn new(inner: S, budget: &'static Budget) -> Metered<S> {
        Metered {
            inner,
            hold: Hold::new(budget),
        }
    }

    /// The message read so far has been handled (dropped): its bytes are free again.
    pub fn settle(&mut self) {
        self.hold.settle();
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// Whether an I/O error is a read the budget refused.
pub fn is_over_budget(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<OverBudget>())
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut me.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                match me.hold.add(n) {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(e) => Poll::Ready(Err(std::io::Error::other(e))),
                }
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Why an HTTP answer was not read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerError {
    /// Longer than the cap (announced or read).
    TooLarge,
    /// The budget had no room for it.
    OverBudget,
    /// The connection failed or timed out while reading.
    Failed,
}

/// Reads an HTTP answer's body, at most `cap` bytes, each past `FREE_BYTES` taken from
/// `budget`. A `Content-Length` over the cap is refused before anything is read. The
/// `Hold` keeps the bytes counted until the caller is done with what it made of them.
pub async fn read_answer(
    mut resp: reqwest::Response,
    cap: usize,
    budget: &'static Budget,
) -> Result<(Vec<u8>, Hold), AnswerError> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(AnswerError::TooLarge);
    }
    let mut hold = Hold::new(budget);
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > cap {
                    return Err(AnswerError::TooLarge);
                }
                hold.add(chunk.len()).map_err(|_| AnswerError::OverBudget)?;
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok((body, hold)),
            Err(_) => return Err(AnswerError::Failed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaked(limit: usize) -> &'static Budget {
        Box::leak(Box::new(Budget::new(limit)))
    }

    #[test]
    fn small_items_never_touch_the_budget() {
        let b = leaked(0);
        let mut h = Hold::new(b);
        for _ in 0..100 {
            h.add(FREE_BYTES / 2).unwrap();
            h.add(FREE_BYTES / 2).unwrap();
            h.settle();
        }
        assert_eq!(b.usage().used, 0);
        assert!(
            h.add(FREE_BYTES + 1).is_err(),
            "a zero budget holds nothing more"
        );
        assert_eq!(b.usage().refused, 1);
    }

    #[test]
    fn the_sum_over_readers_is_bounded_and_given_back() {
        let b = leaked(10 * FREE_BYTES);
        let mut holds: Vec<Hold> = (0..20).map(|_| Hold::new(b)).collect();
        let mut refused = 0;
        for h in holds.iter_mut() {
            // Each wants 2 × FREE_BYTES: one free, one from the budget.
            if h.add(2 * FREE_BYTES).is_err() {
                refused += 1;
            }
        }
        assert_eq!(refused, 10, "ten fit, ten do not");
        assert_eq!(b.usage().used, 10 * FREE_BYTES);
        assert_eq!(b.usage().peak, 10 * FREE_BYTES);
        holds[0].settle();
        assert_eq!(b.usage().used, 9 * FREE_BYTES);
        drop(holds);
        assert_eq!(b.usage().used, 0, "every hold gives its bytes back");
    }

    #[test]
    fn growing_an_item_takes_only_the_difference() {
        let b = leaked(1 << 20);
        let mut h = Hold::new(b);
        for _ in 0..64 {
            h.add(1024).unwrap();
        }
        assert_eq!(b.usage().used, 64 * 1024 - FREE_BYTES);
        h.settle();
        assert_eq!(b.usage().used, 0);
    }

    #[tokio::test]
    async fn a_metered_stream_fails_past_the_budget_and_says_why() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let b = leaked(FREE_BYTES);
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let mut m = Metered::new(client, b);
        server.write_all(&vec![7u8; 3 * FREE_BYTES]).await.unwrap();
        let mut buf = vec![0u8; 3 * FREE_BYTES];
        let mut got = 0;
        let err = loop {
            match m.read(&mut buf[got..]).await {
                Ok(n) => got += n,
                Err(e) => break e,
            }
        };
        assert!(is_over_budget(&err), "{err}");
        assert!(got <= 2 * FREE_BYTES);
        drop(m);
        assert_eq!(b.usage().used, 0);
    }
}
