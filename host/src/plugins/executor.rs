//! Where a server plugin's code runs: never on the threads that serve HTTP.
//!
//! - Hooks (`admit`, `committed`, `route`, `stop`) run on one plugin thread shared by all
//!   plugins (`shared`), so that a request's hooks run back to back on a thread that is
//!   already awake; [`run_batch`] hands over a request's `admit` chain, or its `committed`
//!   calls, as one job. A plugin caught holding that thread (one poll lasting
//!   [`shared::STALL`], or short polls adding up to most of [`shared::HOG_WINDOW`]) is moved
//!   to its own thread for good, and the shared thread is replaced: a plugin that blocks (a
//!   `std::thread::sleep`, a synchronous lock, a spin, even in slices) delays other plugins'
//!   hooks by at most that long once, then stalls only its own calls, which fail closed at
//!   the deadline. Its calls already queued for, or begun on, a shared thread are handed
//!   to its own thread at their next poll ([`Watched`]).
//! - Each plugin also has its own thread (`own`), where its constructor, `announce` and
//!   background service run.
//!
//! A request hands the call over and awaits the answer under the hook deadline. The host
//! API's futures (timers, storage calls) work on either thread: each runtime has timers
//! and a blocking pool of its own.
//!
//! Bounds: two threads per plugin at most (its own, and the one it was caught holding),
//! one shared thread, a watchdog thread, and at most [`QUEUE`] calls of one plugin in
//! progress or waiting; past that a call is refused at once rather than queued.

mod own;
mod shared;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::Either;
use futures_util::FutureExt as _;
use tokio::sync::oneshot;

use crate::linger::{self, within, Missed};
use own::OwnThread;
use shared::{Lane, SharedThread, Watched};

/// Calls of one plugin that may be in progress or waiting; more fail closed at once.
pub(super) const QUEUE: usize = 1024;

/// How much longer than its calls' deadlines a batch's caller waits: the shared thread
/// starts a batch within microseconds, or within [`shared::STALL`] and a watchdog check
/// when a plugin held it.
const BATCH_GRACE: Duration = Duration::from_secs(1);

type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Makes `job`'s call where a plugin thread takes it and polls it once: most hooks answer
/// in their first poll, and such a call costs no task. One that must wait becomes a task of
/// `calls` (which polls it again, with its own waker). Finished tasks are reaped first, so
/// that the set does not grow.
async fn make_call(job: Job, calls: &mut tokio::task::JoinSet<()>) {
    while calls.try_join_next().is_some() {}
    let mut call = job();
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(call.as_mut().poll(cx)));
    if first.await.is_pending() {
        calls.spawn(call);
    }
}

/// Why a call did not produce the plugin's answer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum NotRun {
    /// The plugin has [`QUEUE`] calls in progress or waiting, or its thread is gone.
    Unavailable,
    /// The call into the plugin, or its future, panicked past the plugin's own guard.
    Panicked,
    /// A synchronous call did not return within its deadline.
    TimedOut,
}

impl From<Missed> for NotRun {
    fn from(missed: Missed) -> Self {
        match missed {
            Missed::Dropped => NotRun::Unavailable,
            Missed::Late => NotRun::TimedOut,
        }
    }
}

/// Where one plugin's calls go.
#[derive(Debug)]
pub(super) struct PluginThread {
    /// `None`: calls run inline, on the caller's task (see [`PluginThread::inline`]).
    threads: Option<Threads>,
}

#[derive(Debug)]
struct Threads {
    shared: &'static SharedThread,
    lane: Arc<Lane>,
    /// Calls in progress or waiting.
    calls: Arc<AtomicUsize>,
}

/// Counts a call for its plugin's bound while it lives.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PluginThread {
    /// Starts the own thread of plugin `name` (and the shared one, the first time).
    pub(super) fn spawn(name: &str) -> std::io::Result<Self> {
        let shared = SharedThread::get()?;
        let lane = Arc::new(Lane::new(name, OwnThread::spawn(name)?));
        shared.watch_lane(&lane);
        Ok(Self {
            threads: Some(Threads {
                shared,
                lane,
                calls: Arc::new(AtomicUsize::new(0)),
            }),
        })
    }

    /// No thread: calls run on the caller's task, as they did before plugins had threads
    /// of their own. Only `gbs-plugin-bench` uses it, to show what the isolation costs; a
    /// node never does.
    pub(super) fn inline() -> Self {
        Self { threads: None }
    }

    /// Calls a hook: `hook` makes the plugin's future on the shared thread (or the plugin's
    /// own, once it was moved there), which drives it for at most `deadline` and then drops
    /// it (its caller has given up by then). A call whose caller has given up by the time
    /// the thread gets to it is skipped; one whose caller goes away later (a client that
    /// disconnects while `committed` runs) still runs to its end.
    pub(super) fn run<T, F>(
        &self,
        deadline: Duration,
        hook: impl FnOnce() -> F + Send + 'static,
    ) -> impl Future<Output = Result<T, NotRun>> + Send + 'static
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        self.call(hook, Some(deadline))
    }

    /// Runs a background service (a future that lasts, with no deadline) on the plugin's
    /// own thread.
    pub(super) fn run_service<T, F>(
        &self,
        hook: impl FnOnce() -> F + Send + 'static,
    ) -> impl Future<Output = Result<T, NotRun>> + Send + 'static
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        self.call(hook, None)
    }

    /// A hook with its deadline, or a service (on the plugin's own thread) without one.
    fn call<T, F>(
        &self,
        hook: impl FnOnce() -> F + Send + 'static,
        deadline: Option<Duration>,
    ) -> impl Future<Output = Result<T, NotRun>> + Send + 'static
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let limit = deadline.unwrap_or(Duration::MAX);
        let Some(threads) = &self.threads else {
            return Either::Left(async move {
                within(limit, guarded(hook))
                    .await
                    .unwrap_or(Err(NotRun::TimedOut))
            });
        };
        let queued = threads.queue(hook, deadline);
        Either::Right(async move {
            match queued {
                Some(answer) => linger::answer(answer, limit)
                    .await
                    .map_err(NotRun::from)
                    .and_then(|a| a),
                None => Err(NotRun::Unavailable),
            }
        })
    }

    /// Runs the synchronous `call` (a constructor, `announce`) on the plugin's own thread
    /// and waits for it, at most `deadline`, blocking the caller.
    pub(super) fn run_sync<T: Send + 'static>(
        &self,
        call: impl FnOnce() -> T + Send + 'static,
        deadline: std::time::Duration,
    ) -> Result<T, NotRun> {
        match &self.threads {
            None => std::panic::catch_unwind(AssertUnwindSafe(call)).map_err(|_| NotRun::Panicked),
            Some(threads) => threads.lane.own.run_sync(call, deadline),
        }
    }
}

impl Threads {
    /// Counts one more call of the plugin; `None` when it is at its bound.
    fn count(&self) -> Option<Counted> {
        if self.calls.fetch_add(1, Ordering::AcqRel) >= QUEUE {
            self.calls.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Counted(self.calls.clone()))
    }

    /// Queues the call on its thread; `None` when the plugin is at its bound or the thread
    /// is gone.
    fn queue<T, F>(
        &self,
        hook: impl FnOnce() -> F + Send + 'static,
        deadline: Option<Duration>,
    ) -> Option<oneshot::Receiver<Result<T, NotRun>>>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let counted = self.count()?;
        let (reply, answer) = oneshot::channel::<Result<T, NotRun>>();
        let lane = self.lane.clone();
        let job: Job = Box::new(move || {
            Box::pin(async move {
                let _counted = counted;
                if reply.is_closed() {
                    return;
                }
                let work = Watched::new(lane, guarded(hook));
                let answer = match deadline {
                    // Past its deadline a hook's caller has answered 503: the plugin's
                    // future is dropped, so that a hook that never ends holds nothing.
                    Some(deadline) => match within(deadline, work).await {
                        Some(answer) => answer,
                        None => return,
                    },
                    None => work.await,
                };
                let _ = reply.send(answer);
            })
        });
        let sent = if deadline.is_none() || self.lane.moved.load(Ordering::Acquire) {
            self.lane.own.send(job)
        } else {
            self.shared.send(job)
        };
        sent.ok().map(|()| answer)
    }
}

/// How the calls of a [`run_batch`] run.
pub(super) enum Order<T> {
    /// One after another, stopping after the first answer `stop` picks (an `admit` chain).
    InTurn {
        stop: fn(&Result<T, NotRun>) -> bool,
    },
    /// All at once (the `committed` calls of one operation).
    Together,
}

// By hand: the derive would ask `T: Copy`.
impl<T> Clone for Order<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Order<T> {}

impl<T> Order<T> {
    /// Makes the call `step` of each of `calls`, in this order, and answers their results.
    async fn run<C, A>(self, calls: Vec<C>, step: impl Fn(C) -> A) -> Vec<Result<T, NotRun>>
    where
        A: Future<Output = Result<T, NotRun>>,
    {
        match self {
            Order::InTurn { stop } => {
                let mut answers = Vec::with_capacity(calls.len());
                for call in calls {
                    let answer = step(call).await;
                    let stopped = stop(&answer);
                    answers.push(answer);
                    if stopped {
                        break;
                    }
                }
                answers
            }
            Order::Together => futures_util::future::join_all(calls.into_iter().map(step)).await,
        }
    }
}

/// Calls one hook of each plugin in `calls` (in order), each under `deadline`, and answers
/// their results in the same order; [`Order::InTurn`] answers none past where it stopped.
///
/// When every plugin's hooks run on the shared thread, the whole batch is handed over as one
/// job, so a request pays for one handoff instead of one per plugin. Otherwise (a plugin
/// moved to its own thread, hooks inline) each call is made on its own, to the same effect.
pub(super) async fn run_batch<T, H, F>(
    calls: Vec<(&PluginThread, H)>,
    deadline: Duration,
    order: Order<T>,
) -> Vec<Result<T, NotRun>>
where
    T: Send + 'static,
    H: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let shared: Option<Vec<&Threads>> = calls
        .iter()
        .map(|(thread, _)| {
            thread
                .threads
                .as_ref()
                .filter(|t| !t.lane.moved.load(Ordering::Acquire))
        })
        .collect();
    let (Some(threads), Some(first)) = (shared, calls.first()) else {
        return one_by_one(calls, deadline, order).await;
    };
    let Some(counted) = threads
        .iter()
        .map(|t| t.count())
        .collect::<Option<Vec<_>>>()
    else {
        // A plugin at its bound: its own call is refused, the others are made.
        return one_by_one(calls, deadline, order).await;
    };
    let shared = first.0.threads.as_ref().map(|t| t.shared);
    let count = calls.len();
    let hooks: Vec<_> = threads
        .iter()
        .map(|t| t.lane.clone())
        .zip(calls.into_iter().map(|(_, hook)| hook))
        .collect();
    let (reply, answer) = oneshot::channel::<Vec<Result<T, NotRun>>>();
    let job: Job = Box::new(move || {
        Box::pin(async move {
            let _counted = counted;
            if reply.is_closed() {
                return;
            }
            let step = |(lane, hook): (Arc<Lane>, H)| async move {
                let work = Watched::new(lane, guarded(hook));
                within(deadline, work)
                    .await
                    .unwrap_or(Err(NotRun::TimedOut))
            };
            let answers = order.run(hooks, step).await;
            let _ = reply.send(answers);
        })
    });
    let sent = shared.map(|shared| shared.send(job));
    if !matches!(sent, Some(Ok(()))) {
        return (0..count).map(|_| Err(NotRun::Unavailable)).collect();
    }
    // Each call has its deadline on the thread, from when the thread starts it; in turn,
    // they add up. Waiting here only as long would race those deadlines and could lose the
    // answers of calls that did finish, so the caller waits [`BATCH_GRACE`] longer.
    let whole = match order {
        Order::InTurn { .. } => deadline.saturating_mul(u32::try_from(count).unwrap_or(u32::MAX)),
        Order::Together => deadline,
    };
    match linger::answer(answer, whole.saturating_add(BATCH_GRACE)).await {
        Ok(answers) => answers,
        Err(_) => (0..count).map(|_| Err(NotRun::Unavailable)).collect(),
    }
}

/// [`run_batch`] one call at a time.
async fn one_by_one<T, H, F>(
    calls: Vec<(&PluginThread, H)>,
    deadline: Duration,
    order: Order<T>,
) -> Vec<Result<T, NotRun>>
where
    T: Send + 'static,
    H: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    // Each call's answer is awaited under its deadline by `run`.
    let call = |(thread, hook): (&PluginThread, H)| thread.run(deadline, hook);
    order.run(calls, call).await
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(30);

    fn moved(thread: &PluginThread) -> bool {
        thread
            .threads
            .as_ref()
            .is_some_and(|t| t.lane.moved.load(Ordering::Acquire))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_plugin_that_blocks_the_shared_thread_is_moved_and_others_go_on() {
        let stuck = PluginThread::spawn("stuck").unwrap();
        let free = PluginThread::spawn("free").unwrap();
        let blocked = tokio::spawn(stuck.run(DEADLINE, || async {
            std::thread::sleep(Duration::from_millis(600));
            1
        }));
        tokio::time::sleep(Duration::from_millis(5)).await;
        let started = Instant::now();
        assert_eq!(free.run(DEADLINE, || async { 2 }).await, Ok(2));
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "another plugin waited {:?}",
            started.elapsed()
        );
        assert!(moved(&stuck), "the blocking plugin was not moved");
        assert!(!moved(&free));
        // Its next call runs on its own thread, while the first is still blocked.
        assert_eq!(stuck.run(DEADLINE, || async { 3 }).await, Ok(3));
        assert_eq!(blocked.await.unwrap(), Ok(1));
    }

    /// A future that spins on its thread in slices of `slice` (each poll shorter than
    /// [`shared::STALL`]), yielding in between, for `total`.
    async fn spin_in_slices(slice: Duration, total: Duration) {
        let started = Instant::now();
        while started.elapsed() < total {
            let sliced = Instant::now();
            while sliced.elapsed() < slice {
                std::hint::spin_loop();
            }
            tokio::task::yield_now().await;
        }
    }

    /// Input tried: 8 calls of one plugin, each spinning in 10 ms slices for 2 s. Each poll
    /// is short, but together they would make every call of another plugin wait 8 slices.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_plugin_that_spins_in_short_slices_is_moved_and_others_go_on() {
        let hog = PluginThread::spawn("hog").unwrap();
        let free = PluginThread::spawn("free-of-hog").unwrap();
        let hogging: Vec<_> = (0..8)
            .map(|_| {
                tokio::spawn(hog.run(DEADLINE, || {
                    spin_in_slices(Duration::from_millis(10), Duration::from_secs(2))
                }))
            })
            .collect();
        let caught = Instant::now() + Duration::from_millis(1500);
        while !moved(&hog) {
            assert!(Instant::now() < caught, "the hogging plugin was not moved");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!moved(&free));
        // The fastest of a few calls, so that one preemption on a busy machine does not
        // count: left with the hog, each would wait for its 8 slices.
        let mut fastest = Duration::MAX;
        for _ in 0..10 {
            let started = Instant::now();
            assert_eq!(free.run(DEADLINE, || async { 2 }).await, Ok(2));
            fastest = fastest.min(started.elapsed());
        }
        assert!(
            fastest < Duration::from_millis(40),
            "another plugin waited at least {fastest:?}"
        );
        for call in hogging {
            assert_eq!(call.await.unwrap(), Ok(()));
        }
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
        let in_call = thread.run(DEADLINE, || -> std::future::Ready<u8> {
            panic!("in the call")
        });
        assert_eq!(in_call.await, Err(NotRun::Panicked));
        let in_future = thread.run(DEADLINE, || async {
            if true {
                panic!("in the future");
            }
            0u8
        });
        assert_eq!(in_future.await, Err(NotRun::Panicked));
        assert_eq!(
            thread.run(DEADLINE, || async { 5 }).await,
            Ok(5),
            "the thread survives"
        );
    }

    /// Input tried: QUEUE hooks that never end (deadline 200 ms), then one more.
    #[tokio::test]
    async fn a_plugin_at_its_bound_is_refused_at_once_and_hooks_past_their_deadline_free_it() {
        let thread = PluginThread::spawn("full").unwrap();
        let hanging: Vec<_> = (0..QUEUE)
            .map(|_| thread.run(Duration::from_millis(200), std::future::pending::<()>))
            .collect();
        assert_eq!(
            thread.run(DEADLINE, || async {}).await,
            Err(NotRun::Unavailable)
        );
        // Past their deadline the plugin's futures are dropped, even with callers still
        // waiting (they hear that the call did not run).
        for call in hanging {
            let answer = call.await;
            assert!(
                matches!(answer, Err(NotRun::Unavailable | NotRun::TimedOut)),
                "{answer:?}"
            );
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if thread.run(DEADLINE, || async { 7 }).await == Ok(7) {
                break;
            }
            assert!(Instant::now() < deadline, "the dropped calls still count");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    type BoxedHook = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = u8> + Send>> + Send>;

    /// One call per thread answering its position from 1; `hang[i]` makes call i never end.
    fn batch<'t>(threads: &'t [PluginThread], hang: &[bool]) -> Vec<(&'t PluginThread, BoxedHook)> {
        threads
            .iter()
            .zip(hang.iter().copied())
            .enumerate()
            .map(|(i, (thread, hang))| {
                let value = u8::try_from(i).unwrap() + 1;
                let hook: BoxedHook = Box::new(move || {
                    Box::pin(async move {
                        if hang {
                            std::future::pending::<()>().await;
                        }
                        value
                    })
                });
                (thread, hook)
            })
            .collect()
    }

    #[tokio::test]
    async fn a_batch_in_turn_stops_where_asked_and_together_runs_every_call() {
        let threads: Vec<_> = ["one", "two", "three"]
            .into_iter()
            .map(|name| PluginThread::spawn(name).unwrap())
            .collect();
        let at_two = |answer: &Result<u8, NotRun>| *answer == Ok(2);
        let in_turn = run_batch(
            batch(&threads, &[false; 3]),
            DEADLINE,
            Order::InTurn { stop: at_two },
        )
        .await;
        assert_eq!(in_turn, vec![Ok(1), Ok(2)]);
        let together = run_batch(batch(&threads, &[false; 3]), DEADLINE, Order::Together).await;
        assert_eq!(together, vec![Ok(1), Ok(2), Ok(3)]);
    }

    /// Input tried: a batch whose second hook never ends, with a 100 ms deadline.
    #[tokio::test]
    async fn a_hook_past_its_deadline_fails_alone_in_its_batch() {
        let threads: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|name| PluginThread::spawn(name).unwrap())
            .collect();
        let hangs = [false, true, false];
        let deadline = Duration::from_millis(100);
        let together = run_batch(batch(&threads, &hangs), deadline, Order::Together).await;
        assert_eq!(together, vec![Ok(1), Err(NotRun::TimedOut), Ok(3)]);
        let never = |_: &Result<u8, NotRun>| false;
        let in_turn = run_batch(
            batch(&threads, &hangs),
            deadline,
            Order::InTurn { stop: never },
        )
        .await;
        assert_eq!(in_turn, vec![Ok(1), Err(NotRun::TimedOut), Ok(3)]);
    }
}
