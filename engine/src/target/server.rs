//! Listening and serving: the deep-backlog listeners ([`listen`], [`listen_with`]), the
//! embedded sandbox on its own thread ([`spawn_thread`] -> [`TargetHandle`], failing
//! with a [`SpawnError`] that names the listener), and the accept loops ([`serve`],
//! [`serve_tls`]) that hand each connection to the router (`super::handle`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{handle, Sandbox};
use crate::tls::MaybeTls;

/// A running embedded sandbox.
pub struct TargetHandle {
    /// Where it listens (useful with port 0).
    pub addr: SocketAddr,
    /// Where its `wss://` listener (self-signed certificate) listens, if enabled.
    pub tls_addr: Option<SocketAddr>,
    pub sandbox: Arc<Sandbox>,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TargetHandle {
    /// Stops accepting and ends open connections.
    pub fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TargetHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A listener with a deep accept queue (8,192, capped by `net.core.somaxconn`): a swarm
/// opening 10,000 connections a second overflows tokio's usual 1,024 and the kernel
/// drops SYNs, each costing the client a 1 s retry. Call inside a tokio runtime.
pub fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    listen_with(addr, false)
}

/// As [`listen`]; with `shared`, several processes listen on the same port
/// (`SO_REUSEPORT`) and the kernel spreads new connections over them.
pub fn listen_with(addr: SocketAddr, shared: bool) -> std::io::Result<tokio::net::TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    #[cfg(unix)]
    if shared {
        sock.set_reuseport(true)?;
    }
    #[cfg(not(unix))]
    let _ = shared;
    sock.bind(addr)?;
    sock.listen(8192)
}

/// Which of the sandbox's listeners a [`SpawnError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// The plain `ws://` listener.
    Plain,
    /// The `wss://` listener.
    Tls,
}

/// Why [`spawn_thread`] could not start the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// A listener could not bind (address in use, not on this machine, privileged port).
    #[error("could not listen on {addr}: {source}")]
    Listen {
        kind: ListenerKind,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The runtime, thread or TLS certificate could not be set up.
    #[error("could not start the sandbox target: {0}")]
    Setup(#[source] std::io::Error),
}

/// Binds `addr` (and `tls_addr`) and serves the sandbox on a dedicated thread with its
/// own runtime. Returns once both listen, or fails without panicking when one cannot
/// bind; the error names which. The runtime is built, used and dropped on that thread
/// only: dropping a runtime from async code (as `serve` calls this) panics.
pub fn spawn_thread(
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
) -> Result<TargetHandle, SpawnError> {
    let sandbox = Arc::new(Sandbox::default());
    let shutdown = CancellationToken::new();
    let (sb, sd) = (sandbox.clone(), shutdown.clone());
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name("sandbox-target".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(SpawnError::Setup(e)));
                    return;
                }
            };
            rt.block_on(async move {
                let (plain, tls) = match bind_sandbox(addr, tls_addr) {
                    Ok(bound) => bound,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let addrs = plain
                    .local_addr()
                    .map(|a| (a, tls.as_ref().map(|t| t.0)))
                    .map_err(SpawnError::Setup);
                let _ = ready_tx.send(addrs);
                if let Some((_, l, acceptor)) = tls {
                    tokio::spawn(serve_with(l, Some(acceptor), sb.clone(), sd.clone()));
                }
                serve(plain, sb, sd).await;
            });
        })
        .map_err(SpawnError::Setup)?;
    match ready_rx.recv() {
        Ok(Ok((addr, tls_addr))) => Ok(TargetHandle {
            addr,
            tls_addr,
            sandbox,
            shutdown,
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            // The thread has sent its error and is ending.
            let _ = thread.join();
            Err(e)
        }
        Err(_) => Err(SpawnError::Setup(std::io::Error::other(
            "the sandbox thread ended before it listened",
        ))),
    }
}

/// A bound `wss://` listener, with the address it got, and its TLS acceptor.
type TlsListener = (SocketAddr, TcpListener, tokio_rustls::TlsAcceptor);

/// Binds the sandbox's listeners (inside the runtime that will serve them).
fn bind_sandbox(
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
) -> Result<(TcpListener, Option<TlsListener>), SpawnError> {
    let bind = |kind: ListenerKind, a: SocketAddr| {
        listen(a).map_err(|source| SpawnError::Listen {
            kind,
            addr: a,
            source,
        })
    };
    let plain = bind(ListenerKind::Plain, addr)?;
    let tls = match tls_addr {
        Some(a) => {
            let l = bind(ListenerKind::Tls, a)?;
            let config = crate::tls::self_signed_server()
                .map_err(|e| SpawnError::Setup(std::io::Error::other(e)))?;
            let at = l.local_addr().map_err(SpawnError::Setup)?;
            Some((at, l, tokio_rustls::TlsAcceptor::from(config)))
        }
        None => None,
    };
    Ok((plain, tls))
}

/// Accepts plain connections until `shutdown` fires.
pub async fn serve(listener: TcpListener, sandbox: Arc<Sandbox>, shutdown: CancellationToken) {
    serve_with(listener, None, sandbox, shutdown).await
}

/// Accepts `wss://` connections with a fresh self-signed certificate until `shutdown`.
pub async fn serve_tls(
    listener: TcpListener,
    sandbox: Arc<Sandbox>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let acceptor = tokio_rustls::TlsAcceptor::from(crate::tls::self_signed_server()?);
    serve_with(listener, Some(acceptor), sandbox, shutdown).await;
    Ok(())
}

/// Accepts connections (TLS first, with `acceptor`) until `shutdown` fires.
async fn serve_with(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    sandbox: Arc<Sandbox>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    let (sandbox, shutdown, acceptor) = (sandbox.clone(), shutdown.clone(), acceptor.clone());
                    tokio::spawn(async move {
                        let stream = match acceptor {
                            None => MaybeTls::Plain(tcp),
                            Some(a) => match tokio::time::timeout(Duration::from_secs(10), a.accept(tcp)).await {
                                Ok(Ok(s)) => MaybeTls::Server(Box::new(s)),
                                _ => return,
                            },
                        };
                        handle(stream, sandbox, shutdown, peer.ip()).await
                    });
                }
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tracing::warn!("sandbox accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}
