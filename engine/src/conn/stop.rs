//! A VU's stop signal (and a few flags about its life, kept off its task's future): set by the controller (ramp-down retires the newest VUs; the
//! run's end stops them all), awaited by the VU's own task only.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;

use futures_util::task::AtomicWaker;

/// Tells one VU to close and end. It replaces a child `CancellationToken` per VU (a
/// 112-byte tree node, and a 64-byte wait future in every `select!` awaiting it): this is
/// one 48-byte allocation and an 8-byte wait. One waker is enough because a VU is one
/// task and every wait on its `Stop` is that task's; do not wait on it from another task.
#[derive(Clone, Default)]
pub(crate) struct Stop(Arc<Inner>);

#[derive(Default)]
struct Inner {
    stopped: AtomicBool,
    /// A guest's VU (the open model for sessions): it counts its arrival ...
    guest: AtomicBool,
    /// ... and, stopped because its stay is over, its departure.
    departing: AtomicBool,
    /// The VU's next attempt reconnects for a token rotation (`conn/rotation.rs`). Kept
    /// here, not in the VU's future: every held connection's task would pay for it.
    rotating: AtomicBool,
    waker: AtomicWaker,
}

impl Stop {
    /// Stops the VU (idempotent).
    pub(crate) fn stop(&self) {
        self.0.stopped.store(true, Ordering::Release);
        self.0.waker.wake();
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::Acquire)
    }

    /// Marks the VU's next attempt as a token rotation's reconnect.
    pub(crate) fn set_rotating(&self) {
        self.0.rotating.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_rotating(&self) -> bool {
        self.0.rotating.load(Ordering::Relaxed)
    }

    /// Whether this attempt is a rotation's reconnect (and clears the mark).
    pub(crate) fn take_rotating(&self) -> bool {
        self.0.rotating.swap(false, Ordering::Relaxed)
    }

    /// Whether this VU is a guest of the open model for sessions (see `guest`).
    pub(crate) fn is_guest(&self) -> bool {
        self.0.guest.load(Ordering::Acquire)
    }

    /// Whether this VU was stopped because its guest's stay was over: it leaves by its
    /// own choice (a departure), not because the run ended or the target dropped it.
    pub(crate) fn is_departing(&self) -> bool {
        self.0.departing.load(Ordering::Acquire)
    }

    /// Resolves once `stop` has been called.
    pub(crate) fn stopped(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.is_stopped() {
                return Poll::Ready(());
            }
            self.0.waker.register(cx.waker());
            // A stop between the check and the registration woke the old waker.
            if self.is_stopped() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

/// Runs a guest's VU (the open model for sessions, `plan::Sessions`) and, at `leave`,
/// tells it to stop: the guest leaves by its own choice and closes its session as ours
/// (a `client` close, a departure — never a drop). The timer runs in the VU's own task,
/// so the stop's single waker stays that task's.
pub(crate) async fn guest<F: Future<Output = ()>>(vu: F, stop: Stop, leave: std::time::Instant) {
    // Marked before the VU first runs, so it counts its arrival.
    stop.0.guest.store(true, Ordering::Release);
    let depart = async {
        tokio::time::sleep_until(leave.into()).await;
        stop.0.departing.store(true, Ordering::Release);
        stop.stop();
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = vu => {}
        _ = depart => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_guest_leaves_when_its_stay_is_over_and_not_before() {
        let t0 = tokio::time::Instant::now();
        let stop = Stop::default();
        let theirs = stop.clone();
        // A VU that holds until stopped, then takes 10 ms to close.
        let vu = async move {
            theirs.stopped().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let leave = t0.into_std() + Duration::from_secs(42);
        guest(vu, stop.clone(), leave).await;
        assert!(stop.is_stopped() && stop.is_guest() && stop.is_departing());
        assert_eq!(t0.elapsed(), Duration::from_millis(42_010));

        // A VU that ends first (its session dropped) is not held to its stay.
        let t1 = tokio::time::Instant::now();
        let stop = Stop::default();
        let vu = tokio::time::sleep(Duration::from_secs(1));
        guest(vu, stop.clone(), t1.into_std() + Duration::from_secs(60)).await;
        assert_eq!(t1.elapsed(), Duration::from_secs(1));
        assert!(!stop.is_stopped() && !stop.is_departing() && stop.is_guest());
        // The run's end stops a guest without making it a departure.
        let run_end = Stop::default();
        run_end.stop();
        assert!(!run_end.is_departing() && !run_end.is_guest());
    }

    #[tokio::test]
    async fn a_stop_wakes_the_waiting_task_and_stays_set() {
        let stop = Stop::default();
        let theirs = stop.clone();
        let waiter = tokio::spawn(async move {
            theirs.stopped().await;
            theirs.is_stopped()
        });
        // The waiter is parked (nothing else wakes it) until `stop`.
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        stop.stop();
        let seen = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken by stop")
            .unwrap();
        assert!(seen);
        // Already stopped: resolves at once, however often it is awaited.
        stop.stopped().await;
        stop.stopped().await;
    }
}
