//! A plugin's own thread: its constructor, `announce` and background service run there,
//! and its hooks too once it has been caught holding the shared thread.

use std::panic::AssertUnwindSafe;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{make_call, Job, NotRun, QUEUE};
use crate::linger::early_call;

#[derive(Debug)]
pub(super) struct OwnThread {
    jobs: mpsc::Sender<Job>,
}

impl OwnThread {
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
                    let mut calls = JoinSet::new();
                    loop {
                        let job = match early_call(|| queue.try_recv().ok()).await {
                            Some(job) => job,
                            None => match queue.recv().await {
                                Some(job) => job,
                                None => break,
                            },
                        };
                        make_call(job, &mut calls).await;
                    }
                });
            })?;
        Ok(Self { jobs })
    }

    /// Room for one more job, if the thread has fewer than [`QUEUE`] waiting and is there.
    pub(super) fn reserve(&self) -> Option<mpsc::Permit<'_, Job>> {
        self.jobs.try_reserve().ok()
    }

    /// Queues `job`; gives it back when the thread has [`QUEUE`] calls waiting or is gone.
    pub(super) fn send(&self, job: Job) -> Result<(), Job> {
        self.jobs.try_send(job).map_err(|e| e.into_inner())
    }

    /// Runs the synchronous `call` on the thread and waits for it, at most `deadline`.
    pub(super) fn run_sync<T: Send + 'static>(
        &self,
        call: impl FnOnce() -> T + Send + 'static,
        deadline: std::time::Duration,
    ) -> Result<T, NotRun> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let outcome =
                std::panic::catch_unwind(AssertUnwindSafe(call)).map_err(|_| NotRun::Panicked);
            let _ = reply.send(outcome);
            Box::pin(async {})
        });
        self.send(job).map_err(|_| NotRun::Unavailable)?;
        match answer.recv_timeout(deadline) {
            Ok(outcome) => outcome,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(NotRun::TimedOut),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(NotRun::Unavailable),
        }
    }
}
