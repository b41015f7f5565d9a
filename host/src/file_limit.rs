//! The process's open-file limit. A storage server holds a descriptor per connection and
//! per share being read or written, and the usual soft limit (1024) is far below the hard
//! limit, so `gbs run` raises it first.

use std::io;

/// The soft limit on open files before and after [`raise_open_file_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimit {
    /// The soft limit the process started with.
    pub before: u64,
    /// The soft limit now: the hard limit, or what the platform allows of it.
    pub now: u64,
}

/// Raises the soft `RLIMIT_NOFILE` as far as the hard limit allows, and logs the result.
pub fn raise_open_file_limit() -> io::Result<OpenFileLimit> {
    let (before, hard) = rlimit::Resource::NOFILE.get()?;
    // `increase_nofile_limit` also knows macOS's cap below an unlimited hard limit.
    let now = rlimit::increase_nofile_limit(u64::MAX)?;
    if now > before {
        tracing::info!(before, now, hard, "raised the open-file limit");
    }
    Ok(OpenFileLimit { before, now })
}

/// The soft limit on open files now, if the platform says.
pub fn open_file_limit() -> Option<u64> {
    rlimit::Resource::NOFILE.get().ok().map(|(soft, _)| soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_limit_is_raised_to_the_hard_limit() {
        let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap();
        if soft == hard {
            // Start below the hard limit, so that the raise has something to do; only just
            // below, since tests in other threads of this process need their descriptors.
            rlimit::Resource::NOFILE.set(hard - 1, hard).unwrap();
        }
        let limit = raise_open_file_limit().unwrap();
        let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap();
        assert_eq!(limit.now, soft);
        assert_eq!(soft, hard);
        assert!(limit.before < limit.now, "{limit:?}");
    }
}
