//! Deadlines for clients that send or read slowly.
//!
//! - **Request bodies** open without the token ([`Paced`]): the header timeout ends
//!   once a request head is in; a body dripped one byte every few seconds held its
//!   connection for as long as its `Content-Length` allowed. A paced body must have
//!   arrived whole by `grace + bytes / MIN_RATE` after the head (the grace is the header
//!   timeout): a login form gets the grace alone, a 64 MiB import on a server without a
//!   token about an hour. Past it the body fails with [`BodyTimeout`], answered 408 and
//!   the connection closed.
//! - **Responses** ([`SendTimed`], on every connection): a write that cannot make
//!   progress for `SEND_TIMEOUT` (the client stopped reading) fails, which ends the
//!   connection and drops what it was sending, slot and all: a share download that is
//!   never read holds its export slot for seconds, not forever.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The slowest a body open without the token may arrive, after the grace.
pub(super) const MIN_RATE: u64 = 16 << 10;

/// How long a write may wait for the client to read.
pub(super) const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// A body that arrived too slowly.
#[derive(Debug)]
pub(super) struct BodyTimeout;

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body arrived too slowly (it must come at {} KiB/s or faster)",
            MIN_RATE >> 10
        )
    }
}

impl std::error::Error for BodyTimeout {}

/// Whether a body error is a paced body's timeout.
pub(super) fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<BodyTimeout>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// A request body with a deadline that moves with what has arrived.
pub(super) struct Paced {
    inner: Body,
    start: Instant,
    grace: Duration,
    read: u64,
    timer: Pin<Box<Sleep>>,
}

impl Paced {
    pub(super) fn wrap(inner: Body, grace: Duration) -> Body {
        let start = Instant::now();
        Body::new(Paced {
            inner,
            start,
            grace,
            read: 0,
            timer: Box::pin(tokio::time::sleep_until(start + grace)),
        })
    }

    /// When the body is too slow, given what has arrived.
    fn due(&self) -> Instant {
        self.start + self.grace + Duration::from_secs_f64(self.read as f64 / MIN_RATE as f64)
    }
}

impl http_body::Body for Paced {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let me = &mut *self;
        match Pin::new(&mut me.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    me.read += data.len() as u64;
                    let due = me.due();
                    me.timer.as_mut().reset(due);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => match me.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimeout)))),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose writes fail after `SEND_TIMEOUT` without progress.
pub(super) struct SendTimed<S> {
    inner: S,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> SendTimed<S> {
    pub(super) fn new(inner: S) -> SendTimed<S> {
        SendTimed {
            inner,
            stalled: None,
        }
    }

    fn pending(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(SEND_TIMEOUT)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendTimed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendTimed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        match Pin::new(&mut me.inner).poll_write(cx, buf) {
            Poll::Pending => me.pending(cx).map(Err),
            done => {
                me.stalled = None;
                done
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        match Pin::new(&mut me.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => me.pending(cx).map(Err),
            done => {
                me.stalled = None;
                done
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        match Pin::new(&mut me.inner).poll_flush(cx) {
            Poll::Pending => me.pending(cx).map(Err),
            done => {
                me.stalled = None;
                done
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Reads a whole body, at most `limit` bytes, by `deadline`: for the public routes that
/// take a body (the login form, the share view), read before anything else runs.
pub(super) async fn read_small(
    body: Body,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, SmallBody> {
    use http_body_util::BodyExt;
    let limited = http_body_util::Limited::new(body, limit);
    match tokio::time::timeout(deadline, limited.collect()).await {
        Err(_) => Err(SmallBody::Slow),
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(SmallBody::TooLarge),
        Ok(Err(e)) if is_body_timeout(e.as_ref()) => Err(SmallBody::Slow),
        Ok(Err(_)) => Err(SmallBody::Broken),
    }
}

/// Why a small body was not read.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SmallBody {
    Slow,
    TooLarge,
    Broken,
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test(start_paused = true)]
    async fn a_dripped_body_fails_once_it_falls_behind() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let body = Paced::wrap(
            Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
            Duration::from_secs(10),
        );
        let mut stream = body.into_data_stream();
        let drip = tokio::spawn(async move {
            for _ in 0..100 {
                if tx.send(Ok(Bytes::from_static(b"a"))).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
        });
        let started = Instant::now();
        let mut got = 0;
        let err = loop {
            match stream.next().await {
                Some(Ok(b)) => got += b.len(),
                Some(Err(e)) => break e,
                None => panic!("ended"),
            }
        };
        assert!(is_body_timeout(&err), "{err}");
        assert!(got <= 4, "{got}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(10) && took < Duration::from_secs(11),
            "{took:?}"
        );
        drip.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_at_the_minimum_rate_is_read_whole() {
        let chunks: Vec<Result<Bytes, std::io::Error>> = (0..20)
            .map(|_| Ok(Bytes::from(vec![1u8; MIN_RATE as usize])))
            .collect();
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            for c in chunks {
                tokio::time::sleep(Duration::from_millis(900)).await;
                let _ = tx.send(c).await;
            }
        });
        let body = Paced::wrap(
            Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
            Duration::from_secs(1),
        );
        let bytes = read_small(body, 64 << 20, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(bytes.len(), 20 * MIN_RATE as usize);
    }
}
