//! Who holds the HTTP connection slots, so that clients without the access token can
//! never take all of them (issue: 256 connections dripping a `POST /login` body held
//! every slot and the owner's request was refused).
//!
//! Every open connection is in one class:
//! - **open**: admitted while there was room for anyone;
//! - **probation**: admitted into the owner's reserve (the last `reserve` slots) when
//!   the rest were taken by connections that never showed the token. Its first request
//!   must carry the access token; anything else is answered 503 and the connection
//!   closed. A probation connection that has not sent a request head yet is the first
//!   to go when another newcomer needs its slot, so silent connections cannot camp in
//!   the reserve;
//! - **proven**: a request on it carried the access token (sticky for the connection).
//!
//! Without an access token there is no owner to reserve for: every connection is
//! `open` and the cap is the plain cap it always was.
//!
//! Invariant: `open + probation + proven` = registered connections ≤ `max`, and open
//! connections never exceed `max - reserve` when a token is set.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

const OPEN: u8 = 0;
const PROBATION: u8 = 1;
const PROVEN: u8 = 2;

/// The registry of open connections (one per listener).
pub struct Conns {
    max: usize,
    reserve: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next: u64,
    /// Connections by class (open, probation, proven).
    counts: [usize; 3],
    /// Probation connections that have not sent a request yet, oldest first, with
    /// the token that evicts them.
    silent: BTreeMap<u64, CancellationToken>,
}

/// One connection's place in the registry: its class, and whether it has sent a
/// request yet. Shared with its requests (a request extension) and given back when the
/// connection ends.
pub struct ConnMark {
    id: u64,
    class: AtomicU8,
    spoke: AtomicBool,
    conns: Arc<Conns>,
    /// Cancelled when a newcomer takes this connection's slot.
    pub evicted: CancellationToken,
}

/// What a request on a probation connection may do.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Serve it.
    Serve,
    /// Answer 503 and close: a probation connection without the token.
    Refuse,
}

impl Conns {
    /// `max` connections; `reserve` of them kept for requests with the access token
    /// (0 when there is none).
    pub fn new(max: usize, reserve: usize) -> Arc<Conns> {
        Arc::new(Conns {
            max: max.max(1),
            reserve: reserve.min(max.saturating_sub(1)),
            state: Mutex::new(State::default()),
        })
    }

    /// The reserve for a cap of `max` when an access token is set: a sixteenth, at
    /// least 8 (newcomers take the oldest silent one's slot, so an owner's connection,
    /// silent only until its head is read, would need 8 newcomers within that moment
    /// to lose its slot).
    pub fn reserve_for(max: usize) -> usize {
        (max / 16).max(8)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A newcomer: its mark, or `None` when every slot is taken (answer 503, close).
    pub fn admit(self: &Arc<Self>) -> Option<Arc<ConnMark>> {
        let mut st = self.lock();
        let total: usize = st.counts.iter().sum();
        let class = if total < self.max && st.counts[OPEN as usize] < self.max - self.reserve {
            OPEN
        } else if self.reserve > 0 && total < self.max {
            PROBATION
        } else if self.reserve > 0 {
            // Full: the oldest silent probation connection makes room.
            let (&old, _) = st.silent.iter().next()?;
            if let Some(token) = st.silent.remove(&old) {
                token.cancel();
            }
            st.counts[PROBATION as usize] -= 1;
            PROBATION
        } else {
            return None;
        };
        st.counts[class as usize] += 1;
        st.next += 1;
        let mark = Arc::new(ConnMark {
            id: st.next,
            class: AtomicU8::new(class),
            spoke: AtomicBool::new(false),
            conns: self.clone(),
            evicted: CancellationToken::new(),
        });
        if class == PROBATION {
            st.silent.insert(mark.id, mark.evicted.clone());
        }
        Some(mark)
    }

    /// Connections by class: (open, probation, proven).
    pub fn counts(&self) -> (usize, usize, usize) {
        let st = self.lock();
        (st.counts[0], st.counts[1], st.counts[2])
    }
}

impl ConnMark {
    /// A request arrived on this connection; `with_token` when it carries the access
    /// token. Says whether to serve it.
    pub fn request(&self, with_token: bool) -> Admit {
        let mut st = self.conns.lock();
        if self.evicted.is_cancelled() {
            // Its slot went to a newcomer; the connection is closing.
            return Admit::Refuse;
        }
        if !self.spoke.swap(true, Ordering::AcqRel) {
            st.silent.remove(&self.id);
        }
        let class = self.class.load(Ordering::Acquire);
        if with_token && class != PROVEN {
            st.counts[class as usize] -= 1;
            st.counts[PROVEN as usize] += 1;
            self.class.store(PROVEN, Ordering::Release);
            return Admit::Serve;
        }
        if class == PROBATION && !with_token {
            return Admit::Refuse;
        }
        Admit::Serve
    }

    /// Whether the connection was admitted on probation and has not shown the token.
    pub fn on_probation(&self) -> bool {
        self.class.load(Ordering::Acquire) == PROBATION
    }
}

impl Drop for ConnMark {
    fn drop(&mut self) {
        let mut st = self.conns.lock();
        let class = self.class.load(Ordering::Acquire) as usize;
        // An evicted connection's slot was handed over already.
        if st.silent.remove(&self.id).is_some() || !self.evicted.is_cancelled() {
            st.counts[class] = st.counts[class].saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_token_the_cap_is_plain() {
        let c = Conns::new(3, 0);
        let held: Vec<_> = (0..3).map(|_| c.admit().unwrap()).collect();
        assert!(c.admit().is_none());
        drop(held);
        assert_eq!(c.counts(), (0, 0, 0));
        assert!(c.admit().is_some());
    }

    #[test]
    fn clients_without_the_token_leave_the_reserve_to_the_owner() {
        let c = Conns::new(8, 2);
        let anon: Vec<_> = (0..6).map(|_| c.admit().unwrap()).collect();
        for a in &anon {
            assert_eq!(a.request(false), Admit::Serve);
        }
        // The owner's newcomer lands in the reserve and is served with the token.
        let owner = c.admit().unwrap();
        assert!(owner.on_probation());
        assert_eq!(owner.request(true), Admit::Serve);
        assert_eq!(c.counts(), (6, 0, 1));
        // An anonymous newcomer in the reserve is refused at its first request.
        let other = c.admit().unwrap();
        assert_eq!(other.request(false), Admit::Refuse);
        drop(other);
        // Silent newcomers cannot camp in the reserve: the next one takes the oldest
        // silent one's slot.
        let silent = c.admit().unwrap();
        assert_eq!(c.counts(), (6, 1, 1));
        let next = c.admit().expect("a silent probation connection makes room");
        assert!(silent.evicted.is_cancelled());
        drop(silent);
        assert_eq!(c.counts(), (6, 1, 1));
        assert_eq!(next.request(true), Admit::Serve);
        // Full of connections that spoke: the next is refused.
        let spoke = c.admit();
        assert!(spoke.is_none(), "8 taken, none silent on probation");
        drop(next);
        drop(anon);
        drop(owner);
        assert_eq!(c.counts(), (0, 0, 0));
    }
}
