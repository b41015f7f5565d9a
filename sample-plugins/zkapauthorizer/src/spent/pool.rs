//! A small, bounded pool of PostgreSQL connections for the blocking threads that run the
//! ledger. Broken connections are dropped and replaced on demand, so the store reconnects
//! by itself once the database is back.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use postgres::{Client, Config, NoTls};

use super::LedgerError;

/// The most connections one node opens to the store.
pub(super) const MAX_CONNECTIONS: usize = 8;
/// How long a caller waits for a connection (to be made, or to be free).
pub(super) const WAIT: Duration = Duration::from_secs(5);

pub(super) struct Pool {
    config: Config,
    /// The store, without its password, for errors.
    location: String,
    state: Mutex<State>,
    freed: Condvar,
}

struct State {
    idle: Vec<Client>,
    /// Connections in existence: idle, lent out, or being made.
    open: usize,
}

impl Pool {
    pub(super) fn new(mut config: Config, location: String) -> Self {
        // Give up on an absent database quickly (fail closed) and notice a dead peer.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(WAIT);
        }
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30));
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(Duration::from_secs(10));
        }
        Self {
            config,
            location,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    /// The store, without its password.
    pub(super) fn location(&self) -> &str {
        &self.location
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection: an idle one, a new one while fewer than [`MAX_CONNECTIONS`] exist, or
    /// the first one freed within [`WAIT`].
    pub(super) fn get(&self) -> Result<Pooled<'_>, LedgerError> {
        let deadline = Instant::now() + WAIT;
        let mut state = self.state();
        loop {
            if let Some(client) = state.idle.pop() {
                if client.is_closed() {
                    state.open -= 1;
                    continue;
                }
                return Ok(self.lend(client));
            }
            if state.open < MAX_CONNECTIONS {
                state.open += 1;
                drop(state);
                return match self.config.connect(NoTls) {
                    Ok(client) => Ok(self.lend(client)),
                    Err(error) => {
                        self.state().open -= 1;
                        self.freed.notify_one();
                        Err(LedgerError::new(format!(
                            "cannot connect to the spent-pass store {}: {error}",
                            self.location
                        )))
                    }
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(LedgerError::new(format!(
                    "all {MAX_CONNECTIONS} connections to the spent-pass store {} stayed busy for {WAIT:?}",
                    self.location
                )));
            }
            state = self
                .freed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn lend(&self, client: Client) -> Pooled<'_> {
        Pooled {
            pool: self,
            client: Some(client),
        }
    }
}

/// A connection lent out; back to the pool when dropped, unless it broke.
pub(super) struct Pooled<'a> {
    pool: &'a Pool,
    client: Option<Client>,
}

impl Pooled<'_> {
    /// Closes a connection found broken instead of giving it back, and the idle ones
    /// with it: a broken connection most often means the server restarted, and they are
    /// as dead (the next caller connects afresh instead of finding out one by one).
    pub(super) fn discard(mut self) {
        if self.client.take().is_some() {
            let mut state = self.pool.state();
            let idle = std::mem::take(&mut state.idle);
            state.open -= 1 + idle.len();
            drop(state);
            self.pool.freed.notify_all();
        }
    }
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client
            .as_ref()
            .expect("a lent connection until dropped")
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client
            .as_mut()
            .expect("a lent connection until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let mut state = self.pool.state();
        if client.is_closed() {
            state.open -= 1;
        } else {
            state.idle.push(client);
        }
        drop(state);
        self.pool.freed.notify_one();
    }
}
