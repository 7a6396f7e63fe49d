//! Token rotation on a live connection (issue 14, `auth.rotation`). A connection whose
//! token came with an `expires_in` is due for a new one at the token's refresh time
//! (`tokens::refresh_at`: `refresh_before` ahead of expiry). When it is due the session
//! takes the slot's next token through the run's `TokenPool` (so the connections of one
//! slot share one fetch) and either sends the templated re-authentication message on
//! the open socket (`reauth`, done when sent or when its reply matches) or closes
//! normally and reconnects with it (`reconnect`, a `rotation` close: not a drop, and
//! the new attempt is not a retry; `run_vu` times it and counts its outcome).
//!
//! Invariants: every rotation ends as exactly one of `rotations` (timed as
//! `ws_rotation`, from when it was due) or `rotation_failures`; rotation state lives in
//! the session's boxed `Ctx`, so a VU's task does not grow; a failed rotation is tried
//! again `RETRY` later, within the connection's life only.

use super::matcher::{apply_captures, matches};
use super::socket::{close_normally, send_message, Timer};
use super::*;
use crate::plan::Rotation;

/// How long after a failed token fetch a connection tries again.
const RETRY: Duration = Duration::from_secs(1);
/// The least time between two rotations of one connection (a token the cache hands
/// out just before its own refresh time must not make a connection rotate at once).
const MIN_GAP: Duration = Duration::from_millis(100);

/// A compiled `auth.rotation`.
pub(crate) enum Rotor {
    Reauth {
        message: Template,
        /// The reply that confirms it, its timeout and what to capture from it.
        reply: Option<(Matcher, Duration, Vec<CaptureRule>)>,
    },
    Reconnect,
}

impl Rotor {
    /// Compiles a validated rotation (an error here is a setup error).
    pub(crate) fn compile(r: &Rotation) -> Result<Rotor, String> {
        let at = |e: String| format!("auth.rotation: {e}");
        Ok(match r {
            Rotation::Reconnect => Rotor::Reconnect,
            Rotation::Reauth { message, expect } => Rotor::Reauth {
                message: Template::parse(message).map_err(at)?,
                reply: match expect {
                    None => None,
                    Some(e) => Some((
                        Matcher::compile(&e.match_spec()).map_err(at)?,
                        e.timeout.0,
                        CaptureRule::compile(&e.capture).map_err(at)?,
                    )),
                },
            },
        })
    }
}

/// A session's rotation state (in its `Ctx`).
#[derive(Debug, Default)]
pub(crate) struct RotationState {
    /// When this connection's token is due for rotation (`None`: never, or no rotation).
    pub(crate) due: Option<Instant>,
    /// A re-authentication waiting for its reply: when it was due, and until when.
    pub(crate) awaiting: Option<(Instant, Instant)>,
}

impl RotationState {
    /// The next instant the session must wake for rotation.
    pub(crate) fn next(&self) -> Option<Instant> {
        match (self.due, self.awaiting.map(|(_, until)| until)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether there is rotation work at `now`.
    pub(crate) fn pending(&self, now: Instant) -> bool {
        self.next().is_some_and(|t| t <= now)
    }
}

/// When a connection that just took a token refreshing at `refresh_at` rotates next:
/// then, but at least `MIN_GAP` from `now`. Pure.
pub(crate) fn next_due(refresh_at: Option<Instant>, now: Instant) -> Option<Instant> {
    refresh_at.map(|t| t.max(now + MIN_GAP))
}

/// Does the rotation work that is due: a reply that did not come in time is a failure;
/// a due token is fetched and sent (`reauth`), or the connection is closed to reconnect
/// (`Err(CloseKind::Rotated)`). `Err` ends the session; a stop while fetching leaves it
/// to the session loop.
#[allow(clippy::too_many_arguments)]
pub(super) async fn rotate(
    ws: &mut Ws,
    sh: &Shared,
    rec: &mut Recorder,
    flush_timer: &mut Timer,
    cancel: &Stop,
    vu: u64,
    attempt: u32,
    ctx: &mut Ctx,
) -> Result<(), CloseKind> {
    let now = Instant::now();
    if ctx.rotation.awaiting.is_some_and(|(_, until)| until <= now) {
        ctx.rotation.awaiting = None;
        rec.rotation_failed();
    }
    let (Some(due), Some(rotor), Some(pool)) = (ctx.rotation.due, &sh.rotation, &sh.tokens) else {
        return Ok(());
    };
    if due > now {
        return Ok(());
    }
    ctx.rotation.due = None;
    let Rotor::Reauth { message, reply } = rotor else {
        close_normally(ws, rec).await;
        return Err(CloseKind::Rotated);
    };
    let lease = tokio::select! {
        biased;
        _ = cancel.stopped() => return Ok(()),
        l = pool.get(vu, rec) => l,
    };
    let lease = match lease {
        Ok(l) => l,
        Err(_) => {
            rec.rotation_failed();
            ctx.rotation.due = Some(Instant::now() + RETRY);
            return Ok(());
        }
    };
    ctx.token = lease.token;
    ctx.rotation.due = next_due(lease.refresh_at, Instant::now());
    let msg = Message::text(render(message, vu, attempt, ctx));
    let n = msg.len();
    send_message(ws, msg, rec, flush_timer, cancel).await?;
    rec.sent(n);
    match reply {
        None => rec.rotated(due.elapsed()),
        Some((_, timeout, _)) => {
            if ctx.rotation.awaiting.is_some() {
                // The last one's reply never came before this one was due.
                rec.rotation_failed();
            }
            ctx.rotation.awaiting = Some((due, Instant::now() + *timeout));
        }
    }
    Ok(())
}

/// Offers a received message to a waiting re-authentication; true when it is its reply
/// (then counted, timed, captured from and not offered to anything else).
pub(super) fn take_reply(
    sh: &Shared,
    msg: &Message,
    vu: u64,
    attempt: u32,
    ctx: &mut Ctx,
    rec: &mut Recorder,
) -> bool {
    let (
        Some((due, _)),
        Some(Rotor::Reauth {
            reply: Some((m, _, caps)),
            ..
        }),
    ) = (ctx.rotation.awaiting, &sh.rotation)
    else {
        return false;
    };
    if !matches(m, msg, vu, attempt, ctx) {
        return false;
    }
    ctx.rotation.awaiting = None;
    rec.rotated(due.elapsed());
    if let Some(text) = matcher::text_of(msg) {
        rec.capture_misses(apply_captures(caps, text, ctx));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_rotates_at_its_tokens_refresh_time_but_never_at_once() {
        let now = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(next_due(None, now), None, "a token that never expires");
        assert_eq!(next_due(Some(now + s(30)), now), Some(now + s(30)));
        assert_eq!(next_due(Some(now), now), Some(now + MIN_GAP));
        assert_eq!(next_due(Some(now - s(5)), now), Some(now + MIN_GAP));
        // Fetched at t0 with 1 s to live, refreshed 400 ms ahead: due at t0 + 600 ms.
        let at = crate::tokens::refresh_at(now, Some(1.0), Duration::from_millis(400));
        assert_eq!(next_due(at, now), Some(now + Duration::from_millis(600)));
    }

    #[test]
    fn the_state_wakes_for_the_earlier_of_due_and_reply_deadline() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let mut st = RotationState::default();
        assert_eq!(st.next(), None);
        assert!(!st.pending(now));
        st.due = Some(now + ms(50));
        assert!(!st.pending(now) && st.pending(now + ms(50)));
        st.awaiting = Some((now, now + ms(20)));
        assert_eq!(st.next(), Some(now + ms(20)));
        st.due = None;
        assert_eq!(st.next(), Some(now + ms(20)));
    }

    #[test]
    fn both_modes_compile() {
        let r: Rotation = serde_json::from_str(
            r#"{"mode":"reauth","message":"{\"token\":\"{{token}}\"}","expect":{"contains":"ok"}}"#,
        )
        .unwrap();
        assert!(matches!(
            Rotor::compile(&r).unwrap(),
            Rotor::Reauth { reply: Some(_), .. }
        ));
        assert!(matches!(
            Rotor::compile(&Rotation::Reconnect).unwrap(),
            Rotor::Reconnect
        ));
    }
}
