//! Where a server plugin's code runs: a thread of its own, driving a small runtime.
//!
//! The threads that serve HTTP never call into a plugin. A request hands the call to the
//! plugin's thread and awaits the answer under the hook deadline, so a plugin that blocks
//! its thread (a `std::thread::sleep`, a synchronous lock, a spin) stalls only its own
//! calls: the operations it guards fail closed at the deadline, everything else keeps its
//! latency. The host API's futures (timers, storage calls) work there as anywhere: the
//! runtime has timers and a blocking pool of its own.
//!
//! Bounds: one thread per plugin, and at most [`QUEUE`] calls waiting for it; past that a
//! call is refused at once rather than queued.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;

use futures_util::future::Either;
use futures_util::FutureExt as _;
use tokio::sync::{mpsc, oneshot};

/// Calls that may wait for a plugin's thread; more fail closed at once.
pub(super) const QUEUE: usize = 1024;

type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Why a call did not produce the plugin's answer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum NotRun {
    /// The plugin's thread has [`QUEUE`] calls waiting, or is gone.
    Unavailable,
    /// The call into the plugin, or its future, panicked past the plugin's own guard.
    Panicked,
    /// A synchronous call did not return within its deadline.
    TimedOut,
}

/// A plugin's thread, taking calls.
#[derive(Debug)]
pub(super) struct PluginThread {
    /// `None`: calls run inline, on the caller's task (see [`PluginThread::inline`]).
    jobs: Option<mpsc::Sender<Job>>,
}

impl PluginThread {
    /// Starts the thread for plugin `name`.
    pub(super) fn spawn(name: &str) -> std::io::Result<Self> {
        let (jobs, mut queue) = mpsc::channel::<Job>(QUEUE);
        // Timers only: hooks do no socket I/O on this thread, and without an I/O driver
        // an idle thread parks on a futex, which a new call wakes faster than epoll.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .thread_name(format!("plugin {name}"))
            .build()?;
        std::thread::Builder::new()
            .name(format!("plugin {name}"))
            .spawn(move || {
                runtime.block_on(async move {
                    while let Some(job) = next_call(&mut queue).await {
                        tokio::spawn(job());
                    }
                });
            })?;
        Ok(Self { jobs: Some(jobs) })
    }

    /// No thread: calls run on the caller's task, as they did before plugins had threads
    /// of their own. Only `gbs-plugin-bench` uses it, to show what the isolation costs; a
    /// node never does.
    pub(super) fn inline() -> Self {
        Self { jobs: None }
    }

    /// Calls into the plugin on its thread: `hook` makes the plugin's future there, and the
    /// thread drives it. A call whose caller has given up by the time the thread gets to
    /// it is skipped.
    pub(super) fn run<T, F>(
        &self,
        hook: impl FnOnce() -> F + Send + 'static,
    ) -> impl Future<Output = Result<T, NotRun>> + Send + 'static
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let Some(jobs) = &self.jobs else {
            return Either::Left(guarded(hook));
        };
        let (reply, answer) = oneshot::channel::<Result<T, NotRun>>();
        let job: Job = Box::new(move || {
            Box::pin(async move {
                if reply.is_closed() {
                    return;
                }
                let _ = reply.send(guarded(hook).await);
            })
        });
        let queued = jobs.try_send(job).is_ok();
        Either::Right(async move {
            if !queued {
                return Err(NotRun::Unavailable);
            }
            answer.await.unwrap_or(Err(NotRun::Unavailable))
        })
    }

    /// Runs the synchronous `call` (a constructor, `announce`) on the plugin's thread and
    /// waits for it, at most `deadline`, blocking the caller.
    pub(super) fn run_sync<T: Send + 'static>(
        &self,
        call: impl FnOnce() -> T + Send + 'static,
        deadline: std::time::Duration,
    ) -> Result<T, NotRun> {
        let Some(jobs) = &self.jobs else {
            return std::panic::catch_unwind(AssertUnwindSafe(call)).map_err(|_| NotRun::Panicked);
        };
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let outcome =
                std::panic::catch_unwind(AssertUnwindSafe(call)).map_err(|_| NotRun::Panicked);
            let _ = reply.send(outcome);
            Box::pin(async {})
        });
        jobs.try_send(job).map_err(|_| NotRun::Unavailable)?;
        match answer.recv_timeout(deadline) {
            Ok(outcome) => outcome,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(NotRun::TimedOut),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(NotRun::Unavailable),
        }
    }
}

/// Makes the plugin's future with `hook` and drives it, turning a panic in either into
/// [`NotRun::Panicked`].
async fn guarded<T, F>(hook: impl FnOnce() -> F) -> Result<T, NotRun>
where
    F: Future<Output = T>,
{
    match std::panic::catch_unwind(AssertUnwindSafe(hook)) {
        Ok(future) => AssertUnwindSafe(future)
            .catch_unwind()
            .await
            .map_err(|_| NotRun::Panicked),
        Err(_) => Err(NotRun::Panicked),
    }
}

/// How long a plugin's thread looks for its next call before it parks. A request's calls
/// to a plugin (`admit`, then `committed`) come in quick succession, and waking a parked
/// thread costs tens of microseconds; looking this long costs at most this much CPU per
/// call.
const LINGER: std::time::Duration = std::time::Duration::from_micros(50);

/// Whether some plugin thread is lingering: one at a time, so that plugin threads never
/// take more than one core from the server while they wait.
static LINGERING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The next call for the plugin's thread; `None` once the plugin is dropped. Runs the
/// thread's other tasks (the calls in progress) while it lingers.
async fn next_call(queue: &mut mpsc::Receiver<Job>) -> Option<Job> {
    use std::sync::atomic::Ordering;
    if LINGERING
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
    {
        let lingering = std::time::Instant::now();
        let found = loop {
            match queue.try_recv() {
                Ok(job) => break Some(Some(job)),
                Err(mpsc::error::TryRecvError::Disconnected) => break Some(None),
                Err(mpsc::error::TryRecvError::Empty) if lingering.elapsed() < LINGER => {
                    tokio::task::yield_now().await;
                }
                Err(mpsc::error::TryRecvError::Empty) => break None,
            }
        };
        LINGERING.store(false, Ordering::Release);
        if let Some(found) = found {
            return found;
        }
    }
    queue.recv().await
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[tokio::test]
    async fn a_blocked_plugin_thread_stalls_only_its_own_calls() {
        let stuck = PluginThread::spawn("stuck").unwrap();
        let free = PluginThread::spawn("free").unwrap();
        let blocked = tokio::spawn(stuck.run(|| async {
            std::thread::sleep(Duration::from_millis(500));
            1
        }));
        let started = Instant::now();
        assert_eq!(free.run(|| async { 2 }).await, Ok(2));
        assert!(started.elapsed() < Duration::from_millis(400));
        // The stuck thread's next call waits for it.
        let late = tokio::time::timeout(Duration::from_millis(100), stuck.run(|| async { 3 }));
        assert!(
            late.await.is_err(),
            "the stuck thread answered while blocked"
        );
        assert_eq!(blocked.await.unwrap(), Ok(1));
        assert_eq!(stuck.run(|| async { 4 }).await, Ok(4));
    }

    #[test]
    fn synchronous_calls_answer_or_time_out() {
        let thread = PluginThread::spawn("sync").unwrap();
        assert_eq!(thread.run_sync(|| 6, Duration::from_secs(5)), Ok(6));
        let hangs = thread.run_sync(
            || std::thread::sleep(Duration::from_secs(3600)),
            Duration::from_millis(100),
        );
        assert_eq!(hangs, Err(NotRun::TimedOut));
        let other = PluginThread::spawn("other").unwrap();
        assert_eq!(
            other.run_sync(
                || -> u8 { panic!("in a constructor") },
                Duration::from_secs(5)
            ),
            Err(NotRun::Panicked)
        );
    }

    #[tokio::test]
    async fn panics_become_an_answer() {
        let thread = PluginThread::spawn("panics").unwrap();
        let in_call = thread.run(|| -> std::future::Ready<u8> { panic!("in the call") });
        assert_eq!(in_call.await, Err(NotRun::Panicked));
        let in_future = thread.run(|| async {
            if true {
                panic!("in the future");
            }
            0u8
        });
        assert_eq!(in_future.await, Err(NotRun::Panicked));
        assert_eq!(
            thread.run(|| async { 5 }).await,
            Ok(5),
            "the thread survives"
        );
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let thread = PluginThread::spawn("full").unwrap();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let first = tokio::spawn(thread.run(move || async move {
            let _ = wait.recv();
        }));
        // Let the thread take the first call and block in it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let waiting: Vec<_> = (0..QUEUE).map(|_| thread.run(|| async {})).collect();
        assert_eq!(thread.run(|| async {}).await, Err(NotRun::Unavailable));
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(()));
        drop(waiting);
    }
}
