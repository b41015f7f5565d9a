//! The small-read thread: one thread that opens and reads shares for small reads (and
//! lists a storage index's shares, as quick), and looks for the next one for a while (see
//! [`crate::linger`]) before it sleeps.
//!
//! A small read on a blocking-pool thread paid for waking that thread, whose CPU had often
//! gone idle, and for waking the request's thread after: on this VM that was most of a
//! 1 KiB read on one connection. A read that arrives while the thread is busy (another
//! read, or a slow disk holding it) goes to the blocking pool as before, so a stalled disk
//! delays at most the one read the thread is doing.
//!
//! Bounds: one thread; one read on it at a time, none queued; after each read it spins
//! (yielding its CPU) at most [`crate::linger`]'s 200 µs.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::linger;

type Job = Box<dyn FnOnce() + Send>;

/// The thread's inbox, and whether it has a read.
struct ReadThread {
    busy: AtomicBool,
    jobs: mpsc::Sender<Job>,
}

impl ReadThread {
    /// The process's read thread, started on first use; `None` if it could not start.
    fn get() -> Option<&'static ReadThread> {
        static THREAD: OnceLock<Option<ReadThread>> = OnceLock::new();
        THREAD
            .get_or_init(|| {
                let (jobs, queue) = mpsc::channel::<Job>();
                std::thread::Builder::new()
                    .name("small reads".into())
                    .spawn(move || loop {
                        let next = linger::early_call_blocking(|| queue.try_recv().ok());
                        let Some(job) = next.or_else(|| queue.recv().ok()) else {
                            return;
                        };
                        job();
                    })
                    .map_err(|error| tracing::warn!(%error, "no small-read thread; small reads use the blocking pool"))
                    .ok()?;
                Some(ReadThread {
                    busy: AtomicBool::new(false),
                    jobs,
                })
            })
            .as_ref()
    }

    /// Claims the thread for one read; `false` if it has one.
    fn claim(&self) -> bool {
        self.busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }
}

/// Why a read did not produce its result.
#[derive(Debug)]
pub(crate) struct Panicked;

impl std::fmt::Display for Panicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("it panicked")
    }
}

/// Runs `read` on the small-read thread, or on the blocking pool when that thread is
/// busy; `Err` if `read` panicked.
pub(crate) async fn run<T: Send + 'static>(
    read: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Panicked> {
    let Some(thread) = ReadThread::get().filter(|t| t.claim()) else {
        return tokio::task::spawn_blocking(read)
            .await
            .map_err(|_| Panicked);
    };
    let (reply, answer) = oneshot::channel();
    let job: Job = Box::new(move || {
        let result = std::panic::catch_unwind(AssertUnwindSafe(read));
        thread.busy.store(false, Ordering::Release);
        let _ = reply.send(result);
    });
    if let Err(mpsc::SendError(job)) = thread.jobs.send(job) {
        // The thread is gone (it never ends while the process lives): the pool runs the
        // read, which answers as it would have there.
        drop(tokio::task::spawn_blocking(job));
    }
    match linger::answer(answer, Duration::MAX).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) | Err(_) => Err(Panicked),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_answer_and_a_panic_fails_only_its_own() {
        assert_eq!(run(|| 7).await.ok(), Some(7));
        let panicked = run(|| -> u8 { panic!("in a read") }).await;
        assert!(panicked.is_err());
        assert_eq!(run(|| 8).await.ok(), Some(8), "the thread survives a panic");
    }

    /// Input tried: a read that holds the thread for 2 s (a stalled disk); reads made
    /// meanwhile answer from the blocking pool at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_holding_the_thread_does_not_delay_others() {
        let stalled = tokio::spawn(run(|| {
            std::thread::sleep(Duration::from_secs(2));
            1
        }));
        // Until the stalled read holds the thread, others may still get it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        for i in 0..20 {
            assert_eq!(run(move || i).await.ok(), Some(i));
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "reads waited {:?} behind a stalled one",
            started.elapsed()
        );
        assert_eq!(stalled.await.expect("joined").ok(), Some(1));
    }
}
