//! Whether an ELF shared library holds every byte its segments map, read from its headers
//! without loading it.
//!
//! A library cut short (an interrupted copy) can still load: the loader maps its segments
//! past the end of the file, and the process dies of SIGBUS only when code touches a page
//! that is not there, long after the library passed its check. So a file whose loadable
//! segments reach past its end is refused before anything opens it.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;

/// The ELF magic number.
const MAGIC: &[u8; 4] = b"\x7fELF";
/// `p_type` of a loadable segment.
const PT_LOAD: u32 = 1;
/// The most program headers read (real libraries have about ten).
const MAX_HEADERS: u64 = 4096;

/// Where the fields this check needs sit, for one ELF class.
struct Layout {
    /// `e_phoff`, `e_phentsize`, `e_phnum` in the file header.
    phoff: usize,
    phentsize: usize,
    phnum: usize,
    /// `p_offset` and `p_filesz` in a program header.
    offset: usize,
    filesz: usize,
    /// Width of `e_phoff`, `p_offset` and `p_filesz`.
    word: usize,
}

const ELF32: Layout = Layout {
    phoff: 0x1c,
    phentsize: 0x2a,
    phnum: 0x2c,
    offset: 4,
    filesz: 16,
    word: 4,
};

const ELF64: Layout = Layout {
    phoff: 0x20,
    phentsize: 0x36,
    phnum: 0x38,
    offset: 8,
    filesz: 32,
    word: 8,
};

/// `Err` with the reason when `path`, `length` bytes long, is an ELF file of this
/// machine's byte order whose loadable segments reach past its end. Anything else (not ELF,
/// another byte order, a file too damaged to read this far) is left to the loader, which
/// refuses it cleanly.
pub fn check_segments(path: &Path, length: u64) -> Result<(), String> {
    match mapped_length(path) {
        Some(needed) if needed > length => Err(truncated(length, needed)),
        _ => Ok(()),
    }
}

/// How long `path` must be to hold its program headers and every byte its loadable
/// segments map, if it is an ELF file of this machine's byte order; `None` otherwise.
pub fn mapped_length(path: &Path) -> Option<u64> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut header = [0u8; 64];
    file.read_exact(&mut header).ok()?;
    if &header[..4] != MAGIC {
        return None;
    }
    let native = if cfg!(target_endian = "little") { 1 } else { 2 };
    let layout = match (header[4], header[5]) {
        (1, data) if data == native => &ELF32,
        (2, data) if data == native => &ELF64,
        _ => return None,
    };
    let phoff = word(&header, layout.phoff, layout.word);
    let phentsize = u64::from(half(&header, layout.phentsize));
    let phnum = u64::from(half(&header, layout.phnum));
    let needed = (layout.filesz + layout.word) as u64;
    if phnum == 0 || phnum > MAX_HEADERS || phentsize < needed {
        return None;
    }
    let table_end = phoff.saturating_add(phentsize * phnum);
    let mut table = vec![0u8; usize::try_from(phentsize * phnum).ok()?];
    file.seek(SeekFrom::Start(phoff)).ok()?;
    if file.read_exact(&mut table).is_err() {
        // The headers themselves are cut short.
        return Some(table_end);
    }
    let segments_end = table
        .chunks_exact(usize::try_from(phentsize).ok()?)
        .filter(|entry| u32::from_ne_bytes([entry[0], entry[1], entry[2], entry[3]]) == PT_LOAD)
        .map(|entry| {
            word(entry, layout.offset, layout.word).saturating_add(word(
                entry,
                layout.filesz,
                layout.word,
            ))
        })
        .max()
        .unwrap_or(0);
    Some(table_end.max(segments_end))
}

fn truncated(length: u64, needed: u64) -> String {
    format!("truncated: its segments need {needed} bytes, the file has {length}")
}

/// The native-endian `u16` at `at`.
fn half(bytes: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([bytes[at], bytes[at + 1]])
}

/// The native-endian word of `width` (4 or 8) bytes at `at`.
fn word(bytes: &[u8], at: usize, width: usize) -> u64 {
    let mut buf = [0u8; 8];
    if cfg!(target_endian = "little") {
        buf[..width].copy_from_slice(&bytes[at..at + width]);
        u64::from_le_bytes(buf)
    } else {
        buf[8 - width..].copy_from_slice(&bytes[at..at + width]);
        u64::from_be_bytes(buf)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A shared library every Linux test machine has: the C library this test links.
    fn a_real_library() -> std::path::PathBuf {
        let maps = std::fs::read_to_string("/proc/self/maps").expect("read maps");
        maps.lines()
            .filter_map(|line| line.split_whitespace().nth(5))
            .find(|path| path.contains("libc.so") || path.contains("libc-"))
            .map(Into::into)
            .expect("libc in this process's maps")
    }

    fn file_length(path: &Path) -> u64 {
        std::fs::metadata(path).expect("stat").len()
    }

    /// Inputs tried: a whole library, the same cut to half of what it maps and to 100 bytes,
    /// and files that are not ELF (empty, text).
    #[test]
    fn a_library_cut_short_is_refused_and_others_are_left_to_the_loader() {
        let whole = std::fs::read(a_real_library()).expect("read libc");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lib.so");
        std::fs::write(&path, &whole).unwrap();
        assert_eq!(check_segments(&path, file_length(&path)), Ok(()));
        let mapped = mapped_length(&path).expect("libc is ELF");
        assert!(mapped <= whole.len() as u64);
        for cut in [usize::try_from(mapped / 2).unwrap(), 100] {
            std::fs::write(&path, &whole[..cut]).unwrap();
            let refused =
                check_segments(&path, file_length(&path)).expect_err("a truncated library");
            assert!(refused.starts_with("truncated: "), "{refused}");
            assert!(
                refused.ends_with(&format!("the file has {cut}")),
                "{refused}"
            );
        }
        for other in [&b""[..], b"not a library at all\n"] {
            std::fs::write(&path, other).unwrap();
            assert_eq!(check_segments(&path, file_length(&path)), Ok(()));
        }
    }
}
