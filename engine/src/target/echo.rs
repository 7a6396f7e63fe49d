//! What happens to a connection once admitted (or held): the echo loop (`session`,
//! with drops, token expiry and in-band refresh), `close_now` for `close_cap`, and
//! `stall` for `stall_cap`. `/webmessaging` profiles run their own loop instead
//! (`webmessaging::session`); `handle` in `mod.rs` picks which.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::counters::ProfileStats;
use super::profile::{DropMode, Profile};
use super::{refresh, Sandbox};
use crate::tls::MaybeTls;

/// `stall_cap`: the upgrade is read and never answered; the connection stays until the
/// client gives up (or the sandbox stops).
pub(super) async fn stall(
    stream: &mut MaybeTls,
    stats: &ProfileStats,
    shutdown: &CancellationToken,
) {
    stats.stalled.fetch_add(1, Ordering::Relaxed);
    let mut sink = [0u8; 256];
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = async {
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        } => {}
    }
}

/// `close_cap`: an upgrade accepted over the cap is closed at once with `code`.
pub(super) async fn close_now(mut ws: WebSocketStream<MaybeTls>, code: u16) -> &'static str {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: "too many concurrent connections".into(),
    };
    let _ = ws.close(Some(frame)).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    "server_at_once"
}

/// Echo loop; returns how the session ended (a `Counters::closed` key).
pub(super) async fn session(
    mut ws: WebSocketStream<MaybeTls>,
    p: &Profile,
    stats: &ProfileStats,
    shutdown: &CancellationToken,
    token_expires: Option<Instant>,
    refresh: Option<&Sandbox>,
) -> &'static str {
    let drop_at = p.drop_after.map(|d| tokio::time::Instant::now() + d);
    // A token that expires mid-connection ends it with 4401 (as token-checking gateways
    // do), unless a refresh message gave the connection a new one (`refresh.rs`).
    let mut expire_at = token_expires.map(tokio::time::Instant::from_std);
    // Only connections of a `drop_prob` profile carry a timer for the dice.
    let mut dice = match p.drop_prob {
        Some(_) => {
            let mut d = tokio::time::interval(Duration::from_secs(1));
            d.tick().await;
            Some(d)
        }
        None => None,
    };
    loop {
        let dropping = tokio::select! {
            _ = shutdown.cancelled() => Some(DropMode::Close(1001)),
            _ = async { match expire_at { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => Some(DropMode::Close(4401)),
            _ = async { match drop_at { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => Some(p.drop_mode),
            _ = async { match dice.as_mut() { Some(d) => { d.tick().await; } None => std::future::pending().await } } => {
                let hit = rand::rng().random::<f64>() < p.drop_prob.unwrap_or(0.0);
                hit.then_some(match p.drop_mode { DropMode::Abort => DropMode::Abort, DropMode::Close(_) => DropMode::Close(1011) })
            }
            m = ws.next() => match m {
                Some(Ok(Message::Close(_))) => {
                    let _ = ws.close(None).await;
                    return "client";
                }
                Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => {
                    stats.msgs_in.fetch_add(1, Ordering::Relaxed);
                    let renewal = match (refresh, msg.to_text().ok().and_then(refresh::refresh_token)) {
                        (Some(sandbox), Some(token)) => Some(sandbox.check_token(&token)),
                        _ => None,
                    };
                    if let Some(verdict) = renewal {
                        match verdict {
                            Some(exp) => {
                                stats.refreshed.fetch_add(1, Ordering::Relaxed);
                                expire_at = exp.map(tokio::time::Instant::from_std);
                            }
                            None => { stats.refresh_refused.fetch_add(1, Ordering::Relaxed); }
                        }
                        let answer = refresh::answer(verdict, Instant::now());
                        if ws.send(Message::text(answer)).await.is_err() {
                            return "client_abnormal";
                        }
                        stats.msgs_out.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if let Some(d) = p.reply_delay {
                        tokio::time::sleep(d).await;
                    }
                    if ws.send(msg).await.is_err() {
                        return "client_abnormal";
                    }
                    stats.msgs_out.fetch_add(1, Ordering::Relaxed);
                    None
                }
                Some(Ok(_)) => None,
                Some(Err(_)) | None => return "client_abnormal",
            },
        };
        match dropping {
            None => {}
            Some(DropMode::Abort) => {
                let tcp = ws.into_inner();
                // SO_LINGER 0: the close becomes a reset, as a crashed server would do.
                let _ = socket2_linger_zero(tcp.tcp());
                drop(tcp);
                return "server_abort";
            }
            Some(DropMode::Close(code)) => {
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: "sandbox drop".into(),
                };
                let _ = ws.close(Some(frame)).await;
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    while let Some(Ok(_)) = ws.next().await {}
                })
                .await;
                return match code {
                    1001 => "server_1001",
                    1011 => "server_1011",
                    4401 => "server_4401",
                    _ => "server_other",
                };
            }
        }
    }
}

#[allow(deprecated)]
fn socket2_linger_zero(tcp: &TcpStream) -> std::io::Result<()> {
    tcp.set_linger(Some(Duration::ZERO))
}
