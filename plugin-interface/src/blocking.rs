//! [`Host::run_blocking`]: blocking work (file I/O, a database driver, a long computation)
//! on threads of the plugin's own, so that its hooks keep answering meanwhile.
//!
//! A hook that blocks holds up its plugin's thread, and with it every other call to that
//! plugin (see the threading section of the hook docs). Work handed to `run_blocking` runs
//! on a small pool inside the plugin library instead, and the hook awaits it like any other
//! future. Bounds: at most [`MAX_THREADS`] threads per library, started as work arrives and
//! kept; at most [`MAX_QUEUED`] jobs waiting, past which `run_blocking` fails at once.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use crate::ffi::PluginError;
use crate::sdk::Host;

/// Threads the pool starts at most, per plugin library.
pub const MAX_THREADS: usize = 8;
/// Jobs that may wait for a thread; more are refused.
pub const MAX_QUEUED: usize = 1024;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
}

struct Pool {
    queue: Mutex<Queue>,
    ready: Condvar,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        queue: Mutex::new(Queue::default()),
        ready: Condvar::new(),
    })
}

fn submit(job: Job) -> Result<(), PluginError> {
    let pool = pool();
    let mut queue = pool.queue.lock().unwrap_or_else(|e| e.into_inner());
    if queue.jobs.len() >= MAX_QUEUED {
        return Err(PluginError::failed(format!(
            "run_blocking: {MAX_QUEUED} jobs already wait"
        )));
    }
    queue.jobs.push_back(job);
    if queue.idle == 0 && queue.threads < MAX_THREADS {
        let started = std::thread::Builder::new()
            .name("plugin blocking".into())
            .spawn(work);
        if started.is_ok() {
            queue.threads += 1;
        } else if queue.threads == 0 {
            queue.jobs.pop_back();
            return Err(PluginError::failed("run_blocking: cannot start a thread"));
        }
    }
    drop(queue);
    pool.ready.notify_one();
    Ok(())
}

/// A pool thread: runs jobs for the life of the process.
fn work() {
    let pool = pool();
    loop {
        let job = {
            let mut queue = pool.queue.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(job) = queue.jobs.pop_front() {
                    break job;
                }
                queue.idle += 1;
                queue = pool.ready.wait(queue).unwrap_or_else(|e| e.into_inner());
                queue.idle -= 1;
            }
        };
        job();
    }
}

/// Where a result is left for the future that awaits it.
struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

/// Completes with the value its [`Fill`] is given.
pub(crate) struct Pending<T>(Arc<Mutex<Slot<T>>>);

/// Gives a [`Pending`] its value, from any thread.
pub(crate) struct Fill<T>(Arc<Mutex<Slot<T>>>);

/// A future and the handle that completes it: a one-shot channel that needs no runtime.
pub(crate) fn pending<T>() -> (Fill<T>, Pending<T>) {
    let slot = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
    }));
    (Fill(slot.clone()), Pending(slot))
}

impl<T> Fill<T> {
    /// Completes the future with `value`.
    pub(crate) fn fill(self, value: T) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slot.value = Some(value);
        if let Some(waker) = slot.waker.take() {
            waker.wake();
        }
    }
}

impl<T> Future for Pending<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match slot.value.take() {
            Some(value) => Poll::Ready(value),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Host {
    /// Runs `work` on a thread of the plugin's blocking pool and completes with its value,
    /// or with an error when it panicked or the pool's queue is full. Use it for anything
    /// that blocks: file I/O in [`Host::state_dir`], a database, a long computation.
    pub fn run_blocking<T, F>(
        &self,
        work: F,
    ) -> impl Future<Output = Result<T, PluginError>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (fill, done) = pending();
        let job: Job =
            Box::new(move || {
                fill.fill(catch_unwind(AssertUnwindSafe(work)).map_err(|_| {
                    PluginError::panicked("run_blocking: the work panicked".to_owned())
                }));
            });
        let submitted = submit(job);
        async move {
            submitted?;
            done.await
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use crate::testing::{block_on, TestHost};

    fn host() -> crate::Host {
        TestHost::new(std::env::temp_dir().join("gbs-sdk-blocking-test")).host()
    }

    // One test, so that the pool's bounds are tried without other tests' jobs in it.
    #[test]
    fn blocking_work_runs_beside_the_caller_within_its_bounds() {
        let host = host();
        // Work runs in parallel, on up to MAX_THREADS threads.
        let started = Instant::now();
        let jobs: Vec<_> = (0..super::MAX_THREADS)
            .map(|i| {
                host.run_blocking(move || {
                    std::thread::sleep(Duration::from_millis(300));
                    i * 2
                })
            })
            .collect();
        let values: Vec<usize> = jobs.into_iter().map(|j| block_on(j).unwrap()).collect();
        assert_eq!(
            values,
            (0..super::MAX_THREADS).map(|i| i * 2).collect::<Vec<_>>()
        );
        assert!(
            started.elapsed() < Duration::from_millis(300 * 3),
            "{:?}: the jobs ran one after another",
            started.elapsed()
        );

        // A panic is an error for that job only.
        let panicked = block_on(host.run_blocking(|| -> u8 { panic!("in blocking work") }));
        assert!(panicked.unwrap_err().message.contains("panicked"));
        assert_eq!(block_on(host.run_blocking(|| 7)).unwrap(), 7);

        // Input tried: every thread held, MAX_QUEUED jobs waiting, and one more.
        let (release, held) = mpsc::channel::<()>();
        let held = std::sync::Arc::new(std::sync::Mutex::new(held));
        let holding: Vec<_> = (0..super::MAX_THREADS)
            .map(|_| {
                let held = held.clone();
                host.run_blocking(move || {
                    let _ = held.lock().map(|h| h.recv());
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let waiting: Vec<_> = (0..super::MAX_QUEUED)
            .map(|_| host.run_blocking(|| ()))
            .collect();
        let refused = block_on(host.run_blocking(|| ()));
        assert!(
            refused.unwrap_err().message.contains("already wait"),
            "a job past the queue's bound was accepted"
        );
        for _ in 0..super::MAX_THREADS {
            release.send(()).unwrap();
        }
        for job in holding {
            block_on(job).unwrap();
        }
        for job in waiting {
            block_on(job).unwrap();
        }
    }
}
