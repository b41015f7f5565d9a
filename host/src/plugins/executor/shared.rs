//! The shared plugin thread: where every plugin's hooks run until the plugin is caught
//! holding it.
//!
//! One thread for all plugins makes a request's hooks (each plugin's `admit`, then each
//! `committed`) run back to back on a thread that is already awake, instead of waking a
//! thread per plugin per hook. A watchdog looks at what the thread is doing every
//! [`CHECK`]. A plugin is moved to its own thread for good, and a fresh shared thread takes
//! over the queue, when one poll of its hooks has lasted [`STALL`] (it blocks or spins), or
//! when its polls, each short, have taken [`HOG_SHARE`] of the thread over the last
//! [`HOG_WINDOW`] (it spins in slices, yielding in between, which would otherwise make every
//! other plugin's call wait a slice per call of its in progress). The thread it held
//! finishes the calls it had started, whenever the plugin lets it, and ends.
//!
//! Time the thread spent waiting for a CPU does not count (Linux tells it per thread): on a
//! machine busy with other work, a poll preempted for 20 ms moved whichever plugin it was
//! polling, which then cost every request it guards a handoff of its own.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::own::OwnThread;
use super::{make_call, Job, NotRun};
use crate::linger::early_call;

/// How long one poll of a hook may hold the shared thread before its plugin is moved to
/// its own thread.
pub(super) const STALL: Duration = Duration::from_millis(20);
/// How often the watchdog looks.
const CHECK: Duration = Duration::from_millis(10);
/// Over how long the watchdog adds up a plugin's polls on the shared thread.
pub(super) const HOG_WINDOW: Duration = Duration::from_millis(100);
/// The share of [`HOG_WINDOW`] a plugin's polls may take before it is moved. A plugin that
/// needs more than half of a thread is better off with one of its own, and no longer delays
/// the others.
const HOG_SHARE: f64 = 0.6;

/// A plugin as the shared thread knows it.
#[derive(Debug)]
pub(super) struct Lane {
    pub(super) name: String,
    /// Set once the plugin held the shared thread too long: its hooks go to its own thread.
    pub(super) moved: AtomicBool,
    /// Time spent polling its hooks on shared threads, in nanoseconds.
    polled: AtomicU64,
    /// The plugin's own thread.
    pub(super) own: OwnThread,
}

impl Lane {
    pub(super) fn new(name: &str, own: OwnThread) -> Self {
        Self {
            name: name.to_owned(),
            moved: AtomicBool::new(false),
            polled: AtomicU64::new(0),
            own,
        }
    }
}

/// The watchdog's readings of one plugin's [`Lane::polled`], oldest first, spanning at least
/// [`HOG_WINDOW`] once there are enough.
#[derive(Debug)]
struct Readings {
    lane: Weak<Lane>,
    polled: VecDeque<(Instant, u64)>,
}

impl Readings {
    /// Takes a reading of `lane` at `now`; whether its polls took [`HOG_SHARE`] of the
    /// window that ends there.
    fn hogs(&mut self, lane: &Lane, now: Instant) -> bool {
        self.polled
            .push_back((now, lane.polled.load(Ordering::Relaxed)));
        // Keep one reading from at least a window ago, and none older than needed.
        while self
            .polled
            .get(1)
            .is_some_and(|(at, _)| now.duration_since(*at) >= HOG_WINDOW)
        {
            self.polled.pop_front();
        }
        let (Some((then, before)), Some((_, after))) = (self.polled.front(), self.polled.back())
        else {
            return false;
        };
        let span = now.duration_since(*then);
        if span < HOG_WINDOW {
            return false;
        }
        let busy = Duration::from_nanos(after.saturating_sub(*before));
        busy.as_secs_f64() >= span.as_secs_f64() * HOG_SHARE
    }
}

/// What one shared thread is polling, and since when.
#[derive(Debug, Default)]
struct Busy {
    now: Mutex<Option<(Arc<Lane>, Instant)>>,
    /// The thread's `/proc/thread-self/schedstat` (Linux), opened by the thread itself.
    schedstat: OnceLock<std::fs::File>,
}

impl Busy {
    fn set(&self, now: Option<(Arc<Lane>, Instant)>) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }

    /// How long the thread has waited for a CPU in all, if the kernel says.
    fn waited(&self) -> Option<Duration> {
        use std::io::{Read as _, Seek as _};
        let mut file = self.schedstat.get()?;
        let mut text = String::new();
        file.rewind().ok()?;
        file.read_to_string(&mut text).ok()?;
        // `time on CPU, time waiting on a run queue, time slices`, in nanoseconds.
        let nanos = text.split_whitespace().nth(1)?.parse().ok()?;
        Some(Duration::from_nanos(nanos))
    }

    /// The plugin that has held the thread for [`STALL`]: one poll of its hook has lasted
    /// that long, not counting time the thread spent waiting for a CPU (the machine was
    /// busy, the plugin was not holding it). `waits` are the watchdog's recent readings of
    /// [`Busy::waited`], oldest first.
    fn stuck(&self, waits: &VecDeque<(Instant, Duration)>) -> Option<Arc<Lane>> {
        let (lane, since) = self.now.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
        let polled = since.elapsed();
        if polled < STALL {
            return None;
        }
        // The last reading from before the poll began (so at most one `CHECK` more of
        // waiting is forgiven: a plugin that really holds the thread is caught at most that
        // much later); none: all of it counts.
        let before = waits.iter().rev().find(|(at, _)| *at <= since);
        let waited = match (before, self.waited()) {
            (Some((_, then)), Some(now)) => now.saturating_sub(*then),
            _ => Duration::ZERO,
        };
        (polled.saturating_sub(waited) >= STALL).then_some(lane)
    }
}

thread_local! {
    /// The [`Busy`] of the shared thread this is, if it is one.
    static BUSY: std::cell::RefCell<Option<Arc<Busy>>> = const { std::cell::RefCell::new(None) };
}

/// A hook's call whose every poll, on a shared thread, is recorded in that thread's
/// [`Busy`] under its plugin's lane (on a plugin's own thread, a plain future).
///
/// Once its plugin has been moved, a call that a shared thread would poll is handed to the
/// plugin's own thread instead, its answer coming back here: calls queued, or begun, before
/// the move (a request's batch waiting in the queue) no longer block or spin on the shared
/// thread that replaced the one the plugin held.
pub(super) struct Watched<T> {
    call: Call<T>,
    lane: Arc<Lane>,
}

type Answer<T> = Result<T, NotRun>;

enum Call<T> {
    /// Polled where this future is polled.
    Here(Pin<Box<dyn Future<Output = Answer<T>> + Send>>),
    /// Handed to the plugin's own thread.
    Relayed(oneshot::Receiver<Answer<T>>),
}

impl<T: Send + 'static> Watched<T> {
    pub(super) fn new(
        lane: Arc<Lane>,
        future: impl Future<Output = Answer<T>> + Send + 'static,
    ) -> Self {
        Self {
            call: Call::Here(Box::pin(future)),
            lane,
        }
    }

    /// Hands the call to its plugin's own thread, unless that thread has no room (then it
    /// stays here).
    fn relay(&mut self) {
        let Call::Here(_) = &self.call else { return };
        let Some(permit) = self.lane.own.reserve() else {
            return;
        };
        let (mut reply, answer) = oneshot::channel();
        let Call::Here(mut future) = std::mem::replace(&mut self.call, Call::Relayed(answer))
        else {
            unreachable!("checked above");
        };
        permit.send(Box::new(move || {
            Box::pin(async move {
                // Dropped when the caller gives up (its deadline passed), as it would have
                // been here.
                let answer = std::future::poll_fn(|cx| {
                    if let Poll::Ready(answer) = future.as_mut().poll(cx) {
                        return Poll::Ready(Some(answer));
                    }
                    reply.poll_closed(cx).map(|()| None)
                })
                .await;
                if let Some(answer) = answer {
                    let _ = reply.send(answer);
                }
            })
        }));
    }
}

impl<T: Send + 'static> Future for Watched<T> {
    type Output = Answer<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer<T>> {
        let this = self.get_mut();
        let busy = BUSY.with(|busy| busy.borrow().clone());
        if busy.is_some() && this.lane.moved.load(Ordering::Acquire) {
            this.relay();
        }
        let future = match &mut this.call {
            Call::Relayed(answer) => {
                return Pin::new(answer)
                    .poll(cx)
                    .map(|answer| answer.unwrap_or(Err(NotRun::Unavailable)))
            }
            Call::Here(future) => future,
        };
        let Some(busy) = busy else {
            return future.as_mut().poll(cx);
        };
        let started = Instant::now();
        busy.set(Some((this.lane.clone(), started)));
        let polled = future.as_mut().poll(cx);
        busy.set(None);
        let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        this.lane.polled.fetch_add(took, Ordering::Relaxed);
        polled
    }
}

#[derive(Debug)]
pub(super) struct SharedThread {
    jobs: mpsc::UnboundedSender<Job>,
    queue: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>,
    /// Which thread takes from the queue: an older one stops taking.
    generation: AtomicU64,
    /// What the current thread is doing.
    busy: Mutex<Arc<Busy>>,
    /// The plugins whose hooks may run here, as the watchdog reads them.
    lanes: Mutex<Vec<Readings>>,
}

impl SharedThread {
    /// The process's shared thread, started (with its watchdog) on first use.
    pub(super) fn get() -> std::io::Result<&'static SharedThread> {
        static SHARED: OnceLock<SharedThread> = OnceLock::new();
        static STARTED: Mutex<bool> = Mutex::new(false);
        let shared = SHARED.get_or_init(|| {
            let (jobs, queue) = mpsc::unbounded_channel();
            SharedThread {
                jobs,
                queue: Arc::new(Mutex::new(queue)),
                generation: AtomicU64::new(0),
                busy: Mutex::new(Arc::new(Busy::default())),
                lanes: Mutex::new(Vec::new()),
            }
        });
        let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
        if !*started {
            shared.start(0)?;
            std::thread::Builder::new()
                .name("plugin watchdog".into())
                .spawn(move || shared.watch())?;
            *started = true;
        }
        Ok(shared)
    }

    /// Lets the watchdog see how much of the thread `lane`'s hooks take.
    pub(super) fn watch_lane(&self, lane: &Arc<Lane>) {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        lanes.retain(|readings| readings.lane.strong_count() > 0);
        lanes.push(Readings {
            lane: Arc::downgrade(lane),
            polled: VecDeque::new(),
        });
    }

    /// A plugin, not yet moved, whose polls took [`HOG_SHARE`] of the thread lately.
    fn hog(&self) -> Option<Arc<Lane>> {
        let now = Instant::now();
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let mut found = None;
        for readings in lanes.iter_mut() {
            let Some(lane) = readings.lane.upgrade() else {
                continue;
            };
            if !lane.moved.load(Ordering::Acquire) && readings.hogs(&lane, now) {
                found = Some(lane);
            }
        }
        found
    }

    /// Queues `job` (whose hooks are [`Watched`]); gives it back if the queue is gone.
    pub(super) fn send(&self, job: Job) -> Result<(), Job> {
        self.jobs.send(job).map_err(|e| e.0)
    }

    /// Starts the thread of `generation`, which takes calls while it is the current one.
    fn start(&'static self, generation: u64) -> std::io::Result<()> {
        let busy = Arc::new(Busy::default());
        *self.busy.lock().unwrap_or_else(|e| e.into_inner()) = busy.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .thread_name("plugins")
            .build()?;
        let queue = self.queue.clone();
        let current = move || self.generation.load(Ordering::Acquire) == generation;
        std::thread::Builder::new()
            .name("plugins".into())
            .spawn(move || {
                if let Ok(file) = std::fs::File::open("/proc/thread-self/schedstat") {
                    let _ = busy.schedstat.set(file);
                }
                BUSY.with(|slot| *slot.borrow_mut() = Some(busy));
                runtime.block_on(async move {
                    let mut calls = JoinSet::new();
                    let take = |cx: Option<&mut Context<'_>>| -> Poll<Option<Job>> {
                        if !current() {
                            return Poll::Ready(None);
                        }
                        let mut queue = queue.lock().unwrap_or_else(|e| e.into_inner());
                        match cx {
                            Some(cx) => queue.poll_recv(cx),
                            None => match queue.try_recv() {
                                Ok(job) => Poll::Ready(Some(job)),
                                Err(mpsc::error::TryRecvError::Empty) => Poll::Pending,
                                Err(mpsc::error::TryRecvError::Disconnected) => Poll::Ready(None),
                            },
                        }
                    };
                    loop {
                        let early = early_call(|| match take(None) {
                            Poll::Ready(job) => Some(job),
                            Poll::Pending => None,
                        });
                        let next = match early.await {
                            Some(next) => next,
                            None => std::future::poll_fn(|cx| take(Some(cx))).await,
                        };
                        let Some(job) = next else { break };
                        make_call(job, &mut calls).await;
                    }
                    // Replaced (or the queue is gone): finish what was started, then end.
                    while calls.join_next().await.is_some() {}
                });
            })?;
        Ok(())
    }

    /// The watchdog: moves a plugin caught holding the thread to its own, and replaces the
    /// thread.
    fn watch(&'static self) {
        // Readings of the current thread's time waiting for a CPU, for `WAITS * CHECK`.
        const WAITS: usize = 64;
        let mut waits = VecDeque::with_capacity(WAITS);
        let mut watched: Option<Arc<Busy>> = None;
        loop {
            std::thread::sleep(CHECK);
            let busy = self.busy.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if !watched.as_ref().is_some_and(|w| Arc::ptr_eq(w, &busy)) {
                waits.clear();
                watched = Some(busy.clone());
            }
            let stuck = busy.stuck(&waits);
            if let Some(waited) = busy.waited() {
                if waits.len() == WAITS {
                    waits.pop_front();
                }
                waits.push_back((Instant::now(), waited));
            }
            let (lane, why) = match stuck {
                Some(lane) => (
                    lane,
                    format!("held the shared plugin thread for over {STALL:?}"),
                ),
                None => match self.hog() {
                    Some(lane) => (
                        lane,
                        format!(
                            "took over {:.0}% of the shared plugin thread for {HOG_WINDOW:?}",
                            HOG_SHARE * 100.0
                        ),
                    ),
                    None => continue,
                },
            };
            lane.moved.store(true, Ordering::Release);
            tracing::warn!(
                plugin = %lane.name,
                "storage plugin {why}; its hooks run on its own thread from now on"
            );
            let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
            if let Err(error) = self.start(generation) {
                tracing::error!(%error, "cannot start a new shared plugin thread");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread busy with a poll that began `polled` ago, whose kernel counters say it has
    /// waited `waited_ns` for a CPU in all; one reading from before the poll, of zero.
    fn stuck_after(polled: Duration, waited_ns: Option<u64>) -> bool {
        let busy = Busy::default();
        let since = Instant::now()
            .checked_sub(polled)
            .expect("an instant in the past");
        let lane = Arc::new(Lane::new("p", OwnThread::spawn("p").expect("a thread")));
        busy.set(Some((lane, since)));
        let dir = tempfile::tempdir().expect("a temp dir");
        if let Some(waited) = waited_ns {
            let path = dir.path().join("schedstat");
            std::fs::write(&path, format!("123 {waited} 4\n")).expect("write");
            let _ = busy
                .schedstat
                .set(std::fs::File::open(&path).expect("open"));
        }
        let before = since.checked_sub(CHECK).expect("an instant in the past");
        let waits = VecDeque::from([(before, Duration::ZERO)]);
        busy.stuck(&waits).is_some()
    }

    /// Inputs tried: polls of 10 and 30 ms, with 0, 5 and 25 ms of waiting for a CPU, and
    /// with no kernel counters at all.
    #[test]
    fn time_waiting_for_a_cpu_is_not_holding_the_thread() {
        assert!(!stuck_after(Duration::from_millis(10), Some(0)));
        assert!(stuck_after(Duration::from_millis(30), Some(0)));
        assert!(stuck_after(Duration::from_millis(30), Some(5_000_000)));
        assert!(!stuck_after(Duration::from_millis(30), Some(25_000_000)));
        assert!(stuck_after(Duration::from_millis(30), None));
    }
}
