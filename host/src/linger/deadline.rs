//! A deadline that costs nothing when it is not needed: most hooks answer in their first
//! poll, and a `tokio::time::timeout` would register a timer (and take the timer driver's
//! lock twice) for every one of them. [`within`] starts its timer only once the future
//! it guards has said it must wait.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// `future`'s output, or `None` once `limit` has passed since this call.
pub(crate) fn within<F: Future>(limit: Duration, future: F) -> Within<F> {
    Within {
        future: Box::pin(future),
        // A limit too far to represent never comes.
        until: Instant::now().checked_add(limit),
        timer: None,
    }
}

/// See [`within`].
pub(crate) struct Within<F> {
    future: Pin<Box<F>>,
    until: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<F: Future> Future for Within<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(output) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        let Some(until) = self.until else {
            return Poll::Pending;
        };
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
        timer.as_mut().poll(cx).map(|()| None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_what_comes_in_time_and_none_after() {
        assert_eq!(within(Duration::ZERO, async { 1 }).await, Some(1));
        let late = within(Duration::from_millis(20), std::future::pending::<u8>());
        assert_eq!(late.await, None);
        let slow = within(Duration::from_secs(30), async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            2
        });
        assert_eq!(slow.await, Some(2));
        // Input tried: a limit past what an Instant holds.
        let forever = within(Duration::MAX, async { 3 });
        assert_eq!(forever.await, Some(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_future_that_answers_at_once_starts_no_timer() {
        let mut guarded = std::pin::pin!(within(Duration::from_secs(1), async { 4 }));
        let polled = std::future::poll_fn(|cx| Poll::Ready(guarded.as_mut().poll(cx))).await;
        assert_eq!(polled, Poll::Ready(Some(4)));
        assert!(guarded.timer.is_none());
    }
}
