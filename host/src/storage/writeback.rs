//! Starting the disk write of an upload's bytes as they arrive, so that the fsync that
//! completes a share has little left to do.
//!
//! Linux writes dirty pages in the background only once they are a tenth of memory, so
//! without this a 256 MiB share reached the disk all at once, in the final fsync, after
//! the last byte had arrived: that fsync took a third of the upload's time. Asking for the
//! writeback of each piece as it is written overlaps the disk with the network, and holds
//! back a client that sends faster than the disk writes. Durability does not change: a
//! share still counts as stored only after its fsync.

use std::fs::File;

/// Pages as the kernel writes them back; only pages wholly inside a write are started,
/// so the page shared with the next write (which would wait for it) is left alone.
const PAGE: u64 = 4096;

/// Starts, without waiting for it, the writeback of the whole pages of `file` within
/// `start..end` (file offsets). Does nothing where the system has no such call, or when
/// it fails: the fsync at the end writes whatever is left.
pub(crate) fn start(file: &File, start: u64, end: u64) {
    let Some(first) = start.div_ceil(PAGE).checked_mul(PAGE) else {
        return;
    };
    let last = end / PAGE * PAGE;
    if last > first {
        os::sync_file_range(file, first, last - first);
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod os {
    use std::fs::File;
    use std::os::fd::AsRawFd as _;

    pub(super) fn sync_file_range(file: &File, offset: u64, len: u64) {
        let (Ok(offset), Ok(len)) = (
            libc::off64_t::try_from(offset),
            libc::off64_t::try_from(len),
        ) else {
            return;
        };
        // SAFETY: the descriptor is open for as long as `file` is borrowed, and the call
        // reads no memory of ours. WRITE alone starts writeback and does not wait for it.
        let _ = unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
        };
    }
}

#[cfg(not(target_os = "linux"))]
mod os {
    pub(super) fn sync_file_range(_: &std::fs::File, _: u64, _: u64) {}
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io::Read as _;
    use std::os::unix::fs::FileExt as _;

    use super::*;

    /// Inputs tried: writes starting and ending inside pages, one inside a single page, an
    /// empty range and one past the end; the bytes read back are what was written.
    #[test]
    fn started_writeback_leaves_the_bytes_as_written() {
        let mut file = tempfile::tempfile().expect("temp file");
        let data: Vec<u8> = (0..3 * PAGE + 100).map(|i| (i % 251) as u8).collect();
        file.write_all_at(&data, 0).expect("write");
        start(&file, 10, 3 * PAGE + 50);
        start(&file, 5, 20);
        start(&file, 0, 0);
        start(&file, 1 << 40, (1 << 40) + 2 * PAGE);
        start(&file, u64::MAX - PAGE, u64::MAX);
        start(&file, u64::MAX - 1, u64::MAX);
        file.sync_all().expect("fsync");
        let mut back = Vec::new();
        file.read_to_end(&mut back).expect("read");
        assert_eq!(back, data);
    }
}
