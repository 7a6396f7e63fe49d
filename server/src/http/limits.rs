//! Caps on what requests can make the server hold at once, shared by every handler
//! through `AppState::limits`.
//!
//! - **Event streams.** Each live SSE stream takes a slot of `streams` (all streams) and,
//!   through a share link, one of that link's slots. A share link opens without a token,
//!   so without the per-link cap anyone holding one could open streams until the server
//!   ran out of memory or sockets (attack report 6b: 1,800 accepted). A slot is a guard
//!   owned by the stream: it is given back when the stream ends or its client goes away.
//!   Past a cap: 429 with `Retry-After`.
//!
//! Invariant: `share_streams` holds an entry only for links with at least one stream
//! (the guard removes it when its count reaches 0), so it stays as small as the number
//! of watched links.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::ServeArgs;
use crate::error::AppError;

/// Seconds a refused viewer is told to wait (`Retry-After`).
const STREAM_RETRY_SECS: u64 = 5;

/// The caps, built once from the settings.
pub struct HttpLimits {
    /// One permit per live event stream, all runs and share links together.
    streams: Arc<Semaphore>,
    /// `--max-event-streams`, for messages.
    max_streams: usize,
    /// `--max-streams-per-share`.
    per_share: usize,
    /// Live streams per share id. A `std` mutex: held only to count, never across
    /// `.await`.
    share_streams: Arc<Mutex<HashMap<String, usize>>>,
}

/// A live event stream's slot; dropping it gives the slot back.
pub struct StreamSlot {
    _total: OwnedSemaphorePermit,
    /// The share link's count to decrement, for streams through a share link.
    share: Option<(String, Arc<Mutex<HashMap<String, usize>>>)>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if let Some((sid, counts)) = self.share.take() {
            let mut counts = counts.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = counts.get_mut(&sid) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(&sid);
                }
            }
        }
    }
}

impl HttpLimits {
    pub fn new(args: &ServeArgs) -> HttpLimits {
        HttpLimits {
            streams: Arc::new(Semaphore::new(args.max_event_streams)),
            max_streams: args.max_event_streams,
            per_share: args.max_streams_per_share,
            share_streams: Arc::default(),
        }
    }

    /// A slot for a new event stream (through share link `share`, if any), or a 429
    /// naming the cap that is full.
    pub fn stream_slot(&self, share: Option<&str>) -> Result<StreamSlot, AppError> {
        let Ok(total) = self.streams.clone().try_acquire_owned() else {
            return Err(AppError::too_many(
                "too_many_streams",
                format!(
                    "{} live event streams are open, the most this server serves at once (--max-event-streams)",
                    self.max_streams
                ),
                STREAM_RETRY_SECS,
            ));
        };
        let Some(sid) = share else {
            return Ok(StreamSlot {
                _total: total,
                share: None,
            });
        };
        let mut counts = self
            .share_streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(sid.to_string()).or_default();
        if *n >= self.per_share {
            return Err(AppError::too_many(
                "too_many_streams",
                format!(
                    "this share link already has {} live event streams, the most one link may have (--max-streams-per-share)",
                    self.per_share
                ),
                STREAM_RETRY_SECS,
            ));
        }
        *n += 1;
        Ok(StreamSlot {
            _total: total,
            share: Some((sid.to_string(), self.share_streams.clone())),
        })
    }
}
