//! An open connection's life: the script's steps (send, expect, wait, ping, repeat,
//! close), reply matching and timing, responders' replies, and how the session ended.
//!
//! A received data message is offered first to the waiting `expect` (if any), then to
//! the responders (all of them run for the whole session, whatever the script does); a
//! message neither took while an `expect` waited is an unrelated push, counted as
//! `msgs_skipped`.

use super::matcher::{apply_captures, matches, respond, text_of};
use super::socket::{close_normally, end_of, send_message, Timer};
use super::*;

/// What the session is waiting for.
pub(super) enum Waiting {
    /// Run the next op now.
    Ready,
    /// Sleep until the instant, then continue at `pc`.
    Until(Instant, usize),
    /// A reply matching the current `Expect`.
    Reply(Instant),
    /// A pong for the ping sent at `sent`.
    Pong(Instant, Instant),
    /// Script done: hold until cancelled or closed.
    Hold,
}

/// State of the (single, non-nested) repeat block.
pub(super) struct LoopState {
    start_pc: usize,
    /// Scheduled start of the current iteration (not the actual one).
    iter_start: Instant,
    every: Duration,
    remaining: Option<u32>,
}

/// Runs the script on an open connection until it ends. `ws` is borrowed: the VU owns
/// the (boxed) connection, so the session's future holds no copy of the stream. Not an
/// `async fn` for the reason `run_vu` is not one (arguments kept twice).
#[allow(clippy::manual_async_fn)]
pub(super) fn session<'a>(
    ws: &'a mut Ws,
    sh: &'a Shared,
    rec: &'a mut Recorder,
    cancel: &'a Stop,
    vu: u64,
    attempt: u32,
    ctx: &'a mut Ctx,
) -> impl std::future::Future<Output = CloseKind> + Send + 'a {
    async move {
        let opened = Instant::now();
        let mut first = true;
        let mut pc = 0usize;
        // Boxed: 40 bytes less in every VU's future, one allocation per repeat block.
        let mut lp: Option<Box<LoopState>> = None;
        let mut wait = Waiting::Ready;
        // When the op now running was due (for coordinated-omission-free timing).
        let mut due = opened;
        let mut last_send = opened;
        let mut ping_seq = 0u64;
        let (mut step_timer, mut flush_timer) = (Timer::default(), Timer::default());
        loop {
            while matches!(wait, Waiting::Ready) {
                match sh.ops.get(pc) {
                    None => wait = Waiting::Hold,
                    Some(Op::Send { tpl, binary }) => {
                        // Boxed like the close: its state is on the heap only while
                        // sending. The message is made in a block that ends before the
                        // await, so no slot for it stays in the VU's future.
                        let (send, n) = {
                            let text = render(tpl, vu, attempt, ctx);
                            let msg = if *binary {
                                Message::binary(hex_decode(&text))
                            } else {
                                Message::text(text)
                            };
                            let n = msg.len();
                            (
                                Box::pin(send_message(ws, msg, rec, &mut flush_timer, cancel)),
                                n,
                            )
                        };
                        if let Err(end) = send.await {
                            return end;
                        }
                        rec.sent(n);
                        last_send = due;
                        pc += 1;
                    }
                    Some(Op::Expect { timeout, .. }) => {
                        wait = Waiting::Reply(Instant::now() + *timeout)
                    }
                    Some(Op::Wait { base, jitter }) => {
                        let j = if jitter.is_zero() {
                            Duration::ZERO
                        } else {
                            jitter.mul_f64(rand::rng().random::<f64>())
                        };
                        wait = Waiting::Until(due.max(Instant::now()) + *base + j, pc + 1);
                    }
                    Some(Op::Ping { timeout }) => {
                        ping_seq += 1;
                        let send = Box::pin(send_message(
                            ws,
                            Message::Ping(ping_seq.to_be_bytes().to_vec().into()),
                            rec,
                            &mut flush_timer,
                            cancel,
                        ));
                        if let Err(end) = send.await {
                            return end;
                        }
                        wait = Waiting::Pong(Instant::now() + *timeout, due);
                    }
                    Some(Op::Close) => {
                        Box::pin(close_normally(ws, rec)).await;
                        return CloseKind::Client;
                    }
                    Some(Op::LoopStart { every, times }) => {
                        lp = Some(Box::new(LoopState {
                            start_pc: pc + 1,
                            iter_start: due,
                            every: *every,
                            remaining: *times,
                        }));
                        pc += 1;
                    }
                    Some(Op::LoopEnd) => match lp.as_mut() {
                        Some(l) => {
                            if let Some(r) = l.remaining.as_mut() {
                                *r = r.saturating_sub(1);
                                if *r == 0 {
                                    lp = None;
                                    pc += 1;
                                    continue;
                                }
                            }
                            l.iter_start += l.every;
                            wait = Waiting::Until(l.iter_start, l.start_pc);
                        }
                        None => pc += 1,
                    },
                }
            }
            let deadline = match wait {
                Waiting::Until(t, _) | Waiting::Reply(t) | Waiting::Pong(t, _) => Some(t),
                Waiting::Hold | Waiting::Ready => None,
            };
            // Rotation work wakes the session too (`conn/rotation.rs`).
            step_timer.set(match (deadline, ctx.rotation.next()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            });
            flush_timer.set(rec.next_flush());
            let mut stopped = false;
            // A message was handled (and dropped): its bytes leave the budget.
            let mut settle = false;
            tokio::select! {
                biased;
                // The close is made after the `select!`: awaited in here, the select's output
                // (a whole message) would keep a slot in every VU's future.
                _ = cancel.stopped() => stopped = true,
                m = ws.next() => match m {
                    Some(Ok(msg)) => { settle = true; match &msg {
                        Message::Text(_) | Message::Binary(_) => {
                            rec.received(msg.len());
                            if first {
                                first = false;
                                rec.sample(Metric::FirstMsg, opened.elapsed());
                            }
                            let waiting = matches!(wait, Waiting::Reply(_));
                            // A re-authentication's reply is the rotation's, no one else's.
                            let mut taken = super::rotation::take_reply(sh, &msg, vu, attempt, ctx, rec);
                            if let (true, false, Some(Op::Expect { matcher, captures, .. })) = (waiting, taken, sh.ops.get(pc)) {
                                if matches(matcher, &msg, vu, attempt, ctx) {
                                    // Timed from the send this reply answers (the last one).
                                    rec.sample(Metric::Rtt, last_send.elapsed());
                                    if let Some(text) = text_of(&msg) {
                                        rec.capture_misses(apply_captures(captures, text, ctx));
                                    }
                                    due = Instant::now();
                                    wait = Waiting::Ready;
                                    pc += 1;
                                    taken = true;
                                }
                            }
                            let answered = taken || respond(&sh.responders, &msg, vu, attempt, ctx, rec);
                            if waiting && !taken && !answered {
                                rec.skipped();
                            }
                        }
                        Message::Pong(_) => {
                            if let Waiting::Pong(_, sent) = wait {
                                rec.sample(Metric::Ping, sent.elapsed());
                                due = Instant::now();
                                wait = Waiting::Ready;
                                pc += 1;
                            }
                        }
                        Message::Close(frame) => {
                            let code = frame.as_ref().map(|f| u16::from(f.code)).unwrap_or(1005);
                            // The reason is evidence (what the target said), kept like a
                            // 429's body: scrubbed of the run's secrets and this token.
                            if let Some(f) = frame.as_ref().filter(|f| !f.reason.is_empty()) {
                                let reason = super::connect::scrub_text(&f.reason, &sh.secrets, &ctx.token);
                                rec.close_reason(code, &reason);
                            }
                            return CloseKind::Server(code);
                        }
                        Message::Ping(_) | Message::Frame(_) => {}
                    }},
                    Some(Err(e)) => return end_of(&e),
                    None => return CloseKind::Abnormal,
                },
                _ = step_timer.wait() => {
                    let now = Instant::now();
                    // The timer may have been the rotation's: the step goes on only when
                    // its own deadline passed.
                    let step_due = match wait {
                        Waiting::Until(t, _) | Waiting::Reply(t) | Waiting::Pong(t, _) => t <= now,
                        Waiting::Hold | Waiting::Ready => false,
                    };
                    if step_due {
                        match wait {
                            Waiting::Until(t, next) => { due = t; pc = next; }
                            Waiting::Reply(_) => { rec.expect_timeout(); due = now; pc += 1; }
                            Waiting::Pong(..) => { rec.ping_timeout(); due = now; pc += 1; }
                            Waiting::Hold | Waiting::Ready => {}
                        }
                        wait = Waiting::Ready;
                    }
                }
                _ = flush_timer.wait() => rec.maybe_flush(),
            }
            if settle {
                ws.get_mut().settle();
            }
            if !stopped && ctx.reply.is_some() {
                // A responder's reply goes out before anything else is read. Made in a
                // block that ends before the await, as a script's send is.
                let (send, n) = {
                    let text = ctx
                        .reply
                        .as_mut()
                        .map(|(text, _)| std::mem::take(text))
                        .unwrap_or_default();
                    let msg = Message::text(text);
                    let n = msg.len();
                    (
                        Box::pin(send_message(ws, msg, rec, &mut flush_timer, cancel)),
                        n,
                    )
                };
                if let Err(end) = send.await {
                    return end;
                }
                if let Some((_, at)) = ctx.reply.take() {
                    rec.auto_replied(n, at.elapsed());
                }
            }
            if !stopped && ctx.rotation.pending(Instant::now()) {
                let rotate = Box::pin(super::rotation::rotate(
                    ws,
                    sh,
                    rec,
                    &mut flush_timer,
                    cancel,
                    vu,
                    attempt,
                    ctx,
                ));
                if let Err(end) = rotate.await {
                    return end;
                }
            }
            if stopped {
                rec.try_flush();
                Box::pin(close_normally(ws, rec)).await;
                return CloseKind::Client;
            }
        }
    }
}

pub(super) fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}
