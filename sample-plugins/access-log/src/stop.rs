//! A stop signal that the background service waits on alongside the host's timer.
//!
//! Plugins cannot use tokio's primitives (each library would link its own runtime, with no
//! reactor), so this is the few lines it takes with `std`.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::{Poll, Waker};

/// Set once by `stop`, awaited by the one background service.
#[derive(Debug, Default)]
pub(crate) struct StopSignal {
    stopped: AtomicBool,
    /// The waiting service's waker. One slot: only the background service waits.
    waiter: Mutex<Option<Waker>>,
}

/// How [`StopSignal::race`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Raced {
    /// The other future completed first.
    Completed,
    /// The signal was (or already had been) raised.
    Stopped,
}

impl StopSignal {
    /// Raises the signal and wakes the waiting service. Raising it twice is harmless.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let waiter = self
            .waiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(waker) = waiter {
            waker.wake();
        }
    }

    /// Whether [`StopSignal::stop`] has been called.
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Runs `other` until it completes or the signal is raised, whichever comes first.
    pub(crate) async fn race(&self, other: impl Future<Output = ()>) -> Raced {
        let mut other = pin!(other);
        poll_fn(|cx| {
            if self.is_stopped() {
                return Poll::Ready(Raced::Stopped);
            }
            *self.waiter.lock().unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
            // Checked again after registering: a `stop` in between found no waker to wake.
            if self.is_stopped() {
                return Poll::Ready(Raced::Stopped);
            }
            other.as_mut().poll(cx).map(|()| Raced::Completed)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::future::pending;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::task::{Context, Wake};

    use super::*;

    struct CountWakes(AtomicUsize);

    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn race_returns_completed_when_the_other_future_is_ready() {
        let signal = StopSignal::default();
        let mut race = pin!(signal.race(async {}));
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(race.as_mut().poll(&mut cx), Poll::Ready(Raced::Completed));
    }

    #[test]
    fn stop_wakes_a_pending_race_which_then_ends_stopped() {
        let signal = StopSignal::default();
        let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut race = pin!(signal.race(pending()));
        assert_eq!(race.as_mut().poll(&mut cx), Poll::Pending);
        signal.stop();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert_eq!(race.as_mut().poll(&mut cx), Poll::Ready(Raced::Stopped));
    }

    #[test]
    fn race_after_stop_ends_at_once_even_if_the_other_is_ready() {
        let signal = StopSignal::default();
        signal.stop();
        signal.stop();
        let mut race = pin!(signal.race(async {}));
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(race.as_mut().poll(&mut cx), Poll::Ready(Raced::Stopped));
    }
}
