//! Byte layouts of Tahoe's share containers (`gbs-protocol.md` §6), one file per format.
//!
//! - [`immutable`]: the immutable container, versions 1 and 2 (§6.2);
//! - [`mutable`]: the mutable container, versions 1 and 2 (§6.3);
//! - [`lease`]: the lease records both embed, and how each version stores lease secrets.
//!
//! Only this module knows offsets. Every container type reads and writes an open [`File`]
//! through the positional helpers below, and refuses (with `None` from `open`) a file whose
//! sizes do not add up, so that the store never reads outside a container's data.

pub(crate) mod immutable;
pub(crate) mod lease;
pub(crate) mod mutable;

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};

/// Size of the buffers used to zero, copy and compare file regions.
pub(crate) const IO_CHUNK: usize = 64 * 1024;

/// What the first bytes of a share file say it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ContainerKind {
    /// First u32 is 1 or 2.
    Immutable,
    /// Starts with a mutable-container magic string.
    Mutable,
    /// Neither: skipped by lease operations, refused by reads.
    Unknown,
}

/// Looks at the start of `file` to tell which container it holds.
pub(crate) fn sniff(file: &File) -> io::Result<ContainerKind> {
    let mut head = [0u8; mutable::MAGIC_LEN];
    let mut filled = 0;
    let mut reader = file;
    reader.seek(SeekFrom::Start(0))?;
    while filled < head.len() {
        let Some(rest) = head.get_mut(filled..) else {
            break;
        };
        match reader.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let head = head.get(..filled).unwrap_or_default();
    Ok(if mutable::MutableVersion::from_magic(head).is_some() {
        ContainerKind::Mutable
    } else if immutable::ImmutableHeader::recognizes(head) {
        ContainerKind::Immutable
    } else {
        ContainerKind::Unknown
    })
}

/// `offset + len`, or an `InvalidInput` error when that does not fit in a u64.
pub(crate) fn end_of(offset: u64, len: u64) -> io::Result<u64> {
    offset
        .checked_add(len)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "file offset overflows"))
}

/// Fills `buf` from `file` at `offset`.
pub(crate) fn read_exact_at(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let mut file = file;
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

/// `len` bytes of `file` from `offset`, read without moving the file's position into
/// memory that is not zeroed first: zeroing a 512 KiB piece before reading into it was 8% of
/// the server's CPU during a download. One `pread` when the file holds the bytes (std's
/// `read_to_end`, the safe way to read into spare capacity, made an `lseek` and seven reads
/// growing from 8 KiB). `UnexpectedEof` if the file ends first.
#[allow(unsafe_code)]
pub(crate) fn read_vec_at(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    use std::os::fd::AsRawFd as _;
    let mut out = Vec::<u8>::with_capacity(len);
    while out.len() < len {
        let at = libc::off_t::try_from(end_of(offset, out.len() as u64)?)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))?;
        let wanted = len - out.len();
        let spare = &mut out.spare_capacity_mut()[..wanted];
        // SAFETY: the kernel writes at most `wanted` bytes into `spare`, which `out` owns and
        // nothing else borrows; the descriptor stays open while `file` is borrowed.
        let read = unsafe { libc::pread(file.as_raw_fd(), spare.as_mut_ptr().cast(), wanted, at) };
        match usize::try_from(read) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file ends before the bytes to read",
                ))
            }
            // SAFETY: `pread` initialised the first `n` (at most `wanted`) spare bytes.
            Ok(n) => unsafe { out.set_len(out.len() + n) },
            Err(_) => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
    Ok(out)
}

/// Writes all of `buf` to `file` at `offset`.
pub(crate) fn write_all_at(file: &File, offset: u64, buf: &[u8]) -> io::Result<()> {
    let mut file = file;
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(buf)
}

/// Writes `len` zero bytes at `offset`, a chunk at a time.
pub(crate) fn write_zeros_at(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let zeros = [0u8; IO_CHUNK];
    let mut done = 0;
    while done < len {
        let step = (len - done).min(IO_CHUNK as u64);
        let chunk = zeros
            .get(..usize::try_from(step).unwrap_or(IO_CHUNK))
            .unwrap_or(&zeros);
        write_all_at(file, end_of(offset, done)?, chunk)?;
        done += step;
    }
    Ok(())
}

/// Copies `len` bytes of `file` from `from` to `to`, which may overlap when `to > from`:
/// like `memmove`, the last chunk goes first, so no source byte is overwritten before it
/// has been copied.
pub(crate) fn copy_forward_within(file: &File, from: u64, to: u64, len: u64) -> io::Result<()> {
    if to < from {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "copy must move data forward",
        ));
    }
    end_of(to, len)?;
    let mut buf = vec![0u8; usize::try_from(len.min(IO_CHUNK as u64)).unwrap_or(IO_CHUNK)];
    let mut remaining = len;
    while remaining > 0 {
        let step = remaining.min(buf.len() as u64);
        remaining -= step;
        let chunk = buf
            .get_mut(..usize::try_from(step).unwrap_or_default())
            .unwrap_or_default();
        read_exact_at(file, from + remaining, chunk)?;
        write_all_at(file, to + remaining, chunk)?;
    }
    Ok(())
}

/// Reads `count` fixed-size records of `N` bytes starting at `offset`, numbering them from
/// `first_index`, through a buffer so that memory does not grow with the count. The file
/// position is set at the first read, so that several of these over one file can be chained.
#[derive(Debug)]
pub(crate) struct Records<'f, const N: usize> {
    reader: BufReader<&'f File>,
    offset: u64,
    started: bool,
    next_index: u64,
    remaining: u64,
}

impl<'f, const N: usize> Records<'f, N> {
    pub(crate) fn new(file: &'f File, offset: u64, count: u64, first_index: u64) -> Self {
        let reader = BufReader::with_capacity(IO_CHUNK, file);
        Self {
            reader,
            offset,
            started: false,
            next_index: first_index,
            remaining: count,
        }
    }

    fn read_record(&mut self) -> io::Result<[u8; N]> {
        if !self.started {
            self.reader.seek(SeekFrom::Start(self.offset))?;
            self.started = true;
        }
        let mut record = [0u8; N];
        self.reader.read_exact(&mut record)?;
        Ok(record)
    }
}

impl<const N: usize> Iterator for Records<'_, N> {
    type Item = io::Result<(u64, [u8; N])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        match self.read_record() {
            Ok(record) => {
                self.remaining -= 1;
                let index = self.next_index;
                self.next_index += 1;
                Some(Ok((index, record)))
            }
            Err(e) => {
                self.remaining = 0;
                Some(Err(e))
            }
        }
    }
}

/// Length of `file` in bytes.
pub(crate) fn file_len(file: &File) -> io::Result<u64> {
    Ok(file.metadata()?.len())
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    bytes
        .get(at..at + 4)?
        .try_into()
        .ok()
        .map(u32::from_be_bytes)
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    bytes
        .get(at..at + 8)?
        .try_into()
        .ok()
        .map(u64::from_be_bytes)
}

fn array_at<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at + N)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs tried: a range inside a 100-byte file, one ending at its end, an empty one,
    /// one running 30 bytes past its end and one starting past it. None moves the file's
    /// position (left at 100 by the write).
    #[test]
    fn read_vec_at_reads_exactly_the_range_or_fails() {
        let mut file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..100u8).collect();
        file.write_all(&data).unwrap();
        assert_eq!(read_vec_at(&file, 10, 20).unwrap(), &data[10..30]);
        assert_eq!(read_vec_at(&file, 60, 40).unwrap(), &data[60..]);
        assert!(read_vec_at(&file, 100, 0).unwrap().is_empty());
        for (offset, len) in [(80, 50), (200, 1)] {
            let error = read_vec_at(&file, offset, len).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{offset} {len}");
        }
        assert_eq!(file.stream_position().unwrap(), 100);
    }

    #[test]
    fn sniff_tells_the_kinds_apart() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&[u8], ContainerKind); 6] = [
            (
                &[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0],
                ContainerKind::Immutable,
            ),
            (
                &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
                ContainerKind::Immutable,
            ),
            (
                &[0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0],
                ContainerKind::Unknown,
            ),
            (&mutable::MutableVersion::V1.magic(), ContainerKind::Mutable),
            (
                b"Tahoe mutable container v3\n\0\0\0\0\0",
                ContainerKind::Unknown,
            ),
            (b"", ContainerKind::Unknown),
        ];
        for (i, (bytes, kind)) in cases.iter().enumerate() {
            let path = dir.path().join(i.to_string());
            std::fs::write(&path, bytes).unwrap();
            assert_eq!(
                sniff(&File::open(&path).unwrap()).unwrap(),
                *kind,
                "case {i}"
            );
        }
    }

    #[test]
    fn positional_helpers_round_trip_and_refuse_overflow() {
        let file = tempfile::tempfile().unwrap();
        write_all_at(&file, 5, b"abc").unwrap();
        write_zeros_at(&file, 0, 5).unwrap();
        let mut buf = [1u8; 8];
        read_exact_at(&file, 0, &mut buf).unwrap();
        assert_eq!(&buf, b"\0\0\0\0\0abc");
        assert_eq!(file_len(&file).unwrap(), 8);
        assert_eq!(
            end_of(u64::MAX, 1).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(end_of(1, 2).unwrap(), 3);
        write_zeros_at(&file, 1, (IO_CHUNK as u64) * 2 + 3).unwrap();
        assert_eq!(file_len(&file).unwrap(), 1 + (IO_CHUNK as u64) * 2 + 3);
    }

    #[test]
    fn copy_forward_within_handles_overlap_across_chunks() {
        let file = tempfile::tempfile().unwrap();
        let len = IO_CHUNK * 2 + 17;
        let original: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        write_all_at(&file, 10, &original).unwrap();
        copy_forward_within(&file, 10, 110, len as u64).unwrap();
        let mut moved = vec![0u8; len];
        read_exact_at(&file, 110, &mut moved).unwrap();
        assert_eq!(moved, original);
        assert!(copy_forward_within(&file, 10, 5, 1).is_err());
    }

    #[test]
    fn records_stream_and_stop_at_a_short_file() {
        let file = tempfile::tempfile().unwrap();
        write_all_at(&file, 3, &[1, 1, 2, 2, 3]).unwrap();
        let got: Vec<_> = Records::<2>::new(&file, 3, 3, 4).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].as_ref().unwrap(), &(4, [1, 1]));
        assert_eq!(got[1].as_ref().unwrap(), &(5, [2, 2]));
        assert!(got[2].is_err());
    }
}

/// What reading a share needs from either container kind.
pub(crate) trait ShareContainer: Sized {
    /// `"immutable"` or `"mutable"`, for errors.
    const KIND_NAME: &'static str;

    /// Recognises the container; `None` when the file is not one of this kind.
    fn open(file: std::fs::File) -> std::io::Result<Option<Self>>;

    /// Where share data byte 0 is in the file.
    fn data_offset(&self) -> u64;

    /// Length of the share data.
    fn data_len(&self) -> u64;

    /// Gives the file back.
    fn into_file(self) -> std::fs::File;
}

macro_rules! share_container {
    ($type:ty, $name:literal) => {
        impl ShareContainer for $type {
            const KIND_NAME: &'static str = $name;

            fn open(file: std::fs::File) -> std::io::Result<Option<Self>> {
                <$type>::open(file)
            }

            fn data_offset(&self) -> u64 {
                <$type>::data_offset(self)
            }

            fn data_len(&self) -> u64 {
                <$type>::data_len(self)
            }

            fn into_file(self) -> std::fs::File {
                <$type>::into_file(self)
            }
        }
    };
}

share_container!(immutable::ImmutableContainer, "immutable");
share_container!(mutable::MutableContainer, "mutable");
