//! Caps on what requests can make the server hold at once, shared by every handler
//! through `AppState::limits`.
//!
//! - **Event streams.** Each live SSE stream takes a slot of `streams` (all streams) and,
//!   through a share link, one of that link's slots. A share link opens without a token,
//!   so without the per-link cap anyone holding one could open streams until the server
//!   ran out of memory or sockets (attack report 6b: 1,800 accepted). A slot is a guard
//!   owned by the stream: it is given back when the stream ends or its client goes away.
//!   Past a cap: 429 with `Retry-After`.
//! - **Downloads.** An export, HTML report or CSV reads and encodes a whole run (tens
//!   of MB for a long one). Each takes a slot while it is built *and sent*, so at most
//!   `--max-concurrent-exports` such documents for the owner, and half as many (at least
//!   one) through share links, are in memory however slowly their clients read (attack
//!   report 6c: 20 parallel exports took 2.5 GB and every pool connection). The two
//!   kinds have slots of their own: share links never keep the owner's downloads
//!   waiting. Others wait up to `DOWNLOAD_WAIT`, then get 503 with `Retry-After`. A
//!   client that stops reading loses its connection after `pace::SEND_TIMEOUT`, and its
//!   slot with it.
//!
//! - **Bodies.** `read_body` stops at a route's limit while reading (413), so a body is
//!   never buffered past it; the rest is read and dropped for a moment (16 MiB, 5 s)
//!   so a client still sending gets the 413, not a reset.
//!
//! Invariant: `share_streams` holds an entry only for links with at least one stream
//! (the guard removes it when its count reaches 0), so it stays as small as the number
//! of watched links.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use app::api::ApiError;
use axum::body::{Body, BodyDataStream, Bytes};
use axum::http::{header, HeaderMap};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::ServeArgs;
use crate::error::AppError;

/// Seconds a refused viewer is told to wait (`Retry-After`).
const STREAM_RETRY_SECS: u64 = 5;

/// How long a download waits for a free slot before it is refused.
const DOWNLOAD_WAIT: Duration = Duration::from_secs(10);

/// Seconds a refused download is told to wait (`Retry-After`).
const DOWNLOAD_RETRY_SECS: u64 = 10;

/// Bytes handed to hyper at a time when a download is sent.
const DOWNLOAD_CHUNK: usize = 64 * 1024;

/// Live streams per share id, shared by the limits and every stream's slot.
type ShareCounts = Arc<Mutex<HashMap<String, usize>>>;

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
    share_streams: ShareCounts,
    /// One permit per download being built or sent for the owner, and through share
    /// links.
    downloads: Arc<Semaphore>,
    share_downloads: Arc<Semaphore>,
    /// `--max-concurrent-exports` and the share links' part, for messages.
    max_downloads: usize,
    max_share_downloads: usize,
    /// Largest body `POST /api/runs/import` reads (`--max-import-bytes`).
    pub max_import_bytes: usize,
    /// Time a request open without the token has for its body (`--header-timeout-ms`),
    /// on top of what its size takes at `pace::MIN_RATE`.
    pub body_grace: Duration,
}

/// Who a download is for: the owner's and share links' slots are apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Downloader {
    Owner,
    Share,
}

/// A download's slot: kept by the response body until it is sent.
pub struct DownloadSlot {
    _permit: OwnedSemaphorePermit,
}

impl DownloadSlot {
    /// `bytes` as a response body that keeps this slot until the last byte has been
    /// handed to the connection or the client has gone.
    pub fn body(self, bytes: Vec<u8>) -> Body {
        let bytes = Bytes::from(bytes);
        let chunks = (0..bytes.len())
            .step_by(DOWNLOAD_CHUNK)
            .map(move |at| bytes.slice(at..(at + DOWNLOAD_CHUNK).min(bytes.len())));
        Body::from_stream(futures_util::stream::iter(chunks).map(move |chunk| {
            let _held = &self;
            Ok::<_, Infallible>(chunk)
        }))
    }

    /// `chunks` as a response body that keeps this slot until the last chunk has been
    /// handed to the connection or the client has gone (a document made as it is sent).
    pub fn stream<E>(
        self,
        chunks: impl futures_util::Stream<Item = Result<Bytes, E>> + Send + 'static,
    ) -> Body
    where
        E: Into<axum::BoxError> + 'static,
    {
        Body::from_stream(chunks.map(move |chunk| {
            let _held = &self;
            chunk
        }))
    }
}

/// A live event stream's slot; dropping it gives the slot back.
pub struct StreamSlot {
    _total: OwnedSemaphorePermit,
    /// The share link's count to decrement, for streams through a share link.
    share: Option<(String, ShareCounts)>,
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
            downloads: Arc::new(Semaphore::new(args.max_concurrent_exports)),
            share_downloads: Arc::new(Semaphore::new(share_downloads(args))),
            max_downloads: args.max_concurrent_exports,
            max_share_downloads: share_downloads(args),
            max_import_bytes: args.max_import_bytes,
            body_grace: Duration::from_millis(args.header_timeout_ms),
        }
    }

    /// A slot to build and send one whole-run download for `who`, waiting up to
    /// `DOWNLOAD_WAIT` for one; then 503.
    pub async fn download_slot(&self, who: Downloader) -> Result<DownloadSlot, AppError> {
        let (slots, n, whose) = match who {
            Downloader::Owner => (&self.downloads, self.max_downloads, ""),
            Downloader::Share => (
                &self.share_downloads,
                self.max_share_downloads,
                " through share links",
            ),
        };
        let wait = tokio::time::timeout(DOWNLOAD_WAIT, slots.clone().acquire_owned());
        match wait.await {
            Ok(Ok(permit)) => Ok(DownloadSlot { _permit: permit }),
            _ => Err(AppError::busy(
                "busy",
                format!(
                    "{n} exports, reports or CSVs are being built{whose}, the most at once (--max-concurrent-exports); none finished within {} s",
                    DOWNLOAD_WAIT.as_secs()
                ),
                DOWNLOAD_RETRY_SECS,
            )),
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

/// Downloads through share links at once: half the owner's, at least one.
fn share_downloads(args: &ServeArgs) -> usize {
    (args.max_concurrent_exports / 2).max(1)
}

/// How much of a refused body is still read (and dropped), and for how long, so that
/// a client still sending it reads the 413 instead of a reset.
const DISCARD_BYTES: usize = 16 << 20;
const DISCARD_TIME: Duration = Duration::from_secs(5);

/// Reads a request body of at most `limit` bytes. Refused with 413 naming the limit as
/// soon as its `Content-Length` says it is larger, or while it is read once it grows
/// past the limit: nothing larger is ever buffered.
pub(super) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, AppError> {
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut chunks = body.into_data_stream();
    if announced.is_some_and(|n| n > limit as u64) {
        discard_rest(chunks);
        return Err(AppError::too_large(limit));
    }
    let mut read = Vec::with_capacity(announced.map_or(0, |n| n as usize));
    while let Some(chunk) = chunks.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) if super::pace::is_body_timeout(&e) => return Err(AppError::slow_body()),
            Err(e) => return Err(ApiError::BadRequest(format!("body: {e}")).into()),
        };
        if read.len() + chunk.len() > limit {
            discard_rest(chunks);
            return Err(AppError::too_large(limit));
        }
        read.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(read))
}

/// Reads and drops the rest of a refused body in the background, at most
/// `DISCARD_BYTES` for at most `DISCARD_TIME`, while the 413 is sent: a socket closed
/// with unread data is reset, and a client still sending would see the reset instead
/// of the answer. Nothing read is kept.
fn discard_rest(mut rest: BodyDataStream) {
    tokio::spawn(async move {
        let drain = async {
            let mut left = DISCARD_BYTES;
            while let Some(Ok(chunk)) = rest.next().await {
                left = left.saturating_sub(chunk.len());
                if left == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(DISCARD_TIME, drain).await;
    });
}
