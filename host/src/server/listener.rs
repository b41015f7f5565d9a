//! The accept loop: a cap on open connections with room made by closing the longest-idle
//! one, a cap on TLS handshakes in progress, and accept errors logged without a flood.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::connection::{serve_connection, ConnectionContext, ConnectionState};

/// How often at most an accept error is logged; the others are counted into the next line.
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);
/// Pause after an accept error (out of descriptors, say) so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// At the cap with every connection busy, how often the loop looks again for one to close.
const ROOM_RECHECK: Duration = Duration::from_millis(100);

/// The open connections, for choosing one to close when the cap is reached.
#[derive(Debug)]
pub(super) struct Connections {
    slots: Arc<Semaphore>,
    open: Mutex<HashMap<u64, Arc<ConnectionState>>>,
    next_id: AtomicU64,
    epoch: Instant,
}

/// A connection's place under the cap; dropping it frees the place.
#[derive(Debug)]
pub(super) struct Slot {
    connections: Arc<Connections>,
    id: u64,
    pub(super) state: Arc<ConnectionState>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.lock().remove(&self.id);
    }
}

impl Connections {
    pub(super) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(max.max(1))),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnectionState>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many connections hold a slot.
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    fn register(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Slot {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnectionState::new(self.epoch));
        self.lock().insert(id, state.clone());
        Slot {
            connections: self.clone(),
            id,
            state,
            _permit: permit,
        }
    }

    /// A slot for a new connection: at once if there is room; otherwise the connection idle
    /// longest (or still in its handshake) is closed and its slot taken; when every
    /// connection is busy, waits for one to finish.
    pub(super) async fn slot(self: &Arc<Self>) -> Slot {
        loop {
            if let Ok(permit) = self.slots.clone().try_acquire_owned() {
                return self.register(permit);
            }
            self.evict_one();
            if let Ok(Ok(permit)) =
                tokio::time::timeout(ROOM_RECHECK, self.slots.clone().acquire_owned()).await
            {
                return self.register(permit);
            }
        }
    }

    /// Asks the longest-idle evictable connection to close; false if there is none.
    pub(super) fn evict_one(&self) -> bool {
        let now = Instant::now();
        let victim = self
            .lock()
            .values()
            .filter_map(|state| Some((state.evictable_since(now)?, state.clone())))
            .min_by_key(|(since, _)| *since);
        victim.is_some_and(|(_, state)| state.mark_evicted())
    }
}

/// Accepts connections until `shutdown` completes, serving each on its own task.
pub(super) async fn accept_loop(
    listener: TcpListener,
    connections: Arc<Connections>,
    context: ConnectionContext,
    shutdown: impl Future<Output = ()>,
) {
    let mut errors = ErrorLog::default();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    errors.record(&error);
                    // Out of descriptors, most likely: free one held by an idle client.
                    connections.evict_one();
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = connections.slot() => slot,
        };
        let context = context.clone();
        tokio::spawn(async move {
            let state = slot.state.clone();
            serve_connection(tcp, peer, state, context).await;
            drop(slot);
        });
    }
}

/// Logs accept errors at most once per [`ACCEPT_ERROR_LOG_EVERY`], with a count of those
/// not logged.
#[derive(Debug, Default)]
struct ErrorLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl ErrorLog {
    fn record(&mut self, error: &std::io::Error) {
        if self
            .last
            .is_some_and(|last| last.elapsed() < ACCEPT_ERROR_LOG_EVERY)
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(%error, suppressed = self.suppressed, "cannot accept connections");
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn at_the_cap_the_longest_idle_handshake_makes_room() {
        let connections = Connections::new(2);
        let first = connections.slot().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let second = connections.slot().await;
        assert_eq!(connections.len(), 2);
        let (first_state, second_state) = (first.state.clone(), second.state.clone());
        // The first connection's task goes away once asked to, freeing its slot.
        let closer = tokio::spawn(async move {
            first_state.evict.notified().await;
            drop(first);
        });
        let third = tokio::time::timeout(Duration::from_secs(5), connections.slot())
            .await
            .expect("a slot is made");
        closer.await.unwrap();
        assert_eq!(connections.len(), 2);
        assert!(
            second_state.mark_evicted(),
            "the younger connection was left alone"
        );
        drop((second, third));
        assert_eq!(connections.len(), 0);
    }

    #[test]
    fn accept_errors_are_logged_once_per_period() {
        let mut log = ErrorLog::default();
        let error = std::io::Error::other("EMFILE");
        for _ in 0..1000 {
            log.record(&error);
        }
        assert_eq!(log.suppressed, 999);
    }
}
