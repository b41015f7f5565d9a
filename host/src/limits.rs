//! The bounds a node keeps on what clients can make it hold: connections, handshakes, time
//! and memory. Read from `[gbs]` in `tahoe.cfg` (stock Tahoe has no keys for these); the
//! README lists them with their defaults.

use std::time::Duration;

/// Bounds on what clients can make a server hold.
///
/// Memory: each open connection costs at most about [`Limits::CONNECTION_MEMORY`] (TLS
/// buffers, the HTTP read buffer, its task, a streamed read's small pieces); on top of
/// that, upload bytes waiting to be written share `upload_buffer`, read-test-write bodies
/// share `mutable_write_buffer`, and streamed reads' large pieces share `download_buffer`.
/// So the request path holds at most `max_connections × CONNECTION_MEMORY + upload_buffer
/// + mutable_write_buffer + download_buffer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once (`max_connections`). At the cap, the connection that has
    /// been idle longest (or is still in its TLS handshake) is closed to make room; when
    /// every connection is busy, new ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// TLS handshakes in progress at once (`max_handshakes`); the rest wait their turn.
    pub max_handshakes: usize,
    /// Time from accepting a connection to the end of its TLS handshake
    /// (`handshake_timeout`).
    pub handshake_timeout: Duration,
    /// A connection on which nothing was read or written for this long is closed
    /// (`idle_timeout`; stock Tahoe uses 60 s). This bounds a stalled request body, a client
    /// that does not read its answer, and idle keep-alive connections alike.
    pub idle_timeout: Duration,
    /// How long shutdown waits for requests in flight (`drain_timeout`).
    pub drain_timeout: Duration,
    /// How long one call into a storage plugin may take (`plugin_deadline`); past it the
    /// operation the plugin guards fails closed with 503.
    pub plugin_deadline: Duration,
    /// Bytes of upload data buffered in memory across all requests (`upload_buffer`).
    /// A request that finds the budget spent writes what it receives unbuffered.
    pub upload_buffer: usize,
    /// Bytes of read-test-write bodies held in memory across all requests
    /// (`mutable_write_buffer`); at least the largest body accepted. Writes beyond it queue.
    pub mutable_write_buffer: usize,
    /// Bytes of streamed reads' pieces held in memory across all requests
    /// (`download_buffer`): a piece read ahead, and the one the client is being sent. A
    /// stream that finds the budget spent reads small pieces instead, so a client that
    /// does not read its answer holds little.
    pub download_buffer: usize,
}

impl Limits {
    /// What one open connection costs at most, for the memory budget: rustls' buffers (up
    /// to 64 KiB of records waiting for the socket, besides its input), hyper's buffers
    /// (its input, and up to [`Limits::HTTP_READ_BUFFER`] of an answer queued for rustls),
    /// the task, and a streamed read's piece read ahead outside the download budget (8
    /// KiB). Measured: 1,000 clients that stopped reading a streamed answer took 141 KiB
    /// each beside the download budget.
    pub const CONNECTION_MEMORY: usize = 192 << 10;
    /// The most the HTTP layer buffers of one connection's input, and of its output.
    pub const HTTP_READ_BUFFER: usize = 64 << 10;
    /// Headers of one request; more get 431. Stock Tahoe (Twisted) takes 500, but its
    /// client sends fewer than ten, and this is hyper's own limit: any other value makes it
    /// allocate and fill a table that large for every request (4% of a small request's
    /// CPU at 500). Not configurable, so it cannot drift from the parser's.
    pub const REQUEST_HEADERS: usize = 100;
    /// The largest read-test-write body accepted (stock Tahoe: 2^48 bytes).
    pub const MUTABLE_WRITE_BODY: usize = 64 << 20;
    /// Descriptors kept for all but connections: the listener, logs, plugin libraries and
    /// the share files that blocking storage calls (at most 64 at once) have open.
    pub const RESERVED_DESCRIPTORS: u64 = 128;

    /// These limits with `max_connections` lowered, if need be, so that connections can
    /// never exhaust `nofile` descriptors: each takes its socket and at most one share file
    /// (a streamed read), and [`Limits::RESERVED_DESCRIPTORS`] stay free.
    pub fn fit_descriptors(mut self, nofile: u64) -> Self {
        let fit = nofile.saturating_sub(Self::RESERVED_DESCRIPTORS) / 2;
        let fit = usize::try_from(fit).unwrap_or(usize::MAX).max(1);
        if fit < self.max_connections {
            tracing::warn!(
                descriptors = nofile,
                max_connections = fit,
                "the open-file limit lowers the connection cap"
            );
            self.max_connections = fit;
        }
        self.max_handshakes = self.max_handshakes.min(self.max_connections);
        self
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_handshakes: 128,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
            plugin_deadline: Duration::from_secs(30),
            upload_buffer: 16 << 20,
            mutable_write_buffer: Self::MUTABLE_WRITE_BODY,
            download_buffer: 32 << 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_fit_the_descriptor_limit() {
        let limits = Limits::default();
        assert_eq!(limits.clone().fit_descriptors(1 << 20), limits);
        let fitted = limits.fit_descriptors(1024);
        assert_eq!(fitted.max_connections, (1024 - 128) / 2);
        assert!(fitted.max_handshakes <= fitted.max_connections);
        assert_eq!(Limits::default().fit_descriptors(10).max_connections, 1);
    }

    #[test]
    fn the_default_mutable_budget_holds_the_largest_body() {
        let limits = Limits::default();
        assert!(limits.mutable_write_buffer >= Limits::MUTABLE_WRITE_BODY);
        assert!(limits.max_handshakes <= limits.max_connections);
    }
}
