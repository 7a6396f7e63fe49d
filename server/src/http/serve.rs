//! The HTTP accept loop, in place of `axum::serve`, which has neither a header-read
//! timeout nor a connection cap: a client that sent half a request head kept its socket
//! and task forever, and ~1,200 of them took the file descriptors live runs needed
//! (attack report 6a).
//!
//! - **Header timeout.** hyper's HTTP/1 header timer runs whenever a connection waits for
//!   a request head: the first one (also when nothing at all arrives) and the next one on
//!   a kept-alive connection. So one timeout closes half-sent requests, silent
//!   connections and idle keep-alive connections alike. Bodies have deadlines of their
//!   own where they come from clients without the token (`pace::Paced`, set by the
//!   access guard).
//! - **Send timeout.** Every connection's writes fail after `pace::SEND_TIMEOUT` without
//!   progress (`pace::SendTimed`): a client that stops reading a download or an event
//!   stream loses its connection, and the slot its response held is free again.
//! - **Connection cap, with the owner's reserve.** Each connection is registered in
//!   `conns::Conns` for its whole life. Past the cap a new connection gets a fixed 503
//!   (if its socket takes it at once) and is closed, with no task spawned. With an access
//!   token the last slots are kept for requests that carry it (`conns`): connections
//!   without the token can never take all of them.
//! - **Graceful shutdown.** On `shutdown` nothing more is accepted; each connection
//!   finishes the request it is serving and closes (SSE streams end on the same token);
//!   `serve` returns once every connection has ended.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::conns::{ConnMark, Conns};
use super::pace::SendTimed;

/// What every connection is held to.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Time to send a request head, or the next one on a kept-alive connection.
    pub header_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Of those, kept for requests with the access token (0 without one).
    pub reserve: usize,
}

/// The answer past the cap: written only if the socket takes it without waiting.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 41\r\n\r\ntoo many connections; try again shortly\r\n";

/// Serves `app` on `listener` until `shutdown`, then waits for open connections to end.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: CancellationToken,
) {
    let conns = Conns::new(limits.max_connections, limits.reserve);
    // Every connection task holds a clone; `serve` returns once all are dropped.
    let (open, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    let builder = connection_builder(limits.header_timeout);
    // Logged once each time the cap is reached, not once per refused connection.
    let mut at_cap = false;
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
        };
        match conns.admit() {
            Some(mark) => {
                at_cap = false;
                // Each request knows its TCP peer (wrong tokens are counted per client,
                // as `axum::serve` with connect info would do) and its connection's
                // place in the registry (the access guard marks it).
                let app = app
                    .clone()
                    .layer(axum::Extension(axum::extract::ConnectInfo(peer)))
                    .layer(axum::Extension(mark.clone()));
                let conn = serve_connection(
                    builder.clone(),
                    stream,
                    app,
                    limits.header_timeout,
                    (mark, open.clone()),
                    shutdown.clone(),
                );
                tokio::spawn(conn);
            }
            None => {
                if !at_cap {
                    tracing::warn!(
                        max = limits.max_connections,
                        "HTTP connection cap reached: refusing new connections"
                    );
                    at_cap = true;
                }
                refuse(&stream);
            }
        }
    }
    drop(listener);
    drop(open);
    let _ = all_closed.recv().await;
}

/// HTTP/1 only (the tree has no h2), with the header timer on a tokio clock. Without
/// `http1_only` the auto builder first reads a version preface with no timeout at all.
fn connection_builder(header_timeout: Duration) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    builder
}

/// One connection, holding its registry mark (and a sender `serve` waits on) until it
/// ends; on shutdown it finishes its current request and closes; a newcomer that
/// takes its slot (it sat silent in the owner's reserve) ends it at once.
async fn serve_connection(
    builder: Builder<TokioExecutor>,
    stream: TcpStream,
    app: Router,
    header_timeout: Duration,
    held: (Arc<ConnMark>, tokio::sync::mpsc::Sender<()>),
    shutdown: CancellationToken,
) {
    let evicted = held.0.evicted.clone();
    // A client that connects and says nothing is closed after the header timeout:
    // hyper's header timer (with upgrades on) only starts with the first byte.
    // (`peek` waits for a byte; tokio's `readable` may answer at once for a new socket.)
    let mut first = [0u8; 1];
    tokio::select! {
        peeked = tokio::time::timeout(header_timeout, stream.peek(&mut first)) => match peeked {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        },
        _ = evicted.cancelled() => return,
    }
    // With upgrades: agents join over a WebSocket on this listener.
    let conn = builder.serve_connection_with_upgrades(
        TokioIo::new(SendTimed::new(stream)),
        TowerToHyperService::new(app),
    );
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        _ = evicted.cancelled() => return,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!("connection ended: {e}");
    }
}

/// Past the cap: the fixed 503 if the socket buffer takes it now, then the socket is
/// dropped (closed). Nothing here waits.
fn refuse(stream: &TcpStream) {
    let _ = stream.try_write(REFUSAL);
}

/// Like `axum::serve`: a client that gave up is no error; anything else (out of file
/// descriptors) is logged and accepting pauses a moment so the loop does not spin.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!("accept error: {e}");
    tokio::time::sleep(Duration::from_millis(200)).await;
}
