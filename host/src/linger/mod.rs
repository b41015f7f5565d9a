//! Threads that do the node's quick work off the async threads (plugin hooks, small share
//! reads), and the requests waiting for them, look for work (or an answer) for a while
//! before they sleep: on a VM, waking a sleeping thread costs tens of microseconds, more
//! than most hooks or a small read take. Each kind of looking (a plugin thread for its next
//! call, the small-read thread for its next read, a request for its answer) is done by one
//! thread or task at a time, and yields the core between looks, so that looking never
//! keeps a core from a thread that has work.

mod deadline;

pub(crate) use deadline::within;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How long a plugin or read thread looks for its next call before it parks. Long enough
/// to span the gaps of a client that sends one request at a time over TLS (about 100 µs
/// from one request's `committed` to the next one's `admit` here): at 50 µs the plugin
/// thread parked between every two requests, and 1 KiB reads on one connection with three
/// plugins ran at 0.5-0.6 times the rate without plugins instead of 0.9-1.0 (gbs-bench).
/// The price: after its last call the thread spins this long, on one core (yielding it to
/// any other thread ready to run), before it sleeps.
const LINGER: Duration = Duration::from_micros(200);

/// How long a request looks for its plugin's answer before it sleeps until woken.
const SPIN: Duration = Duration::from_micros(40);

// One flag per kind. The plugin threads and the read thread have one each: a read with
// plugins goes plugin thread, read thread, plugin thread, and with one flag for both the
// read thread found it held by the plugin thread lingering after `admit`, slept, and had
// to be woken for every read (one connection, three plugins: 39,000 sleeps in a
// `gbs-bench --only plugins` run, 400 with a flag of its own).
static PLUGIN_LINGERING: AtomicBool = AtomicBool::new(false);
static READ_LINGERING: AtomicBool = AtomicBool::new(false);
static SPINNING: AtomicBool = AtomicBool::new(false);

/// One thread or task looking, holding its kind's flag until dropped.
struct Looking {
    flag: &'static AtomicBool,
    until: Instant,
}

impl Looking {
    /// Starts looking for `limit`, unless someone else of this kind (`flag`) is.
    fn start(flag: &'static AtomicBool, limit: Duration) -> Option<Looking> {
        flag.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        Some(Looking {
            flag,
            until: Instant::now() + limit,
        })
    }

    /// `poll`'s find, `Err(())` once the time is up, `Ok(None)` to look again.
    fn once<T>(&self, poll: &mut impl FnMut() -> Option<T>) -> Result<Option<T>, ()> {
        match poll() {
            Some(found) => Ok(Some(found)),
            None if Instant::now() >= self.until => Err(()),
            None => Ok(None),
        }
    }
}

impl Drop for Looking {
    fn drop(&mut self) {
        self.flag.store(false, Ordering::Release);
    }
}

/// Tries `poll` for up to `limit`, if no one else of this kind (`flag`) is looking; `None`
/// when nothing came. In between it yields the core to any other thread that is ready to
/// run, then the thread or worker to its other tasks: on two cores, a looking thread that
/// kept its core took it from the workers that make its next call (at 64 connections with
/// three plugins, 24 µs of CPU per `version` request instead of 31-33, gbs-bench).
async fn look<T>(
    flag: &'static AtomicBool,
    limit: Duration,
    mut poll: impl FnMut() -> Option<T>,
) -> Option<T> {
    let looking = Looking::start(flag, limit)?;
    loop {
        match looking.once(&mut poll) {
            Ok(Some(found)) => return Some(found),
            Ok(None) => {
                std::thread::yield_now();
                tokio::task::yield_now().await;
            }
            Err(()) => return None,
        }
    }
}

/// A call for a plugin thread that arrives within [`LINGER`], looked for with `try_next`;
/// `None` when none did (or another plugin thread is lingering): then wait to be woken.
pub(crate) async fn early_call<J>(try_next: impl FnMut() -> Option<J>) -> Option<J> {
    look(&PLUGIN_LINGERING, LINGER, try_next).await
}

/// [`early_call`] for the small-read thread (which has no async runtime), which lingers
/// whether or not a plugin thread does.
pub(crate) fn early_call_blocking<J>(mut try_next: impl FnMut() -> Option<J>) -> Option<J> {
    let looking = Looking::start(&READ_LINGERING, LINGER)?;
    loop {
        match looking.once(&mut try_next) {
            Ok(Some(found)) => return Some(found),
            Ok(None) => std::thread::yield_now(),
            Err(()) => return None,
        }
    }
}

/// Why [`answer`] has no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missed {
    /// The other side dropped its end without answering.
    Dropped,
    /// Not within the limit.
    Late,
}

/// The answer on `answer`, looked for for a while before waiting to be woken, for at most
/// about `limit`.
pub(crate) async fn answer<T>(
    mut answer: oneshot::Receiver<T>,
    limit: Duration,
) -> Result<T, Missed> {
    let found = look(&SPINNING, SPIN, || match answer.try_recv() {
        Ok(value) => Some(Ok(value)),
        Err(oneshot::error::TryRecvError::Closed) => Some(Err(Missed::Dropped)),
        Err(oneshot::error::TryRecvError::Empty) => None,
    })
    .await;
    match found {
        Some(found) => found,
        // The limit counts from here, at most `SPIN` late.
        None => match within(limit, answer).await {
            Some(answer) => answer.map_err(|_| Missed::Dropped),
            None => Err(Missed::Late),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `attempt`'s first `Some` within half a second. Other tests' plugin and read threads
    /// hold the flags for 200 µs at a time.
    fn soon<T>(mut attempt: impl FnMut() -> Option<T>) -> Option<T> {
        let until = Instant::now() + Duration::from_millis(500);
        std::iter::repeat_with(&mut attempt)
            .find(|found| found.is_some() || Instant::now() > until)
            .flatten()
    }

    /// Input tried: a plugin thread lingering (its flag held for a second) while the read
    /// thread looks for its next read; the read thread looks all the same.
    #[test]
    fn the_read_thread_lingers_while_a_plugin_thread_does() {
        let plugin_thread = soon(|| Looking::start(&PLUGIN_LINGERING, Duration::from_secs(1)));
        assert!(
            plugin_thread.is_some(),
            "the plugin flag was free at some point"
        );
        assert_eq!(soon(|| early_call_blocking(|| Some(7))), Some(7));
        drop(plugin_thread);
    }
}
