//! Socket-level steps an open connection's session and a token rotation both take:
//! `send_message` (a send that keeps flushing and obeys cancel), `close_normally` (a
//! bounded 1000 close), `end_of` (a read or write error as a `CloseKind`) and `Timer`
//! (a timer on the heap only while armed). A leaf of `conn`: `session.rs` and
//! `rotation.rs` use it, it uses neither.

use super::*;
use tokio_tungstenite::tungstenite::error::ProtocolError;

/// Sends a 1000 close and waits briefly for the target's reply, `CLOSE_WAIT` in all: a
/// target that stopped reading cannot hold the VU (its close frame may never go out).
pub(super) async fn close_normally(ws: &mut Ws, rec: &mut Recorder) {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        if ws.close(Some(frame)).await.is_ok() {
            // Wait for the server's close reply so the close is clean on both sides;
            // replies still in flight are counted, so our counts match the target's.
            while let Some(Ok(m)) = ws.next().await {
                if m.is_text() || m.is_binary() {
                    rec.received(m.len());
                }
                drop(m);
                ws.get_mut().settle();
            }
        }
    })
    .await;
}

/// Sends one message. A target that stops reading makes a send wait for socket buffer
/// space indefinitely, so meanwhile the VU still flushes its recorder (live counts stay
/// current) and obeys `cancel`: a cancelled send ends the session as ours (`client`),
/// without a close frame, as none could get through.
/// `flush_timer` is the session's own (no timer is made per message).
pub(super) async fn send_message(
    ws: &mut Ws,
    msg: Message,
    rec: &mut Recorder,
    flush_timer: &mut Timer,
    cancel: &Stop,
) -> Result<(), CloseKind> {
    let mut send = ws.send(msg);
    loop {
        flush_timer.set(rec.next_flush());
        tokio::select! {
            biased;
            _ = cancel.stopped() => return Err(CloseKind::Client),
            r = &mut send => return r.map_err(|e| end_of(&e)),
            _ = flush_timer.wait() => rec.maybe_flush(),
        }
    }
}

pub(super) fn end_of(e: &WsError) -> CloseKind {
    match e {
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => CloseKind::Abnormal,
        WsError::Capacity(_) => CloseKind::TooLarge,
        WsError::Io(e) if crate::budget::is_over_budget(e) => CloseKind::MemoryBudget,
        WsError::Protocol(_) | WsError::Utf8(_) => CloseKind::Protocol,
        _ => CloseKind::Abnormal,
    }
}

/// A timer on the heap only while armed: an idle VU's task carries no timer state
/// (a task's future is as big as its largest await state).
#[derive(Default)]
pub(super) struct Timer(Option<Pin<Box<tokio::time::Sleep>>>);

impl Timer {
    pub(super) fn set(&mut self, at: Option<Instant>) {
        match (at, &mut self.0) {
            (None, _) => self.0 = None,
            (Some(t), Some(s)) => s.as_mut().reset(t.into()),
            (Some(t), None) => self.0 = Some(Box::pin(sleep_until(t.into()))),
        }
    }

    /// Fires when the armed timer does; never when disarmed. A `poll_fn` (8 bytes) rather
    /// than an `async fn` (whose state is bigger), as it sits in every idle VU's `select!`.
    pub(super) fn wait(&mut self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| match &mut self.0 {
            Some(s) => std::future::Future::poll(s.as_mut(), cx),
            None => std::task::Poll::Pending,
        })
    }
}
